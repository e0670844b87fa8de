//! Monthly report benchmark: a full DC5 month (127 nodes × 8 GPUs, meters, cooling, jobs)
//! backfilled by the demo's code into a temporary store, then the report built and rendered in
//! every format (JSON, CSV, HTML, PDF) several times; prints the median of each part.
//!
//!     cargo run --release -p kilowatch-aggregator --example report_bench -- [--step 15m] [--runs 5] [--nodes 127] [--keep DIR]
//!
//! The step defaults to the demo's backfill step (15 min). `--keep DIR` keeps the store (and
//! reuses it when it is already there) so that reruns skip the backfill.

use std::time::{Duration, Instant};

use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::demo::backfill_with_jobs;
use kilowatch_aggregator::report::{self, render::Format};
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::Store;
use kilowatch_store::jobs::JobStore;

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let step = humantime::parse_duration(arg(&args, "--step").unwrap_or("15m"))?;
    let runs: usize = arg(&args, "--runs").unwrap_or("5").parse()?;
    let nodes: usize = arg(&args, "--nodes").unwrap_or("127").parse()?;
    let tmp = tempfile::tempdir()?;
    let dir = arg(&args, "--keep").map(std::path::PathBuf::from).unwrap_or_else(|| tmp.path().to_owned());

    // October 2026 in Europe/Paris (745 h), from an hour before it starts.
    let month = "2026-10";
    let start = Timestamp::parse_rfc3339("2026-09-30T21:00:00Z")?;
    let end = Timestamp::parse_rfc3339("2026-11-01T00:00:00Z")?;
    if !dir.join(".report_bench_done").exists() {
        let t = Instant::now();
        let store = Store::open(&dir)?;
        let jobs = JobStore::open(&dir)?;
        let mut site = Site::new(SimConfig { start, nodes, site_nodes: nodes, ..SimConfig::default() });
        let samples = backfill_with_jobs(&store, Some(&jobs), &mut site, end, step)?;
        std::fs::write(dir.join(".report_bench_done"), b"")?;
        println!("backfill: {nodes} nodes × {} GPUs, step {}, {samples} samples in {:.1} s", SimConfig::default().gpus_per_node, humantime::format_duration(step), t.elapsed().as_secs_f64());
    }
    let store = Store::open(&dir)?;
    let cfg = Config::default();
    let formats = [Format::Json, Format::Csv, Format::Html, Format::Pdf];
    let check = report::build(&store, &cfg, month, None)?;
    println!(
        "month {month}: {} h, E_DC {:.0} kWh, PUE {:?}, coverage {:.1} %, {} jobs, {} daily points, {} cooling units",
        check.meta.hours,
        check.windows.month.facility_energy_kwh,
        check.windows.month.pue,
        check.data_quality.coverage_pct,
        check.jobs.job_count,
        check.daily.len(),
        check.climate.units
    );
    let (mut build, mut total) = (Vec::new(), Vec::new());
    let mut per_format: Vec<Vec<f64>> = vec![Vec::new(); formats.len()];
    let mut sizes = vec![0usize; formats.len()];
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        let r = report::build(&store, &cfg, month, Some("2026-11-02T06:00:00Z"))?;
        build.push(t0.elapsed().as_secs_f64());
        let mut renderer = report::render::Renderer::new(&r);
        for (i, f) in formats.iter().enumerate() {
            let t = Instant::now();
            sizes[i] = renderer.render(*f)?.len();
            per_format[i].push(t.elapsed().as_secs_f64());
        }
        total.push(t0.elapsed().as_secs_f64());
    }
    println!("report {month}, median of {runs} runs:");
    println!("  build (KPIs, days, climate, jobs, alerts, EU): {:.3} s", median(build));
    for (i, f) in formats.iter().enumerate() {
        println!("  render {:<4} {:>9} bytes: {:.3} s", f.ext(), sizes[i], median(per_format[i].clone()));
    }
    let m = median(total);
    println!("  total, all formats: {m:.3} s (target < 5 s){}", if Duration::from_secs_f64(m) < Duration::from_secs(5) { "" } else { "  ** MISSED **" });
    Ok(())
}
