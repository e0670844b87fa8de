//! The simulated site measured end to end: backfilled into the store, and live through the
//! real collector shipping line protocol over HTTP. KPIs must equal the simulator's ground truth.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Server, assert_close};
use kilowatch_aggregator::demo::backfill;
use kilowatch_collector::clock::Clock;
use kilowatch_collector::source::SimSource;
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_days_match_the_simulator() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // 2025-07-14 .. 2025-07-17 at 15 min: summer, evaporative cooling on hot afternoons.
    let start = Timestamp::parse_rfc3339("2025-07-14T00:00:00Z").expect("time");
    let end = Timestamp::parse_rfc3339("2025-07-17T00:00:00Z").expect("time");
    let mut site = Site::new(SimConfig { start, ..SimConfig::default() });
    let store = s.store.clone();
    let (site, written) = tokio::task::spawn_blocking(move || {
        let n = backfill(&store, &mut site, end, Duration::from_secs(900)).expect("backfill");
        (site, n)
    })
    .await
    .expect("join");
    assert!(written > 1_000_000, "{written} samples");
    let truth = site.truth();
    let k = s.kpi("2025-07-14T00:00:00Z", "2025-07-17T00:00:00Z").await;
    assert_close(&k["facility_energy_kwh"], truth.facility_kwh, "E_DC vs truth");
    assert_close(&k["it_energy_kwh"], truth.it_kwh, "E_IT vs truth");
    let pue = k["pue"].as_f64().expect("pue");
    assert!((1.05..1.4).contains(&pue), "PUE {pue}");
    assert_close(&k["pue"], truth.facility_kwh / truth.it_kwh, "PUE vs truth");
    if truth.water_m3 > 0.0 {
        assert_close(&k["water_m3"], truth.water_m3, "WIN vs truth");
    }
    let wue = k["wue_l_per_kwh"].as_f64().expect("wue");
    assert!((0.0..2.0).contains(&wue), "WUE {wue}");
    assert_eq!(k["data_quality"]["coverage_pct"], 100.0, "{}", k["data_quality"]);
    // A window that cuts readings in the middle is interpolated, never negative.
    let k = s.kpi("2025-07-15T10:07:30Z", "2025-07-15T13:52:30Z").await;
    assert!(k["pue"].as_f64().expect("pue") > 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_ships_the_simulator_over_http() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let start = Timestamp::parse_rfc3339("2025-03-10T12:00:00Z").expect("time");
    let cfg = SimConfig { start, nodes: 16, ..SimConfig::default() };
    let source = SimSource::new(cfg.clone());
    let marks = source.truth_marks();
    let (stop, rx) = tokio::sync::watch::channel(false);
    // 10 simulated minutes per real second.
    let (agent, stats) = common::agent(s.addr, vec![Box::new(source)], Duration::from_millis(100), Clock::scaled(start, 600.0), &dir.path().join("spool"));
    let task = tokio::spawn(agent.run(rx));
    // At least ten batches delivered, however loaded the machine is (bounded wait).
    for _ in 0..300 {
        if stats.batches_sent.load(Ordering::Relaxed) >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    task.await.expect("agent");
    // What was sampled but not yet sent when the collector stopped is in its spool.
    let drained = common::drain_spool(s.addr, &dir.path().join("spool")).await;
    assert_eq!(drained.spool_batches.load(Ordering::Relaxed), 0);
    let sent = stats.batches_sent.load(Ordering::Relaxed);
    assert!(sent >= 10, "{sent} batches sent");
    assert_eq!(stats.send_errors.load(Ordering::Relaxed), 0);
    assert_eq!(stats.batches_rejected.load(Ordering::Relaxed), 0);

    let gpus = s.store.find_series("gpu", "energy_mj", &[]).expect("find");
    assert_eq!(gpus.len(), 16 * 8, "every simulated GPU arrived");
    // The KPI between the first and the latest reading equals the simulator's own ground truth
    // at exactly those readings.
    let ((tf, f), (tl, l)) = (marks.first().expect("sampled"), marks.last().expect("sampled"));
    let k = s.kpi(&tf.to_rfc3339(), &tl.to_rfc3339()).await;
    let pue = k["pue"].as_f64().expect("pue");
    assert!((1.05..1.4).contains(&pue), "PUE {pue}");
    assert_close(&k["it_energy_kwh"], l.it_kwh - f.it_kwh, "E_IT vs truth");
    assert_close(&k["facility_energy_kwh"], l.facility_kwh - f.facility_kwh, "E_DC vs truth");
}
