//! The single-job page is capped like every other window (issue 31 item 4): a job posted as
//! open since 1700 is shown over its last `api.max_query_days` days, and the answer says so
//! (unbounded, such a job cost minutes of CPU per request); and its computation stops when its
//! client goes.

mod common;
mod kilowatch_bin;

use std::time::{Duration, Instant};

use common::{Server, WRITE};
use kilowatch_bin::Kilowatch;
use serde_json::{Value, json};

async fn post(s: &Server, body: Value) {
    let r = reqwest::Client::new().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&body).send().await.expect("send");
    assert!(r.status().is_success(), "{}: {}", r.status(), r.text().await.unwrap_or_default());
}

async fn job(s: &Server, id: &str) -> Value {
    let r = s.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test]
async fn a_job_open_for_centuries_is_shown_over_the_longest_window_a_query_may_ask() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // Through the store's clock ("now" is the wall clock on an empty store).
    s.write("gpu,node=n1,gpu=0 power_w=500", "ns", WRITE).await;
    post(&s, json!({"job": "ancient", "owner": "acme/a", "node": "n1", "gpus": [0], "start": "1700-01-01T00:00:00Z", "end": null})).await;
    post(&s, json!({"job": "recent", "owner": "acme/a", "node": "n1", "gpus": [0], "start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"})).await;

    let v = job(&s, "ancient").await;
    let w = &v["window"];
    assert_eq!(w["capped"], true, "{v:#}");
    let from = kilowatch_model::Timestamp::parse_rfc3339(w["from"].as_str().expect("from")).expect("from");
    let to = kilowatch_model::Timestamp::parse_rfc3339(w["to"].as_str().expect("to")).expect("to");
    assert_eq!((to.0 - from.0) / 86_400_000_000_000, 400, "api.max_query_days, the default: {w}");
    assert_eq!(v["step_s"].as_f64(), Some(86_400.0), "a day's step over the 400 days");
    assert_eq!(v["job"]["start"], "1700-01-01T00:00:00Z", "the job itself is shown as posted");

    let v = job(&s, "recent").await;
    assert_eq!(v["window"], json!({"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "capped": false}), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_page_stops_when_its_client_goes() {
    // A century allowed, and a job open for it: a century of hours to attribute.
    let k = Kilowatch::spawn("[api]\nmax_query_days = 36500").await;
    let job = json!({"job": "century", "owner": "ada", "node": "dgx-001", "gpus": [0, 1, 2, 3, 4, 5, 6, 7], "start": "1930-01-01T00:00:00Z"});
    let r = reqwest::Client::new().post(k.url("/api/v1/jobs")).header("Authorization", format!("Token {}", kilowatch_bin::WRITE)).json(&job).send().await.expect("post");
    assert_eq!(r.status(), 200);
    let gone = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client")
        .get(k.url("/api/v1/jobs/century"))
        .header("Authorization", format!("Token {}", kilowatch_bin::READ))
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the job page outlasts the client's patience");
    let t0 = Instant::now();
    while !k.log().contains("job page stopped: the client went away") {
        assert!(t0.elapsed() < Duration::from_secs(60), "the computation went on after its client left: {}", k.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
