//! Clocks and limits on what clients send, through the real server and the real collector: a
//! node whose clock jumps a year ahead and back keeps delivering, "now" stays at the wall
//! clock, charts survive samples at the end of time, a store poisoned by an old future sample
//! heals and can be cleaned with the admin API, series and name limits answer as documented,
//! and query dates beyond 64-bit nanoseconds are refused.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use common::{ADMIN, READ, Server, WRITE};
use kilowatch_aggregator::alerting;
use kilowatch_aggregator::config::Config;
use kilowatch_alerts::{AlertsConfig, ManualClock};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::source::{Sampling, Source};
use kilowatch_model::{Point, Timestamp};
use kilowatch_store::Store;
use serde_json::json;
use tokio::sync::watch;

const S: i64 = 1_000_000_000;
const YEAR: i64 = 365 * 86_400 * S;
const SKEW: i64 = 300 * S;

/// A node whose clock is `offset` ns off: its samples carry the wrong time.
struct SkewedNode {
    offset: Arc<AtomicI64>,
    /// Lines sampled while the clock was ahead by more than the allowed skew.
    ahead: Arc<AtomicU64>,
}

impl Source for SkewedNode {
    fn name(&self) -> &str {
        "skewed node"
    }
    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move {
            let offset = self.offset.load(Ordering::SeqCst);
            let t = now.saturating_add_ns(offset);
            let pts = vec![
                Point::new("gpu", t).tag("node", "dgx-skew").tag("gpu", "0").field("temp_c", 61.0).field("power_w", 500.0),
                Point::new("meter", t).tag("meter", "grid-a").tag("role", "facility").field("power_w", 1_000_000.0),
            ];
            if offset > SKEW {
                self.ahead.fetch_add(pts.len() as u64, Ordering::SeqCst);
            }
            Ok(pts)
        })
    }
}

async fn server(dir: &std::path::Path) -> Server {
    Server::start_with(dir, "127.0.0.1:0".parse().expect("addr"), Config::default(), true).await
}

async fn json(r: reqwest::Response) -> serde_json::Value {
    let status = r.status();
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// Every sample of a series, (ts, value).
fn all(store: &Store, m: &str, f: &str, tags: &[(&str, &str)]) -> Vec<i64> {
    let ids = store.find_series(m, f, tags).expect("find");
    assert_eq!(ids.len(), 1, "{m} {f}");
    store.read_with_neighbours(ids[0].id, i64::MIN, i64::MAX).expect("read").into_iter().map(|(t, _)| t).collect()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The timestamp of an RFC 3339 text, ns.
fn ns(v: &serde_json::Value) -> i64 {
    Timestamp::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).expect("rfc3339").0
}

/// "Now" as the live views show it is within the allowed skew of the wall clock.
async fn live_views_at_wall_clock(s: &Server) {
    let wall = Timestamp::now().0;
    let kpi = json(s.get("/api/v1/kpi?period=live").await).await;
    let to = ns(&kpi["to"]);
    assert!((to - wall).abs() <= SKEW + 60 * S, "live KPIs end at {} for a wall clock at {}", kpi["to"], Timestamp(wall).to_rfc3339());
    let o = json(s.get("/dashboard/overview.json").await).await;
    let data_time = ns(&o["data_time"]);
    assert!(data_time <= wall + SKEW + 60 * S, "dashboard data_time {} ahead of the clock", o["data_time"]);
    let p = json(s.get("/dashboard/power.json?range=1h").await).await;
    let last_ms = p.as_array().and_then(|a| a.first()).and_then(|s| s["points"].as_array()).and_then(|p| p.last()).and_then(|p| p[0].as_i64()).expect("a power series");
    assert!((last_ms * 1_000_000 - wall).abs() <= SKEW + 60 * S, "the power chart ends at {last_ms} ms for a wall clock at {wall} ns");
}

#[tokio::test]
async fn a_node_whose_clock_jumps_a_year_ahead_and_back_keeps_delivering() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = server(&dir.path().join("agg")).await;
    let offset = Arc::new(AtomicI64::new(0));
    let ahead = Arc::new(AtomicU64::new(0));
    let node = SkewedNode { offset: offset.clone(), ahead: ahead.clone() };
    let (agent, stats) = common::agent(s.addr, vec![Box::new(node)], Duration::from_millis(100), Clock::Wall, &dir.path().join("spool"));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(agent.run(rx));

    let sent = |n: u64| {
        let st = stats.clone();
        move || st.batches_sent.load(Ordering::SeqCst) >= n && st.spool_batches.load(Ordering::SeqCst) == 0
    };
    wait_for("first batches", sent(3)).await;
    offset.store(YEAR, Ordering::SeqCst);
    let jumped = Timestamp::now().0;
    let before = stats.batches_sent.load(Ordering::SeqCst);
    wait_for("batches from the year ahead", sent(before + 5)).await;
    offset.store(0, Ordering::SeqCst);
    let back = Timestamp::now().0;
    let before = stats.batches_sent.load(Ordering::SeqCst);
    wait_for("batches after the clock came back", sent(before + 3)).await;
    let _ = stop.send(true);
    task.await.expect("agent");
    // A batch sampled as the agent stopped is sent by the next start, as a restart would.
    let rest = common::drain_spool(s.addr, &dir.path().join("spool")).await;
    assert_eq!(rest.lines_refused.load(Ordering::SeqCst), 0, "the clock was back: nothing refused");

    // Nothing lost but the lines from the future, and those are counted.
    assert!(ahead.load(Ordering::SeqCst) >= 10, "the node sent lines from the future");
    assert_eq!(stats.lines_refused.load(Ordering::SeqCst), ahead.load(Ordering::SeqCst), "every line from the future counted as refused");
    assert_eq!(stats.batches_rejected.load(Ordering::SeqCst), 0);
    assert_eq!(stats.batches_dropped.load(Ordering::SeqCst), 0);
    let temps = all(&s.store, "gpu", "temp_c", &[("node", "dgx-skew")]);
    assert!(temps.iter().all(|t| *t <= Timestamp::now().0 + SKEW), "no sample from the future stored");
    assert!(temps.iter().any(|t| *t < jumped) && temps.iter().any(|t| *t >= back), "samples before the jump and after the return: {temps:?}");
    assert_eq!(temps.len() as u64 * 2, stats.points.load(Ordering::SeqCst) - ahead.load(Ordering::SeqCst), "every line with a good clock stored");
    live_views_at_wall_clock(&s).await;

    // Its absence alert works: ten minutes of silence after the return, and the node is missed
    // (a series holding a sample from a year ahead would have looked fresh for a year).
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rule]]\nname = \"NodeSilent\"\nmetric = \"gpu.temp_c\"\nkind = \"absent\"\nstale_after = \"5m\"\n").expect("rules");
    let cfg = AlertsConfig { rules_file: Some(rules), ..AlertsConfig::default() };
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let (mut p, d) = alerting::open_pipeline(&s.store, &cfg, clock.clone()).expect("pipeline");
    let silent = |alerts: &serde_json::Value| alerts["alerts"].as_array().expect("alerts").iter().any(|a| a["alert"]["labels"]["node"] == "dgx-skew");
    alerting::step(&s.store, &mut p, &d).await.expect("step");
    assert!(!silent(&json(s.get("/api/v1/alerts").await).await), "not absent while it sends");
    clock.set(Timestamp(Timestamp::now().0 + 600 * S));
    alerting::step(&s.store, &mut p, &d).await.expect("step");
    let alerts = json(s.get("/api/v1/alerts").await).await;
    assert!(silent(&alerts), "absent after ten minutes of silence: {alerts}");
    s.stop().await;
}

#[tokio::test]
async fn a_write_at_the_end_of_time_is_refused_and_charts_still_answer() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = server(dir.path()).await;
    let now = Timestamp::now().0;
    let body =
        format!("meter,meter=grid-a,role=facility power_w=1000000 {now}\nmeter,meter=grid-a,role=facility power_w=1000000 {}\ngpu,node=dgx-001,gpu=0 power_w=500,temp_c=60 {}\n", i64::MAX, now + YEAR);
    let r = s.write(&body, "ns", WRITE).await;
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.expect("json");
    assert_eq!((e["line"].as_u64(), e["refused"].as_u64(), e["accepted"].as_u64()), (Some(2), Some(2), Some(1)), "{e}");
    let msg = e["message"].as_str().expect("message");
    assert!(msg.contains("ahead of the server's clock") && msg.contains("max_future_skew_s"), "{msg}");
    assert_eq!(e["errors"][1]["line"], 3, "{e}");
    for path in [
        "/dashboard/overview.json",
        "/dashboard/power.json?range=1h",
        "/dashboard/power.json?range=30d",
        "/dashboard/climate.json?range=24h",
        "/dashboard/cooling.json?range=7d",
        "/dashboard/water.json?range=30d",
        "/dashboard/gpus.json",
        "/api/v1/kpi?period=live",
        "/api/v1/kpi?period=day",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap_or_default());
    }
    live_views_at_wall_clock(&s).await;
    s.stop().await;
}

/// A store written before the skew limit existed holds a sample from the far future: its
/// series still takes new samples, "now" stays at the wall clock, charts answer, and the
/// admin API deletes the bad sample; read and plain write tokens may not.
#[tokio::test]
async fn a_store_poisoned_by_a_future_sample_heals_and_the_admin_api_cleans_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let now = Timestamp::now().0;
    let far = i64::MAX;
    {
        let store = Store::open(dir.path()).expect("open");
        let m = |t: i64, v: f64| Point::new("meter", Timestamp(t)).tag("meter", "grid-a").tag("role", "facility").field("power_w", v);
        let g = |t: i64| Point::new("gpu", Timestamp(t)).tag("node", "dgx-001").tag("gpu", "0").field("temp_c", 60.0).field("power_w", 500.0);
        store.write(&[m(now - 600 * S, 1e6), g(now - 600 * S), m(far, 9e9), g(now + YEAR)]).expect("write without a policy");
        store.checkpoint().expect("checkpoint");
    }
    let s = server(dir.path()).await;
    let t = Timestamp::now().0;
    let r = s.write(&format!("meter,meter=grid-a,role=facility power_w=1100000 {t}\ngpu,node=dgx-001,gpu=0 temp_c=62,power_w=510 {t}\n"), "ns", WRITE).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    for path in [
        "/dashboard/power.json?range=1h",
        "/dashboard/power.json?range=7d",
        "/dashboard/water.json?range=24h",
        "/dashboard/gpus.json",
        "/dashboard/gpus/dgx-001/0?range=1h",
        "/dashboard/gpus/dgx-001?range=24h",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap_or_default());
    }
    live_views_at_wall_clock(&s).await;
    // The window counts from the clock plus the skew, not from the sample of the year 2262.
    let r = s.write(&format!("meter,meter=grid-a,role=facility power_w=1 {}\n", t - 72 * 3600 * S), "ns", WRITE).await;
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.expect("json");
    let msg = e["errors"][0]["message"].as_str().expect("message");
    assert!(msg.contains("counts as") && msg.contains("2262-04-11T23:47:16.854775807Z"), "{msg}");

    let http = reqwest::Client::new();
    let selector = json!({ "measurement": "meter", "tags": { "meter": "grid-a" }, "field": "power_w", "from": Timestamp(t + SKEW).to_rfc3339() });
    let delete = |token: Option<&'static str>, body: serde_json::Value| {
        let mut r = http.post(s.url("/api/v1/admin/delete")).json(&body);
        if let Some(tok) = token {
            r = r.header("Authorization", format!("Token {tok}"));
        }
        r.send()
    };
    assert_eq!(delete(None, selector.clone()).await.expect("send").status(), 401);
    assert_eq!(delete(Some(READ), selector.clone()).await.expect("send").status(), 403);
    assert_eq!(delete(Some(WRITE), selector.clone()).await.expect("send").status(), 403);
    assert_eq!(all(&s.store, "meter", "power_w", &[("meter", "grid-a")]).last(), Some(&far), "refused deletions deleted nothing");
    let bad = delete(Some(ADMIN), json!({ "measurement": "meter", "from": "0001-01-01T00:00:00Z" })).await.expect("send");
    assert_eq!(bad.status(), 400);
    let d = json(delete(Some(ADMIN), selector).await.expect("send")).await;
    assert_eq!(d["deleted"]["series"], 1, "{d}");
    assert_eq!(d["deleted"]["samples"], 1, "{d}");
    assert_eq!(all(&s.store, "meter", "power_w", &[("meter", "grid-a")]), vec![now - 600 * S, t], "only the sample from the future went");
    let id = s.store.find_series("meter", "power_w", &[("meter", "grid-a")]).expect("find")[0].id;
    assert_eq!(s.store.latest(&[id]).expect("latest")[0].as_ref().map(|(ts, _)| *ts), Some(t), "the series' newest is found again");
    // The GPU's year-ahead sample, by tags and a range with an end.
    let d = json(
        delete(Some(ADMIN), json!({ "measurement": "gpu", "tags": { "node": "dgx-001" }, "from": Timestamp(t + SKEW).to_rfc3339(), "to": Timestamp(now + 2 * YEAR).to_rfc3339() }))
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((d["deleted"]["series"].as_u64(), d["deleted"]["samples"].as_u64()), (Some(2), Some(2)), "{d}");
    let newest = s.store.stats().expect("stats").newest_ts.expect("newest");
    assert!(newest <= Timestamp::now().0, "the store's newest is back at the wall clock: {}", Timestamp(newest).to_rfc3339());
    // Deleted for good: not back after a restart that replays nothing.
    s.stop().await;
    let s = server(dir.path()).await;
    assert_eq!(all(&s.store, "meter", "power_w", &[("meter", "grid-a")]), vec![now - 600 * S, t]);
    assert!(s.store.stats().expect("stats").newest_ts.is_some_and(|n| n <= Timestamp::now().0));
    s.stop().await;
}

#[tokio::test]
async fn series_and_name_limits_refuse_the_line_and_name_the_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = Config::default();
    cfg.store.max_series = 3;
    cfg.store.max_name_bytes = 16;
    let s = Server::start_with(dir.path(), "127.0.0.1:0".parse().expect("addr"), cfg, true).await;
    let t = Timestamp::now().0;
    let long = "x".repeat(17);
    let body = format!("m,k=a v=1 {t}\nm,k={long} v=1 {t}\nm,k=b v=1,w=2 {t}\nm,k=c v=1 {t}\nm,k=a v=2 {}\n", t + S);
    let r = s.write(&body, "ns", WRITE).await;
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.expect("json");
    assert_eq!((e["line"].as_u64(), e["refused"].as_u64(), e["accepted"].as_u64()), (Some(2), Some(2), Some(3)), "{e}");
    let name = e["errors"][0]["message"].as_str().expect("message");
    assert!(name.contains("17 bytes") && name.contains("limit of 16 bytes") && name.contains("max_name_bytes"), "{name}");
    assert_eq!(e["errors"][1]["line"], 4, "{e}");
    let series = e["errors"][1]["message"].as_str().expect("message");
    assert!(series.contains("limit of 3 series") && series.contains("max_series"), "{series}");
    assert_eq!(s.store.stats().expect("stats").series, 3, "m,k=a v; m,k=b v and w");
    assert_eq!(all(&s.store, "m", "v", &[("k", "a")]).len(), 2, "an existing series still takes samples at the limit");
    s.stop().await;
}

#[tokio::test]
async fn query_dates_beyond_64_bit_nanoseconds_answer_400_naming_the_range() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = server(dir.path()).await;
    for path in [
        "/api/v1/kpi?from=0001-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "/api/v1/kpi?from=2026-01-01T00:00:00Z&to=2300-01-01T00:00:00Z",
        "/api/v1/jobs?from=0001-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "/api/v1/kpi?period=day&at=0001-01-01T00:00:00Z",
        "/api/v1/kpi?period=year&year=0001",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let e: serde_json::Value = r.json().await.expect("json");
        let msg = e["message"].as_str().expect("message");
        assert!(msg.contains("1677-09-21") && msg.contains("2262-04-11"), "{path}: {msg}");
    }
    s.stop().await;
}
