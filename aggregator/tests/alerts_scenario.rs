//! The default rule pack and the example routing against the simulated site with a humid heat
//! wave and the failure of cooling unit cu-03 injected: the expected alerts fire, and
//! inhibition keeps the GPU temperature alerts of the nodes cu-03 cools out of every
//! notification. Run with --nocapture to see what fired.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kilowatch_aggregator::alerting;
use kilowatch_alerts::engine::AlertStatus;
use kilowatch_alerts::{AlertsConfig, ManualClock};
use kilowatch_model::Timestamp;
use kilowatch_sim::{PointBuf, Scenario, SimConfig, Site};
use kilowatch_store::Store;

#[tokio::test]
async fn heat_wave_and_cooling_failure() {
    let start = Timestamp::parse_rfc3339("2025-07-15T10:00:00Z").expect("t");
    let scenario = Scenario::named("both", start).expect("scenario");
    // dgx-025..dgx-056: cooled by cu-02 (025–032), cu-03 (033–048) and cu-04 (049–056).
    let mut site = Site::new(SimConfig { start, first_node: 25, nodes: 32, scenario, ..SimConfig::default() });
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let cfg = AlertsConfig { routing_file: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/alerts/routing.toml")), ..AlertsConfig::default() };
    let clock = ManualClock::new(start);
    let (mut pipeline, _deliverer) = alerting::open_pipeline(&store, &cfg, Arc::new(clock.clone())).expect("pipeline");

    let mut buf = PointBuf::new();
    let mut notified: Vec<kilowatch_alerts::Notification> = Vec::new();
    let mut first_fired: BTreeMap<String, String> = BTreeMap::new();
    for step in 0..=(3 * 60) {
        let t = Timestamp(start.0 + step * 60 * 1_000_000_000);
        site.advance_to(t);
        site.fill_points(&mut buf);
        store.write(buf.points()).expect("write");
        clock.set(t);
        let samples = alerting::live_samples(&store, &pipeline.engine.rules, t).expect("samples");
        notified.extend(pipeline.tick(&samples).expect("tick"));
        for a in pipeline.engine.alerts().filter(|a| a.status == AlertStatus::Firing) {
            let key = format!("{}/{}", a.labels["alertname"], a.labels["severity"]);
            first_fired.entry(key).or_insert_with(|| format!("{} (+{} min)", t.to_rfc3339(), step));
        }
    }

    let firing: Vec<_> = pipeline.engine.alerts().filter(|a| a.status == AlertStatus::Firing).collect();
    let muted = &pipeline.dispatcher.state.muted;
    let mut table: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for a in &firing {
        let e = table.entry(format!("{}/{}", a.labels["alertname"], a.labels["severity"])).or_default();
        e.0 += 1;
        e.1 += usize::from(muted.contains_key(&a.fingerprint));
    }
    println!("firing at {} (alertname/severity: firing, of which muted; first fired):", clock_now(&clock).to_rfc3339());
    for (k, (n, m)) in &table {
        println!("  {k:40} {n:4} {m:4}   {}", first_fired.get(k).map(String::as_str).unwrap_or(""));
    }
    let sent: BTreeMap<String, usize> = notified.iter().flat_map(|n| n.alerts.iter()).fold(BTreeMap::new(), |mut m, a| {
        *m.entry(format!("{}/{}", a.labels["alertname"], a.labels["severity"])).or_default() += 1;
        m
    });
    println!("notifications: {}; alerts in them: {sent:?}", notified.len());

    let fires = |name: &str| firing.iter().any(|a| a.labels["alertname"] == name);
    assert!(fires("CoolingUnitFailure"), "cu-03 stopped");
    assert!(firing.iter().any(|a| a.labels["alertname"] == "CoolingUnitFailure" && a.labels.get("unit").map(String::as_str) == Some("cu-03")));
    assert!(fires("SupplyAirTooWarm"), "the failed unit's aisle, and the heat wave");
    // The GPUs cu-03 cools are hot…
    let hot_gpus: Vec<_> = firing.iter().filter(|a| a.labels["alertname"] == "GpuThermalMarginLow").collect();
    assert!(!hot_gpus.is_empty(), "GPU margins collapse behind the failed unit");
    for a in &hot_gpus {
        let node = a.labels["node"].as_str();
        assert!(("dgx-033"..="dgx-048").contains(&node), "only cu-03's nodes run hot: {node}");
        // …and every one of them is muted by the unit's failure (or by its own critical).
        assert!(muted.get(&a.fingerprint).is_some_and(|w| w.contains("inhibited by")), "{node} GPU {} not inhibited", a.labels["gpu"]);
    }
    assert!(hot_gpus.iter().any(|a| muted[&a.fingerprint].contains("CoolingUnitFailure")));
    // Not one GPU alert reached a receiver.
    for n in &notified {
        for a in &n.alerts {
            assert_ne!(a.labels.get("component").map(String::as_str), Some("gpu"), "GPU alert notified: {:?}", a.labels);
        }
    }
    assert!(sent.contains_key("CoolingUnitFailure/critical"));
}

fn clock_now(c: &ManualClock) -> Timestamp {
    use kilowatch_alerts::Clock;
    c.now()
}
