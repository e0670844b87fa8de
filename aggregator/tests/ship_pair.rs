//! A collector with two `[[aggregator]]` endpoints, built from its configuration the way
//! `kilowatch-collector` builds it, shipping to two real aggregators on loopback. One of them
//! is stopped for a while: the other keeps receiving every batch as it is sampled, and once the
//! stopped one is back it catches up from its own spool, with nothing lost on either side.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Server, WRITE};
use kilowatch_collector::agent::{AgentStats, FanOut};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::source::SimSource;
use kilowatch_model::Timestamp;
use kilowatch_ship::{Spool, SpoolConfig};
use kilowatch_sim::SimConfig;

fn config(a: &str, b: &str, spool: &Path) -> CollectorConfig {
    let text = format!(
        "interval_s = 0.1\n\
         [[aggregator]]\nname = \"kw-a\"\nurl = \"http://{a}\"\ntoken = \"{WRITE}\"\ntimeout_s = 2.0\n\
         [[aggregator]]\nname = \"kw-b\"\nurl = \"http://{b}\"\ntoken = \"{WRITE}\"\ntimeout_s = 2.0\n\
         [spool]\ndir = {spool:?}\nfsync = \"never\"\n"
    );
    CollectorConfig::parse(&text, Path::new("collector-pair.toml")).expect("config")
}

async fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn samples(s: &Server) -> usize {
    let series = s.store.find_series("gpu", "energy_mj", &[("node", "dgx-001"), ("gpu", "0")]).expect("find");
    series.first().map_or(0, |x| s.store.read_with_neighbours(x.id, 0, i64::MAX).expect("read").len())
}

fn get(a: &Arc<AgentStats>, f: fn(&AgentStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    f(a).load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_down_never_delays_the_other_and_catches_up() {
    let (da, db, spool) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let a = Server::start(da.path()).await;
    let b = Server::start(db.path()).await;
    let b_addr = b.addr;
    let cfg = config(&a.addr.to_string(), &b_addr.to_string(), spool.path());
    let endpoints = kilowatch_collector::endpoint::open(&cfg, Path::new("collector-pair.toml")).expect("endpoints");
    assert_eq!(endpoints.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["kw-a", "kw-b"]);
    let (sa, sb) = (endpoints[0].stats.clone(), endpoints[1].stats.clone());
    let start = Timestamp::parse_rfc3339("2025-05-05T08:00:00Z").expect("time");
    let stats = Arc::new(AgentStats::default());
    let agent = FanOut {
        sources: vec![Box::new(SimSource::new(SimConfig { start, nodes: 2, ..SimConfig::default() }))],
        interval: Duration::from_secs_f64(cfg.interval_s),
        clock: Clock::scaled(start, 60.0),
        endpoints,
        stats: stats.clone(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(agent.run(rx));

    wait_for("both endpoints receive", 20, || get(&sa, |s| &s.batches_sent) >= 5 && get(&sb, |s| &s.batches_sent) >= 5).await;
    b.stop().await;
    // While B is away, A gets each batch as it is sampled: its spool never holds more than about
    // a second's batches (slack for a loaded CI machine), and what it stored keeps pace.
    let outage = Instant::now();
    let mut max_a_pending = 0;
    while outage.elapsed() < Duration::from_secs(3) {
        max_a_pending = max_a_pending.max(get(&sa, |s| &s.spool_batches));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cycles_in_outage = get(&stats, |s| &s.cycles);
    assert!(get(&sb, |s| &s.send_errors) > 0, "B's outage was seen");
    assert!(get(&sb, |s| &s.spool_batches) >= 10, "B's batches wait in B's spool: {}", get(&sb, |s| &s.spool_batches));
    assert!(max_a_pending <= 10, "A's spool held {max_a_pending} batches while B was down");
    wait_for("A holds what was sampled", 10, || samples(&a) as u64 >= cycles_in_outage).await;

    let b = Server::start_on(db.path(), b_addr).await;
    wait_for("B caught up from its spool", 60, || get(&sb, |s| &s.spool_batches) == 0 && samples(&b) as u64 >= get(&stats, |s| &s.cycles)).await;
    let _ = stop.send(true);
    running.await.expect("collector");
    // A batch sampled as the collector stopped waits in the spools: a restart sends it.
    let drained = common::drain_endpoints(&cfg).await;

    // Nothing lost, nothing twice, on either side; and both answer the same numbers.
    let cycles = get(&stats, |s| &s.cycles);
    assert_eq!(samples(&a) as u64, cycles, "A: samples stored vs cycles sampled");
    assert_eq!(samples(&b) as u64, cycles, "B: samples stored vs cycles sampled");
    for (s, d) in [&sa, &sb].into_iter().zip(&drained) {
        assert_eq!(get(s, |s| &s.batches_sent) + get(d, |s| &s.batches_sent), cycles, "every batch delivered once to each");
        assert_eq!(get(s, |s| &s.batches_dropped), 0);
        assert_eq!(get(d, |s| &s.spool_batches), 0);
    }
    let (from, to) = (start.to_rfc3339(), Timestamp(start.0 + 86_400_000_000_000).to_rfc3339());
    let (ka, kb) = (a.kpi(&from, &to).await, b.kpi(&from, &to).await);
    assert!(ka["it_energy_kwh"].as_f64().is_some_and(|v| v > 0.0), "{ka}");
    for key in ["facility_energy_kwh", "it_energy_kwh", "water_m3", "pue"] {
        assert_eq!(ka[key], kb[key], "{key}: A {} B {}", ka[key], kb[key]);
    }
}

/// A collector that had one endpoint and now has two hands the batches still in its old spool
/// to both endpoints' spools.
#[test]
fn the_single_endpoint_spool_is_adopted_by_every_endpoint() {
    let spool = tempfile::tempdir().expect("tmp");
    let mut old = Spool::open(SpoolConfig { dir: spool.path().to_owned(), ..SpoolConfig::default() }).expect("old spool");
    for i in 0..5 {
        old.append(format!("meter,site=dc5,meter=grid-a,role=facility energy_kwh={i} {i}000000000\n").as_bytes()).expect("append");
    }
    drop(old);
    let cfg = config("127.0.0.1:1", "127.0.0.1:2", spool.path());
    let endpoints = kilowatch_collector::endpoint::open(&cfg, Path::new("collector-pair.toml")).expect("endpoints");
    for mut e in endpoints {
        assert_eq!(e.spool.pending_records(), 5, "{}", e.name);
        let first = e.spool.peek(1).expect("peek");
        assert!(String::from_utf8_lossy(&first[0]).contains("energy_kwh=0 "), "oldest first");
    }
    let left: Vec<_> = std::fs::read_dir(spool.path()).expect("dir").flatten().filter(|e| e.path().is_file()).map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the old spool's files are gone: {left:?}");
}
