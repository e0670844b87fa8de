//! Load and fault harness (a bench binary, not a timed test). Runs the real `kilowatch serve`
//! as a child process, feeds it from N in-process simulated collectors over HTTP, kills it with
//! SIGKILL mid-run and restarts it, takes it away for a simulated outage, then checks that the
//! stored energy equals the simulator's ground truth exactly: zero samples lost, zero twice.
//!
//!     cargo build --release -p kilowatch-aggregator --bin kilowatch --example fault_harness
//!     target/release/examples/fault_harness --nodes 127 --collectors 8 --run 60 --speed 10 --outage 600
//!
//! `--nodes 1270` runs ten times DC5. Figures: points per second, the aggregator's CPU (share of
//! one core) and peak resident memory, from /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kilowatch_store::Store;
use kilowatch_collector::agent::{Agent, AgentStats};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::ship::{Shipper, ShipperConfig};
use kilowatch_collector::source::SimSource;
use kilowatch_collector::spool::{Fsync, Spool, SpoolConfig};
use kilowatch_model::Timestamp;
use kilowatch_sim::{Emit, SimConfig};

const WRITE: &str = "harness-write-token-0123456789";
const READ: &str = "harness-read-token-0123456789";

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn kilowatch_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent().and_then(Path::parent).map(|d| d.join("kilowatch")).expect("target dir")
}

fn spawn_aggregator(port: u16, data: &Path) -> Child {
    Command::new(kilowatch_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("KILOWATCH_WRITE_TOKEN", WRITE)
        .env("KILOWATCH_READ_TOKEN", READ)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start kilowatch serve (build it first: cargo build --release --bin kilowatch)")
}

fn proc_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn proc_hwm_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

async fn wait_healthy(port: u16) {
    for _ in 0..200 {
        if reqwest::get(format!("http://127.0.0.1:{port}/api/v1/health")).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("aggregator did not come up");
}

#[tokio::main]
async fn main() {
    let nodes: usize = arg("--nodes", 127);
    let collectors: usize = arg("--collectors", 8).max(1);
    let run_s: f64 = arg("--run", 60.0);
    let speed: f64 = arg("--speed", 10.0);
    let outage_sim_s: f64 = arg("--outage", 600.0);
    let port: u16 = arg("--port", 18_186);
    let work = tempfile::tempdir().expect("tmp");
    let data = work.path().join("data");

    let mut agg = spawn_aggregator(port, &data);
    wait_healthy(port).await;
    let start = Timestamp::now();
    let per = nodes.div_ceil(collectors);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut stats = Vec::new();
    let mut records = Vec::new();
    for c in 0..collectors {
        let first_node = 1 + c * per;
        let n = per.min(nodes + 1 - first_node);
        if n == 0 {
            break;
        }
        let cfg = SimConfig { start, nodes: n, first_node, site_nodes: nodes.max(127), emit: Emit { gpus: true, nodes: true, facility: c == 0 }, ..SimConfig::default() };
        let source = SimSource::new(cfg);
        records.push((source.truth_marks(), c == 0));
        let st = Arc::new(AgentStats::default());
        stats.push(st.clone());
        let agent = Agent {
            sources: vec![Box::new(source)],
            shipper: Shipper::new(&ShipperConfig { url: format!("http://127.0.0.1:{port}"), token: WRITE.into(), org: None, bucket: None, timeout: Duration::from_secs(10) }).expect("shipper"),
            interval: Duration::from_secs(1),
            clock: Clock::scaled(start, speed),
            spool: Spool::open(SpoolConfig { dir: work.path().join(format!("spool-{c}")), fsync: Fsync::Always, ..SpoolConfig::default() }).expect("spool"),
            stats: st,
        };
        tasks.push(tokio::spawn(agent.run(rx.clone())));
    }
    println!("{} collectors, {nodes} nodes ({} GPUs), 1 batch/s each, simulated clock x{speed}", tasks.len(), nodes * 8);

    // Phase 1: steady load; measure the aggregator.
    let pid = agg.id();
    let cpu0 = proc_cpu_s(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(run_s / 2.0)).await;
    let sent = |stats: &[Arc<AgentStats>]| stats.iter().map(|s| s.points.load(Ordering::Relaxed)).sum::<u64>();
    let cpu = proc_cpu_s(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let hwm = proc_hwm_mb(pid);
    let points = sent(&stats);
    println!("steady: {:.0} lines/s in, aggregator CPU {:.1} % of one core, peak RSS {hwm:.0} MB", points as f64 / wall, cpu / wall * 100.0);

    // Phase 2: SIGKILL mid-run, restart at once.
    agg.kill().expect("SIGKILL");
    let _ = agg.wait();
    println!("aggregator killed with SIGKILL");
    agg = spawn_aggregator(port, &data);
    wait_healthy(port).await;
    tokio::time::sleep(Duration::from_secs_f64(run_s / 4.0)).await;

    // Phase 3: away for a simulated outage, then back.
    let _ = Command::new("kill").arg("-TERM").arg(agg.id().to_string()).status();
    let _ = agg.wait();
    println!("aggregator away for {outage_sim_s} simulated seconds");
    tokio::time::sleep(Duration::from_secs_f64(outage_sim_s / speed)).await;
    let spooled: u64 = stats.iter().map(|s| s.spool_batches.load(Ordering::Relaxed)).sum();
    agg = spawn_aggregator(port, &data);
    wait_healthy(port).await;
    let t_back = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(run_s / 4.0)).await;
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Drain what the collectors still hold.
    let (stop2, rx2) = tokio::sync::watch::channel(false);
    let mut drains = Vec::new();
    for c in 0..stats.len() {
        let spool = Spool::open(SpoolConfig { dir: work.path().join(format!("spool-{c}")), fsync: Fsync::Never, ..SpoolConfig::default() }).expect("spool");
        if spool.pending_records() == 0 {
            continue;
        }
        let st = Arc::new(AgentStats::default());
        let shipper = Shipper::new(&ShipperConfig { url: format!("http://127.0.0.1:{port}"), token: WRITE.into(), org: None, bucket: None, timeout: Duration::from_secs(30) }).expect("shipper");
        let agent = Agent { sources: Vec::new(), shipper, interval: Duration::from_millis(200), clock: Clock::Wall, spool, stats: st.clone() };
        drains.push((st, tokio::spawn(agent.run(rx2.clone()))));
    }
    for _ in 0..600 {
        if drains.iter().all(|(s, _)| s.spool_batches.load(Ordering::Relaxed) == 0 && s.batches_sent.load(Ordering::Relaxed) > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop2.send(true);
    for (_, t) in drains {
        let _ = t.await;
    }
    println!("outage: {spooled} batches spooled, caught up {:.1} s after the return", t_back.elapsed().as_secs_f64());
    let _ = Command::new("kill").arg("-TERM").arg(agg.id().to_string()).status();
    let _ = agg.wait();

    // Ground truth against the store.
    let store = Store::open(&data).expect("open store");
    let mut gpu_stored = 0.0;
    let mut gpu_truth = 0.0;
    let mut lost = 0i64;
    let cycles: Vec<u64> = stats.iter().map(|s| s.cycles.load(Ordering::Relaxed)).collect();
    for (marks, facility) in &records {
        let (Some((tf, f)), Some((tl, l))) = (marks.first(), marks.last()) else { continue };
        gpu_truth += l.gpu_energy_j - f.gpu_energy_j;
        if *facility {
            let k = kilowatch_accounting::kpi::compute(&store, kilowatch_model::TimeRange::new(tf, tl), "harness").expect("kpi");
            let it_err = (k.it_energy_kwh - (l.it_kwh - f.it_kwh)).abs() / (l.it_kwh - f.it_kwh);
            let dc_err = (k.facility_energy_kwh - (l.facility_kwh - f.facility_kwh)).abs() / (l.facility_kwh - f.facility_kwh);
            println!("facility: E_IT relative error {it_err:.1e}, E_DC relative error {dc_err:.1e}, PUE {:?}", k.pue);
        }
    }
    for m in store.find_series("gpu", "energy_mj", &[]).expect("find") {
        let s = store.read_with_neighbours(m.id, 0, i64::MAX).expect("read");
        if let (Some(a), Some(b)) = (s.first(), s.last()) {
            gpu_stored += (b.1.as_f64().unwrap_or(0.0) - a.1.as_f64().unwrap_or(0.0)) / 1000.0;
        }
        // Every collector sampled each of its GPUs once per cycle.
        let node: usize = m.tag("node").and_then(|n| n.trim_start_matches("dgx-").parse().ok()).unwrap_or(1);
        let c = (node - 1) / per;
        lost += cycles.get(c).copied().unwrap_or(0) as i64 - s.len() as i64;
    }
    let gpus = store.find_series("gpu", "energy_mj", &[]).expect("find").len() as f64;
    let diff = (gpu_stored - gpu_truth).abs();
    println!("GPU energy: stored {:.6} kWh, truth {:.6} kWh, difference {diff:.4} J over {gpus} GPUs", gpu_stored / 3.6e6, gpu_truth / 3.6e6);
    println!("samples missing (+) or extra (-) against cycles sampled: {lost}");
    // The wire carries the NVML counter in whole mJ: each GPU's first and last reading are
    // rounded by at most 0.5 mJ, so "exact" means within 1 mJ per GPU.
    let ok = lost == 0 && diff <= gpus * 1e-3;
    println!("{}", if ok { "PASS: zero lost, zero counted twice" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}
