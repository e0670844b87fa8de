//! What the remote-write tests share: a request as Prometheus sends it.
#![allow(dead_code)]

use crate::common::{Reaped, Server, WRITE};
use kilowatch_aggregator::http::remote_write::proto::WriteRequest;
use prost::Message;
use serde_json::Value;

pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
}

/// `body` POSTed to `/api/v1/write` with Prometheus' headers and `token`.
pub async fn post_raw(s: &Server, body: Vec<u8>, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url("/api/v1/write"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("send")
}

/// `req` encoded, compressed and POSTed with the write token.
pub async fn post(s: &Server, req: &WriteRequest) -> reqwest::Response {
    post_raw(s, snappy(&req.encode_to_vec()), WRITE).await
}

/// Debian's `prometheus` with the configuration `yml` (in `dir`, its TSDB and log beside it),
/// its web API on a free loopback port; killed when dropped.
pub fn start_prometheus(dir: &std::path::Path, yml: &str) -> (Reaped, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, yml).expect("config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    (Reaped(child), port)
}

// ---------------------------------------------------------------------------------------------
// Comparing two sites' answers.

pub async fn get_json(s: &Server, path: &str) -> Value {
    let r = s.get(path).await;
    let status = r.status();
    let text = r.text().await.expect("body");
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// Where `a` and `b` differ: numbers beyond 1e-9 relative, anything else not equal. Keys in
/// `ignore` are skipped at any depth.
pub fn differences(a: &Value, b: &Value, path: &str, ignore: &[&str], out: &mut Vec<String>) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            if (x - y).abs() > 1e-9 * x.abs().max(y.abs()).max(1e-12) {
                out.push(format!("{path}: {x} ≠ {y}"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                if ignore.contains(&k.as_str()) {
                    continue;
                }
                differences(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"), ignore, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            // Meters are listed in the store's series order, which is the order each path first
            // wrote them in: not a figure.
            let (x, y) = (in_meter_order(path, x), in_meter_order(path, y));
            for (i, (x, y)) in x.iter().zip(&y).enumerate() {
                differences(x, y, &format!("{path}[{i}]"), ignore, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {} ≠ {}", short(a), short(b))),
    }
}

/// Lists of meters (`data_quality.meters`, the methodology's `measurement_points`) sorted by
/// meter; any other list as it is.
fn in_meter_order(path: &str, v: &[Value]) -> Vec<Value> {
    let mut v = v.to_vec();
    if v.iter().all(|m| m.get("meter").is_some_and(Value::is_string)) {
        v.sort_by(|a, b| a["meter"].as_str().cmp(&b["meter"].as_str()));
    } else if path.ends_with(".measurement_points") {
        v.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    v
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 { format!("{}…", &s[..s.char_indices().take_while(|(i, _)| *i < 300).last().map_or(0, |(i, _)| i)]) } else { s }
}

pub fn assert_same(what: &str, a: &Value, b: &Value, ignore: &[&str]) {
    let mut d = Vec::new();
    differences(a, b, what, ignore, &mut d);
    assert!(d.is_empty(), "{what}: the two sites (the reference, the Prometheus-fed) differ in {} places:\n{}", d.len(), d.iter().take(40).cloned().collect::<Vec<_>>().join("\n"));
}
