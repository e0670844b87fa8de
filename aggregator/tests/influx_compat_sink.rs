//! The InfluxDB sink forwards exactly what Kilowatch stored (issue 31, items 11 and 12), judged
//! by a real InfluxDB: Debian's `influxd` 1.6. Names with backslashes (a Windows path, `va\lue`),
//! escaped spaces and a string with quotes and backslashes are written to Kilowatch, forwarded,
//! and read back from InfluxDB with InfluxQL; they must equal what Kilowatch's store holds.
//!
//! InfluxDB 1.6 has no `/api/v2/write` (1.8 added it as a compatibility route): the test puts
//! that route in front of it, as 1.8 does, passing the body through untouched to `/write?db=`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use common::{READ, WRITE, require_tool, start_influxd};
use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::Auth;
use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::server;
use kilowatch_aggregator::sink::{InfluxConfig, InfluxSink};
use kilowatch_store::Store;
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn influxql(port: u16, q: &str) -> Value {
    let r = http().post(format!("http://127.0.0.1:{port}/query")).query(&[("db", "kw"), ("epoch", "ns"), ("q", q)]).send().await.expect("query");
    assert_eq!(r.status(), 200, "{q}");
    r.json().await.expect("json")
}

/// InfluxDB 1.8's `/api/v2/write` in front of 1.6: the bucket is the database; the body goes
/// through as it came.
async fn v2_write_route(State(influxd): State<u16>, Query(q): Query<HashMap<String, String>>, body: axum::body::Bytes) -> StatusCode {
    let db = q.get("bucket").cloned().unwrap_or_default();
    let precision = q.get("precision").cloned().unwrap_or_else(|| "ns".into());
    let precision = if precision == "ns" { "n".to_owned() } else { precision };
    match http().post(format!("http://127.0.0.1:{influxd}/write")).query(&[("db", db.as_str()), ("precision", precision.as_str())]).body(body).send().await {
        Ok(r) => StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

/// Every point InfluxDB holds: (measurement, tags, fields) by measurement, tags and fields
/// told apart by `SHOW TAG KEYS`.
async fn points_in_influxdb(port: u16) -> Vec<(String, BTreeMap<String, String>, BTreeMap<String, Value>)> {
    let tag_keys = influxql(port, "SHOW TAG KEYS").await;
    let mut tags_of: HashMap<String, Vec<String>> = HashMap::new();
    for s in tag_keys["results"][0]["series"].as_array().into_iter().flatten() {
        let keys = s["values"].as_array().into_iter().flatten().filter_map(|v| v[0].as_str().map(str::to_owned)).collect();
        tags_of.insert(s["name"].as_str().unwrap_or_default().to_owned(), keys);
    }
    let all = influxql(port, "SELECT * FROM /.*/").await;
    let mut out = Vec::new();
    for s in all["results"][0]["series"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default().to_owned();
        let columns: Vec<&str> = s["columns"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let tag_keys = tags_of.get(&name).cloned().unwrap_or_default();
        for row in s["values"].as_array().into_iter().flatten() {
            let (mut tags, mut fields) = (BTreeMap::new(), BTreeMap::new());
            for (c, v) in columns.iter().zip(row.as_array().into_iter().flatten()) {
                if *c == "time" || v.is_null() {
                    continue;
                }
                if tag_keys.iter().any(|k| k == c) {
                    tags.insert((*c).to_owned(), v.as_str().unwrap_or_default().to_owned());
                } else {
                    fields.insert((*c).to_owned(), v.clone());
                }
            }
            out.push((name.clone(), tags, fields));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_stores_exactly_what_kilowatch_stored() {
    if !require_tool("influxd", "influxdb") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (_influxd, influx_port) = start_influxd(&dir.path().join("influxdb")).await;
    let r = http().post(format!("http://127.0.0.1:{influx_port}/query")).query(&[("q", "CREATE DATABASE kw")]).send().await.expect("create");
    assert_eq!(r.status(), 200);
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front_addr = front.local_addr().expect("addr");
    let app = axum::Router::new().route("/api/v2/write", axum::routing::post(v2_write_route)).with_state(influx_port);
    tokio::spawn(async move { axum::serve(front, app).await });

    let token_file = dir.path().join("influx.token");
    std::fs::write(&token_file, "unused-by-influxdb-1.6\n").expect("token");
    let mut cfg = Config::default();
    cfg.influxdb =
        Some(InfluxConfig { url: format!("http://{front_addr}"), org: "dc5".into(), bucket: "kw".into(), token_file: Some(token_file), queue_dir: None, max_queue_bytes: 64 << 20, timeout_s: 5.0 });
    let (stop, rx) = tokio::sync::watch::channel(false);
    let sink = InfluxSink::start(cfg.influxdb.as_ref().expect("cfg"), dir.path(), rx.clone()).expect("sink");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let state =
        AppState { store: store.clone(), auth: Arc::new(Auth::new(vec![WRITE.into()], vec![READ.into()], false)), config: Arc::new(cfg), sink: Some(sink.clone()), metrics: Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(server::serve(listener, server::router(state), rx));

    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 3600;
    // As a sender writes them: backslashes that escape nothing are themselves.
    let body = format!(
        "win_disk,host=ws1,instance=\\\\srv\\share free_bytes=1024i {t}\n\
         pa\\th,t\\ag=va\\lue,sp=a\\ b\\,c f\\ield=1.5,s=\"back\\\\slash \\\"q\\\" c:\\\\temp\" {t}\n"
    );
    let r = http().post(format!("http://{addr}/api/v2/write?precision=s")).header("Authorization", format!("Token {WRITE}")).body(body).send().await.expect("write");
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());

    let win = store.find_series("win_disk", "free_bytes", &[]).expect("find");
    assert_eq!(win.first().and_then(|m| m.tag("instance")), Some(r"\\srv\share"), "stored as sent");
    let path = store.find_series(r"pa\th", r"f\ield", &[]).expect("find");
    assert_eq!(path.first().and_then(|m| m.tag(r"t\ag")), Some(r"va\lue"));
    assert_eq!(path.first().and_then(|m| m.tag("sp")), Some("a b,c"));

    let tags = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>();
    let fields = |kv: &[(&str, Value)]| kv.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<BTreeMap<_, _>>();
    let want = vec![
        (r"pa\th".to_owned(), tags(&[(r"t\ag", r"va\lue"), ("sp", "a b,c")]), fields(&[(r"f\ield", serde_json::json!(1.5)), ("s", serde_json::json!(r#"back\slash "q" c:\temp"#))])),
        ("win_disk".to_owned(), tags(&[("host", "ws1"), ("instance", r"\\srv\share")]), fields(&[("free_bytes", serde_json::json!(1024))])),
    ];
    // Polled until equal: a point can land between the two queries that read it back.
    let mut got = Vec::new();
    for _ in 0..100 {
        got = points_in_influxdb(influx_port).await;
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, want, "InfluxDB holds what Kilowatch stored");
    assert_eq!(sink.health().batches_rejected, 0);
    let _ = stop.send(true);
}
