//! Narrowed write tokens (issue 31 item 8), through `kilowatch serve`: a node's collector token
//! (`[[auth.tokens]] nodes = ["dgx-001"]`, optionally `owners`) writes its node's lines only
//! (the others refused by name, the rest stored), cannot reassign, end or post progress for
//! another node's or tenant's jobs, nor create serving jobs under another tenant; changing a
//! job's owner needs an admin token whatever the write token; job strings are bounded.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ADMIN, READ, Reaped, WRITE};
use kilowatch_aggregator::auth::sha256_hex;
use kilowatch_aggregator::http::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use serde_json::{Value, json};

/// dgx-001's collector: its node only.
const NODE1: &str = "collector-dgx-001-token-0123456789";
/// dgx-001's collector on a node rented to acme: its node and acme's jobs only.
const NODE1_ACME: &str = "collector-dgx-001-acme-0123456789";

struct Site {
    _server: Reaped,
    base: String,
    _dir: tempfile::TempDir,
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn start() -> Site {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cfg = dir.path().join("kilowatch.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n[alerts]\nenabled = false\n\
         [[auth.tokens]]\nname = \"ops on call\"\nsha256 = \"{admin}\"\nscope = \"admin\"\n\
         [[auth.tokens]]\nname = \"collector dgx-001\"\nsha256 = \"{n1}\"\nscope = \"write\"\nnodes = [\"dgx-001\"]\n\
         [[auth.tokens]]\nname = \"collector dgx-001 (acme)\"\nsha256 = \"{n1a}\"\nscope = \"write\"\nnodes = [\"dgx-001\"]\nowners = [\"acme/*\"]\n",
        data = dir.path().join("data").display().to_string(),
        admin = sha256_hex(ADMIN),
        n1 = sha256_hex(NODE1),
        n1a = sha256_hex(NODE1_ACME),
    );
    std::fs::write(&cfg, text).expect("config");
    let log = dir.path().join("kilowatch.log");
    let server = common::serve_process(&cfg, &log);
    wait_listening(port, &log).await;
    Site { _server: server, base: format!("http://127.0.0.1:{port}"), _dir: dir }
}

async fn wait_listening(port: u16, log: &Path) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "kilowatch did not listen: {}", std::fs::read_to_string(log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Site {
    async fn write(&self, body: &str, token: &str) -> (u16, Value) {
        let r = reqwest::Client::new().post(format!("{}/api/v2/write?precision=s", self.base)).header("Authorization", format!("Token {token}")).body(body.to_owned()).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value, token: &str) -> (u16, Value) {
        let r = reqwest::Client::new().post(format!("{}{path}", self.base)).header("Authorization", format!("Token {token}")).json(&body).send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::Client::new().get(format!("{}{path}", self.base)).header("Authorization", format!("Token {READ}")).send().await.expect("send");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// Raw samples of a selector, as line protocol.
    async fn export(&self, selector: &str) -> String {
        let r = reqwest::Client::new().get(format!("{}/api/v1/export", self.base)).query(&[("match[]", selector)]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
        assert_eq!(r.status(), 200, "export {selector}");
        r.text().await.expect("body")
    }

    /// The owner of each allocation of job `id`, as `GET /api/v1/jobs/{id}` answers it.
    async fn owners(&self, id: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/api/v1/jobs/{id}")).await;
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        let mut out: Vec<String> = v["allocations"].as_array().map(|a| a.iter().filter_map(|x| x["owner"].as_str().map(str::to_owned)).collect()).unwrap_or_default();
        if out.is_empty()
            && let Some(o) = v["owner"].as_str()
        {
            out.push(o.to_owned());
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_token_writes_its_node_lines_only_and_the_rest_is_stored() {
    let s = start().await;
    let t = now_s() - 60;
    let body = format!(
        "gpu,site=dc5,node=dgx-001,gpu=0 power_w=100 {t}\n\
         gpu,site=dc5,node=dgx-002,gpu=0 power_w=200 {t}\n\
         meter,site=dc5,meter=grid-a,role=facility energy_kwh=1 {t}\n\
         gpu,site=dc5,node=dgx-001,gpu=1 power_w=300 {t}\n"
    );
    let (status, v) = s.write(&body, NODE1).await;
    assert_eq!(status, 422, "a partial write: {v}");
    assert_eq!(v["refused"], 2, "{v}");
    assert_eq!(v["accepted"], 2, "{v}");
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.iter().map(|e| e["line"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), vec![2, 3], "{v}");
    assert!(errors[0]["message"].as_str().unwrap_or("").contains("node=\"dgx-002\""), "the refused node is named: {v}");
    assert!(errors[1]["message"].as_str().unwrap_or("").contains("names no node"), "{v}");
    let stored = s.export("gpu_power_w").await;
    assert!(stored.contains("node=dgx-001") && !stored.contains("node=dgx-002"), "only dgx-001's lines stored: {stored}");
    assert_eq!(stored.lines().count(), 2, "{stored}");
    assert!(s.export("meter_energy_kwh").await.trim().is_empty(), "a node's token cannot write facility meters");

    // The operator's unnarrowed token writes every line, as before.
    let (status, v) = s.write(&body, WRITE).await;
    assert_eq!(status, 204, "{v}");

    // Serving jobs under another tenant: an `inference` line naming another tenant is refused
    // to a token narrowed to acme's owners, acme's own is stored.
    let inf = format!(
        "inference,site=dc5,node=dgx-001,server=vllm,model=m,tenant=other/x gpus=\"0\",requests=1i {t}\n\
         inference,site=dc5,node=dgx-001,server=vllm2,model=m,tenant=acme/chat gpus=\"1\",requests=1i {t}\n"
    );
    let (status, v) = s.write(&inf, NODE1_ACME).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!((v["refused"].as_u64(), v["accepted"].as_u64()), (Some(1), Some(1)), "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap_or("").contains("tenant=\"other/x\""), "{v}");
    // The node token without owners may write any tenant's serving rows on its node.
    let (status, v) = s.write(&inf, NODE1).await;
    assert_eq!(status, 204, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_honours_a_narrowed_token() {
    let s = start().await;
    let ts = |host: &str, v: f64| TimeSeries {
        labels: vec![Label::new("__name__", "DCGM_FI_DEV_POWER_USAGE"), Label::new("gpu", "0"), Label::new("UUID", &format!("GPU-{host}")), Label::new("Hostname", host)],
        samples: vec![Sample { timestamp: (now_s() - 60) * 1000, value: v }],
    };
    let req = WriteRequest { timeseries: vec![ts("dgx-001", 400.0), ts("dgx-002", 500.0)], ..Default::default() };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/write", s.base))
        .header("Authorization", format!("Bearer {NODE1}"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "a refused series is named");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["refused"], 1, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("node=\"dgx-002\""), "{v}");
    let stored = s.export("gpu_power_w").await;
    assert!(stored.contains("node=dgx-001") && !stored.contains("node=dgx-002"), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_progress_stay_with_their_node_and_tenant() {
    let s = start().await;
    let start_t = "2026-01-01T00:00:00Z";
    let other = json!({ "job": "j-other", "owner": "other/train", "node": "dgx-002", "gpus": [0], "start": start_t });
    assert_eq!(s.post("/api/v1/jobs", other.clone(), WRITE).await.0, 200);

    // Another node's job: neither restarted, reassigned nor ended by dgx-001's collector.
    let (status, v) = s.post("/api/v1/jobs", json!({ "job": "j-other", "owner": "acme/x", "node": "dgx-002", "gpus": [0], "start": start_t }), NODE1).await;
    assert_eq!(status, 403, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("dgx-002"), "{v}");
    let (status, v) = s.post("/api/v1/jobs", json!({ "job": "j-other", "end": "2026-01-01T01:00:00Z" }), NODE1).await;
    assert_eq!(status, 403, "an end-only post names its node: {v}");
    // Nor claimed for its node under a new owner: that is an owner change.
    let (status, v) = s.post("/api/v1/jobs", json!({ "job": "j-other", "owner": "acme/x", "node": "dgx-001", "gpus": [1], "start": start_t }), NODE1).await;
    assert_eq!(status, 403, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("admin token"), "{v}");
    assert_eq!(s.owners("j-other").await, vec!["other/train"], "untouched");

    // Changing a job's owner needs an admin token, whatever the write token.
    let moved = json!({ "job": "j-other", "owner": "other/eval", "node": "dgx-002", "gpus": [0], "start": start_t });
    let (status, v) = s.post("/api/v1/jobs", moved.clone(), WRITE).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(s.post("/api/v1/jobs", moved, ADMIN).await.0, 200);
    assert_eq!(s.owners("j-other").await, vec!["other/eval"]);
    // The same owner again is no change: the Slurm poller's repeated posts go through.
    assert_eq!(s.post("/api/v1/jobs", json!({ "job": "j-other", "owner": "other/eval", "node": "dgx-002", "gpus": [0], "start": start_t }), WRITE).await.0, 200);

    // Its own node's job: yes; under another tenant with the acme-narrowed token: no.
    assert_eq!(s.post("/api/v1/jobs", json!({ "job": "j-mine", "owner": "acme/train", "node": "dgx-001", "gpus": [0], "start": start_t }), NODE1_ACME).await.0, 200);
    let (status, v) = s.post("/api/v1/jobs", json!({ "job": "j-sneaky", "owner": "other/train", "node": "dgx-001", "gpus": [1], "start": start_t }), NODE1_ACME).await;
    assert_eq!(status, 403, "{v}");
    assert!(s.owners("j-sneaky").await.is_empty(), "nothing stored");

    // Progress: for its own jobs only.
    let (status, v) = s.post("/api/v1/progress", json!({ "job": "j-other", "step": 1, "tokens": 1000 }), NODE1).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = s.post("/api/v1/progress", json!({ "job": "j-unknown", "step": 1, "tokens": 1000 }), NODE1).await;
    assert_eq!(status, 403, "an unknown job cannot be checked: {v}");
    let (status, v) = s.post("/api/v1/progress", json!({ "job": "j-mine", "step": 1, "tokens": 1000 }), NODE1_ACME).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_strings_are_bounded_and_control_characters_refused() {
    let s = start().await;
    let ok = |job: &str| json!({ "job": job, "owner": "acme/train", "project": "p", "node": "dgx-001", "gpus": [0], "start": "2026-01-01T00:00:00Z" });
    for (what, mut post) in [("a 10 kB owner", ok("j-long")), ("a newline in the owner", ok("j-newline")), ("a tab in the project", ok("j-tab")), ("a 300-byte node", ok("j-node"))] {
        match what {
            "a 10 kB owner" => post["owner"] = json!("a".repeat(10_000)),
            "a newline in the owner" => post["owner"] = json!("acme/x\nforged,row"),
            "a tab in the project" => post["project"] = json!("p\tq"),
            _ => post["node"] = json!("n".repeat(300)),
        }
        let job = post["job"].as_str().unwrap_or("").to_owned();
        // Sent with a good post first in the same request: nothing of the request is stored.
        let (status, v) = s.post("/api/v1/jobs", json!([ok(&format!("{job}-good")), post]), WRITE).await;
        assert_eq!(status, 400, "{what}: {v}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{what}: a reason: {v}");
        assert!(s.owners(&job).await.is_empty() && s.owners(&format!("{job}-good")).await.is_empty(), "{what}: nothing stored");
    }
    let (status, v) = s.post("/api/v1/jobs", json!({ "job": "x".repeat(257), "node": "dgx-001", "start": "2026-01-01T00:00:00Z" }), WRITE).await;
    assert_eq!(status, 400, "a 257-byte id: {v}");
    let (status, v) = s.post("/api/v1/progress", json!({ "job": "j\u{1b}[2J", "step": 1 }), WRITE).await;
    assert_eq!(status, 400, "an escape sequence in a progress job: {v}");
    assert_eq!(s.post("/api/v1/jobs", ok(&"x".repeat(256)), WRITE).await.0, 200, "256 bytes is accepted");
}
