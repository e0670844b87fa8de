//! What the maintenance tests share: a store backfilled with the demo's simulated site, and
//! `kilowatch serve` on it with maintenance every second.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kilowatch_model::Timestamp;

/// Backfills `days` of the demo's site (`nodes` DGX nodes, a reading every `step_s`) into the
/// store in `data`, ending now, with the job ledger beside it, as `kilowatch demo` does before
/// serving. Nothing is rolled up yet: the first maintenance pass of a server catches up.
pub fn backfill(data: &Path, days: i64, nodes: usize, step_s: u64) -> u64 {
    let now = Timestamp::now();
    let start = Timestamp((now.0 - days * 86_400 * 1_000_000_000).div_euclid(3_600_000_000_000) * 3_600_000_000_000);
    let store = kilowatch_store::Store::open(data).expect("store");
    let jobs = kilowatch_store::jobs::JobStore::beside(&store).expect("jobs");
    let mut site = kilowatch_sim::Site::new(kilowatch_sim::SimConfig { start, nodes, seed: 7, ..kilowatch_sim::SimConfig::default() });
    kilowatch_aggregator::demo::backfill_with_jobs(&store, Some(&jobs), &mut site, now, Duration::from_secs(step_s)).expect("backfill")
}

/// A config for `kilowatch serve` on `addr` over `data`, maintenance every second, with
/// `grace_s` to finish requests when asked to stop.
pub fn config(dir: &Path, data: &Path, addr: SocketAddr, grace_s: u64) -> PathBuf {
    let path = dir.join("kilowatch.toml");
    std::fs::write(&path, format!("[server]\nlisten = \"{addr}\"\ndata_dir = {data:?}\nshutdown_grace_s = {grace_s}\n[store]\nmaintenance_interval_s = 1\n[report]\nenabled = false\n"))
        .expect("config");
    path
}

/// `kilowatch serve --config config` as [`common::serve_process`] starts it, from
/// `KILOWATCH_TEST_BIN` when set (a copy of the binary kept apart from a shared build folder),
/// else the one cargo built for these tests (wrap it in `common::Reaped`).
pub fn serve(config: &Path, log: &Path, write: &str, read: &str) -> std::process::Child {
    let bin = std::env::var_os("KILOWATCH_TEST_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kilowatch")), PathBuf::from);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
    std::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("KILOWATCH_WRITE_TOKEN", write)
        .env("KILOWATCH_READ_TOKEN", read)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kilowatch")
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client")
}

/// `/api/v1/health`'s store figures, once the server answers.
pub async fn store_health(addr: SocketAddr, token: &str) -> Option<serde_json::Value> {
    let r = http().get(format!("http://{addr}/api/v1/health")).header("Authorization", format!("Token {token}")).send().await.ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    Some(v["store"].clone())
}

/// Waits (bounded by `secs`) until `ok` holds, showing the server's log if it never does.
pub async fn until(what: &str, secs: u64, log: &Path, mut ok: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !ok().await {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s\n{}", std::fs::read_to_string(log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
