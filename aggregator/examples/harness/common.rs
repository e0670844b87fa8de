//! What the fault and overload harnesses share: the real `kilowatch serve` as a child process
//! with its CPU and memory read from /proc, a fleet of in-process simulated collectors with
//! on-disk spools, the drain of what they still hold, and the check of the stored energy
//! against the simulator's ground truth. Included by each harness with `#[path]`.
#![allow(dead_code)]

use kilowatch_aggregator::adapters::StoreRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kilowatch_collector::agent::{Agent, AgentStats};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::source::{SimSource, TruthMarks};
use kilowatch_model::Timestamp;
use kilowatch_ship::{Fsync, Spool, SpoolConfig};
use kilowatch_ship::{Shipper, ShipperConfig};
use kilowatch_sim::{Emit, SimConfig};
use kilowatch_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const WRITE: &str = "harness-write-token-0123456789";
pub const READ: &str = "harness-read-token-0123456789";

/// `--name VALUE` from the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    arg_opt(name).unwrap_or(default)
}

pub fn arg_opt<T: std::str::FromStr>(name: &str) -> Option<T> {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1)).and_then(|v| v.parse().ok())
}

/// The aggregator's configuration file: `--config FILE` as given, or one written into `work`
/// from the `[store]` options given (`--memory-budget-mb`, `--checkpoint-s`,
/// `--maintenance-s`, each else its value in `defaults` if there); none when neither is given,
/// so `serve` runs on its defaults.
pub fn config_file(work: &Path, defaults: &[(&str, u64)]) -> Option<PathBuf> {
    let given: Option<PathBuf> = arg_opt("--config");
    let mut store = String::new();
    for (flag, key) in [("--memory-budget-mb", "memory_budget_mb"), ("--checkpoint-s", "checkpoint_interval_s"), ("--maintenance-s", "maintenance_interval_s")] {
        let default = defaults.iter().find(|(f, _)| *f == flag).map(|(_, v)| *v);
        if let Some(v) = arg_opt::<u64>(flag).or(if given.is_none() { default } else { None }) {
            store.push_str(&format!("{key} = {v}\n"));
        }
    }
    // `[server] max_inflight_bytes` is part of the memory margin over the budget.
    let server = arg_opt::<u64>("--max-inflight-mb").map(|mb| format!("[server]\nmax_inflight_bytes = {}\n", mb << 20)).unwrap_or_default();
    if !server.is_empty() && given.is_some() {
        eprintln!("--config and --max-inflight-mb exclude each other: put the key in the file");
        std::process::exit(2);
    }
    match (given, store.is_empty() && server.is_empty()) {
        (Some(_), false) => {
            eprintln!("--config and the [store] flags (--memory-budget-mb, --checkpoint-s, --maintenance-s) exclude each other: put the keys in the file");
            std::process::exit(2);
        }
        (Some(f), true) => Some(f),
        (None, true) => None,
        (None, false) => {
            let path = work.join("kilowatch.toml");
            std::fs::write(&path, format!("{server}[store]\n{store}")).expect("write the harness config");
            println!("aggregator config:\n{server}[store]\n{}", store.trim_end());
            Some(path)
        }
    }
}

/// `--port N`, else a loopback port nobody listens on now (another harness or bench may run
/// beside this one). The aggregator gets it again at each restart.
pub fn port() -> u16 {
    arg_opt("--port").unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port"))
}

fn kilowatch_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent().and_then(Path::parent).map(|d| d.join("kilowatch")).expect("target dir")
}

pub fn proc_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// A `/proc/PID/status` figure in MB (`VmHWM:` peak, `VmRSS:` now).
pub fn proc_status_mb(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// One life of the aggregator process, from its start to its stop.
pub struct Aggregator {
    child: Child,
    port: u16,
    label: String,
    started: Instant,
    cpu0: f64,
}

/// What one life of the aggregator cost: CPU (cores = CPU seconds per wall second) and peak RSS.
pub struct Usage {
    pub label: String,
    pub cpu_s: f64,
    pub wall_s: f64,
    pub hwm_mb: f64,
    /// Checkpoints and maintenance passes this life completed (from its /metrics).
    pub checkpoints: Option<u64>,
    pub maintenance: Option<u64>,
}

impl Aggregator {
    pub async fn start(port: u16, data: &Path, config: Option<&Path>, label: &str) -> Aggregator {
        let mut cmd = Command::new(kilowatch_bin());
        cmd.arg("serve");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data)
            .env("KILOWATCH_WRITE_TOKEN", WRITE)
            .env("KILOWATCH_READ_TOKEN", READ)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start kilowatch serve (build it first: cargo build --release --bin kilowatch)");
        let pid = child.id();
        let mut agg = Aggregator { child, port, label: label.into(), started: Instant::now(), cpu0: proc_cpu_s(pid) };
        for _ in 0..1200 {
            if let Ok(Some(status)) = agg.child.try_wait() {
                eprintln!("kilowatch serve exited ({status}) before answering; its message is above");
                std::process::exit(2);
            }
            if reqwest::get(format!("http://127.0.0.1:{port}/api/v1/health")).await.is_ok_and(|r| r.status().is_success()) {
                // An answer from another server on a taken port would otherwise pass for ours.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(Some(status)) = agg.child.try_wait() {
                    eprintln!("kilowatch serve exited ({status}): is 127.0.0.1:{port} taken?");
                    std::process::exit(2);
                }
                return agg;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aggregator did not come up");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU and peak memory so far.
    pub async fn usage(&self) -> Usage {
        let pid = self.pid();
        let m = metrics_text(self.port).await;
        Usage {
            label: self.label.clone(),
            cpu_s: proc_cpu_s(pid) - self.cpu0,
            wall_s: self.started.elapsed().as_secs_f64(),
            hwm_mb: proc_status_mb(pid, "VmHWM:"),
            checkpoints: metric(&m, "kilowatch_store_checkpoints_total").map(|v| v as u64),
            maintenance: metric(&m, "kilowatch_store_maintenance_passes_total").map(|v| v as u64),
        }
    }

    /// SIGKILL, as a crash: no checkpoint, no clean close.
    pub async fn kill(mut self) -> Usage {
        let u = self.usage().await;
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
        u
    }

    /// SIGTERM, as systemd stops it.
    pub async fn stop(mut self) -> Usage {
        let u = self.usage().await;
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let _ = self.child.wait();
        u
    }
}

/// The aggregator's `/metrics` (read token), empty when it does not answer.
pub async fn metrics_text(port: u16) -> String {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    match client.get(format!("http://127.0.0.1:{port}/metrics")).header("Authorization", format!("Token {READ}")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => String::new(),
    }
}

/// The sum of a metric's samples in a Prometheus text exposition (all label sets), if present.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(name) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

pub fn print_usage(lives: &[Usage]) {
    println!("\n{:<44} {:>8} {:>8} {:>8} {:>13} {:>12} {:>12}", "aggregator process", "wall s", "CPU s", "cores", "peak RSS MB", "checkpoints", "maint. passes");
    let n = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for u in lives {
        println!("{:<44} {:>8.1} {:>8.1} {:>8.2} {:>13.0} {:>12} {:>12}", u.label, u.wall_s, u.cpu_s, u.cpu_s / u.wall_s.max(1e-9), u.hwm_mb, n(u.checkpoints), n(u.maintenance));
    }
}

/// In-process simulated collectors, each with its own spool under the work folder.
pub struct Fleet {
    pub stats: Vec<Arc<AgentStats>>,
    /// Each collector's ground truth, and whether it carries the facility.
    records: Vec<(TruthMarks, bool)>,
    /// Nodes per collector.
    per: usize,
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

pub struct FleetSpec<'a> {
    pub nodes: usize,
    pub collectors: usize,
    pub port: u16,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Real time between a collector's batches.
    pub interval: Duration,
    /// Real seconds the collectors will sample for, about: with `speed` above 1 the simulated
    /// clock starts that much earlier, so that it reaches the wall clock near the end instead
    /// of running ahead of it past `store.max_future_skew_s` (whose lines would be refused).
    pub sampling_s: f64,
    pub work: &'a Path,
}

fn shipper(port: u16, timeout: Duration) -> Shipper {
    Shipper::new(&ShipperConfig { url: format!("http://127.0.0.1:{port}"), token: WRITE.into(), org: None, bucket: None, timeout }).expect("shipper")
}

fn spool_dir(work: &Path, c: usize) -> PathBuf {
    work.join(format!("spool-{c}"))
}

impl Fleet {
    pub fn start(spec: &FleetSpec<'_>) -> Fleet {
        let ahead_s = (spec.speed - 1.0).max(0.0) * spec.sampling_s;
        let start = Timestamp(Timestamp::now().0 - (ahead_s * 1e9) as i64);
        let per = spec.nodes.div_ceil(spec.collectors.max(1));
        let (stop, rx) = watch::channel(false);
        let mut fleet = Fleet { stats: Vec::new(), records: Vec::new(), per, tasks: Vec::new(), stop };
        for c in 0..spec.collectors.max(1) {
            let first_node = 1 + c * per;
            let n = per.min((spec.nodes + 1).saturating_sub(first_node));
            if n == 0 {
                break;
            }
            let cfg = SimConfig { start, nodes: n, first_node, site_nodes: spec.nodes.max(127), emit: Emit { gpus: true, nodes: true, facility: c == 0 }, ..SimConfig::default() };
            let source = SimSource::new(cfg);
            fleet.records.push((source.truth_marks(), c == 0));
            let st = Arc::new(AgentStats::default());
            fleet.stats.push(st.clone());
            let spool = SpoolConfig { dir: spool_dir(spec.work, c), fsync: Fsync::Always, ..SpoolConfig::default() };
            let agent = Agent {
                sources: vec![Box::new(source)],
                shipper: shipper(spec.port, Duration::from_secs(10)),
                interval: spec.interval,
                clock: Clock::scaled(start, spec.speed),
                spool: Spool::open(spool).expect("spool"),
                stats: st,
            };
            fleet.tasks.push(tokio::spawn(agent.run(rx.clone())));
        }
        fleet
    }

    pub fn collectors(&self) -> usize {
        self.stats.len()
    }

    pub fn sum(&self, f: impl Fn(&AgentStats) -> u64) -> u64 {
        self.stats.iter().map(|s| f(s)).sum()
    }

    /// What the collectors could not deliver or the server refused; all zero in a good run.
    pub fn print_refusals(&self) {
        let n = |f: fn(&AgentStats) -> &std::sync::atomic::AtomicU64| self.sum(|s| f(s).load(Ordering::Relaxed));
        println!(
            "collectors: {} lines refused by the server, {} batches rejected, {} dropped from full spools, {} send errors (retried)",
            n(|s| &s.lines_refused),
            n(|s| &s.batches_rejected),
            n(|s| &s.batches_dropped),
            n(|s| &s.send_errors)
        );
    }

    /// Stops sampling, then sends what the spools still hold to the aggregator on `port`,
    /// waiting at most `limit`. Returns how long the drain took.
    pub async fn stop_and_drain(&mut self, port: u16, work: &Path, limit: Duration) -> Duration {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let t0 = Instant::now();
        let (stop2, rx2) = watch::channel(false);
        let mut drains = Vec::new();
        for c in 0..self.stats.len() {
            let spool = Spool::open(SpoolConfig { dir: spool_dir(work, c), fsync: Fsync::Never, ..SpoolConfig::default() }).expect("spool");
            if spool.pending_records() == 0 {
                continue;
            }
            let st = Arc::new(AgentStats::default());
            let agent = Agent { sources: Vec::new(), shipper: shipper(port, Duration::from_secs(30)), interval: Duration::from_millis(200), clock: Clock::Wall, spool, stats: st.clone() };
            drains.push((st, tokio::spawn(agent.run(rx2.clone()))));
        }
        while t0.elapsed() < limit {
            if drains.iter().all(|(s, _)| s.spool_batches.load(Ordering::Relaxed) == 0 && s.batches_sent.load(Ordering::Relaxed) > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop2.send(true);
        for (_, t) in drains {
            let _ = t.await;
        }
        t0.elapsed()
    }

    /// Compares the store in `data` (its aggregator stopped) with the simulator's ground truth:
    /// every GPU's energy, and one sample per GPU per collector cycle. True when nothing is
    /// lost or counted twice.
    pub fn check_truth(&self, data: &Path) -> bool {
        self.print_refusals();
        let store = Store::open(data).expect("open store");
        let mut gpu_stored = 0.0;
        let mut gpu_truth = 0.0;
        let mut lost = 0i64;
        let cycles: Vec<u64> = self.stats.iter().map(|s| s.cycles.load(Ordering::Relaxed)).collect();
        for (marks, facility) in &self.records {
            let (Some((tf, f)), Some((tl, l))) = (marks.first(), marks.last()) else { continue };
            gpu_truth += l.gpu_energy_j - f.gpu_energy_j;
            if *facility {
                let k = kilowatch_accounting::kpi::compute(&StoreRead(&store), kilowatch_model::TimeRange::new(tf, tl), "harness").expect("kpi");
                let it_err = (k.it_energy_kwh - (l.it_kwh - f.it_kwh)).abs() / (l.it_kwh - f.it_kwh);
                let dc_err = (k.facility_energy_kwh - (l.facility_kwh - f.facility_kwh)).abs() / (l.facility_kwh - f.facility_kwh);
                println!("facility: E_IT relative error {it_err:.1e}, E_DC relative error {dc_err:.1e}, PUE {:?}", k.pue);
            }
        }
        let gpus = store.find_series("gpu", "energy_mj", &[]).expect("find");
        for m in &gpus {
            let s = store.read_with_neighbours(m.id, 0, i64::MAX).expect("read");
            if let (Some(a), Some(b)) = (s.first(), s.last()) {
                gpu_stored += (b.1.as_f64().unwrap_or(0.0) - a.1.as_f64().unwrap_or(0.0)) / 1000.0;
            }
            // Every collector sampled each of its GPUs once per cycle.
            let node: usize = m.tag("node").and_then(|n| n.trim_start_matches("dgx-").parse().ok()).unwrap_or(1);
            let c = (node - 1) / self.per;
            lost += cycles.get(c).copied().unwrap_or(0) as i64 - s.len() as i64;
        }
        let n = gpus.len() as f64;
        let diff = (gpu_stored - gpu_truth).abs();
        println!("GPU energy: stored {:.6} kWh, truth {:.6} kWh, difference {diff:.4} J over {n} GPUs", gpu_stored / 3.6e6, gpu_truth / 3.6e6);
        println!("samples missing (+) or extra (-) against cycles sampled: {lost}");
        // The wire carries the NVML counter in whole mJ: each GPU's first and last reading are
        // rounded by at most 0.5 mJ, so "exact" means within 1 mJ per GPU.
        lost == 0 && diff <= n * 1e-3 && n > 0.0
    }
}
