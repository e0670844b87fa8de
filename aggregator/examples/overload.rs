//! Overload harness (a bench binary, not a timed test). Runs the real `kilowatch serve` with a
//! small `[store] memory_budget_mb` and floods it: simulated collectors with on-disk spools
//! first sample for `--prefill` seconds with no aggregator to send to (an outage), then the
//! aggregator starts and meets their replays and their live load together for `--flood`
//! seconds. Throughout, the server's RSS is sampled every 100 ms, and a probe write every 250 ms
//! records the status and `Retry-After` the server answers. Then the load drops (the collectors
//! stop sampling and send what they hold) and the stored energy is checked against the
//! simulator's ground truth, as in fault_harness: every spooled sample must arrive, once.
//!
//!     cargo build --release -p kilowatch-aggregator --bin kilowatch --example overload
//!     target/release/examples/overload --nodes 635 --collectors 8 --speed 10 --memory-budget-mb 128 --prefill 30 --flood 60
//!
//! Other flags: `--config FILE` (instead of the generated `[store]`), `--checkpoint-s N`,
//! `--max-inflight-mb N` (`[server] max_inflight_bytes`, default 256), `--margin-mb N` (default:
//! the margin `docs/storage.md` documents, 2 × max in-flight + 110 MB: RSS above budget + margin
//! is reported as over), `--port N` (default: a free one).
//! Exit status: 0 when nothing is lost or doubled and 503s were seen, 1 on loss, 3 when no
//! write was refused with 503 (the budget was never reached, or this build has none).

#[path = "harness/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Aggregator, Fleet, FleetSpec, WRITE, arg, proc_status_mb};
use tokio::sync::watch;

/// What the probe writes saw: answers by status, and the `Retry-After` values of the 503s.
#[derive(Default)]
struct Probe {
    statuses: BTreeMap<u16, u64>,
    no_answer: u64,
    retry_after: BTreeMap<String, u64>,
    first_503_s: Option<f64>,
    last_503_s: Option<f64>,
}

async fn probe(port: u16, t0: Instant, mut stop: watch::Receiver<bool>) -> Probe {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut p = Probe::default();
    while !*stop.borrow() {
        let line = format!("overload_probe,site=dc5 v=1i {}", kilowatch_model::Timestamp::now().0);
        match client.post(format!("http://127.0.0.1:{port}/api/v2/write?precision=ns")).header("Authorization", format!("Token {WRITE}")).body(line).send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                *p.statuses.entry(s).or_default() += 1;
                if s == 503 {
                    let at = t0.elapsed().as_secs_f64();
                    p.first_503_s.get_or_insert(at);
                    p.last_503_s = Some(at);
                    let ra = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).unwrap_or("(none)").to_owned();
                    *p.retry_after.entry(ra).or_default() += 1;
                }
            }
            Err(_) => p.no_answer += 1,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => {}
        }
    }
    p
}

/// The server's resident memory every 100 ms, as (seconds since `t0`, MB).
async fn sample_rss(pid: u32, t0: Instant, mut stop: watch::Receiver<bool>) -> Vec<(f64, f64)> {
    let mut v = Vec::new();
    while !*stop.borrow() {
        v.push((t0.elapsed().as_secs_f64(), proc_status_mb(pid, "VmRSS:")));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
    v
}

#[tokio::main]
async fn main() {
    let nodes: usize = arg("--nodes", 635);
    let collectors: usize = arg("--collectors", 8).max(1);
    let speed: f64 = arg("--speed", 10.0);
    let prefill_s: f64 = arg("--prefill", 30.0);
    let flood_s: f64 = arg("--flood", 60.0);
    // docs/storage.md, "Memory": bodies in flight and their parsed lines, SQLite's caches,
    // the runtime.
    let inflight_mb: f64 = arg("--max-inflight-mb", 256.0);
    let margin_mb: f64 = arg("--margin-mb", 2.0 * inflight_mb + 110.0);
    let port = common::port();
    let work = tempfile::tempdir().expect("tmp");
    let data = work.path().join("data");
    let config = common::config_file(work.path(), &[("--memory-budget-mb", 128)]);
    let budget_mb: Option<f64> = common::arg_opt("--memory-budget-mb").or(if common::arg_opt::<String>("--config").is_none() { Some(128.0) } else { None });

    // The outage: collectors sample into their spools with nobody to send to.
    let mut fleet = Fleet::start(&FleetSpec { nodes, collectors, port, speed, interval: Duration::from_secs(1), sampling_s: prefill_s + flood_s + 10.0, work: work.path() });
    println!("{} collectors, {nodes} nodes ({} GPUs), simulated clock x{speed}; {prefill_s} s with no aggregator", fleet.collectors(), nodes * 8);
    tokio::time::sleep(Duration::from_secs_f64(prefill_s)).await;
    let spooled = fleet.sum(|s| s.spool_batches.load(Ordering::Relaxed));
    let spool_mb = fleet.sum(|s| s.spool_bytes.load(Ordering::Relaxed)) as f64 / 1e6;
    println!("spooled: {spooled} batches, {spool_mb:.1} MB");

    // The flood: replays and live load together.
    let agg = Aggregator::start(port, &data, config.as_deref(), "overload: replay + live, then drain").await;
    let t0 = Instant::now();
    let (stop, rx) = watch::channel(false);
    let rss = tokio::spawn(sample_rss(agg.pid(), t0, rx.clone()));
    let probes = tokio::spawn(probe(port, t0, rx));
    tokio::time::sleep(Duration::from_secs_f64(flood_s)).await;
    let at_flood_end = common::metrics_text(port).await;

    // The load drops: sampling stops, the spools are sent.
    let t_drop = t0.elapsed().as_secs_f64();
    let drain = fleet.stop_and_drain(port, work.path(), Duration::from_secs(600)).await;
    println!("load dropped at {t_drop:.0} s; spools drained in {:.1} s", drain.as_secs_f64());
    let metrics = common::metrics_text(port).await;
    let _ = stop.send(true);
    let rss = rss.await.unwrap_or_default();
    let p = probes.await.unwrap_or_default();
    let usage = agg.stop().await;

    // What the server refused, by its own count.
    let unavailable = |m: &str| common::metric(&m.lines().filter(|l| l.contains("outcome=\"unavailable\"")).collect::<Vec<_>>().join("\n"), "kilowatch_ingest_requests_total");
    println!("\nprobe writes (every 250 ms): {:?} by status, {} without answer", p.statuses, p.no_answer);
    println!("Retry-After on the probes' 503s: {:?}", p.retry_after);
    if let (Some(a), Some(b)) = (p.first_503_s, p.last_503_s) {
        println!("503s from {a:.1} s to {b:.1} s after the aggregator started");
    }
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!("ingest requests answered 503 (server's /metrics): {} by the end of the flood, {} in all", show(unavailable(&at_flood_end)), show(unavailable(&metrics)));
    println!(
        "writes refused over the memory budget (kilowatch_store_writes_over_budget_total): {} by the end of the flood, {} in all",
        show(common::metric(&at_flood_end, "kilowatch_store_writes_over_budget_total")),
        show(common::metric(&metrics, "kilowatch_store_writes_over_budget_total"))
    );

    // RSS: the peak, and the highest of each tenth of the run.
    let peak = rss.iter().map(|r| r.1).fold(0.0, f64::max);
    println!("\nRSS, highest sample per interval (MB):");
    let end = rss.last().map_or(1.0, |r| r.0).max(1.0);
    let step = (end / 10.0).max(1.0);
    let mut line = String::new();
    let mut at = 0.0;
    while at < end {
        let m = rss.iter().filter(|r| r.0 >= at && r.0 < at + step).map(|r| r.1).fold(0.0, f64::max);
        line.push_str(&format!("  {at:.0}-{:.0}s: {m:.0}", at + step));
        at += step;
    }
    println!("{line}");
    println!("peak RSS: {peak:.0} MB sampled, {:.0} MB VmHWM; CPU {:.1} s over {:.1} s ({:.2} cores)", usage.hwm_mb, usage.cpu_s, usage.wall_s, usage.cpu_s / usage.wall_s.max(1e-9));
    match budget_mb {
        Some(b) => {
            let over = usage.hwm_mb - b;
            let verdict = if over <= margin_mb { "within" } else { "OVER" };
            println!("memory budget {b:.0} MB: peak is budget {over:+.0} MB, {verdict} the margin of {margin_mb:.0} MB");
        }
        None => println!("memory budget: set in {}", config.as_deref().map(|p| p.display().to_string()).unwrap_or_default()),
    }

    println!();
    let ok = fleet.check_truth(&data);
    let saw_503 = p.statuses.get(&503).copied().unwrap_or(0) > 0 || unavailable(&metrics).is_some_and(|v| v > 0.0);
    println!("{}", if saw_503 { "503 SEEN: writes past the budget were refused" } else { "NO 503 SEEN: the budget was never reached, or this build has none" });
    println!("{}", if ok { "PASS: every spooled sample arrived, none twice" } else { "FAIL: samples lost or doubled" });
    std::process::exit(if !ok {
        1
    } else if !saw_503 {
        3
    } else {
        0
    });
}
