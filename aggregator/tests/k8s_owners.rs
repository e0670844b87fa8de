//! Kubernetes namespaces to owners (`[kubernetes] namespace_owners`, issue 15 item 1): jobs
//! posted over HTTP with a namespace and no owner get their owner from the first matching
//! rule and the namespace as their project; an explicit owner is kept; a namespace no rule
//! names stays without an owner. A tenant token scoped to `mistral-ai/*` then sees exactly
//! the namespaces mapped to it.

mod common;

use common::{READ, Server, TENANT, WRITE};
use kilowatch_aggregator::config::Config;
use serde_json::{Value, json};

const T0: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z

fn ts(t: i64) -> String {
    kilowatch_model::Timestamp::from_secs(t).to_rfc3339()
}

async fn jobs(s: &Server, token: &str) -> Value {
    let r = reqwest::Client::new().get(s.url("/api/v1/jobs")).query(&[("from", ts(T0)), ("to", ts(T0 + 3600))]).header("Authorization", format!("Token {token}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test]
async fn namespaces_give_their_jobs_an_owner() {
    let dir = tempfile::tempdir().expect("tmp");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kilowatch-kubernetes.toml")).expect("example");
    let cfg = Config::parse(&text, std::path::Path::new("kilowatch-kubernetes.toml")).expect("the example parses");
    assert_eq!(cfg.kubernetes.owner_of("mistral-train"), Some("mistral-ai/k8s"));
    let s = Server::start_with(dir.path(), "127.0.0.1:0".parse().expect("addr"), cfg, false).await;
    let body = format!(
        "meter,meter=g,role=facility energy_kwh=0 {T0}\nmeter,meter=g,role=facility energy_kwh=116 {}\nmeter,meter=u,role=it,category=1 energy_kwh=0 {T0}\nmeter,meter=u,role=it,category=1 energy_kwh=100 {}\n",
        T0 + 3600,
        T0 + 3600
    );
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let start = ts(T0);
    let posts = json!([
        {"job": "k8s:mistral-train/pod-a", "namespace": "mistral-train", "node": "dgx-001", "gpus": [0, 1], "start": start},
        {"job": "k8s:research-7/pod-b", "namespace": "research-7", "node": "dgx-001", "gpus": [2], "start": start},
        {"job": "k8s:other/pod-c", "namespace": "other", "node": "dgx-002", "gpus": [0], "start": start},
        {"job": "k8s:mistral-eval/pod-d", "namespace": "mistral-eval", "owner": "acme", "project": "eval", "node": "dgx-002", "gpus": [1], "start": start},
    ]);
    let r = reqwest::Client::new().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&posts).send().await.expect("post");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    let all = jobs(&s, READ).await;
    let job = |id: &str| all["jobs"].as_array().expect("jobs").iter().find(|j| j["job"] == id).cloned().unwrap_or_else(|| panic!("{id} in {all}"));
    assert_eq!(job("k8s:mistral-train/pod-a")["owner"], "mistral-ai/k8s");
    assert_eq!(job("k8s:mistral-train/pod-a")["project"], "mistral-train", "the namespace is the project");
    assert_eq!(job("k8s:research-7/pod-b")["owner"], "internal/research");
    assert_eq!(job("k8s:other/pod-c")["owner"], "", "no rule: no owner, not a guess");
    assert_eq!(job("k8s:mistral-eval/pod-d")["owner"], "acme", "an explicit owner is kept");
    assert_eq!(job("k8s:mistral-eval/pod-d")["project"], "eval");

    // The tenant scoped to mistral-ai/* sees its namespace's job and nothing else.
    let mine = jobs(&s, TENANT).await;
    let ids: Vec<&str> = mine["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["job"].as_str()).collect();
    assert_eq!(ids, ["k8s:mistral-train/pod-a"]);

    // A namespace that is not a string is refused with the reason.
    let r = reqwest::Client::new().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&json!({"job": "x", "namespace": 7})).send().await.expect("post");
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap_or_default().contains("namespace"));
    s.stop().await;
}

#[test]
fn empty_rules_are_refused_with_their_key() {
    let e = Config::parse("[kubernetes]\nnamespace_owners = [{ namespace = \"\", owner = \"x\" }]\n", std::path::Path::new("k.toml")).err().map(|e| e.to_string()).expect("refused");
    assert!(e.contains("kubernetes.namespace_owners"), "{e}");
    let e = Config::parse("[kubernetes]\nnamespace_owner = []\n", std::path::Path::new("k.toml")).err().map(|e| e.to_string()).expect("refused");
    assert!(e.contains("namespace_owner"), "{e}");
}
