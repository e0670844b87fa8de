//! Webhooks end to end on loopback: Alertmanager v4 payload, HMAC, a receiver that fails
//! (500, then 429 with Retry-After) and recovers, restarts of the alerting side in between,
//! and every notification acknowledged exactly once. Also: the fallback receiver.

mod alerts_common;

use std::sync::Arc;

use kilowatch_aggregator::alerting;
use kilowatch_alerts::payload::verify;
use kilowatch_alerts::{AlertsConfig, ManualClock, Outbox};
use kilowatch_model::{Point, Timestamp};
use kilowatch_store::Store;

const SECRET: &str = "s3cret-for-the-test";

const RULES: &str = r#"
[[rule]]
name = "SupplyAirTooWarm"
metric = "cooling.supply_temp_c"
kind = "threshold"
op = ">"
threshold = 32.0
clear = 31.0
severity = "critical"
labels = { component = "cooling" }
annotations = { summary = "{{ $labels.unit }} at {{ $value }} °C" }
"#;

fn routing(url: &str, fallback_url: &str, max_attempts: u32) -> String {
    format!(
        r#"
[route]
receiver = "ops"
group_by = ["alertname"]
group_wait = "0s"
group_interval = "60s"
repeat_interval = "4h"
[[receiver]]
name = "ops"
url = "{url}"
hmac_secret = "{SECRET}"
backoff = "1s"
max_attempts = {max_attempts}
fallback = "backup"
[[receiver]]
name = "backup"
url = "{fallback_url}"
hmac_secret = "{SECRET}"
"#
    )
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(1_750_000_000 + s)
}

fn supply(v: f64, at: i64) -> Point {
    Point::new("cooling", t(at)).tag("site", "dc5").tag("unit", "cu-01").field("supply_temp_c", v)
}

struct Side {
    store: Arc<Store>,
    pipeline: kilowatch_alerts::Pipeline,
    deliverer: kilowatch_alerts::deliver::Deliverer,
}

/// What `kilowatch serve` does at start: open the store and the alert state from disk.
fn start(dir: &std::path::Path, cfg: &AlertsConfig, clock: &ManualClock) -> Side {
    let store = Arc::new(Store::open(dir).expect("store"));
    let (pipeline, deliverer) = alerting::open_pipeline(&store, cfg, Arc::new(clock.clone())).expect("pipeline");
    Side { store, pipeline, deliverer }
}

fn config(dir: &std::path::Path, routing_text: &str) -> AlertsConfig {
    std::fs::write(dir.join("rules.toml"), RULES).expect("rules");
    std::fs::write(dir.join("routing.toml"), routing_text).expect("routing");
    AlertsConfig { rules_file: Some(dir.join("rules.toml")), routing_file: Some(dir.join("routing.toml")), external_url: Some("http://kilowatch.test".into()), ..AlertsConfig::default() }
}

#[tokio::test]
async fn failing_receiver_restarts_and_exactly_once() {
    let (addr, rx) = alerts_common::start_receiver().await;
    let (baddr, backup) = alerts_common::start_receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(dir.path(), &routing(&format!("http://{addr}/hook"), &format!("http://{baddr}/hook"), 6));
    let clock = ManualClock::new(t(0));

    rx.fail_with(&[(500, None), (429, Some("3"))]);
    let mut side = start(dir.path(), &cfg, &clock);
    side.store.write(&[supply(35.0, 0)]).expect("write");
    let n = alerting::step(&side.store, &mut side.pipeline, &side.deliverer).await.expect("step");
    assert_eq!(n, 1, "one firing notification");
    assert_eq!(rx.all().len(), 1);
    assert_eq!(rx.all()[0].status, 500);

    // Restart with a delivery pending: it must come back from the outbox, not be re-made.
    drop(side);
    clock.advance_s(1);
    let mut side = start(dir.path(), &cfg, &clock);
    assert_eq!(alerting::step(&side.store, &mut side.pipeline, &side.deliverer).await.expect("step"), 0, "no new notification after restart");
    assert_eq!(rx.all().len(), 2, "retried after the 1 s backoff");
    assert_eq!(rx.all()[1].status, 429);
    // Retry-After: 3 is honoured over the 2 s backoff.
    clock.advance_s(2);
    side.deliverer.round().await.expect("round");
    assert_eq!(rx.all().len(), 2, "too early for Retry-After");
    drop(side);
    clock.advance_s(1);
    let mut side = start(dir.path(), &cfg, &clock);
    alerting::step(&side.store, &mut side.pipeline, &side.deliverer).await.expect("step");
    assert_eq!(rx.acknowledged().len(), 1, "delivered once the receiver recovered");

    // Resolve; a restart right after enqueueing, before any delivery round.
    clock.advance_s(60);
    side.store.write(&[supply(25.0, 64)]).expect("write");
    let now = clock_now(&clock);
    let samples = alerting::live_samples(&side.store, &side.pipeline.engine.rules, now).expect("samples");
    assert_eq!(side.pipeline.tick(&samples).expect("tick").len(), 1, "resolved notification enqueued");
    drop(side);
    let mut side = start(dir.path(), &cfg, &clock);
    for _ in 0..3 {
        clock.advance_s(60);
        alerting::step(&side.store, &mut side.pipeline, &side.deliverer).await.expect("step");
    }

    let acked = rx.acknowledged();
    assert_eq!(acked.len(), 2, "firing then resolved, each once: {:?}", acked.iter().map(|r| &r.id).collect::<Vec<_>>());
    assert_ne!(acked[0].id, acked[1].id);
    let all = rx.all();
    assert_eq!(all.iter().filter(|r| r.id == acked[0].id).count(), 3, "the first notification took three attempts, same id");
    assert_eq!(all.len(), 4, "500, 429, 200, then the resolved one: nothing repeated across three restarts");
    for r in rx.all() {
        let sig = r.signature.as_deref().expect("signed");
        assert!(verify(SECRET.as_bytes(), &r.raw, sig), "HMAC of {}", r.id);
        assert!(!verify(b"wrong", &r.raw, sig));
    }
    check_v4(&acked[0].body, "firing");
    check_v4(&acked[1].body, "resolved");
    assert!(backup.all().is_empty(), "the primary recovered: no fallback");
    let log = Outbox::open(dir.path()).expect("outbox").log(10).expect("log");
    assert!(log.iter().all(|d| d.status == "delivered"), "{log:?}");
}

fn clock_now(c: &ManualClock) -> Timestamp {
    use kilowatch_alerts::Clock;
    c.now()
}

/// Alertmanager's webhook payload, version 4: every field its receivers read.
fn check_v4(b: &serde_json::Value, status: &str) {
    assert_eq!(b["version"], "4");
    assert_eq!(b["status"], status);
    assert_eq!(b["receiver"], "ops");
    assert!(b["groupKey"].is_string());
    assert_eq!(b["truncatedAlerts"], 0);
    assert_eq!(b["groupLabels"]["alertname"], "SupplyAirTooWarm");
    assert_eq!(b["commonLabels"]["unit"], "cu-01");
    assert!(b["commonAnnotations"].is_object());
    assert_eq!(b["externalURL"], "http://kilowatch.test");
    let a = &b["alerts"][0];
    assert_eq!(b["alerts"].as_array().map(Vec::len), Some(1));
    assert_eq!(a["status"], status);
    assert_eq!(a["labels"]["alertname"], "SupplyAirTooWarm");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["annotations"]["summary"], if status == "firing" { "cu-01 at 35 °C" } else { "cu-01 at 25 °C" });
    let starts = a["startsAt"].as_str().expect("startsAt");
    assert_eq!(Timestamp::parse_rfc3339(starts).expect("rfc3339"), t(0));
    let ends = a["endsAt"].as_str().expect("endsAt");
    if status == "firing" {
        assert_eq!(ends, "0001-01-01T00:00:00Z");
    } else {
        assert!(Timestamp::parse_rfc3339(ends).expect("rfc3339") > t(0));
    }
    assert!(a["generatorURL"].as_str().is_some_and(|u| u.starts_with("http://kilowatch.test/")));
    assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));
}

#[tokio::test]
async fn a_primary_that_keeps_failing_hands_over_to_the_fallback() {
    let (addr, rx) = alerts_common::start_receiver().await;
    let (baddr, backup) = alerts_common::start_receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(dir.path(), &routing(&format!("http://{addr}/hook"), &format!("http://{baddr}/hook"), 3));
    let clock = ManualClock::new(t(0));
    rx.fail_with(&[(500, None); 10]);
    let mut side = start(dir.path(), &cfg, &clock);
    side.store.write(&[supply(35.0, 0)]).expect("write");
    alerting::step(&side.store, &mut side.pipeline, &side.deliverer).await.expect("step");
    for _ in 0..8 {
        clock.advance_s(5);
        side.deliverer.round().await.expect("round");
    }
    assert_eq!(rx.all().len(), 3, "max_attempts on the primary");
    let b = backup.acknowledged();
    assert_eq!(b.len(), 1, "the fallback got it once");
    assert_eq!(b[0].id, rx.all()[0].id, "same notification id, so receivers can dedup across both");
    assert_eq!(b[0].body["receiver"], "backup");
}
