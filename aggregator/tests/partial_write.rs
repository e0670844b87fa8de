//! One bad line costs that line only (issue 31 item 1): the valid lines of a request are
//! stored, the bad ones are named in the answer, counted in `/metrics`, and a restart replays
//! exactly what was stored.

mod common;

use common::{Server, WRITE};

// 2026-10-01T00:00:00Z, in seconds.
const T0: i64 = 1_790_812_800;

/// The lines of a node's batch that a hostile inference page spoiled, among good ones.
fn spoiled_batch() -> String {
    let huge = "x".repeat(100_000);
    [
        format!("gpu,node=n1,gpu=0 energy_mj=1000i,power_w=300 {T0}"),
        format!("inference,node=n1,model= prompt_tokens=5 {T0}"),
        format!("inference,node=n1,model=a\tb prompt_tokens=5 {T0}"),
        format!("inference,node=n1,model=a\\ prompt_tokens=5 {T0}"),
        format!("gpu,node=n1,gpu=1 energy_mj=2000i,power_w=310 {T0}"),
        format!("inference,node=n1,model={huge}\u{1} prompt_tokens=5 {T0}"),
        format!("node,node=n1 energy_j=5,power_w=8000 {T0}"),
        format!("gpu,node=n1,gpu=2 power_w=oops {T0}"),
    ]
    .join("\n")
}

fn series(s: &Server, measurement: &str, field: &str) -> usize {
    s.store.find_series(measurement, field, &[]).expect("find").len()
}

async fn refused_unparsable(s: &Server) -> f64 {
    let text = s.get("/metrics").await.text().await.expect("metrics");
    text.lines().find_map(|l| l.strip_prefix("kilowatch_ingest_lines_refused_total{reason=\"unparsable\"} ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn the_good_lines_of_a_request_are_stored_and_the_bad_ones_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let r = s.write(&spoiled_batch(), "s", WRITE).await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.expect("body");
    assert!(text.len() < 8_000, "a refused line's content is not echoed back: {} bytes", text.len());
    let e: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!((e["refused"].as_u64(), e["accepted"].as_u64(), e["line"].as_u64()), (Some(5), Some(3), Some(2)), "{e}");
    let named: Vec<u64> = e["errors"].as_array().expect("errors").iter().map(|x| x["line"].as_u64().expect("line")).collect();
    assert_eq!(named, [2, 3, 4, 6, 8], "{e}");
    assert!(e["errors"].as_array().expect("errors").iter().all(|x| x["message"].as_str().is_some_and(|m| m.starts_with("unable to parse"))), "{e}");
    // Both good GPUs and the node arrived; nothing of the bad lines did.
    assert_eq!((series(&s, "gpu", "energy_mj"), series(&s, "gpu", "power_w"), series(&s, "node", "energy_j")), (2, 2, 1));
    assert_eq!(series(&s, "inference", "prompt_tokens"), 0);
    assert_eq!(refused_unparsable(&s).await, 5.0);

    // A body with no good line is refused whole, in the same shape.
    let r = s.write(&format!("this is not line protocol\nm,t= v=1 {T0}\n"), "s", WRITE).await;
    assert_eq!(r.status(), 400);
    let e: serde_json::Value = r.json().await.expect("json");
    assert_eq!((e["refused"].as_u64(), e["accepted"].as_u64(), e["line"].as_u64(), e["code"].as_str()), (Some(2), Some(0), Some(1), Some("invalid")), "{e}");
    assert_eq!(refused_unparsable(&s).await, 7.0);

    // What was stored comes back from the log after a stop without a checkpoint.
    let addr = s.addr;
    s.stop().await;
    let s = Server::start_on(dir.path(), addr).await;
    assert_eq!((series(&s, "gpu", "energy_mj"), series(&s, "node", "energy_j"), series(&s, "inference", "prompt_tokens")), (2, 1, 0));
    let id = s.store.find_series("gpu", "energy_mj", &[("gpu", "1")]).expect("find")[0].id;
    let latest = s.store.latest(&[id]).expect("latest");
    assert_eq!(latest[0].as_ref().map(|(ts, _)| *ts), Some(kilowatch_model::Timestamp::from_secs(T0).0));
}
