//! Silences and narrowed write tokens (issue 31 item 8), through `kilowatch serve`: a silence
//! mutes alerts site-wide, so a write token narrowed to nodes or owners (a node's collector, a
//! tenant's) can neither create nor expire one (403 naming why); a write token that is not
//! narrowed and an admin token can, as before.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, READ, Reaped, WRITE};
use kilowatch_aggregator::auth::sha256_hex;
use serde_json::{Value, json};

/// dgx-001's collector: its node only.
const NODE1: &str = "collector-dgx-001-token-0123456789";
/// A tenant's own token: acme's jobs only.
const ACME: &str = "writer-acme-owners-token-0123456789";

struct Site {
    _server: Reaped,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Site {
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let cfg = dir.path().join("kilowatch.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n[report]\nenabled = false\n\
         [[auth.tokens]]\nname = \"ops on call\"\nsha256 = \"{admin}\"\nscope = \"admin\"\n\
         [[auth.tokens]]\nname = \"collector dgx-001\"\nsha256 = \"{n1}\"\nscope = \"write\"\nnodes = [\"dgx-001\"]\n\
         [[auth.tokens]]\nname = \"acme\"\nsha256 = \"{acme}\"\nscope = \"write\"\nowners = [\"acme/*\"]\n",
        data = dir.path().join("data").display().to_string(),
        admin = sha256_hex(ADMIN),
        n1 = sha256_hex(NODE1),
        acme = sha256_hex(ACME),
    );
    std::fs::write(&cfg, text).expect("config");
    let log = dir.path().join("kilowatch.log");
    let server = common::serve_process(&cfg, &log);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "kilowatch did not listen: {}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Site { _server: server, base: format!("http://127.0.0.1:{port}"), _dir: dir }
}

impl Site {
    async fn create(&self, token: &str) -> (u16, Value) {
        let body = json!({"matchers": ["node=\"dgx-002\""], "duration": "2h", "createdBy": "test"});
        let r = reqwest::Client::new().post(format!("{}/api/v1/silences", self.base)).header("Authorization", format!("Token {token}")).json(&body).send().await.expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn expire(&self, id: &str, token: &str) -> (u16, Value) {
        let r = reqwest::Client::new().delete(format!("{}/api/v1/silences/{id}", self.base)).header("Authorization", format!("Token {token}")).send().await.expect("delete");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `(id, active)` of every silence.
    async fn listed(&self) -> Vec<(String, bool)> {
        let r = reqwest::Client::new().get(format!("{}/api/v1/silences", self.base)).header("Authorization", format!("Token {READ}")).send().await.expect("get");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        v["silences"].as_array().expect("a list").iter().map(|s| (s["silence"]["id"].as_str().expect("id").to_owned(), s["active"] == true)).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_write_tokens_can_neither_create_nor_expire_silences() {
    let site = start().await;
    for token in [NODE1, ACME] {
        let (status, body) = site.create(token).await;
        assert_eq!(status, 403, "{body}");
        let msg = body["message"].as_str().unwrap_or_default();
        assert!(msg.contains("narrowed") && msg.contains("admin"), "the refusal says why and what would do: {msg}");
    }
    assert!(site.listed().await.is_empty(), "a refused silence was stored");
    // A write token that is not narrowed, and the admin, still can.
    let (status, by_writer) = site.create(WRITE).await;
    assert_eq!(status, 201, "{by_writer}");
    let (status, by_admin) = site.create(ADMIN).await;
    assert_eq!(status, 201, "{by_admin}");
    let (w, a) = (by_writer["silenceID"].as_str().expect("id").to_owned(), by_admin["silenceID"].as_str().expect("id").to_owned());
    // Expiring one is refused to narrowed tokens too, and leaves it active.
    for token in [NODE1, ACME] {
        let (status, body) = site.expire(&w, token).await;
        assert_eq!(status, 403, "{body}");
    }
    assert!(site.listed().await.iter().all(|(_, active)| *active), "a narrowed token expired a silence");
    assert_eq!(site.expire(&w, ADMIN).await.0, 204);
    assert_eq!(site.expire(&a, WRITE).await.0, 204);
    assert!(site.listed().await.iter().all(|(_, active)| !*active));
}
