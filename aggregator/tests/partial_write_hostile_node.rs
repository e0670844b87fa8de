//! A tenant's inference server cannot blind its node (issue 31 item 1), through the real
//! binaries: `kilowatch serve` on loopback, the real `kilowatch-collector` reading two fake
//! NVML GPUs and a vLLM page whose labels are an empty string, a tab, a line break, a trailing
//! backslash and 100 kB. Every batch arrives: the node's GPU energy in full, the page's rows
//! repaired; nothing is rejected.

mod common;
#[path = "../../collector/tests/hostile_pages/mod.rs"]
mod hostile_pages;
#[path = "../../collector/tests/nvml_support/mod.rs"]
mod nvml_support;
#[path = "../../collector/tests/peers/mod.rs"]
mod peers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::WRITE;
use kilowatch_store::Store;
use nvml_support::{FakeNvml, fixtures_proc};

/// The `kilowatch-collector` binary, built into this test's target folder (the aggregator's
/// tests do not build another package's binaries).
fn collector_bin() -> PathBuf {
    nvml_support::cargo_build(&["-p", "kilowatch-collector", "--bin", "kilowatch-collector"]).join("kilowatch-collector")
}

/// Energy counters rising 1 J a frame, for 10,000 frames.
fn energy() -> String {
    let v: Vec<String> = (0..10_000u64).map(|k| (5_000_000_000 + k * 1000).to_string()).collect();
    format!("[{}]", v.join(","))
}

/// A counter of the collector's `/metrics`, 0 when absent.
async fn counter(port: u16, name: &str) -> f64 {
    let Ok(r) = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics")).timeout(Duration::from_secs(5)).send().await else { return 0.0 };
    let text = r.text().await.unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_inference_page_never_costs_the_node_its_gpu_energy() {
    let dir = tempfile::tempdir().expect("tmp");
    let page = hostile_pages::serve_page(hostile_pages::hostile_vllm_page()).await;
    let fake = FakeNvml::new(&format!("[[gpu]]\nenergy_mj = {e}\npower_mw = 400000\n[[gpu]]\nenergy_mj = {e}\npower_mw = 300000\n", e = energy()));

    let port = peers::free_port();
    let data = dir.path().join("data");
    let server_cfg = dir.path().join("kilowatch.toml");
    std::fs::write(&server_cfg, format!("[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n[alerts]\nenabled = false\n", data.display().to_string())).expect("config");
    let server = common::serve_process(&server_cfg, &dir.path().join("kilowatch.log"));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "kilowatch did not listen: {}", std::fs::read_to_string(dir.path().join("kilowatch.log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let metrics_port = peers::free_port();
    let collector_cfg = dir.path().join("collector.toml");
    std::fs::write(
        &collector_cfg,
        format!(
            "interval_s = 0.2\nsite = \"dc5\"\nnode = \"dgx-001\"\n[aggregator]\nurl = \"http://127.0.0.1:{port}\"\ntoken = \"{WRITE}\"\n[spool]\ndir = {spool:?}\nfsync = \"never\"\n\
             [nvml]\nlib_path = {lib:?}\nproc_root = {proc:?}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [[inference]]\nname = \"tenant-vllm\"\nengine = \"vllm\"\nurl = \"http://{page}/metrics\"\ngpus = [0, 1]\n",
            spool = dir.path().join("spool").display().to_string(),
            lib = fake.lib.display().to_string(),
            proc = fixtures_proc().display().to_string(),
        ),
    )
    .expect("config");
    let collector_log = dir.path().join("collector.log");
    let collector = common::collector_process(&collector_bin(), &collector_cfg, &collector_log);

    // Twenty batches sent, at most a minute.
    let started = Instant::now();
    while counter(metrics_port, "kilowatch_collector_batches_sent_total").await < 20.0 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = || std::fs::read_to_string(&collector_log).unwrap_or_default();
    let sent = counter(metrics_port, "kilowatch_collector_batches_sent_total").await;
    assert!(sent >= 20.0, "batches sent: {sent}\n{}", log());
    assert_eq!(counter(metrics_port, "kilowatch_collector_batches_rejected_total").await, 0.0, "{}", log());
    assert_eq!(counter(metrics_port, "kilowatch_collector_lines_refused_total").await, 0.0, "{}", log());
    assert!(counter(metrics_port, "kilowatch_collector_values_repaired_total").await >= 3.0);
    assert!(counter(metrics_port, "kilowatch_collector_values_dropped_total").await >= 1.0);
    assert!(counter(metrics_port, "kilowatch_collector_inference_rows_over_cap_total").await >= 1.0, "the 100 kB label cut at reading");
    // Each distinct problem is logged once, however many samples repeat it: a control
    // character (the tab and the line break), a backslash, an empty label; the 100 kB label
    // was cut when the page was read (max_label_bytes), also logged once.
    let warnings = log().lines().filter(|l| l.contains("repaired or dropped before sending")).count();
    assert_eq!(warnings, 3, "{}", log());
    assert_eq!(log().lines().filter(|l| l.contains("longer labels than [[inference]] allows")).count(), 1, "{}", log());
    drop(collector);
    drop(server);

    // What the server stored, read back from its log after the kill.
    let store = Store::open(&data).expect("reopen");
    for gpu in ["0", "1"] {
        let series = store.find_series("gpu", "energy_mj", &[("node", "dgx-001"), ("gpu", gpu)]).expect("find");
        assert_eq!(series.len(), 1, "gpu {gpu}");
        let samples = store.read_with_neighbours(series[0].id, 0, i64::MAX).expect("read");
        assert!(samples.len() as f64 >= sent, "gpu {gpu}: {} samples for {sent} batches sent", samples.len());
    }
    let rows = store.find_series("inference", "prompt_tokens", &[("server", "tenant-vllm")]).expect("find");
    assert_eq!(rows.len(), 6, "every row of the page, repaired: {rows:?}");
    assert!(rows.iter().any(|r| r.tag("model") == Some("llama-ok")));
}
