//! The store's own limits over HTTP, as a collector meets them: a full memory budget answers
//! 503 with `Retry-After` until a checkpoint frees it, and a burst of new series answers 429
//! naming the cap, the lines of existing series being stored meanwhile.

mod common;

use common::{READ, Server, WRITE};
use kilowatch_aggregator::config::Config;

const T0: i64 = 1_790_812_800;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_budget_writes_get_503_until_a_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::default();
    cfg.store.memory_budget_mb = 1;
    let s = Server::start_with(dir.path(), "127.0.0.1:0".parse().expect("addr"), cfg, true).await;
    // About 1.4 MB of noisy samples (full-precision values, 9 bytes or so each once packed)
    // of four series: in, and over the budget.
    let now = kilowatch_model::Timestamp::now().0 / 1_000_000_000;
    let body: String = (0..150_000i64).map(|i| format!("gpu,gpu={} power_w={} {}\n", i % 4, (i as f64 * 0.7).sin() * 1000.0, now - 150_000 + i)).collect();
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let r = s.write(&format!("gpu,gpu=0 power_w=1 {now}"), "s", WRITE).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let text = r.text().await.expect("body");
    assert!(text.contains("[store] memory_budget_mb"), "{text}");
    let m = s.get("/metrics").await.text().await.expect("metrics");
    assert!(m.contains("kilowatch_store_memory_budget_bytes 1048576"), "{m}");
    // The checkpointer's job, done here: the samples go to chunks and memory is free again.
    s.store.checkpoint().expect("checkpoint");
    assert_eq!(s.write(&format!("gpu,gpu=0 power_w=1 {now}"), "s", WRITE).await.status(), 204);
    let id = s.store.find_series("gpu", "power_w", &[("gpu", "1")]).expect("find")[0].id;
    assert_eq!(s.store.read_with_neighbours(id, i64::MIN, i64::MAX).expect("read").len(), 37_500);
    let _ = READ;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_series_gets_429_naming_the_cap() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::default();
    cfg.store.max_new_series_per_minute_per_token = 10;
    cfg.store.out_of_order_window_s = 100 * 365 * 86_400;
    cfg.store.max_future_skew_s = 100 * 365 * 86_400;
    let s = Server::start_with(dir.path(), "127.0.0.1:0".parse().expect("addr"), cfg, true).await;
    // A tag that changes on every line (a request id put in a tag by mistake).
    let body: String = (0..25).map(|i| format!("inference,model=llama,request=r{i} tokens=12 {}\n", T0 + i)).collect();
    let r = s.write(&body, "s", WRITE).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!((v["accepted"].as_u64(), v["refused"].as_u64()), (Some(10), Some(15)), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("[store] max_new_series_per_minute_per_token")), "{v}");
    // The series that exist are written whatever the cap.
    let again: String = (0..10).map(|i| format!("inference,model=llama,request=r{i} tokens=13 {}\n", T0 + 100 + i)).collect();
    assert_eq!(s.write(&again, "s", WRITE).await.status(), 204);
    let m = s.get("/metrics").await.text().await.expect("metrics");
    assert!(m.contains(r#"kilowatch_ingest_lines_refused_total{reason="max_new_series_per_minute_per_token"} 15"#), "{m}");
    assert!(m.contains(r#"kilowatch_ingest_requests_total{outcome="throttled"} 1"#), "{m}");
}
