//! Load and fault harness (a bench binary, not a timed test). Runs the real `kilowatch serve`
//! as a child process, feeds it from N in-process simulated collectors over HTTP, kills it with
//! SIGKILL mid-run and restarts it, takes it away for a simulated outage, then checks that the
//! stored energy equals the simulator's ground truth exactly: zero samples lost, zero twice.
//! Meanwhile a reader asks for the day's KPIs and every dashboard JSON in a loop, with the read
//! token, and the harness prints each route's p50/p99/max latency, then the aggregator's CPU
//! (cores) and peak RSS for each of its three lives.
//!
//!     cargo build --release -p kilowatch-aggregator --bin kilowatch --example fault_harness
//!     target/release/examples/fault_harness --nodes 127 --collectors 8 --run 60 --speed 10 --outage 600
//!
//! `--nodes 1270` runs ten times DC5. The aggregator's configuration: `--config FILE`, or one
//! written from `--memory-budget-mb N`, `--checkpoint-s N`, `--maintenance-s N` (its `[store]`
//! keys; absent flags are left to the defaults). `--read-pause-ms N` (default 200) is the pause
//! between two rounds of reads; `--no-reads` turns the reader off.

#[path = "harness/common.rs"]
mod common;
#[path = "harness/reads.rs"]
mod reads;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Aggregator, Fleet, FleetSpec, READ, arg};
use reads::Reader;

#[tokio::main]
async fn main() {
    let nodes: usize = arg("--nodes", 127);
    let collectors: usize = arg("--collectors", 8).max(1);
    let run_s: f64 = arg("--run", 60.0);
    let speed: f64 = arg("--speed", 10.0);
    let outage_sim_s: f64 = arg("--outage", 600.0);
    let port = common::port();
    let read_pause = Duration::from_millis(arg("--read-pause-ms", 200));
    let reads = !std::env::args().any(|a| a == "--no-reads");
    let work = tempfile::tempdir().expect("tmp");
    let data = work.path().join("data");
    let config = common::config_file(work.path(), &[]);
    let config = config.as_deref();

    let mut lives = Vec::new();
    let agg = Aggregator::start(port, &data, config, "1 steady load, until SIGKILL").await;
    let mut fleet = Fleet::start(&FleetSpec { nodes, collectors, port, speed, interval: Duration::from_secs(1), sampling_s: run_s + outage_sim_s / speed + 10.0, work: work.path() });
    let reader = reads.then(|| Reader::start(port, READ, read_pause));
    println!("{} collectors, {nodes} nodes ({} GPUs), 1 batch/s each, simulated clock x{speed}", fleet.collectors(), nodes * 8);

    // Phase 1: steady load; measure the aggregator.
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(run_s / 2.0)).await;
    let u = agg.usage().await;
    let points = fleet.sum(|s| s.points.load(Ordering::Relaxed));
    println!("steady: {:.0} lines/s in, aggregator CPU {:.1} % of one core, peak RSS {:.0} MB", points as f64 / t0.elapsed().as_secs_f64(), u.cpu_s / u.wall_s * 100.0, u.hwm_mb);

    // Phase 2: SIGKILL mid-run, restart at once.
    lives.push(agg.kill().await);
    println!("aggregator killed with SIGKILL");
    let agg = Aggregator::start(port, &data, config, "2 after SIGKILL: log replay, live load").await;
    tokio::time::sleep(Duration::from_secs_f64(run_s / 4.0)).await;

    // Phase 3: away for a simulated outage, then back.
    lives.push(agg.stop().await);
    println!("aggregator away for {outage_sim_s} simulated seconds");
    tokio::time::sleep(Duration::from_secs_f64(outage_sim_s / speed)).await;
    let spooled = fleet.sum(|s| s.spool_batches.load(Ordering::Relaxed));
    let agg = Aggregator::start(port, &data, config, "3 after the outage: spool replay, drain").await;
    let t_back = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(run_s / 4.0)).await;
    fleet.stop_and_drain(port, work.path(), Duration::from_secs(60)).await;
    println!("outage: {spooled} batches spooled, caught up {:.1} s after the return", t_back.elapsed().as_secs_f64());
    let mut lat = match reader {
        Some(r) => r.finish().await,
        None => Vec::new(),
    };
    lives.push(agg.stop().await);

    if !lat.is_empty() {
        reads::print_latencies(&mut lat);
    }
    common::print_usage(&lives);
    println!();
    let ok = fleet.check_truth(&data);
    println!("{}", if ok { "PASS: zero lost, zero counted twice" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}
