//! Nothing lost, nothing counted twice: the aggregator goes away mid-run, the collector keeps
//! sampling into its spool and is itself restarted, then the aggregator comes back on the same
//! address and data directory and every sample arrives exactly once.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Server, WRITE};
use kilowatch_collector::agent::{Agent, AgentStats};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::ship::{Shipper, ShipperConfig};
use kilowatch_collector::source::{SimSource, Source, SourceError};
use kilowatch_collector::spool::{Fsync, Spool, SpoolConfig};
use kilowatch_model::{Point, Timestamp};
use kilowatch_sim::SimConfig;

struct Nothing;
impl Source for Nothing {
    fn name(&self) -> &str {
        "nothing"
    }
    fn sample(&mut self, _: Timestamp) -> Result<Vec<Point>, SourceError> {
        Ok(Vec::new())
    }
}

fn agent(addr: std::net::SocketAddr, spool_dir: &std::path::Path, source: Box<dyn Source>, stats: Arc<AgentStats>, clock: Clock) -> Agent {
    Agent {
        sources: vec![source],
        shipper: Shipper::new(&ShipperConfig { url: format!("http://{addr}"), token: WRITE.into(), org: None, bucket: None, timeout: Duration::from_secs(2) }).expect("shipper"),
        interval: Duration::from_millis(100),
        clock,
        spool: Spool::open(SpoolConfig { dir: spool_dir.to_owned(), fsync: Fsync::Always, ..SpoolConfig::default() }).expect("spool"),
        stats,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_and_a_collector_restart_lose_nothing() {
    let data = tempfile::tempdir().expect("tmp");
    let spool_dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(data.path()).await;
    let addr = s.addr;
    let start = Timestamp::parse_rfc3339("2025-05-05T08:00:00Z").expect("time");
    let stats = Arc::new(AgentStats::default());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let a = agent(addr, spool_dir.path(), Box::new(SimSource::new(SimConfig { start, nodes: 2, ..SimConfig::default() })), stats.clone(), Clock::scaled(start, 60.0));
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
    let stats2 = Arc::new(AgentStats::default());
    let (stop2, rx2) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(agent(addr, spool_dir.path(), Box::new(Nothing), stats2.clone(), Clock::Wall).run(rx2));
    for _ in 0..100 {
        if stats2.spool_batches.load(Ordering::Relaxed) == 0 && stats2.batches_sent.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop2.send(true);
    running.await.expect("agent");
    assert_eq!(stats2.spool_batches.load(Ordering::Relaxed), 0, "the spool drained");

    // One sample per cycle for every series: none lost, none twice.
    let series = s.store.find_series("gpu", "energy_mj", &[("node", "dgx-001"), ("gpu", "0")]).expect("find");
    let samples = s.store.read_with_neighbours(series[0].id, 0, i64::MAX).expect("read");
    assert_eq!(samples.len() as u64, cycles, "samples stored vs cycles sampled");
    let sent = stats.batches_sent.load(Ordering::Relaxed) + stats2.batches_sent.load(Ordering::Relaxed);
    assert_eq!(sent, cycles, "every batch delivered once");
}
