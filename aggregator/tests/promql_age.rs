//! PromQL over data older than the raw retention: the part of a window before it is read from
//! roll-ups, one real sample per bucket (its last reading), and the answer says so in a
//! warning; where the roll-up keeps the very sample raw data had, the answer is the same. The
//! ledger's series are exact at every age: a window rolled up to minutes or hours answers the
//! same figures as when its raw samples were there, and `GET /api/v1/kpi`'s.

mod common;
#[path = "promql/serving.rs"]
mod serving;

use std::time::Duration;

use common::{READ, Server};
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::jobs::{JobStore, recorder};
use kilowatch_store::{Retention, Store};
use serde_json::Value;

const HOUR: i64 = 3_600_000_000_000;

fn unix(s: &str) -> String {
    (Timestamp::parse_rfc3339(s).expect("time").0 / 1_000_000_000).to_string()
}

async fn query(srv: &Server, q: &str, at: &str) -> Value {
    let r = reqwest::Client::new()
        .get(srv.url("/prometheus/api/v1/query"))
        .query(&[("query", q.to_owned()), ("time", unix(at))])
        .header("Authorization", format!("Bearer {READ}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_data_is_read_from_rollups_and_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let store = Store::open(dir.path()).expect("open");
        let mut site = Site::new(SimConfig { start: Timestamp::parse_rfc3339("2025-07-14T00:00:00Z").expect("t"), nodes: 2, ..SimConfig::default() });
        kilowatch_aggregator::demo::backfill(&store, &mut site, Timestamp::parse_rfc3339("2025-07-17T00:30:00Z").expect("t"), Duration::from_secs(60)).expect("backfill");
    }
    // One sample a minute: a minute bucket's last reading is the minute's only sample, and an
    // hour bucket's is the hour's last one.
    let probes = [("minute", "sum(gpu_power_w)", "2025-07-15T18:00:30Z"), ("hour", "sum(gpu_power_w)", "2025-07-14T10:59:30Z"), ("raw", "sum(gpu_power_w)", "2025-07-16T20:00:30Z")];
    let mut before = Vec::new();
    {
        let srv = Server::start(dir.path()).await;
        for (_, q, at) in probes {
            let body = query(&srv, q, at).await;
            assert!(body.get("warnings").is_none(), "raw data: no warning: {body}");
            assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(1), "{body}");
            before.push(body["data"]["result"].clone());
        }
        srv.stop().await;
    }
    {
        let store = Store::open(dir.path()).expect("open");
        store.maintain(&Retention { raw: 12 * HOUR, minute: 36 * HOUR, hour: None }, i64::MAX).expect("maintain");
        store.checkpoint().expect("checkpoint");
    }
    let srv = Server::start(dir.path()).await;
    for ((level, q, at), was) in probes.iter().zip(&before) {
        let body = query(&srv, q, at).await;
        assert_eq!(&body["data"]["result"], was, "{level}: {body}");
        let warnings = body["warnings"].as_array().map(|w| w.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default();
        if *level == "raw" {
            assert!(warnings.is_empty(), "{warnings}");
        } else {
            assert!(warnings.contains(&format!("{level} roll-ups")), "{level}: {body}");
        }
    }
}

/// A JSON answer of the ledger's API with a read token.
async fn api(srv: &Server, path: &str, params: &[(&str, String)]) -> Value {
    let r = reqwest::Client::new().get(srv.url(path)).query(params).header("Authorization", format!("Bearer {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

/// The ledger series of a window at `at` that `also` selects: (labels, value), sorted.
async fn ledger(srv: &Server, window: &str, at: &str, also: &str) -> Vec<(Value, f64)> {
    let body = query(srv, &format!("{{__name__=~\"kilowatch_.+\",window=\"{window}\"{also}}}"), at).await;
    let mut out: Vec<(Value, f64)> =
        body["data"]["result"].as_array().expect("vector").iter().map(|s| (s["metric"].clone(), s["value"][1].as_str().and_then(|v| v.parse().ok()).expect("value"))).collect();
    out.sort_by_key(|(l, _)| l.to_string());
    out
}

/// What rests on the inference server's GPU allocation: the models' series and the `serve:` job
/// of its tenant. Accounting reads a server's allocation from the `gpus` text readings of its
/// raw `inference` points, which roll-ups do not keep as runs: once they expire, `GET
/// /api/v1/models` and `GET /api/v1/jobs` themselves move (~1 % here, and the nested server
/// shows as a job of its own), so these series equal those answers at each age, not across ages.
const SERVING: &str = ",__name__!=\"kilowatch_model_energy_joules_per_token\",owner!=\"acme/chat\"";

/// The demo's site (two nodes, its jobs) and an inference server on dgx-001's GPU 0, a
/// minute apart for three days; an hour (hour roll-ups), a local day (hour and minute roll-ups)
/// and a day still raw answer the same ledger series after raw samples and minutes expire, and
/// the same PUE as `GET /api/v1/kpi`; the models' series equal `GET /api/v1/models` at each age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_series_are_the_same_at_every_age() {
    let dir = tempfile::tempdir().expect("tmp");
    let (start, until) = (Timestamp::parse_rfc3339("2025-07-14T00:00:00Z").expect("t"), Timestamp::parse_rfc3339("2025-07-17T00:30:00Z").expect("t"));
    {
        let store = Store::open(dir.path()).expect("open");
        let jobs = JobStore::open(dir.path()).expect("jobs");
        let mut site = Site::new(SimConfig { start, nodes: 2, ..SimConfig::default() });
        kilowatch_aggregator::demo::backfill_with_jobs(&store, Some(&jobs), &mut site, until, Duration::from_secs(60)).expect("backfill");
        let lines = serving::lines("dgx-001", "acme/chat", start.0 / 1_000_000_000, until.0 / 1_000_000_000, 60);
        store.write(&kilowatch_model::parse_lines(&lines, kilowatch_model::Precision::S, until).expect("lines")).expect("write");
        store.checkpoint().expect("checkpoint");
    }
    let probes = [("1h", "2025-07-14T11:00:00Z"), ("1d", "2025-07-15T00:00:00+02:00"), ("1d", "2025-07-16T00:00:00+02:00"), ("1d", "2025-07-17T00:00:00+02:00")];
    let mut before = Vec::new();
    {
        let srv = Server::start(dir.path()).await;
        for (window, at) in probes {
            let l = ledger(&srv, window, at, "").await;
            let names: std::collections::BTreeSet<&str> = l.iter().filter_map(|(m, _)| m["__name__"].as_str()).collect();
            for name in ["kilowatch_pue", "kilowatch_it_energy_kwh", "kilowatch_job_energy_kwh", "kilowatch_owner_energy_kwh", "kilowatch_model_energy_joules_per_token"] {
                assert!(names.contains(name), "{window} at {at}: no {name} in {names:?}");
            }
            before.push(ledger(&srv, window, at, SERVING).await);
        }
        srv.stop().await;
    }
    {
        let store = Store::open(dir.path()).expect("open");
        let jobs = JobStore::beside(&store).expect("jobs");
        store.maintain_with(&Retention { raw: 12 * HOUR, minute: 36 * HOUR, hour: None }, i64::MAX, &mut recorder(Some(&jobs))).expect("maintain");
        store.checkpoint().expect("checkpoint");
        let h = store.horizons().expect("horizons");
        assert!(h.raw_from > Timestamp::parse_rfc3339("2025-07-16T00:00:00Z").expect("t").0 && h.minute_from > Timestamp::parse_rfc3339("2025-07-15T00:00:00Z").expect("t").0, "{h:?}");
    }
    let srv = Server::start(dir.path()).await;
    for ((window, at), was) in probes.iter().zip(&before) {
        let now = ledger(&srv, window, at, SERVING).await;
        let mut diffs = Vec::new();
        for (l, w) in was {
            match now.iter().find(|(m, _)| m == l) {
                Some((_, v)) if (v - w).abs() <= 1e-9 * w.abs() => {}
                Some((_, v)) => diffs.push(format!("{l}: {v} after roll-up, {w} before")),
                None => diffs.push(format!("{l}: gone after roll-up")),
            }
        }
        diffs.extend(now.iter().filter(|(l, _)| !was.iter().any(|(m, _)| m == l)).map(|(l, v)| format!("{l}: {v} new after roll-up")));
        assert!(diffs.is_empty(), "{window} at {at}:\n{}", diffs.join("\n"));
        // And `GET /api/v1/kpi` for the same window, at its age.
        let end = Timestamp::parse_rfc3339(at).expect("t").0;
        let from = end - if *window == "1h" { HOUR } else { 24 * HOUR };
        let window_of = [("from", Timestamp(from).to_rfc3339()), ("to", Timestamp(end).to_rfc3339())];
        let (kpi, models) = (api(&srv, "/api/v1/kpi", &window_of).await, api(&srv, "/api/v1/models", &window_of).await);
        let per_token = &models["models"][0]["per_token"];
        let served = ledger(&srv, window, at, ",__name__=\"kilowatch_model_energy_joules_per_token\"").await;
        assert_eq!(served.len(), 6, "{window} at {at}: {served:?}");
        for (l, v) in &served {
            let field = if l["tokens"] == "all" { "j_per_token" } else { "j_per_generated_token" };
            let want = per_token[field][l["basis"].as_str().expect("basis")].as_f64().expect("figure");
            assert!((v - want).abs() <= 1e-9 * want, "{window} at {at} {l}: {v} vs /api/v1/models {want}");
        }
        let pue = now.iter().find(|(l, _)| l["__name__"] == "kilowatch_pue").map(|(_, v)| *v).expect("pue");
        let want = kpi["pue"].as_f64().expect("kpi pue");
        assert!((pue - want).abs() <= 1e-9 * want, "{window} at {at}: {pue} vs /api/v1/kpi {want}");
    }
}
