//! The GPU-aware IT-efficiency indicators of the monthly report (docs/report.md), over a
//! simulated October 2024 (8 nodes × 8 GPUs, 1-hour steps): each recomputed here from the jobs
//! API and the hours the data covers, as its formula says.

mod common;

use common::Server;
use serde_json::Value;

async fn json(s: &Server, path: &str) -> Value {
    let r = s.get(path).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12), "{what}: {a} vs {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn october_2024_gpu_efficiency_follows_its_formulas() {
    let dir = tempfile::tempdir().expect("tmp");
    common::backfill_october_2024(dir.path());
    let s = Server::start(dir.path()).await;
    let r = json(&s, "/api/v1/reports/2024-10.json?generated_at=2024-11-02T06:00:00Z").await;
    let g = &r["gpu_efficiency"]["month"];
    let jobs = json(&s, "/api/v1/jobs?period=month&month=2024-10").await;

    // 64 GPUs read every hour of the month's 745: all powered.
    assert_eq!(g["gpus"], 64);
    close(f(&g["gpu_hours_powered"]), 64.0 * 745.0, "GPU-hours powered");
    // Allocated: GPUs × hours of each job inside the month (the sim starts a job's nodes together).
    let (from, to) = (chrono::DateTime::parse_from_rfc3339(jobs["from"].as_str().expect("from")).expect("t"), chrono::DateTime::parse_from_rfc3339(jobs["to"].as_str().expect("to")).expect("t"));
    let allocated: f64 = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            let start = chrono::DateTime::parse_from_rfc3339(j["start"].as_str().expect("start")).expect("t").max(from);
            let end = j["end"].as_str().map(|e| chrono::DateTime::parse_from_rfc3339(e).expect("t")).unwrap_or(to).min(to);
            j["gpus"].as_array().expect("gpus").len() as f64 * ((end - start).num_seconds().max(0) as f64 / 3600.0)
        })
        .sum();
    close(f(&g["gpu_hours_allocated"]), allocated, "GPU-hours allocated");
    close(f(&g["allocated_pct"]), allocated / (64.0 * 745.0) * 100.0, "allocated share");
    let busy = f(&g["gpu_hours_busy"]);
    assert!(busy > 0.0 && busy <= allocated * 1.0001 + 1e-9 && busy < 64.0 * 745.0, "busy {busy} within allocated {allocated}");
    close(f(&g["idle_energy_share_pct"]), f(&jobs["idle_kwh"]) / f(&jobs["it_energy_kwh"]) * 100.0, "idle energy share");
    close(f(&g["it_kwh_per_busy_gpu_hour"]), f(&jobs["it_energy_kwh"]) / busy, "IT energy per busy GPU-hour");
    // The year to date is the month here (no data before it but the hour before the month).
    let y = &r["gpu_efficiency"]["year_to_date"];
    assert!(f(&y["gpu_hours_powered"]) >= f(&g["gpu_hours_powered"]));
    s.stop().await;
}
