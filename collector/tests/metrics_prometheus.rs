//! The collector binary, running against the fake NVML at 100 ms, serves `/metrics`: the page
//! parses under `promtool check metrics`, and a real Prometheus server (Debian `prometheus`)
//! on loopback scrapes it and answers a query for `DCGM_FI_DEV_POWER_USAGE`.
//!
//! Without `promtool`/`prometheus` on PATH the tool-specific parts print a notice and pass,
//! except under CI (`CI` set to anything but `false`/`0`), where a missing tool fails.

mod nvml_support;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nvml_support::{FakeNvml, fixtures_proc};

const SCENARIO: &str = r#"
[[gpu]]
name = "NVIDIA H100 80GB HBM3"
uuid = "GPU-11111111-2222-3333-4444-555555555555"
pci_bus_id = "00000000:18:00.0"
power_mw = 512500
xids = [{ frame = 1, code = 79 }]
processes = [{ pid = 4242, from = 0 }, { pid = 5000, from = 0 }]
[[gpu]]
power_mw = 300000
not_supported = ["mem_temp"]
"#;

/// Kills and reaps a child we started when the test ends, however it ends.
struct Reaped(Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether `tool` can run; under CI a missing tool fails the test, elsewhere it is a notice.
fn have(tool: &str, package: &str) -> bool {
    let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(!in_ci(), "{tool} is not on PATH and CI is set: install the Debian package `{package}`");
        println!("NOTICE: {tool} not found; skipping that part (apt-get install {package})");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn get(url: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let r = reqwest::Client::new().get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    })
}

/// Polls `f` every 200 ms until it answers or `limit` passes.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn start_collector(fake: &FakeNvml, dir: &Path, port: u16) -> Reaped {
    let cfg = dir.join("collector.toml");
    // The aggregator URL is a closed port: send errors must show in the health metrics, and
    // sampling must go on regardless.
    let text = format!(
        "interval_s = 0.1\nnode = \"dgx-001\"\n[aggregator]\nurl = \"http://127.0.0.1:9\"\ntoken = \"t\"\ntimeout_s = 0.5\n\
         [nvml]\nlib_path = {lib:?}\nproc_root = {proc:?}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
         [spool]\ndir = {spool:?}\nfsync = \"never\"\n",
        spool = dir.join("spool").display().to_string(),
        lib = fake.lib.display().to_string(),
        proc = fixtures_proc().display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_kilowatch-collector"))
        .arg("--config")
        .arg(&cfg)
        .env_remove("KILOWATCH_NVML_LIB")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kilowatch-collector");
    Reaped(child)
}

#[test]
fn the_collector_serves_metrics_that_promtool_and_prometheus_accept() {
    let fake = FakeNvml::new(SCENARIO);
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut collector = start_collector(&fake, dir.path(), port);
    let url = format!("http://127.0.0.1:{port}/metrics");
    // Wait until a few cycles have run (and a send has failed), so every family is present.
    // The first send can fail before the second cycle is counted, so both are waited for.
    let page = wait_for(Duration::from_secs(20), || {
        get(&url)
            .filter(|p| p.contains("DCGM_FI_DEV_POWER_USAGE{") && !p.contains("kilowatch_collector_send_errors_total 0\n") && metric(p, "kilowatch_collector_cycles_total").is_some_and(|c| c >= 2.0))
    })
    .expect("the collector served /metrics with GPU values within 20 s");

    assert!(page.contains("DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-11111111-2222-3333-4444-555555555555\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"dgx-001\"} 512.5\n"), "{page}");
    assert!(page.contains("DCGM_FI_DEV_POWER_USAGE{gpu=\"1\"") && page.contains("} 300\n"), "{page}");
    assert!(page.contains("DCGM_FI_DEV_XID_ERRORS{gpu=\"0\""), "{page}");
    assert!(page.contains("kilowatch_gpu_job_info{gpu=\"0\",UUID=\"GPU-11111111-2222-3333-4444-555555555555\",Hostname=\"dgx-001\",hpc_job=\"slurm:1234\"} 1\n"), "{page}");
    assert!(page.contains("kilowatch_gpu_job_info{gpu=\"0\"") && page.contains("hpc_job=\"k8s:8dbc5577-d0e2-4706-8787-57d52c03ddf2\""), "{page}");
    assert!(!page.contains("DCGM_FI_DEV_MEMORY_TEMP{gpu=\"1\""), "absent values are not exported: {page}");
    let cycles = metric(&page, "kilowatch_collector_cycles_total").expect("cycles");
    assert!(cycles >= 2.0, "{page}");
    assert!(metric(&page, "kilowatch_collector_samples_total").is_some_and(|v| v > 0.0), "{page}");
    assert!(metric(&page, "kilowatch_collector_spool_bytes").is_some_and(|v| v > 0.0), "unsent batches are pending: {page}");
    assert!(metric(&page, "kilowatch_collector_last_cycle_seconds").is_some(), "{page}");

    if have("promtool", "prometheus") {
        promtool_accepts(&page);
    }
    if have("prometheus", "prometheus") {
        prometheus_scrapes(dir.path(), port);
    }

    // SIGTERM (what systemd sends) stops it cleanly.
    let pid = collector.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = wait_for(Duration::from_secs(10), || collector.0.try_wait().ok().flatten()).expect("collector exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn promtool_accepts(page: &str) {
    let mut child = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("promtool");
    child.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // 0: clean; 3: lint findings only; anything else: it could not parse the page.
    assert!(matches!(out.status.code(), Some(0 | 3)), "promtool rejected /metrics:\n{report}\n---\n{page}");
    // The only findings allowed are the dcgm-exporter compatibility ones (see docs/collector.md).
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let dcgm_counter = line.starts_with("DCGM_") && line.ends_with("counter metrics should have \"_total\" suffix");
        let camel = line.ends_with("label names should be written in 'snake_case' not 'camelCase'");
        assert!(dcgm_counter || camel, "unexpected promtool finding: {line}");
    }
    println!("promtool check metrics: the collector's page parses; only dcgm-compatibility lints");
}

fn prometheus_scrapes(dir: &Path, collector_port: u16) {
    let web = free_port();
    let conf = dir.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: kilowatch-collector\n    \
             static_configs:\n      - targets: ['127.0.0.1:{collector_port}']\n"
        ),
    )
    .expect("prometheus.yml");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let _prom = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let query = format!("http://127.0.0.1:{web}/api/v1/query?query=DCGM_FI_DEV_POWER_USAGE");
    let answer = wait_for(Duration::from_secs(60), || {
        let body = get(&query)?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        (!result.is_empty()).then(|| result.clone())
    });
    let Some(result) = answer else {
        let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        panic!("Prometheus did not answer DCGM_FI_DEV_POWER_USAGE within 60 s; its log:\n{log}");
    };
    assert_eq!(result.len(), 2, "{result:?}");
    let gpu0 = result.iter().find(|r| r["metric"]["gpu"] == "0").expect("gpu 0");
    assert_eq!(gpu0["metric"]["UUID"], "GPU-11111111-2222-3333-4444-555555555555");
    assert_eq!(gpu0["metric"]["job"], "kilowatch-collector", "Prometheus's own job label");
    assert_eq!(gpu0["value"][1], "512.5", "{gpu0}");
    println!("prometheus scraped the collector: {} GPU power series", result.len());
}
