//! What InfluxDB clients read of Kilowatch's answers, side by side with Debian's real `influxd`
//! 1.6: `GET /ping?verbose=true` is 200 with `{"version": …}`, and the errors of the v1
//! `POST /write` are InfluxDB 1.x's `{"error": "…"}` (a partial write 400, its good lines
//! stored), with Kilowatch's partial-write detail kept beside; `/api/v2/write` keeps InfluxDB
//! 2's `{"code", "message"}` with one of InfluxDB 2's codes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{WRITE, require_tool, serve_process, start_influxd};
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn answer(r: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = r.send().await.expect("send");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap_or_default();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_answers_are_influxdb_1x_answers() {
    if !require_tool("influxd", "influxdb") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (_influxd, iport) = start_influxd(&dir.path().join("influxdb")).await;
    let influx = format!("http://127.0.0.1:{iport}");
    assert_eq!(http().post(format!("{influx}/query")).query(&[("q", "CREATE DATABASE kw")]).send().await.expect("create").status(), 200);

    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let cfg = dir.path().join("kilowatch.toml");
    std::fs::write(&cfg, format!("[server]\nlisten = \"{addr}\"\ndata_dir = {:?}\n[alerts]\nenabled = false\n", dir.path().join("data"))).expect("config");
    let _kw = serve_process(&cfg, &dir.path().join("kilowatch.log"));
    let kw = format!("http://{addr}");
    for _ in 0..300 {
        if http().get(format!("{kw}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // /ping?verbose=true: 200 and {"version": …}, nothing else, as InfluxDB 1.7 and later
    // answer it (Debian's 1.6 predates `verbose` and answers 204); `verbose=false` stays 204.
    let (status, _, v) = answer(http().get(format!("{kw}/ping")).query(&[("verbose", "true")])).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(keys(&v), vec!["version"], "{v}");
    assert!(v["version"].as_str().is_some_and(|s| s.starts_with("1.")), "{v}");
    for base in [&influx, &kw] {
        let (status, _, _) = answer(http().get(format!("{base}/ping")).query(&[("verbose", "false")])).await;
        assert_eq!(status, 204, "{base}");
    }

    // A partial write: one unparsable line between two good ones.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let body = format!("cpu,host=a value=1 {t}\nthis is not line protocol\ncpu,host=b value=2 {t}\n");
    let write = |base: &str| http().post(format!("{base}/write")).query(&[("db", "kw"), ("precision", "s")]).header("Authorization", format!("Token {WRITE}")).body(body.clone());
    let (i_status, _, i) = answer(write(&influx)).await;
    let (k_status, k_headers, k) = answer(write(&kw)).await;
    assert_eq!(k_status, i_status, "the same status as InfluxDB 1.x: {i} / {k}");
    assert_eq!(keys(&i), vec!["error"], "InfluxDB 1.x's shape: {i}");
    assert!(k["error"].is_string() && k.get("code").is_none() && k.get("message").is_none(), "{k}");
    assert!(k["error"].as_str().unwrap_or("").contains("unable to parse"), "{k}");
    assert_eq!((k["accepted"].as_u64(), k["refused"].as_u64()), (Some(2), Some(1)), "the partial-write detail is kept: {k}");
    assert_eq!(k["errors"][0]["line"], 2, "{k}");
    assert!(k_headers.get("x-influxdb-error").is_some(), "{k_headers:?}");
    let rows = answer(http().get(format!("{influx}/query")).query(&[("db", "kw"), ("q", "SELECT count(value) FROM cpu")])).await.2;
    assert_eq!(rows["results"][0]["series"][0]["values"][0][1], 2, "InfluxDB stored the good lines too: {rows}");

    // Nothing parsable: 400 {"error"} from both.
    let bad = |base: &str| http().post(format!("{base}/write")).query(&[("db", "kw")]).header("Authorization", format!("Token {WRITE}")).body("garbage");
    let (i_status, _, i) = answer(bad(&influx)).await;
    let (k_status, _, k) = answer(bad(&kw)).await;
    assert_eq!((i_status, k_status), (400, 400), "{i} / {k}");
    assert_eq!(keys(&i), vec!["error"]);
    assert!(k["error"].is_string() && k.get("code").is_none(), "{k}");

    // Without a token (influxd here runs without auth): InfluxDB 1.x's shape all the same.
    let (status, _, k) = answer(http().post(format!("{kw}/write")).query(&[("db", "kw")]).body(format!("cpu value=1 {t}"))).await;
    assert_eq!(status, 401);
    assert!(k["error"].is_string() && k.get("code").is_none(), "{k}");

    // The v2 route answers as InfluxDB 2: {"code", "message"}, with one of its codes.
    let (status, _, k) = answer(http().post(format!("{kw}/api/v2/write")).query(&[("bucket", "kw"), ("precision", "s")]).header("Authorization", format!("Token {WRITE}")).body(body.clone())).await;
    assert_eq!(status, 422, "{k}");
    assert!(k["message"].is_string() && k.get("error").is_none(), "{k}");
    assert!(
        ["invalid", "unprocessable entity", "too many requests", "unauthorized", "forbidden", "not found", "unavailable", "internal error", "request too large"]
            .contains(&k["code"].as_str().unwrap_or("")),
        "{k}"
    );
}
