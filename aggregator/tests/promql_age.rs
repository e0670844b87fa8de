//! PromQL over data older than the raw retention: the part of a window before it is read from
//! roll-ups, one real sample per bucket (its last reading), and the answer says so in a
//! warning; where the roll-up keeps the very sample raw data had, the answer is the same.

mod common;

use std::time::Duration;

use common::{READ, Server};
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::{Retention, Store};
use serde_json::Value;

const HOUR: i64 = 3_600_000_000_000;

fn unix(s: &str) -> String {
    (Timestamp::parse_rfc3339(s).expect("time").0 / 1_000_000_000).to_string()
}

async fn query(srv: &Server, q: &str, at: &str) -> Value {
    let r = reqwest::Client::new().get(srv.url("/prometheus/api/v1/query")).query(&[("query", q.to_owned()), ("time", unix(at))]).header("Authorization", format!("Bearer {READ}")).send().await.expect("send");
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
