//! Property: every figure is the same whatever the age of the data it reads. Random sites with
//! counters that reset and roll over, power-only meters sampled irregularly with gaps, a meter
//! installed late and one retired early, meters read at different phases, jobs from the API and
//! from `gpu_job` points; KPIs and attribution over random windows, on and off the hour, are
//! computed on raw samples, after raw expiry (minute buckets) and after minute expiry (hour
//! buckets). Whole-hour windows agree to 1e-9 relative; windows with an edge inside a bucket
//! stay within that bucket's energy (docs/storage.md); jobs + idle + unattributed = E_IT to
//! 1e-9 at every age.

use kilowatch_accounting::attribution::{Attribution, attribute};
use kilowatch_accounting::kpi::{self, Kpi};
use kilowatch_accounting::read::JobsRead;
use kilowatch_aggregator::adapters::{StoreJobs, StoreRead};
use kilowatch_aggregator::config::{CarbonConfig, Config};
use kilowatch_model::{Point, TimeRange, Timestamp};
use kilowatch_store::jobs::{JobPost, JobStore, recorder};
use kilowatch_store::{Retention, Store};
use proptest::prelude::*;

const S: i64 = 1_000_000_000;
const H: i64 = 3600 * S;
/// 2026-10-01T00:00:00Z.
const T0: i64 = 1_790_812_800 * S;
/// Data for six hours, then one more so they can be rolled up.
const HOURS: i64 = 4;

#[derive(Debug, Clone)]
struct Meter {
    /// Seconds between readings (irregular: each reading adds one of these in turn).
    steps: Vec<i64>,
    phase: i64,
    /// Rate per second, per hour of the day (changes at each hour).
    rates: Vec<f64>,
    /// Reading indices at which the counter resets (a swap or a rollover).
    resets: Vec<usize>,
    /// Readings that are lost (a gap).
    gaps: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Case {
    meters: Vec<Meter>,
    jobs: Vec<(u32, i64, i64)>,
    gpu_job: (i64, i64),
    windows: Vec<(i64, i64)>,
}

fn meter(max_step: i64) -> impl Strategy<Value = Meter> {
    (
        prop::collection::vec(1i64..max_step, 1..6),
        0i64..max_step,
        prop::collection::vec(0.1f64..50.0, (HOURS + 1) as usize),
        prop::collection::vec(0usize..400, 0..3),
        prop::collection::vec(0usize..400, 0..6),
    )
        .prop_map(|(steps, phase, rates, resets, gaps)| Meter { steps, phase, rates, resets, gaps })
}

fn case() -> impl Strategy<Value = Case> {
    // Grid, generator, UPS counter, UPS power-only, late meter, retired meter, water, 2 GPUs,
    // node power.
    let meters = (meter(120), meter(300), meter(90), meter(40), meter(120), meter(120), meter(600), meter(20), meter(20), meter(60));
    let job = (0u32..2, 0i64..HOURS * 3600, 60i64..3 * 3600);
    // Windows: whole hours, whole minutes and anything.
    let window = prop_oneof![
        (0i64..HOURS, 1i64..4).prop_map(|(a, n)| (a * 3600, (a + n).min(HOURS) * 3600)),
        (0i64..HOURS * 60, 1i64..200).prop_map(|(a, n)| (a * 60, ((a + n) * 60).min(HOURS * 3600))),
        (0i64..HOURS * 3600, 1i64..HOURS * 3600).prop_map(|(a, n)| (a, (a + n).min(HOURS * 3600))),
    ];
    (meters, prop::collection::vec(job, 0..4), (0i64..HOURS * 3600, 600i64..7200), prop::collection::vec(window, 1..6)).prop_map(|(m, jobs, gpu_job, windows)| Case {
        meters: vec![m.0, m.1, m.2, m.3, m.4, m.5, m.6, m.7, m.8, m.9],
        jobs,
        gpu_job,
        windows: windows.into_iter().filter(|(a, b)| b > a).collect(),
    })
}

/// The series of meter `k`: (line prefix, field, power-only?, scale of the counter, alive span).
fn describe(k: usize) -> (&'static str, &'static str, bool, f64, (i64, i64)) {
    let all = (0, (HOURS + 1) * 3600);
    match k {
        0 => ("meter,meter=grid,role=facility", "energy_kwh", false, 1.0 / 3600.0 * 2.0, all),
        1 => ("meter,meter=gen,role=generator", "energy_kwh", false, 1.0 / 36000.0, all),
        2 => ("meter,meter=ups-a,role=it,category=1", "energy_kwh", false, 1.0 / 3600.0, all),
        3 => ("meter,meter=ups-b,role=it,category=1", "power_w", true, 1000.0, all),
        4 => ("meter,meter=grid-late,role=facility", "energy_kwh", false, 1.0 / 3600.0, (2 * 3600 + 17, (HOURS + 1) * 3600)),
        5 => ("meter,meter=pdu-old,role=it,category=2", "energy_kwh", false, 1.0 / 3600.0, (0, 3 * 3600 - 41)),
        6 => ("water,meter=makeup,potable=true", "volume_m3", false, 1.0 / 36000.0, all),
        7 => ("gpu,node=n1,gpu=0", "energy_mj", false, 700_000.0, all),
        8 => ("gpu,node=n1,gpu=1", "energy_mj", false, 600_000.0, all),
        _ => ("node,node=n1", "power_w", true, 100.0, all),
    }
}

fn lines(c: &Case) -> Vec<Point> {
    let mut pts = Vec::new();
    for (k, m) in c.meters.iter().enumerate() {
        let (prefix, field, power, scale, (alive_from, alive_to)) = describe(k);
        let mut t = alive_from + m.phase;
        let mut v = if k == 0 { 99_990.0 } else { 1000.0 };
        let mut i = 0usize;
        while t <= alive_to {
            let rate = m.rates[((t / 3600) as usize).min(m.rates.len() - 1)];
            let value = if power {
                rate * scale * if i % 2 == 0 { 1.0 } else { 3.0 }
            } else {
                if m.resets.contains(&i) {
                    // A swap, or the grid meter's 100,000 kWh rollover.
                    v = 0.5;
                } else {
                    v += rate * scale * m.steps[i % m.steps.len()] as f64;
                }
                if k == 0 && v >= 100_000.0 {
                    v -= 100_000.0;
                }
                v
            };
            if !m.gaps.contains(&i) {
                let (measurement, rest) = prefix.split_once(',').expect("tags");
                let mut p = Point::new(measurement, Timestamp(T0 + t * S));
                for kv in rest.split(',') {
                    let (a, b) = kv.split_once('=').expect("tag");
                    p = p.tag(a, b);
                }
                pts.push(p.field(field, value));
            }
            t += m.steps[i % m.steps.len()];
            i += 1;
        }
    }
    let (a, len) = c.gpu_job;
    let mut t = a;
    while t <= (a + len).min(HOURS * 3600) {
        pts.push(Point::new("gpu_job", Timestamp(T0 + t * S)).tag("node", "n1").tag("gpu", "1").field("job", "pod:serve"));
        t += 10;
    }
    pts
}

struct Figures {
    kpis: Vec<Kpi>,
    atts: Vec<Attribution>,
}

/// The case's API jobs, posted to the ledger as `POST /api/v1/jobs` does.
fn post_jobs(jobs: &JobStore, c: &Case) {
    for (i, (gpu, start, dur)) in c.jobs.iter().enumerate() {
        let at = |s: i64| Timestamp(T0 + s * S).to_rfc3339();
        let p = JobPost {
            job: format!("j{i}"),
            owner: Some("o".into()),
            project: None,
            node: Some("n1".into()),
            gpus: Some(vec![*gpu]),
            start: Some(at(*start)),
            end: Some(at(start + dur)),
            source: Some("api".into()),
        };
        jobs.post(&p).expect("post");
    }
}

fn figures(store: &Store, jobs: &JobStore, c: &Case) -> Figures {
    let mut kpis = Vec::new();
    let mut atts = Vec::new();
    for (a, b) in &c.windows {
        let r = TimeRange::new(Timestamp(T0 + a * S), Timestamp(T0 + b * S));
        kpis.push(kpi::compute_with(&StoreRead(store), r, "test", &Config::default()).expect("kpi"));
        let allocs = StoreJobs::new(store, jobs).allocations(r.from.0, r.to.0).expect("allocs");
        atts.push(attribute(&StoreRead(store), &allocs, r, None, &CarbonConfig::default()).expect("attribute"));
    }
    Figures { kpis, atts }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-9)
}

/// The largest energy of one bucket of `step` seconds touching the window's edges, over the
/// raw readings, per figure: the documented bound for an edge inside a bucket.
fn edge_bound(store: &Store, r: (i64, i64), step: i64, f: &dyn Fn(&Kpi) -> f64) -> f64 {
    let mut bound = 0.0;
    for edge in [r.0, r.1] {
        if edge % step == 0 {
            continue;
        }
        let b0 = edge / step * step;
        let k = kpi::compute(&StoreRead(store), TimeRange::new(Timestamp(T0 + b0 * S), Timestamp(T0 + (b0 + step) * S)), "bound").expect("kpi");
        bound += f(&k).abs();
    }
    bound
}

fn check(c: &Case, raw: &Figures, old: &Figures, bounds: &[(f64, f64, f64)], what: &str) -> Result<(), TestCaseError> {
    for (i, (a, b)) in c.windows.iter().enumerate() {
        let whole_hours = a % 3600 == 0 && b % 3600 == 0;
        let (kr, ko) = (&raw.kpis[i], &old.kpis[i]);
        let (b_dc, b_it, b_w) = bounds[i];
        for (name, x, y, bound) in [
            ("E_DC", kr.facility_energy_kwh, ko.facility_energy_kwh, b_dc),
            ("E_IT", kr.it_energy_kwh, ko.it_energy_kwh, b_it),
            ("water", kr.water_m3.unwrap_or(0.0), ko.water_m3.unwrap_or(0.0), b_w),
            ("CO2", kr.co2_location_kg, ko.co2_location_kg, b_dc),
        ] {
            if whole_hours {
                prop_assert!(rel(x, y) <= 1e-9, "{what} {name} over whole hours {a}..{b}: raw {x} vs {y}");
            } else {
                prop_assert!((x - y).abs() <= bound * 1.000_001 + 1e-9, "{what} {name} over {a}..{b}: raw {x} vs {y}, bound {bound}");
            }
        }
        if whole_hours {
            prop_assert_eq!(kr.pue_category, ko.pue_category, "{} category over {}..{}", what, a, b);
            // Over the whole window PUE is exact; over a shorter common span (a meter starting
            // or ending inside the window) its edges fall inside buckets.
            if kr.pue_span.is_none() && ko.pue_span.is_none() {
                prop_assert_eq!(kr.pue.is_some(), ko.pue.is_some(), "{} PUE over {}..{}", what, a, b);
                if let (Some(p), Some(q)) = (kr.pue, ko.pue) {
                    prop_assert!(rel(p, q) <= 1e-9, "{what} PUE over {a}..{b}: {p} vs {q}");
                }
            }
            prop_assert!((kr.data_quality.coverage_pct - ko.data_quality.coverage_pct).abs() <= 1e-6, "{what} coverage over {a}..{b}");
        }
        for (att, age) in [(&raw.atts[i], "raw"), (&old.atts[i], what)] {
            let sum: f64 = att.jobs.iter().map(|j| j.it_energy_kwh).sum::<f64>() + att.idle_kwh + att.unattributed_kwh;
            prop_assert!(rel(sum, att.it_energy_kwh) <= 1e-9 || (sum - att.it_energy_kwh).abs() < 1e-12, "{age}: jobs + idle + unattributed {sum} vs E_IT {}", att.it_energy_kwh);
        }
        let jobs = |f: &Figures| {
            let mut j: Vec<(String, f64, f64)> = f.atts[i].jobs.iter().map(|j| (j.job.clone(), j.gpu_energy_kwh, j.it_energy_kwh)).collect();
            j.sort_by(|x, y| x.0.cmp(&y.0));
            j
        };
        let (jr, jo) = (jobs(raw), jobs(old));
        prop_assert_eq!(jr.iter().map(|j| &j.0).collect::<Vec<_>>(), jo.iter().map(|j| &j.0).collect::<Vec<_>>(), "{} jobs over {}..{}", what, a, b);
        if whole_hours {
            // A job's start and end inside a bucket: its energy there was recorded while the
            // raw samples were kept, so its share does not move either.
            for (x, y) in jr.iter().zip(&jo) {
                prop_assert!(rel(x.1, y.1) <= 1e-9 && rel(x.2, y.2) <= 1e-9, "{what} job {} over {a}..{b}: GPU {} vs {}, IT {} vs {}", x.0, x.1, y.1, x.2, y.2);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn every_figure_is_the_same_at_every_age(c in case()) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let jobs = JobStore::beside(&store).expect("jobs");
        for chunk in lines(&c).chunks(5000) {
            store.write(chunk).expect("write");
        }
        store.checkpoint().expect("checkpoint");
        post_jobs(&jobs, &c);
        let raw = figures(&store, &jobs, &c);
        let bound = |step: i64| -> Vec<(f64, f64, f64)> {
            c.windows.iter().map(|w| (
                edge_bound(&store, *w, step, &|k| k.facility_energy_kwh),
                edge_bound(&store, *w, step, &|k| k.it_energy_kwh),
                edge_bound(&store, *w, step, &|k| k.water_m3.unwrap_or(0.0)),
            )).collect()
        };
        let (minute_bounds, hour_bounds) = (bound(60), bound(3600));
        // Raw kept for the last hour only: the window's hours are read from minute buckets.
        store.maintain_with(&Retention { raw: H, minute: 100 * H, hour: None }, i64::MAX, &mut recorder(Some(&jobs))).expect("maintain");
        prop_assert!(store.horizons().expect("h").raw_from >= T0 + HOURS * H - H);
        let minutes = figures(&store, &jobs, &c);
        check(&c, &raw, &minutes, &minute_bounds, "minute buckets")?;
        // Minute buckets kept for two hours: most of the window is read from hour buckets.
        store.maintain_with(&Retention { raw: H, minute: 2 * H, hour: None }, i64::MAX, &mut recorder(Some(&jobs))).expect("maintain");
        let hours = figures(&store, &jobs, &c);
        check(&c, &raw, &hours, &hour_bounds, "hour buckets")?;
    }
}
