//! GPUs end to end: the collector's NVML source over the real `nvml-wrapper` and the fake
//! `libnvidia-ml.so`, the real agent and shipper, a real aggregator on loopback; the GPU lines
//! arrive in the store with the values the fake GPUs reported.

mod common;
#[path = "../../collector/tests/nvml_support/mod.rs"]
mod nvml_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::Server;
use kilowatch_collector::clock::Clock;
use kilowatch_collector::config::NvmlSourceConfig;
use kilowatch_collector::nvml::NvmlSource;
use kilowatch_store::Value;
use nvml_support::{FakeNvml, fixtures_proc};

const UUID0: &str = "GPU-11111111-2222-3333-4444-555555555555";

const SCENARIO: &str = r#"
[[gpu]]
uuid = "GPU-11111111-2222-3333-4444-555555555555"
power_mw = [100000, 512500]
energy_mj = [1000000000, 1025200000, 1050400000]
temp_c = 61
ecc_uncorrected = [0, 1]
xids = [{ frame = 1, code = 79 }]
processes = [{ pid = 4242, from = 1 }]
[[gpu]]
power_mw = 300000
processes = [{ pid = 5000, from = 1 }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_lines_reach_the_aggregator_with_their_values() {
    let fake = FakeNvml::new(SCENARIO);
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let nvml = NvmlSourceConfig { lib_path: Some(fake.lib.clone()), optional: false, proc_root: fixtures_proc() };
    let src = NvmlSource::from_config(&nvml, "dc5", "dgx-001").expect("NVML starts").expect("a required source is Some");
    let spool_dir = tempfile::tempdir().expect("tmp");
    let (stop, rx) = tokio::sync::watch::channel(false);
    // The fastest interval the collector supports.
    let (agent, stats) = common::agent(s.addr, vec![Box::new(src)], Duration::from_millis(100), Clock::Wall, spool_dir.path());
    let task = tokio::spawn(agent.run(rx));
    let started = Instant::now();
    while stats.batches_sent.load(Ordering::Relaxed) < 4 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    task.await.expect("agent");
    assert!(stats.batches_sent.load(Ordering::Relaxed) >= 4, "batches sent: {stats:?}");
    assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
    assert_eq!(stats.batches_rejected.load(Ordering::Relaxed), 0);

    let latest = |measurement: &str, field: &str, gpu: &str| -> Value {
        let series = s.store.find_series(measurement, field, &[("site", "dc5"), ("node", "dgx-001"), ("gpu", gpu)]).expect("find");
        assert_eq!(series.len(), 1, "{measurement}.{field} gpu {gpu}: {series:?}");
        s.store.latest(&[series[0].id]).expect("latest")[0].clone().expect("a value").1
    };
    assert_eq!(latest("gpu", "power_w", "0"), Value::Num(512.5));
    assert_eq!(latest("gpu", "power_w", "1"), Value::Num(300.0));
    assert_eq!(latest("gpu", "energy_mj", "0"), Value::Num(1_050_400_000.0));
    assert_eq!(latest("gpu", "temp_c", "0"), Value::Num(61.0));
    assert_eq!(latest("gpu", "ecc_uncorrected", "0"), Value::Num(1.0));
    let power = s.store.find_series("gpu", "power_w", &[("gpu", "0")]).expect("find");
    assert_eq!(power[0].tag("uuid"), Some(UUID0));
    // Which job holds which GPU, for attribution.
    assert_eq!(latest("gpu_job", "job", "0"), Value::Text("slurm:1234".into()));
    assert_eq!(latest("gpu_job", "job", "1"), Value::Text("k8s:8dbc5577-d0e2-4706-8787-57d52c03ddf2".into()));
    // The XID arrived as an event.
    assert_eq!(latest("gpu_event", "kind", "0"), Value::Text("xid".into()));
    assert_eq!(latest("gpu_event", "xid", "0"), Value::Num(79.0));
}
