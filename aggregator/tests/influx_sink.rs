//! Forwarding to an InfluxDB v2 write API, tested against a real server on loopback: Debian's
//! VictoriaMetrics, which implements `/api/v2/write` and lets us read the points back. The
//! server goes away and comes back; no point may be lost.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{READ, WRITE};
use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::Auth;
use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::server;
use kilowatch_aggregator::sink::{InfluxConfig, InfluxSink};
use kilowatch_store::Store;

fn have(bin: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {bin}")).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

struct Vm(Child);
impl Drop for Vm {
    /// SIGTERM: VictoriaMetrics flushes what it acknowledged before exiting (SIGKILL would
    /// lose its in-memory buffer, a fault of the server rather than of the sink).
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        for _ in 0..100 {
            if self.0.try_wait().is_ok_and(|s| s.is_some()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_vm(port: u16, dir: &Path) -> Vm {
    let child = Command::new("victoria-metrics")
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", dir.display()))
        .arg("-retentionPeriod=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start victoria-metrics");
    for _ in 0..100 {
        if reqwest::get(format!("http://127.0.0.1:{port}/health")).await.is_ok_and(|r| r.status().is_success()) {
            return Vm(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("victoria-metrics did not start");
}

/// Values of `meter_energy_kwh` for one meter, as VictoriaMetrics exports them.
async fn exported(port: u16) -> Vec<f64> {
    let r = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/api/v1/export")).query(&[("match[]", "meter_energy_kwh{meter=\"grid-a\"}")]).send().await.expect("export");
    let text = r.text().await.unwrap_or_default();
    let mut vals = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        vals.extend(v["values"].as_array().into_iter().flatten().filter_map(|x| x.as_f64()));
    }
    vals.sort_by(f64::total_cmp);
    vals
}

async fn wait_for(port: u16, n: usize) -> Vec<f64> {
    let mut got = Vec::new();
    for _ in 0..150 {
        // VictoriaMetrics makes fresh samples searchable after a short flush.
        let _ = reqwest::get(format!("http://127.0.0.1:{port}/internal/force_flush")).await;
        got = exported(port).await;
        if got.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_reach_influxdb_and_survive_its_outage() {
    if !have("victoria-metrics") {
        assert!(std::env::var("CI").is_err(), "victoria-metrics is required in CI (scripts/test installs it)");
        eprintln!("SKIPPED: victoria-metrics is not installed (apt-get install victoria-metrics)");
        return;
    }
    let vm_dir = tempfile::tempdir().expect("tmp");
    let data = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let vm = start_vm(port, vm_dir.path()).await;

    let token_file = data.path().join("influx.token");
    std::fs::write(&token_file, "influx-token\n").expect("token");
    let mut cfg = Config::default();
    cfg.influxdb = Some(InfluxConfig {
        url: format!("http://127.0.0.1:{port}"),
        org: "dc5".into(),
        bucket: "kilowatch".into(),
        token_file: Some(token_file),
        queue_dir: None,
        max_queue_bytes: 64 << 20,
        timeout_s: 2.0,
    });
    let (stop, rx) = tokio::sync::watch::channel(false);
    let sink = InfluxSink::start(cfg.influxdb.as_ref().expect("cfg"), data.path(), rx.clone()).expect("sink");
    let store = Arc::new(Store::open(&data.path().join("store")).expect("store"));
    let state = AppState { store, auth: Arc::new(Auth::new(vec![WRITE.into()], vec![READ.into()], false)), config: Arc::new(cfg), sink: Some(sink.clone()), metrics: Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(server::serve(listener, server::router(state), rx));

    // An hour ago: inside any retention, outside VictoriaMetrics' "too recent to search" lag.
    let t0 = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 3600) as i64;
    let write = |from: i64, n: i64| {
        let body: String = (from..from + n).map(|i| format!("meter,site=dc5,meter=grid-a,role=facility energy_kwh={}.5 {}\n", 1000 + i, t0 + i)).collect();
        let url = format!("http://{addr}/api/v2/write?precision=s");
        async move {
            let r = reqwest::Client::new().post(url).header("Authorization", format!("Token {WRITE}")).body(body).send().await.expect("send");
            assert_eq!(r.status(), 204);
        }
    };
    write(0, 10).await;
    assert_eq!(wait_for(port, 10).await.len(), 10, "first batch forwarded");

    drop(vm);
    write(10, 10).await;
    write(20, 10).await;
    for _ in 0..50 {
        if sink.health().send_errors > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = sink.health();
    assert!(h.send_errors > 0 && h.queued_batches > 0, "the outage is visible in health: {h:?}");
    let page = reqwest::Client::new().get(format!("http://{addr}/metrics")).bearer_auth(READ).send().await.expect("scrape").text().await.expect("text");
    let figure = |name: &str| page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok());
    assert!(figure("kilowatch_influxdb_queue_batches").is_some_and(|n| n > 0.0), "and in /metrics: {page}");
    assert!(figure("kilowatch_influxdb_send_errors_total").is_some_and(|n| n > 0.0), "{page}");
    assert_eq!(figure("kilowatch_influxdb_batches_sent_total"), Some(1.0), "{page}");

    let _vm = start_vm(port, vm_dir.path()).await;
    let got = wait_for(port, 30).await;
    let want: Vec<f64> = (0..30).map(|i| 1000.0 + i as f64 + 0.5).collect();
    assert_eq!(got, want, "every point arrived once");
    assert_eq!(sink.health().batches_dropped, 0);
    let _ = stop.send(true);
}
