//! What the HTTP layer answers, through the real router on loopback: a jobs or KPI query
//! longer than `api.max_query_days` is a quick 400 (a year still answers); POST bodies are
//! not parsed before the token is checked; 413 and 415 are the documented JSON error; every
//! answer carries the security headers; health tells an anonymous caller only its status;
//! limits that cannot work stop the config, naming their key.

mod common;

use std::time::Duration;

use common::{READ, Server, WRITE};

fn client() -> reqwest::Client {
    // A bounded wait, not a speed assertion: a century computed would take minutes and GBs.
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

#[tokio::test]
async fn a_century_of_jobs_is_refused_and_a_year_is_answered() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // Open jobs that a long window would attribute hour by hour.
    let jobs: Vec<_> = (0..50).map(|i| serde_json::json!({"job": format!("j{i}"), "owner": "ada", "node": format!("dgx-{:03}", i % 8), "gpus": [0, 1], "start": "2001-01-01T00:00:00Z"})).collect();
    let r = client().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&jobs).send().await.expect("post");
    assert_eq!(r.status(), 200);
    for path in ["/api/v1/jobs", "/api/v1/kpi"] {
        let r = client().get(s.url(path)).query(&[("from", "2000-01-01T00:00:00Z"), ("to", "2100-01-01T00:00:00Z")]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
        assert_eq!(r.status(), 400, "{path}");
        let e: serde_json::Value = r.json().await.expect("json");
        assert_eq!(e["code"], "invalid");
        assert!(e["message"].as_str().is_some_and(|m| m.contains("api.max_query_days") && m.contains("36525 days")), "{e}");
    }
    for q in [&[("from", "2024-01-01T00:00:00Z"), ("to", "2025-01-01T00:00:00Z")][..], &[("period", "rolling12")][..]] {
        let r = client().get(s.url("/api/v1/jobs")).query(q).header("Authorization", format!("Token {READ}")).send().await.expect("send");
        assert_eq!(r.status(), 200, "{q:?}");
    }
}

#[tokio::test]
async fn bodies_are_not_parsed_before_the_token_and_errors_are_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let c = client();
    // Not JSON at all: without a token the answer is 401, not a parse error.
    for path in ["/api/v1/jobs", "/api/v1/silences", "/api/v2/write"] {
        let r = c.post(s.url(path)).header("Content-Type", "application/json").body("{not json").send().await.expect("send");
        assert_eq!(r.status(), 401, "{path}");
        let r = c.post(s.url(path)).header("Authorization", format!("Token {READ}")).header("Content-Type", "application/json").body("{not json").send().await.expect("send");
        assert_eq!(r.status(), 403, "{path}: a read token does not write");
    }
    // 415: a JSON endpoint given another content type.
    let r = c.post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).header("Content-Type", "text/plain").body("{}").send().await.expect("send");
    assert_eq!(r.status(), 415);
    let e: serde_json::Value = r.json().await.expect("415 is JSON");
    assert_eq!(e["code"], "unsupported media type", "{e}");
    // 415 from the decompression layer: an encoding it does not know.
    let r = c.post(s.url("/api/v2/write")).header("Authorization", format!("Token {WRITE}")).header("Content-Encoding", "br").body("x").send().await.expect("send");
    assert_eq!(r.status(), 415);
    assert!(r.json::<serde_json::Value>().await.expect("JSON")["message"].is_string());
    // 413: past server.max_body_bytes (32 MiB by default).
    let big = vec![b'#'; (32 << 20) + 1];
    let r = c.post(s.url("/api/v2/write")).header("Authorization", format!("Token {WRITE}")).body(big).send().await.expect("send");
    assert_eq!(r.status(), 413);
    let e: serde_json::Value = r.json().await.expect("413 is JSON");
    assert_eq!(e["code"], "request too large", "{e}");
}

#[tokio::test]
async fn every_answer_carries_security_headers_and_health_tells_strangers_little() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let c = client();
    for path in ["/", "/alerts", "/dashboard/assets/app.js", "/api/v1/health", "/api/v1/kpi?period=day", "/nowhere"] {
        let r = c.get(s.url(path)).send().await.expect("send");
        let h = r.headers();
        assert_eq!(h.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]), "{path}");
        assert_eq!(h.get("referrer-policy").map(|v| v.as_bytes()), Some(&b"no-referrer"[..]), "{path}");
        assert_eq!(h.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]), "{path}");
        let csp = h.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
    }
    let anon: serde_json::Value = c.get(s.url("/health")).send().await.expect("send").json().await.expect("json");
    assert_eq!(anon, serde_json::json!({"status": "pass", "name": "kilowatch"}));
    let reader: serde_json::Value = c.get(s.url("/api/v1/health")).header("Authorization", format!("Token {READ}")).send().await.expect("send").json().await.expect("json");
    assert!(reader["version"].is_string() && reader["store"].is_object(), "{reader}");
    // ?token= works here too, percent-decoded like every parameter.
    let q: serde_json::Value = c.get(s.url("/health")).query(&[("token", READ)]).send().await.expect("send").json().await.expect("json");
    assert!(q["version"].is_string(), "{q}");
}

#[test]
fn limits_that_cannot_work_stop_the_config_naming_their_key() {
    use kilowatch_aggregator::config::Config;
    let err = |toml: &str| toml::from_str::<Config>(toml).expect("parse").validate().expect_err(toml).to_string();
    for key in ["max_inflight_bytes", "max_concurrent_requests", "max_connections", "header_read_timeout_s", "body_timeout_s", "write_timeout_s"] {
        assert!(err(&format!("[server]\n{key} = 0\n")).starts_with(&format!("server.{key}")), "{key}");
    }
    assert!(err("[api]\nmax_query_days = 0\n").starts_with("api.max_query_days"));
    assert!(err("[server]\nmax_body_bytes = 1000\nmax_inflight_bytes = 999\n").starts_with("server.max_inflight_bytes"));
    let ok: Config = toml::from_str("[server]\nmax_connections = 10\n[api]\nmax_query_days = 30\n").expect("parse");
    ok.validate().expect("valid");
}
