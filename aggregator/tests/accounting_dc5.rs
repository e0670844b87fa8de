//! A simulated DC5 (127 DGX H100 nodes, 1,016 GPUs) backfilled by the demo's code with its job
//! events into the ledger, then read through the HTTP API: Σ jobs + idle + unattributed must
//! equal the metered E_IT, E_IT and PUE must match the simulator's meters, GPU and node energy
//! its ground truth. Two days by default; the full month (January 2025 in Europe/Paris) with
//!   KILOWATCH_DC5_DAYS=31 cargo test --release -p kilowatch-aggregator --test accounting_dc5 -- --nocapture

mod common;

use std::time::{Duration, Instant};

use common::{READ, Server};
use kilowatch_aggregator::demo::backfill_with_jobs;
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::Store;
use kilowatch_store::jobs::JobStore;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc5_month_adds_up() {
    let days: i64 = std::env::var("KILOWATCH_DC5_DAYS").ok().and_then(|d| d.parse().ok()).unwrap_or(2);
    let dir = tempfile::tempdir().expect("tmp");
    // Midnight of 2025-01-01 in Paris.
    let start = Timestamp::from_secs(1_735_686_000);
    let end = Timestamp(start.0 + days * 86_400 * 1_000_000_000);
    let t = Instant::now();
    let truth = {
        let store = Store::open(dir.path()).expect("store");
        let jobs = JobStore::open(dir.path()).expect("jobs");
        let mut site = Site::new(SimConfig { start, ..SimConfig::default() });
        backfill_with_jobs(&store, Some(&jobs), &mut site, end, Duration::from_secs(900)).expect("backfill");
        site.truth()
    };
    let backfill_s = t.elapsed().as_secs_f64();
    let s = Server::start(dir.path()).await;
    let (from, to) = (start.to_rfc3339(), end.to_rfc3339());
    let q = if days == 31 { "period=month&month=2025-01".to_owned() } else { format!("from={from}&to={to}") };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3000)).build().expect("client");
    let get = |path: String| {
        let c = client.clone();
        let u = s.url(&path);
        async move {
            let r = c.get(u).header("Authorization", format!("Token {READ}")).send().await.expect("send");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    let t = Instant::now();
    let k = get(format!("/api/v1/kpi?{q}")).await;
    let kpi_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let v = get(format!("/api/v1/jobs?{q}")).await;
    let jobs_s = t.elapsed().as_secs_f64();
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let it = f(&v["it_energy_kwh"]);
    let jobs = v["jobs"].as_array().expect("jobs");
    let jobs_it: f64 = jobs.iter().map(|j| f(&j["it_energy_kwh"])).sum();
    let (idle, unattr) = (f(&v["idle_kwh"]), f(&v["unattributed_kwh"]));
    let rel = |a: f64, b: f64| ((a - b) / b).abs();
    println!("DC5 {days} days from {from} to {to} ({}), backfill {backfill_s:.1} s, /kpi {kpi_s:.2} s, /jobs {jobs_s:.2} s", k["window"]);
    println!(
        "  E_DC {:.3} kWh (grid {:.3}, generator {:.3}), E_IT {:.3} kWh, PUE {} (Cat {}), WUE {} L/kWh, CO2 {:.1} kg",
        f(&k["facility_energy_kwh"]),
        f(&k["grid_energy_kwh"]),
        f(&k["generator_energy_kwh"]),
        f(&k["it_energy_kwh"]),
        k["pue"],
        k["pue_category"],
        k["wue_l_per_kwh"],
        f(&k["co2_location_kg"])
    );
    println!(
        "  jobs {} : {jobs_it:.3} kWh ({:.2} %), idle {idle:.3} kWh ({:.2} %), unattributed {unattr:.3} kWh ({:.2} %), sum {:.6} vs E_IT {it:.6}",
        jobs.len(),
        jobs_it / it * 100.0,
        idle / it * 100.0,
        unattr / it * 100.0,
        jobs_it + idle + unattr
    );
    println!(
        "  jobs facility {:.3} kWh, water {:.1} L, CO2 {:.1} kg; low-confidence jobs {}",
        jobs.iter().map(|j| f(&j["facility_energy_kwh"])).sum::<f64>(),
        jobs.iter().map(|j| f(&j["water_l"])).sum::<f64>(),
        jobs.iter().map(|j| f(&j["co2_kg"])).sum::<f64>(),
        v["data_quality"]["low_confidence_jobs"]
    );
    println!(
        "  truth: facility {:.3} kWh, IT {:.3} kWh, PUE {:.6}, GPU {:.3} kWh (ledger {:.3}), nodes {:.3} kWh (ledger {:.3})",
        truth.facility_kwh,
        truth.it_kwh,
        truth.facility_kwh / truth.it_kwh,
        truth.gpu_energy_j / 3.6e6,
        f(&v["gpu_energy_kwh"]),
        truth.node_energy_j / 3.6e6,
        f(&v["node_energy_kwh"])
    );
    assert!(((jobs_it + idle + unattr) - it).abs() <= 1e-9 * it, "conservation");
    assert!(rel(f(&k["it_energy_kwh"]), it) <= 1e-9, "ledger E_IT = KPI E_IT");
    assert!(rel(it, truth.it_kwh) <= 1e-9, "E_IT vs the simulator's UPS outputs");
    assert!(rel(f(&k["pue"]), truth.facility_kwh / truth.it_kwh) <= 1e-9, "PUE vs meters");
    assert!(rel(f(&v["gpu_energy_kwh"]), truth.gpu_energy_j / 3.6e6) <= 1e-6, "GPU energy vs truth");
    assert!(rel(f(&v["node_energy_kwh"]), truth.node_energy_j / 3.6e6) <= 1e-9, "node energy vs truth");
    assert!(jobs.len() > 10 && jobs_it > 0.5 * it && idle >= 0.0 && unattr > 0.0, "plausible shares");
    let pue = f(&k["pue"]);
    assert!((1.05..1.3).contains(&pue), "PUE {pue}");
}
