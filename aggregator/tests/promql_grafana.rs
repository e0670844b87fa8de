//! Every panel of deploy/grafana/kilowatch-prometheus.json, its query sent through the
//! Prometheus API as Grafana sends it (a range query, Grafana's interval variables filled in),
//! over a day of the demo's site: none may fail, none may come back empty.

mod common;
#[path = "promql/serving.rs"]
mod serving;

use common::{READ, Server};
use serde_json::Value;

/// 2024-10-14T00:00:00+02:00 (local midnight, Europe/Paris, the site's zone).
const START: i64 = 1_728_856_800;

/// A day and two hours of the demo's site (8 nodes, its job stream) and an inference server,
/// at one-minute steps.
fn backfill(dir: &std::path::Path) {
    let store = kilowatch_store::Store::open(dir).expect("store");
    let jobs = kilowatch_store::jobs::JobStore::open(dir).expect("jobs");
    let start = kilowatch_model::Timestamp::from_secs(START - 3600);
    let end = kilowatch_model::Timestamp::from_secs(START + 26 * 3600);
    let mut site = kilowatch_sim::Site::new(kilowatch_sim::SimConfig { start, nodes: 8, site_nodes: 8, ..kilowatch_sim::SimConfig::default() });
    kilowatch_aggregator::demo::backfill_with_jobs(&store, Some(&jobs), &mut site, end, std::time::Duration::from_secs(60)).expect("backfill");
    // An inference server for the energy per token panel.
    let lines = serving::lines("dgx-001", "acme/chat", start.0 / 1_000_000_000, end.0 / 1_000_000_000, 60);
    store.write(&kilowatch_model::parse_lines(&lines, kilowatch_model::Precision::S, end).expect("lines")).expect("write");
}

/// Grafana's variables, as it fills them for a range of a day at a 5-minute step.
fn grafana_expr(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m").replace("$__interval", "5m").replace("$__range", "1d")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_answers_with_data() {
    let dir = tempfile::tempdir().expect("dir");
    backfill(dir.path());
    let srv = Server::start(dir.path()).await;
    let dash: Value = serde_json::from_str(include_str!("../../deploy/grafana/kilowatch-prometheus.json")).expect("dashboard JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "the dashboard has its panels");
    let mut checked = 0;
    for panel in panels {
        assert_eq!(panel["datasource"]["type"], "prometheus", "{}", panel["title"]);
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = grafana_expr(target["expr"].as_str().expect("expr"));
            let params = [("query", expr.clone()), ("start", (START + 3600).to_string()), ("end", (START + 26 * 3600).to_string()), ("step", "300".into())];
            let r = reqwest::Client::new()
                .post(srv.url("/prometheus/api/v1/query_range"))
                .header("Authorization", format!("Bearer {READ}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(params).expect("form"))
                .send()
                .await
                .expect("send");
            let status = r.status();
            let body: Value = r.json().await.expect("json");
            assert_eq!(status, 200, "panel {:?}: {expr}: {body}", panel["title"]);
            let result = body["data"]["result"].as_array().expect("matrix");
            assert!(!result.is_empty(), "panel {:?}: {expr} answered no series", panel["title"]);
            assert!(result.iter().any(|s| s["values"].as_array().is_some_and(|v| !v.is_empty())), "panel {:?}: {expr} has no points", panel["title"]);
            checked += 1;
        }
    }
    println!("{checked} panel queries answered with data");
}
