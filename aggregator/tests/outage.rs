//! Nothing lost, nothing counted twice: the aggregator goes away mid-run, the collector keeps
//! sampling into its spool and is itself restarted, then the aggregator comes back on the same
//! address and data directory and every sample arrives exactly once.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Server;
use kilowatch_collector::clock::Clock;
use kilowatch_collector::source::SimSource;
use kilowatch_model::Timestamp;
use kilowatch_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_a_collector_restart_lose_nothing() {
    let data = tempfile::tempdir().expect("tmp");
    let spool_dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(data.path()).await;
    let addr = s.addr;
    let start = Timestamp::parse_rfc3339("2025-05-05T08:00:00Z").expect("time");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let (a, stats) =
        common::agent(addr, vec![Box::new(SimSource::new(SimConfig { start, nodes: 2, ..SimConfig::default() }))], Duration::from_millis(100), Clock::scaled(start, 60.0), spool_dir.path());
    let running = tokio::spawn(a.run(rx));

    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The collector is stopped (and restarted below) while the aggregator is still away.
    let _ = stop.send(true);
    running.await.expect("agent");
    let cycles = stats.cycles.load(Ordering::Relaxed);
    assert!(stats.send_errors.load(Ordering::Relaxed) > 0, "the outage was seen");
    assert!(stats.spool_batches.load(Ordering::Relaxed) > 0, "batches waited in the spool");
    assert_eq!(stats.batches_dropped.load(Ordering::Relaxed), 0);

    let s = Server::start_on(data.path(), addr).await;
    let stats2 = common::drain_spool(addr, spool_dir.path()).await;
    assert_eq!(stats2.spool_batches.load(Ordering::Relaxed), 0, "the spool drained");

    // One sample per cycle for every series: none lost, none twice.
    let series = s.store.find_series("gpu", "energy_mj", &[("node", "dgx-001"), ("gpu", "0")]).expect("find");
    let samples = s.store.read_with_neighbours(series[0].id, 0, i64::MAX).expect("read");
    assert_eq!(samples.len() as u64, cycles, "samples stored vs cycles sampled");
    let sent = stats.batches_sent.load(Ordering::Relaxed) + stats2.batches_sent.load(Ordering::Relaxed);
    assert_eq!(sent, cycles, "every batch delivered once");
}
