//! The Prometheus HTTP API under `/prometheus`, read by real clients: Grafana's health check,
//! form-encoded POSTs, and Debian's `promtool query instant|range|series|labels`; tenant
//! scopes; errors in Prometheus' shape.

mod common;

use common::{READ, Server, TENANT, WRITE};
use serde_json::Value;

/// 2023-11-14T22:13:20Z, a whole minute.
const T0: i64 = 1_700_000_000;

/// Two GPUs for ten minutes at 15 s: power 400 + 100·gpu W, an energy counter rising by
/// power × 15 s × 1000 mJ each step; a job's energy owned by two tenants.
fn line_protocol() -> String {
    let mut lines = String::new();
    for i in 0..=40 {
        let t = T0 + 15 * i;
        for gpu in 0..2 {
            let p = 400 + 100 * gpu;
            let e = p * 15 * 1000 * i;
            lines.push_str(&format!("gpu,site=dc5,node=dgx-001,gpu={gpu},uuid=GPU-{gpu} power_w={p},energy_mj={e}i,mode=\"on\" {t}\n"));
        }
        lines.push_str(&format!("job_energy,owner=mistral-ai/pretrain,job=j1 value={} {t}\n", 10 * i));
        lines.push_str(&format!("job_energy,owner=kyutai/moshi,job=j2 value={} {t}\n", 20 * i));
    }
    lines
}

async fn get_json(srv: &Server, path: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(srv.url(path)).header("Authorization", format!("Bearer {token}")).send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

async fn served() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("dir");
    let srv = Server::start(dir.path()).await;
    let r = srv.write(&line_protocol(), "s", WRITE).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    (dir, srv)
}

#[tokio::test]
async fn grafana_health_check_and_buildinfo() {
    let (_dir, srv) = served().await;
    let (status, body) = get_json(&srv, "/prometheus/api/v1/query?query=1%2B1&time=1700000000", READ).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({ "status": "success", "data": { "resultType": "scalar", "result": [1_700_000_000, "2"] } }));
    let (status, body) = get_json(&srv, "/prometheus/api/v1/status/buildinfo", READ).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    assert!(body["data"]["version"].as_str().is_some_and(|v| v.starts_with("2.")), "{body}");
    let (status, body) = get_json(&srv, "/prometheus/api/v1/query?query=1%2B1", "not-a-token").await;
    assert_eq!(status, 401);
    assert_eq!(body["status"], "error");
}

#[tokio::test]
async fn queries_answer_in_prometheus_shapes() {
    let (_dir, srv) = served().await;
    let at = T0 + 600;
    let (_, body) = get_json(&srv, &format!("/prometheus/api/v1/query?query=gpu_power_w&time={at}"), READ).await;
    let result = body["data"]["result"].as_array().expect("vector");
    assert_eq!(body["data"]["resultType"], "vector");
    assert_eq!(result.len(), 2, "{body}");
    assert_eq!(result[0]["metric"], serde_json::json!({ "__name__": "gpu_power_w", "site": "dc5", "node": "dgx-001", "gpu": "0", "uuid": "GPU-0" }));
    assert_eq!(result[0]["value"], serde_json::json!([at, "400"]));
    // The text field `mode` is no sample; a `value` field keeps the measurement's name.
    let (_, body) = get_json(&srv, &format!("/prometheus/api/v1/query?query=gpu_mode&time={at}"), READ).await;
    assert_eq!(body["data"]["result"], serde_json::json!([]));
    let (_, body) = get_json(&srv, &format!("/prometheus/api/v1/query?query=sum(job_energy)&time={at}"), READ).await;
    assert_eq!(body["data"]["result"][0]["value"][1], "1200");
    // Energy counter in mJ → W: rate of 400 and 500 W GPUs, summed by node.
    let q = "sum by (node) (rate(gpu_energy_mj[1m])) / 1000";
    let (status, body) = get_json(&srv, &format!("/prometheus/api/v1/query_range?query={}&start={}&end={}&step=60", urlencode(q), T0 + 120, T0 + 600), READ).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let values = body["data"]["result"][0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 9);
    for v in values {
        let w: f64 = v[1].as_str().expect("string").parse().expect("number");
        assert!((w - 900.0).abs() < 1e-9, "{v}");
    }
    // The same query as a form-encoded POST with a read token.
    let r = reqwest::Client::new()
        .post(srv.url("/prometheus/api/v1/query"))
        .header("Authorization", format!("Bearer {READ}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("query", q), ("time", &at.to_string())]).expect("form"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["data"]["result"][0]["metric"], serde_json::json!({ "node": "dgx-001" }));
}

#[tokio::test]
async fn errors_have_prometheus_types() {
    let (_dir, srv) = served().await;
    let (status, body) = get_json(&srv, "/prometheus/api/v1/query?query=sum(", READ).await;
    assert_eq!((status, body["errorType"].as_str()), (400, Some("bad_data")), "{body}");
    let (status, body) = get_json(&srv, &format!("/prometheus/api/v1/query?query={}", urlencode("holt_winters(gpu_power_w[5m], 0.5, 0.5)")), READ).await;
    assert_eq!((status, body["errorType"].as_str()), (400, Some("bad_data")), "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("holt_winters")), "{body}");
    let (status, body) = get_json(&srv, &format!("/prometheus/api/v1/query?query={}&time={}", urlencode("gpu_power_w / on(node) gpu_power_w"), T0 + 60), READ).await;
    assert_eq!((status, body["errorType"].as_str()), (422, Some("execution")), "{body}");
    let (status, body) = get_json(&srv, "/prometheus/api/v1/query_range?query=1&start=0&end=100000&step=1", READ).await;
    assert_eq!((status, body["errorType"].as_str()), (400, Some("bad_data")), "{body}");
}

#[tokio::test]
async fn a_tenant_token_sees_only_its_owners_series() {
    let (_dir, srv) = served().await;
    let at = T0 + 600;
    let (status, body) = get_json(&srv, &format!("/prometheus/api/v1/query?query={}&time={at}", urlencode("{__name__=~\".+\"}")), TENANT).await;
    assert_eq!(status, 200, "{body}");
    let result = body["data"]["result"].as_array().expect("vector");
    assert_eq!(result.len(), 1, "{body}");
    assert_eq!(result[0]["metric"]["owner"], "mistral-ai/pretrain");
    let (_, body) = get_json(&srv, "/prometheus/api/v1/label/owner/values", TENANT).await;
    assert_eq!(body["data"], serde_json::json!(["mistral-ai/pretrain"]));
    let (_, body) = get_json(&srv, "/prometheus/api/v1/label/owner/values", READ).await;
    assert_eq!(body["data"], serde_json::json!(["kyutai/moshi", "mistral-ai/pretrain"]));
    let (_, body) = get_json(&srv, &format!("/prometheus/api/v1/query?query=gpu_power_w&time={at}"), TENANT).await;
    assert_eq!(body["data"]["result"], serde_json::json!([]), "GPU series have no owner: absent, not an error");
}

// promtool runs as a blocking child process: the server needs a thread of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_reads_kilowatch() {
    if !common::require_tool("promtool", "prometheus") {
        return;
    }
    let (_dir, srv) = served().await;
    // promtool 2.42 has no token flag: Go's client sends a URL's credentials as basic auth.
    let url = format!("http://promtool:{READ}@{}/prometheus", srv.addr);
    let run = |args: Vec<String>| {
        let out = std::process::Command::new("promtool").args(&args).output().expect("promtool");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "promtool {args:?}: {} {}", text, String::from_utf8_lossy(&out.stderr));
        text
    };
    let at = (T0 + 600).to_string();
    let instant = run(vec!["query".into(), "instant".into(), format!("--time={at}"), url.clone(), "sum by (gpu) (gpu_power_w)".into()]);
    assert!(instant.contains("{gpu=\"0\"} => 400 @[1700000600]"), "{instant}");
    assert!(instant.contains("{gpu=\"1\"} => 500 @[1700000600]"), "{instant}");
    let range = run(vec!["query".into(), "range".into(), format!("--start={}", T0 + 300), format!("--end={at}"), "--step=1m".into(), url.clone(), "max(gpu_power_w)".into()]);
    assert!(range.contains("500 @[1700000300]") && range.contains("500 @[1700000600]"), "{range}");
    // promtool lists over now ± 9999 h unless told: the window of the data, as Prometheus
    // lists only the series with samples in it.
    let window = || vec![format!("--start={T0}"), format!("--end={at}")];
    let series = run([vec!["query".into(), "series".into(), "--match=gpu_power_w{gpu=\"1\"}".into()], window(), vec![url.clone()]].concat());
    assert!(series.contains("gpu_power_w") && series.contains("uuid=\"GPU-1\"") && !series.contains("GPU-0"), "{series}");
    let labels = run([vec!["query".into(), "labels".into()], window(), vec![url.clone(), "gpu".into()]].concat());
    assert_eq!(labels.split_whitespace().collect::<Vec<_>>(), vec!["0", "1"], "{labels}");
    let later = run(vec!["query".into(), "labels".into(), format!("--start={}", T0 + 3600), url.clone(), "gpu".into()]);
    assert!(later.trim().is_empty(), "no sample after the data's end: {later}");
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
