//! An active-active pair, end to end, with real processes on 127.0.0.1: two `kilowatch serve`
//! members behind a real HAProxy (deploy/haproxy.cfg), two simulated collectors shipping every
//! batch to both (`[[aggregator]]` twice, each endpoint with its own spool), and a two-peer
//! Alertmanager cluster (Debian `prometheus-alertmanager`, gossiping on loopback) in front of a
//! webhook receiver. One member is SIGKILLed under load and restarted later:
//! - the dashboard and the API keep answering through HAProxy all along;
//! - the webhook receiver gets each alert notification once (the cluster deduplicates what
//!   both members push);
//! - after the restart the member catches up from the collectors' spools: both members answer
//!   the same KPIs for the test window (to 1e-9), and every sample of every cycle is there.
//!
//! Time: the collectors' data clock runs 60× the wall clock (a cycle every 100 ms stamps 6 s of
//! data), starting two hours in the past so that nothing is ahead of the servers' clock. The
//! member is down for 30 s of wall time, which is 30 minutes of data: a real outage's worth of
//! spool to replay, in a test that stays well under two minutes on CI's two cores.
//!
//! Every process is killed when the test ends, pass or fail (`Reaped`); every wait is bounded.
//! Without `haproxy` or `prometheus-alertmanager` the test is skipped with a note, except under
//! CI (`CI=true`), where it fails.

mod alerts_common;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{READ, Reaped, WRITE};
use kilowatch_collector::agent::{AgentStats, FanOut};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::source::SimSource;
use kilowatch_model::Timestamp;
use kilowatch_sim::SimConfig;

/// How long the member stays dead (wall time; 60× that in data time).
const KILLED_FOR: Duration = Duration::from_secs(30);
/// Data seconds per wall second.
const SPEED: f64 = 60.0;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `bin` on PATH or in /usr/sbin (Debian's haproxy lives there, off a normal user's PATH).
fn find(bins: &[&str], package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]).collect();
    let found = bins.iter().find_map(|b| dirs.iter().map(|d| d.join(b)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(!ci(), "{} is not installed and CI is set (scripts/test installs {package})", bins[0]);
        eprintln!("SKIPPED: {} not found (apt-get install {package})", bins[0]);
    }
    found
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut ok: impl FnMut() -> F, logs: impl Fn() -> String) {
    let t0 = Instant::now();
    while !ok().await {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn status(url: &str, token: Option<&str>) -> Option<u16> {
    let mut r = http().get(url);
    if let Some(t) = token {
        r = r.header("Authorization", format!("Token {t}"));
    }
    r.send().await.ok().map(|r| r.status().as_u16())
}

async fn json(url: &str) -> serde_json::Value {
    let r = http().get(url).header("Authorization", format!("Token {READ}")).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.expect("json")
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("--- {} ---\n{}", path.display(), lines[lines.len().saturating_sub(30)..].join("\n"))
}

/// One `kilowatch serve` of the pair, on a fixed port and data directory so that a restart
/// comes back where HAProxy and the collectors look for it.
struct Member {
    addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    proc: Option<Reaped>,
}

impl Member {
    fn new(name: &'static str, dir: &Path, alerts: &str) -> Member {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = dir.join(format!("{name}.toml"));
        let text = format!("[server]\nlisten = \"{addr}\"\ndata_dir = {:?}\n[report]\nenabled = false\n{alerts}", dir.join(format!("{name}-data")));
        std::fs::write(&config, text).expect("member config");
        Member { addr, config, log: dir.join(format!("{name}.log")), proc: None }
    }

    fn start(&mut self) {
        self.proc = Some(common::serve_process(&self.config, &self.log));
    }

    /// SIGKILL: no shutdown, no checkpoint, whatever was in flight is cut.
    fn kill(&mut self) {
        drop(self.proc.take());
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn alertmanager(bin: &Path, dir: &Path, i: usize, web: u16, cluster: u16, peer: u16, hook: SocketAddr) -> Reaped {
    let cfg = dir.join(format!("am{i}.yml"));
    std::fs::write(
        &cfg,
        format!(
            "route:\n  receiver: hook\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{hook}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("am config");
    let log = std::fs::File::create(dir.join(format!("am{i}.log"))).expect("am log");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join(format!("am{i}-data")).display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}"))
        .arg(format!("--cluster.advertise-address=127.0.0.1:{cluster}"))
        .arg(format!("--cluster.peer=127.0.0.1:{peer}"))
        // The second peer waits this long for the first one's notification to be gossiped
        // before sending itself (15 s by default): loopback gossip takes milliseconds.
        .arg("--cluster.peer-timeout=3s")
        .arg("--cluster.gossip-interval=100ms")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start alertmanager");
    Reaped(child)
}

/// Every number under `a` equals the one at the same place under `b` to 1e-9 (relative).
fn same_numbers(a: &serde_json::Value, b: &serde_json::Value, at: &str, diffs: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            if !((x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || x == y) {
                diffs.push(format!("{at}: {x} vs {y}"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => same_numbers(v, w, &format!("{at}.{k}"), diffs),
                    None => diffs.push(format!("{at}.{k}: missing on one member")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same_numbers(v, w, &format!("{at}[{i}]"), diffs);
            }
        }
        _ if a != b => diffs.push(format!("{at}: {a} vs {b}")),
        _ => {}
    }
}

fn collector(cfg: &CollectorConfig, first_node: usize, facility: bool, start: Timestamp) -> (FanOut, Vec<Arc<AgentStats>>, Arc<AgentStats>) {
    let endpoints = kilowatch_collector::endpoint::open(cfg, Path::new("collector-ha.toml")).expect("endpoints");
    let per_endpoint = endpoints.iter().map(|e| e.stats.clone()).collect();
    let stats = Arc::new(AgentStats::default());
    let sim = SimConfig { start, nodes: 8, first_node, emit: kilowatch_sim::Emit { gpus: true, nodes: true, facility }, ..SimConfig::default() };
    let agent = FanOut { sources: vec![Box::new(SimSource::new(sim))], interval: Duration::from_secs_f64(cfg.interval_s), clock: Clock::scaled(start, SPEED), endpoints, stats: stats.clone() };
    (agent, per_endpoint, stats)
}

fn collector_config(a: SocketAddr, b: SocketAddr, spool: &Path) -> CollectorConfig {
    let text = format!(
        "interval_s = 0.1\n\
         [[aggregator]]\nname = \"kw-a\"\nurl = \"http://{a}\"\ntoken = \"{WRITE}\"\ntimeout_s = 5.0\n\
         [[aggregator]]\nname = \"kw-b\"\nurl = \"http://{b}\"\ntoken = \"{WRITE}\"\ntimeout_s = 5.0\n\
         [spool]\ndir = {spool:?}\nfsync = \"never\"\n"
    );
    CollectorConfig::parse(&text, Path::new("collector-ha.toml")).expect("collector config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_behind_haproxy_survives_a_member_killed_under_load() {
    let (Some(haproxy), Some(am_bin)) = (find(&["haproxy"], "haproxy"), find(&["prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager")) else { return };
    let t_test = Instant::now();
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();

    // The webhook receiver behind the Alertmanager cluster, and the cluster.
    let (hook, received) = alerts_common::start_receiver().await;
    let (web1, web2, c1, c2) = (free_port(), free_port(), free_port(), free_port());
    let _am1 = alertmanager(&am_bin, d, 1, web1, c1, c2, hook);
    let _am2 = alertmanager(&am_bin, d, 2, web2, c2, c1, hook);

    // Both members: the same rules and the same routing (deploy/alerts/routing-ha.toml), which
    // sends every alert to both Alertmanager peers.
    let rules = d.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"GridFeedHigh\"\nmetric = \"meter.power_w\"\nmatch = ['meter=\"grid-a\"']\nkind = \"threshold\"\nop = \">\"\nthreshold = 1.0\nfor = \"0s\"\nseverity = \"warning\"\n\
         annotations = { summary = \"grid-a draws {{ $value }} W\" }\n",
    )
    .expect("rules");
    let routing = d.join("routing.toml");
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/alerts/routing-ha.toml")).expect("routing example");
    assert!(example.contains("http://alertmanager-1:9093") && example.contains("http://alertmanager-2:9093"), "the example's receivers moved");
    std::fs::write(&routing, example.replace("alertmanager-1:9093", &format!("127.0.0.1:{web1}")).replace("alertmanager-2:9093", &format!("127.0.0.1:{web2}"))).expect("routing");
    let lb_port = free_port();
    // The collectors' data runs hours behind the wall clock here (a whole day in minutes), so a
    // member would hold its alerts as catching up: not held (`catch_up_max_s = 0`); the hold
    // has its own test (alerts_catch_up.rs).
    let alerts = format!("[alerts]\neval_interval_s = 2\ncatch_up_max_s = 0\nrules_file = {rules:?}\nrouting_file = {routing:?}\nexternal_url = \"http://127.0.0.1:{lb_port}\"\n");
    let mut a = Member::new("kw-a", d, &alerts);
    let mut b = Member::new("kw-b", d, &alerts);
    a.start();
    b.start();

    // HAProxy with the example configuration, pointed at the members.
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg")).expect("haproxy example");
    let mut cfg = example.clone();
    for (from, to) in [("127.0.0.1:8080", format!("127.0.0.1:{lb_port}")), ("kilowatch-a:8086", a.addr.to_string()), ("kilowatch-b:8086", b.addr.to_string())] {
        assert!(cfg.contains(from), "deploy/haproxy.cfg no longer has {from}");
        cfg = cfg.replace(from, &to);
    }
    let lb_cfg = d.join("haproxy.cfg");
    std::fs::write(&lb_cfg, cfg).expect("haproxy config");
    let lb_log = d.join("haproxy.log");
    let _lb = Reaped(Command::new(&haproxy).arg("-db").arg("-f").arg(&lb_cfg).stdout(Stdio::null()).stderr(std::fs::File::create(&lb_log).expect("log")).spawn().expect("start haproxy"));
    let lb = |path: &str| format!("http://127.0.0.1:{lb_port}{path}");
    let log_files = [a.log.clone(), b.log.clone(), lb_log.clone(), d.join("am1.log"), d.join("am2.log")];
    let logs = || log_files.iter().map(|p| tail(p)).collect::<Vec<_>>().join("\n");

    let (ha, hb) = (a.url("/api/v1/health"), b.url("/api/v1/health"));
    wait_for("both members serve", 60, || async { status(&ha, None).await == Some(200) && status(&hb, None).await == Some(200) }, &logs).await;
    let am_status = format!("http://127.0.0.1:{web1}/api/v2/status");
    wait_for(
        "the Alertmanager cluster has two peers",
        30,
        || async {
            let s: Option<serde_json::Value> = match http().get(&am_status).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            s.is_some_and(|s| s["cluster"]["peers"].as_array().is_some_and(|p| p.len() == 2) && s["cluster"]["status"] == "ready")
        },
        &logs,
    )
    .await;
    wait_for("HAProxy answers", 30, || async { status(&lb("/api/v1/health"), None).await == Some(200) }, &logs).await;

    // Two collectors, each shipping to both members.
    // Three hours back: even a slow run (three minutes of wall time) stays behind the clock.
    let start = Timestamp::from_secs(Timestamp::now().0 / 1_000_000_000 / 60 * 60 - 3 * 3600);
    let (spool1, spool2) = (d.join("spool-1"), d.join("spool-2"));
    let data_clock = Clock::scaled(start, SPEED);
    let (cfg1, cfg2) = (collector_config(a.addr, b.addr, &spool1), collector_config(a.addr, b.addr, &spool2));
    let (c1, eps1, st1) = collector(&cfg1, 1, true, start);
    let (c2, eps2, st2) = collector(&cfg2, 9, false, start);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run1 = tokio::spawn(c1.run(rx.clone()));
    let run2 = tokio::spawn(c2.run(rx));
    let endpoints: Vec<Arc<AgentStats>> = eps1.iter().chain(&eps2).cloned().collect();
    let sent = |i: usize| endpoints[i].batches_sent.load(Ordering::Relaxed);
    let pending = |i: usize| endpoints[i].spool_batches.load(Ordering::Relaxed);

    // The alert fires on both members and reaches the receiver through the cluster.
    let firing = |m: &Member| {
        let url = m.url("/api/v1/alerts?state=firing");
        async move {
            let Ok(r) = http().get(&url).header("Authorization", format!("Token {READ}")).send().await else { return false };
            r.json::<serde_json::Value>().await.is_ok_and(|v| v["alerts"].as_array().is_some_and(|x| !x.is_empty()))
        }
    };
    wait_for("the alert fires on both members", 40, || async { firing(&a).await && firing(&b).await }, &logs).await;
    wait_for("the receiver is notified", 40, || async { !received.all().is_empty() }, &logs).await;
    wait_for("both members receive batches", 20, || async { (0..4).all(|i| sent(i) > 10) }, &logs).await;

    // SIGKILL one member under load; readers keep being answered through HAProxy.
    a.kill();
    let killed_at = Instant::now();
    let (mut probes, mut failures) = (0, Vec::new());
    let kpi_path = format!("/api/v1/kpi?from={}&to={}", start.to_rfc3339().replace('+', "%2B"), Timestamp(start.0 + 3 * 3_600_000_000_000).to_rfc3339().replace('+', "%2B"));
    while killed_at.elapsed() < KILLED_FOR {
        for (path, token) in [("/api/v1/health", None), (kpi_path.as_str(), Some(READ)), ("/", None), ("/dashboard/overview.json", Some(READ)), ("/api/v1/alerts", Some(READ))] {
            probes += 1;
            match status(&lb(path), token).await {
                Some(200) => {}
                other => failures.push(format!("{path} after {:?}: {other:?}", killed_at.elapsed())),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(failures.is_empty(), "{} of {probes} reads through HAProxy failed while kw-a was down: {failures:?}\n{}", failures.len(), logs());
    assert!(pending(0) > 50 && pending(2) > 50, "kw-a's batches waited in its spools: {} and {}", pending(0), pending(2));
    assert!(pending(1) < 10 && pending(3) < 10, "kw-b kept receiving: {} and {} pending", pending(1), pending(3));

    // Back: it replays its log, then catches up from the collectors' spools.
    a.start();
    wait_for("kw-a serves again", 60, || async { status(&ha, None).await == Some(200) }, &logs).await;
    wait_for("kw-a caught up from the spools", 60, || async { pending(0) == 0 && pending(2) == 0 }, &logs).await;
    let _ = stop.send(true);
    run1.await.expect("collector 1");
    run2.await.expect("collector 2");
    // A batch sampled as the collectors stopped waits in their spools: a restart sends it.
    let drained: Vec<Arc<AgentStats>> = [common::drain_endpoints(&cfg1).await, common::drain_endpoints(&cfg2).await].concat();
    let sent = |i: usize| sent(i) + drained[i].batches_sent.load(Ordering::Relaxed);
    for (i, e) in endpoints.iter().enumerate() {
        assert_eq!(drained[i].spool_batches.load(Ordering::Relaxed), 0, "endpoint {i} drained");
        assert_eq!(e.batches_dropped.load(Ordering::Relaxed), 0, "endpoint {i} dropped nothing");
    }
    let cycles = st1.cycles.load(Ordering::Relaxed);
    assert_eq!(sent(1), st1.cycles.load(Ordering::Relaxed), "collector 1 → kw-b: every batch once");
    assert_eq!(sent(3), st2.cycles.load(Ordering::Relaxed), "collector 2 → kw-b: every batch once");
    // kw-a: every batch at least once (one in flight at the kill may have been stored and sent
    // again; the store keeps a sample once).
    assert!(sent(0) >= st1.cycles.load(Ordering::Relaxed) && sent(2) >= st2.cycles.load(Ordering::Relaxed), "collectors → kw-a");

    // Both members answer the same numbers for the test window, and nothing was lost: the
    // facility meter has one reading per cycle of the collector that reads it.
    let end = Timestamp(data_clock.now().0 + 60_000_000_000);
    let window = format!("/api/v1/kpi?from={}&to={}", start.to_rfc3339().replace('+', "%2B"), end.to_rfc3339().replace('+', "%2B"));
    let (ka, kb) = (json(&a.url(&window)).await, json(&b.url(&window)).await);
    let mut diffs = Vec::new();
    same_numbers(&ka, &kb, "kpi", &mut diffs);
    same_numbers(&kb, &ka, "kpi", &mut diffs);
    assert!(diffs.is_empty(), "the members differ: {diffs:?}");
    assert!(ka["it_energy_kwh"].as_f64().is_some_and(|e| e > 0.0), "{ka}");
    for k in [&ka, &kb] {
        let grid = k["data_quality"]["meters"].as_array().and_then(|m| m.iter().find(|m| m["meter"] == "grid-a")).expect("grid-a");
        assert_eq!(grid["readings"].as_u64(), Some(cycles), "grid-a readings vs cycles sampled: {grid}");
    }

    // After the restart kw-a fires the same alert again and pushes it; the cluster already
    // notified it: the receiver gets it once. Give the second peer its peer timeout and a group
    // interval to (wrongly) send a twin.
    wait_for("the alert fires on kw-a after its restart", 30, || firing(&a), &logs).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let notes = received.all();
    let firing_notes: Vec<_> = notes.iter().filter(|n| n.body["status"] == "firing" && n.body["commonLabels"]["alertname"] == "GridFeedHigh").collect();
    assert_eq!(firing_notes.len(), 1, "one notification for the alert, not one per member or per peer: {:?}", notes.iter().map(|n| &n.body).collect::<Vec<_>>());
    assert_eq!(notes.len(), 1, "nothing else was notified: {:?}", notes.iter().map(|n| &n.body).collect::<Vec<_>>());
    eprintln!("ha_pair: {probes} reads through HAProxy during the kill, {cycles} cycles, {:.1} s in all", t_test.elapsed().as_secs_f64());
}

/// The example HAProxy configuration is valid as shipped.
#[test]
fn the_haproxy_example_is_valid() {
    let Some(haproxy) = find(&["haproxy"], "haproxy") else { return };
    let out = Command::new(haproxy).arg("-c").arg("-f").arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg")).output().expect("haproxy -c");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
