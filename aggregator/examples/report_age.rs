//! The monthly report is the same whatever the age of the data it reads. A simulated DC5 month
//! (October 2026, Europe/Paris) is backfilled at a 1-minute step with power-only node meters
//! (the node's `energy_j` counter dropped, as with Redfish or IPMI readings) and NVML counter
//! resets on a few GPUs (driver reloads); the report is built on raw samples, after raw expiry
//! (minute buckets) and after minute expiry (hour buckets), and its KPIs and job totals are
//! compared. Exits non-zero if any differs by more than 1e-9 relative: jobs' starts and ends
//! inside buckets included, since their energy is recorded as each hour is rolled up
//! (docs/storage.md).
//!
//!     cargo run --release -p kilowatch-aggregator --example report_age -- [--nodes 16] [--step 1m]

use std::time::Instant;

use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::demo::{job_posts, record_active};
use kilowatch_aggregator::report::{self, MonthlyReport};
use kilowatch_model::point::FieldValue;
use kilowatch_model::{Point, Timestamp};
use kilowatch_sim::PointBuf;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::jobs::{JobStore, recorder};
use kilowatch_store::{Retention, Store};

const HOUR: i64 = 3_600_000_000_000;

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// GPUs whose driver reloads (their NVML counter restarts from 0), and when.
fn resets(start: i64) -> Vec<(String, String, i64)> {
    [("dgx-001", "3", 4), ("dgx-002", "0", 11), ("dgx-003", "7", 19), ("dgx-001", "5", 26)]
        .iter()
        .map(|(n, g, day)| (n.to_string(), g.to_string(), start + day * 24 * HOUR + 7 * HOUR + 13 * 60_000_000_000))
        .collect()
}

/// The site's points as a DC5 with power-only node meters and GPU driver reloads reports them.
fn transform(points: &[Point], resets: &[(String, String, i64)], offsets: &mut std::collections::HashMap<(String, String), f64>) -> Vec<Point> {
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        let mut p = p.clone();
        if p.measurement == "node" {
            p.fields.retain(|(f, _)| f != "energy_j");
        }
        if p.measurement == "gpu" {
            let key = (p.tags.get("node").cloned().unwrap_or_default(), p.tags.get("gpu").cloned().unwrap_or_default());
            for (f, v) in &mut p.fields {
                if f != "energy_mj" {
                    continue;
                }
                let FieldValue::F64(x) = *v else { continue };
                if let Some((_, _, at)) = resets.iter().find(|(n, g, _)| (n, g) == (&key.0, &key.1)) {
                    // The counter restarts at 0 at the reload: later readings lose what came before.
                    if p.ts.0 >= *at {
                        let off = *offsets.entry(key.clone()).or_insert(x);
                        *v = FieldValue::F64(x - off);
                    }
                }
            }
        }
        out.push(p);
    }
    out
}

fn figures(r: &MonthlyReport) -> Vec<(&'static str, Option<f64>)> {
    let m = &r.windows.month;
    let j = &r.jobs;
    vec![
        ("E_DC kWh", Some(m.facility_energy_kwh)),
        ("E_IT kWh", Some(m.it_energy_kwh)),
        ("PUE", m.pue),
        ("water m3", m.water_m3),
        ("WUE L/kWh", m.wue_l_per_kwh),
        ("CO2 kg", Some(m.co2_location_kg)),
        ("coverage %", Some(m.data_quality.coverage_pct)),
        ("daily PUE, day 15", r.daily.get(14).and_then(|d| d.pue)),
        ("jobs + idle kWh", Some(j.jobs_it_energy_kwh + j.idle_kwh)),
        ("unattributed kWh", Some(j.unattributed_kwh)),
        ("jobs", Some(j.job_count as f64)),
        ("jobs IT kWh", Some(j.jobs_it_energy_kwh)),
        ("idle kWh", Some(j.idle_kwh)),
        ("top job IT kWh", j.top_jobs.first().map(|x| x.it_energy_kwh)),
        ("top job facility kWh", j.top_jobs.first().map(|x| x.facility_energy_kwh)),
        ("top owner CO2 kg", j.top_owners.first().map(|x| x.1.co2_kg)),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = arg(&args, "--nodes").unwrap_or("16").parse()?;
    let step = humantime::parse_duration(arg(&args, "--step").unwrap_or("1m"))?;
    let dir = tempfile::tempdir()?;
    let month = "2026-10";
    let start = Timestamp::parse_rfc3339("2026-09-30T21:00:00Z")?;
    // Three hours past the month, so that its last hour is rolled up.
    let end = Timestamp::parse_rfc3339("2026-11-01T03:00:00Z")?;
    let store = Store::open(dir.path())?;
    let jobs = JobStore::open(dir.path())?;
    let mut site = Site::new(SimConfig { start, nodes, site_nodes: nodes, ..SimConfig::default() });
    record_active(&jobs, &site)?;
    let resets = resets(start.0);
    let mut offsets = std::collections::HashMap::new();
    let t = Instant::now();
    let step_ns = step.as_nanos() as i64;
    let mut buf = PointBuf::new();
    let mut samples = 0usize;
    let mut i = 0i64;
    loop {
        let now = Timestamp(start.0 + i * step_ns);
        if now > end {
            break;
        }
        site.advance_to(now);
        site.fill_points(&mut buf);
        jobs.post_many(&job_posts(site.take_job_events()))?;
        samples += store.write(&transform(buf.points(), &resets, &mut offsets))?.samples;
        if now.0.rem_euclid(24 * HOUR) < step_ns {
            store.checkpoint()?;
        }
        i += 1;
    }
    store.checkpoint()?;
    println!("backfill: {nodes} nodes, step {}, {samples} samples in {:.0} s", humantime::format_duration(step), t.elapsed().as_secs_f64());

    let cfg = Config::default();
    let raw = report::build(&store, &cfg, month, None)?;
    let t = Instant::now();
    store.maintain_with(&Retention { raw: 48 * HOUR, minute: 35 * 24 * HOUR, hour: None }, i64::MAX, &mut recorder(Some(&jobs)))?;
    println!("roll-up of the month and raw expiry in {:.0} s: {:?}", t.elapsed().as_secs_f64(), store.horizons()?);
    let minutes = report::build(&store, &cfg, month, None)?;
    store.maintain_with(&Retention { raw: 48 * HOUR, minute: 48 * HOUR, hour: None }, i64::MAX, &mut recorder(Some(&jobs)))?;
    println!("minute expiry: {:?}", store.horizons()?);
    let hours = report::build(&store, &cfg, month, None)?;

    println!("\n{:<22} {:>18} {:>18} {:>18} {:>9} {:>9}", "figure", "raw", "minute buckets", "hour buckets", "rel min", "rel hour");
    let mut worst = 0.0f64;
    for ((name, a), ((_, b), (_, c))) in figures(&raw).into_iter().zip(figures(&minutes).into_iter().zip(figures(&hours))) {
        let rel = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() / x.abs().max(y.abs()).max(1e-12),
            (None, None) => 0.0,
            _ => f64::INFINITY,
        };
        worst = worst.max(rel(a, b)).max(rel(a, c));
        let f = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_else(|| "null".into());
        println!("{name:<22} {:>18} {:>18} {:>18} {:>9.1e} {:>9.1e}", f(a), f(b), f(c), rel(a, b), rel(a, c));
    }
    println!("\nlargest relative difference: {worst:.1e}");
    if worst > 1e-9 {
        return Err(format!("the report changed with the age of its data (worst {worst:e})").into());
    }
    Ok(())
}
