//! A real aggregator on loopback for the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::{Auth, sha256_hex};
use kilowatch_aggregator::config::{AuthConfig, Config, TokenEntry, TokenScope};
use kilowatch_aggregator::server;
use kilowatch_collector::agent::{Agent, AgentStats};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::source::Source;
use kilowatch_ship::{Fsync, Spool, SpoolConfig};
use kilowatch_ship::{Shipper, ShipperConfig};
use kilowatch_store::Store;
use tokio::sync::watch;

pub const WRITE: &str = "write-token-0123456789";
pub const READ: &str = "read-token-0123456789";
/// A token of scope `admin` (writes too), held by "ops on call".
pub const ADMIN: &str = "admin-token-0123456789";
/// A read token scoped to one customer's jobs: `owners = ["mistral-ai/*"]`.
pub const TENANT: &str = "tenant-token-mistral-0123456789";
pub const TENANT_OWNERS: &str = "mistral-ai/*";

pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        Self::start_on(dir, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// On a given address, e.g. the one a stopped server had, so clients find it again.
    pub async fn start_on(dir: &Path, addr: SocketAddr) -> Server {
        Self::start_with(dir, addr, Config::default(), false).await
    }

    /// With `config`; `policy` applies its `[store]` write limits as `kilowatch serve` does
    /// (off otherwise, so that tests can write history as old or new as they like).
    pub async fn start_with(dir: &Path, addr: SocketAddr, config: Config, policy: bool) -> Server {
        let store = Arc::new(Store::open(dir).expect("open store"));
        if policy {
            store.set_policy(config.store.policy()).expect("policy");
        }
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = watch::channel(false);
        let state = AppState {
            store: store.clone(),
            auth: Arc::new(Auth::from_config(
                &AuthConfig {
                    write_tokens: vec![WRITE.into()],
                    read_tokens: vec![READ.into()],
                    tokens: vec![
                        TokenEntry { name: "ops on call".into(), sha256: sha256_hex(ADMIN), scope: TokenScope::Admin, owners: None, nodes: None },
                        TokenEntry { name: "customer mistral-ai".into(), sha256: sha256_hex(TENANT), scope: TokenScope::Read, owners: Some(vec![TENANT_OWNERS.into()]), nodes: None },
                    ],
                },
                false,
            )),
            config: Arc::new(config),
            sink: None,
            metrics: Default::default(),
        };
        let task = tokio::spawn(server::serve(listener, server::router(state), rx));
        Server { addr, store, stop, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops serving without a checkpoint: what is not in chunks must come back from the log.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    pub async fn write(&self, body: &str, precision: &str, token: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(&format!("/api/v2/write?org=dc5&bucket=kilowatch&precision={precision}")))
            .header("Authorization", format!("Token {token}"))
            .body(body.to_owned())
            .send()
            .await
            .expect("send")
    }

    /// A GET with the read token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new().get(self.url(path)).header("Authorization", format!("Token {READ}")).send().await.expect("send")
    }

    pub async fn kpi(&self, from: &str, to: &str) -> serde_json::Value {
        let r = reqwest::Client::new().get(self.url("/api/v1/kpi")).query(&[("from", from), ("to", to)]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
        assert_eq!(r.status(), 200, "kpi status");
        r.json().await.expect("json")
    }
}

pub fn assert_close(got: &serde_json::Value, want: f64, what: &str) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {got}"));
    assert!(((g - want) / want).abs() <= 1e-9, "{what}: got {g}, want {want}");
}

/// A collector agent shipping `sources` to the aggregator at `addr`, spooling in `spool_dir`.
pub fn agent(addr: SocketAddr, sources: Vec<Box<dyn Source>>, interval: std::time::Duration, clock: Clock, spool_dir: &Path) -> (Agent, Arc<AgentStats>) {
    let stats = Arc::new(AgentStats::default());
    let agent = Agent {
        sources,
        shipper: Shipper::new(&ShipperConfig {
            url: format!("http://{addr}"),
            token: WRITE.into(),
            org: Some("dc5".into()),
            bucket: Some("kilowatch".into()),
            timeout: std::time::Duration::from_secs(5),
        })
        .expect("shipper"),
        interval,
        clock,
        spool: Spool::open(SpoolConfig { dir: spool_dir.to_owned(), fsync: Fsync::Always, ..SpoolConfig::default() }).expect("spool"),
        stats: stats.clone(),
    };
    (agent, stats)
}

/// Sends what a stopped collector left in its spool, as a restarted collector would, and waits
/// (bounded) until the spool is empty.
pub async fn drain_spool(addr: SocketAddr, spool_dir: &Path) -> Arc<AgentStats> {
    use std::sync::atomic::Ordering;
    let (a, stats) = agent(addr, Vec::new(), std::time::Duration::from_millis(100), Clock::Wall, spool_dir);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(a.run(rx));
    for _ in 0..300 {
        if stats.cycles.load(Ordering::Relaxed) > 0 && stats.spool_batches.load(Ordering::Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    let _ = task.await;
    stats
}

/// Restarts a collector configured with `cfg` without sources, as a restarted collector
/// would, until every endpoint's spool is sent (bounded), and returns each endpoint's counters:
/// what a stopped collector left in flight arrives.
pub async fn drain_endpoints(cfg: &kilowatch_collector::config::CollectorConfig) -> Vec<Arc<AgentStats>> {
    use std::sync::atomic::Ordering;
    let endpoints = kilowatch_collector::endpoint::open(cfg, Path::new("collector.toml")).expect("endpoints");
    let per_endpoint: Vec<Arc<AgentStats>> = endpoints.iter().map(|e| e.stats.clone()).collect();
    let stats = Arc::new(AgentStats::default());
    let fan = kilowatch_collector::agent::FanOut { sources: Vec::new(), interval: std::time::Duration::from_millis(100), clock: Clock::Wall, endpoints, stats: stats.clone() };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(fan.run(rx));
    for _ in 0..300 {
        if stats.cycles.load(Ordering::Relaxed) > 0 && per_endpoint.iter().all(|s| s.spool_batches.load(Ordering::Relaxed) == 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    let _ = task.await;
    per_endpoint
}

/// A child process the test started, killed and reaped when the test ends, however it ends.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kilowatch serve --config config`, the test's tokens in its environment, its log (info)
/// appended to `log`; killed (SIGKILL) when dropped.
/// `KILOWATCH_BIN`, where set, runs a copy of the binary taken right after building (on a machine
/// whose target folder several checkouts share, `target/debug/kilowatch` may be another's).
pub fn serve_process(config: &Path, log: &Path) -> Reaped {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
    let bin = std::env::var_os("KILOWATCH_BIN").map_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_kilowatch")), std::path::PathBuf::from);
    Reaped(
        std::process::Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .env("KILOWATCH_WRITE_TOKEN", WRITE)
            .env("KILOWATCH_READ_TOKEN", READ)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kilowatch"),
    )
}

/// `kilowatch-collector` (the binary `bin`) with `config`, its log (info) in `log`; killed
/// when dropped.
pub fn collector_process(bin: &Path, config: &Path, log: &Path) -> Reaped {
    Reaped(
        std::process::Command::new(bin)
            .arg("--config")
            .arg(config)
            .env_remove("KILOWATCH_TOKEN")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("start kilowatch-collector"),
    )
}

/// Whether the external program `bin` (from the Debian package `package`) is on PATH. Missing:
/// the test is skipped with a note, except under CI, where scripts/test installs it and its
/// absence is a failure.
pub fn require_tool(bin: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    if !found {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "{bin} is not installed and CI is set (scripts/test installs {package})");
        eprintln!("SKIPPED: {bin} not found (apt-get install {package})");
    }
    found
}

/// October 2024 (Europe/Paris: 745 hours) backfilled by the demo's code into the store in
/// `dir`: 8 nodes, the demo's job stream, 1-hour steps, from an hour before the local month.
pub fn backfill_october_2024(dir: &Path) {
    let start = kilowatch_model::Timestamp::from_secs(1_727_730_000);
    let end = kilowatch_model::Timestamp::from_secs(1_730_415_600 + 3600);
    let store = Store::open(dir).expect("store");
    let jobs = kilowatch_store::jobs::JobStore::open(dir).expect("jobs");
    let mut site = kilowatch_sim::Site::new(kilowatch_sim::SimConfig { start, nodes: 8, site_nodes: 8, ..kilowatch_sim::SimConfig::default() });
    kilowatch_aggregator::demo::backfill_with_jobs(&store, Some(&jobs), &mut site, end, std::time::Duration::from_secs(3600)).expect("backfill");
}

/// Debian's `influxd` (1.x) on loopback, its data in `dir`; killed when the handle drops. The
/// HTTP port it answers on.
pub async fn start_influxd(dir: &Path) -> (Reaped, u16) {
    let port = free_port_for_influxd();
    std::fs::create_dir_all(dir).expect("influxdb dir");
    let conf = dir.join("influxdb.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[monitor]\n  store-enabled = false\n[subscriber]\n  enabled = false\n[continuous_queries]\n  enabled = false\n[http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[logging]\n  level = \"warn\"\n  suppress-logo = true\n",
            free_port_for_influxd()
        ),
    )
    .expect("influxdb.conf");
    let child = std::process::Command::new("influxd").args(["run", "-config"]).arg(&conf).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("start influxd");
    let proc = Reaped(child);
    for _ in 0..300 {
        if reqwest::Client::new().get(format!("http://127.0.0.1:{port}/ping")).send().await.is_ok_and(|r| r.status() == 204) {
            return (proc, port);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("influxd did not start");
}

fn free_port_for_influxd() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}
