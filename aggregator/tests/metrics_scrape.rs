//! The aggregator's own `GET /metrics`, read from the real `kilowatch serve` binary: the
//! figures after known writes, the page checked by `promtool check metrics`, a real Prometheus
//! scraping it with the read token; and the request id every answer carries and every log line
//! of the request names.

mod common;
mod kilowatch_bin;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kilowatch_bin::{Kilowatch, READ, WRITE};

/// A small body limit, for a 413; checkpoints and maintenance every second, so that a scrape
/// soon sees both.
const SERVER: &str = "max_body_bytes = 4096\n[store]\ncheckpoint_interval_s = 1\nmaintenance_interval_s = 1";

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

async fn post(k: &Kilowatch, token: Option<&str>, body: Vec<u8>, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(k.url("/api/v2/write?precision=s")).body(body).timeout(Duration::from_secs(20));
    if let Some(t) = token {
        r = r.header("Authorization", format!("Token {t}"));
    }
    for (h, v) in extra {
        r = r.header(*h, *v);
    }
    r.send().await.expect("post")
}

/// `/metrics` as text, with the read token.
async fn scrape(k: &Kilowatch) -> String {
    let r = reqwest::Client::new().get(k.url("/metrics")).bearer_auth(READ).timeout(Duration::from_secs(20)).send().await.expect("scrape");
    assert_eq!(r.status(), 200);
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.expect("text")
}

/// Each sample of the page: `name{labels}` → value.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse::<f64>().unwrap_or(f64::NAN)))).collect()
}

fn get(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| panic!("{key} missing from /metrics: {:#?}", s.keys().filter(|k| k.starts_with("kilowatch_")).collect::<Vec<_>>()))
}

/// Polls `/metrics` until `ready` holds of it, for at most `within`.
async fn scrape_until(k: &Kilowatch, within: Duration, ready: impl Fn(&HashMap<String, f64>) -> bool) -> (String, HashMap<String, f64>) {
    let t0 = Instant::now();
    loop {
        let page = scrape(k).await;
        let s = samples(&page);
        if ready(&s) || t0.elapsed() > within {
            return (page, s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_server_did_and_promtool_accepts_them() {
    let k = Kilowatch::spawn(SERVER).await;
    let t = now_s();
    // Stored: 3 lines of 2 fields; then the same shape, gzipped (counted inflated).
    let good = format!("gpu,node=n1,gpu=0 power_w=300,temp_c=60 {t}\ngpu,node=n1,gpu=1 power_w=310,temp_c=61 {t}\ngpu,node=n1,gpu=2 power_w=320,temp_c=62 {t}\n");
    let r = post(&k, Some(WRITE), good.clone().into_bytes(), &[("x-request-id", "obs-stored-1")]).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("obs-stored-1"), "the client's id comes back");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(good.as_bytes()).expect("gzip");
    assert_eq!(post(&k, Some(WRITE), gz.finish().expect("gzip"), &[("Content-Encoding", "gzip")]).await.status(), 204);
    // Partial: one line stored, one a day ahead of the clock refused (max_future_skew_s).
    let partial = format!("gpu,node=n1,gpu=3 power_w=330,temp_c=63 {t}\ngpu,node=n1,gpu=4 power_w=1,temp_c=1 {}\n", t + 86_400);
    let r = post(&k, Some(WRITE), partial.clone().into_bytes(), &[("x-request-id", "obs-partial-7")]).await;
    assert_eq!(r.status(), 422);
    // Invalid, no token, a read token, too large.
    let invalid = b"this is not line protocol\n".to_vec();
    assert_eq!(post(&k, Some(WRITE), invalid.clone(), &[]).await.status(), 400);
    assert_eq!(post(&k, None, good.clone().into_bytes(), &[]).await.status(), 401);
    assert_eq!(post(&k, Some(READ), good.clone().into_bytes(), &[]).await.status(), 403);
    assert_eq!(post(&k, Some(WRITE), vec![b'#'; 8192], &[]).await.status(), 413);
    // The jobs list twice: computed, then served from the cache.
    for _ in 0..2 {
        let r = reqwest::Client::new().get(k.url("/api/v1/jobs?period=day")).bearer_auth(READ).send().await.expect("jobs");
        assert_eq!(r.status(), 200);
        let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(id.len(), 36, "a new UUID when the client sent none: {id:?}");
    }
    // A read token is needed.
    assert_eq!(reqwest::Client::new().get(k.url("/metrics")).send().await.expect("anonymous").status(), 401);

    let (page, s) = scrape_until(&k, Duration::from_secs(30), |s| {
        s.get("kilowatch_store_checkpoint_duration_seconds_count").is_some_and(|n| *n >= 1.0) && s.get("kilowatch_store_maintenance_duration_seconds_count").is_some_and(|n| *n >= 1.0)
    })
    .await;
    let outcome = |o: &str| get(&s, &format!("kilowatch_ingest_requests_total{{outcome=\"{o}\"}}"));
    assert_eq!(outcome("stored"), 2.0);
    assert_eq!(outcome("partial"), 1.0);
    assert_eq!(outcome("invalid"), 1.0);
    assert_eq!(outcome("unauthorized"), 1.0);
    assert_eq!(outcome("forbidden"), 1.0);
    assert_eq!(outcome("too_large"), 1.0);
    assert_eq!(get(&s, "kilowatch_ingest_lines_accepted_total"), 7.0);
    assert_eq!(get(&s, "kilowatch_ingest_values_accepted_total"), 14.0);
    assert_eq!(get(&s, "kilowatch_ingest_lines_refused_total{reason=\"max_future_skew_s\"}"), 1.0);
    assert_eq!(get(&s, "kilowatch_ingest_new_series_total"), 8.0);
    // What reached the write handler, inflated: two good bodies, the partial one, the invalid one.
    assert_eq!(get(&s, "kilowatch_ingest_bytes_total"), (2 * good.len() + partial.len() + invalid.len()) as f64);
    assert_eq!(get(&s, "kilowatch_store_series"), 8.0);
    let age = get(&s, "kilowatch_store_newest_sample_age_seconds");
    assert!((-5.0..600.0).contains(&age), "newest sample age {age} s");
    assert_eq!(get(&s, "kilowatch_http_request_duration_seconds_count{route=\"/api/v2/write\",method=\"POST\",status_class=\"2xx\"}"), 2.0);
    assert_eq!(get(&s, "kilowatch_http_request_duration_seconds_count{route=\"/api/v2/write\",method=\"POST\",status_class=\"4xx\"}"), 5.0);
    assert_eq!(get(&s, "kilowatch_http_request_duration_seconds_count{route=\"/api/v1/jobs\",method=\"GET\",status_class=\"2xx\"}"), 2.0);
    assert!(!page.contains("route=\"/api/v2/write?"), "routes are patterns, not raw URIs");
    // Nothing in progress: a scrape is not counted (it is never refused for load).
    assert_eq!(get(&s, "kilowatch_http_requests_in_progress"), 0.0);
    assert_eq!(get(&s, "kilowatch_http_request_body_bytes_in_progress"), 0.0);
    assert!(get(&s, "kilowatch_connections_open") >= 1.0);
    assert!(get(&s, "kilowatch_connections_accepted_total") >= 10.0);
    assert_eq!(get(&s, "kilowatch_connections_refused_total"), 0.0);
    assert_eq!(get(&s, "kilowatch_api_cache_lookups_total{result=\"miss\"}"), 1.0);
    assert_eq!(get(&s, "kilowatch_api_cache_lookups_total{result=\"hit\"}"), 1.0);
    assert!(get(&s, "kilowatch_store_lock_wait_seconds_count") >= 10.0, "every store call is timed");
    assert!(get(&s, "kilowatch_store_checkpoint_duration_seconds_count") >= 1.0);
    assert!(get(&s, "kilowatch_store_maintenance_duration_seconds_count") >= 1.0);
    assert_eq!(get(&s, "kilowatch_store_checkpoint_failures_total"), 0.0);
    assert!(get(&s, "kilowatch_store_checkpoint_samples_total") >= 1.0);
    assert!(get(&s, "kilowatch_store_checkpoints_total") >= 1.0);
    // No InfluxDB sink configured: no queue figures.
    assert!(!page.contains("kilowatch_influxdb_"), "{page}");

    // The log line of the partial write names its request.
    let log = k.log();
    assert!(log.lines().any(|l| l.contains("write partly refused") && l.contains("request_id=obs-partial-7")), "{log}");

    if common::require_tool("promtool", "prometheus") {
        let mut child = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("promtool");
        child.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("feed promtool");
        let out = child.wait_with_output().expect("promtool");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{page}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_aggregator_with_the_read_token() {
    if !common::require_tool("prometheus", "prometheus") {
        return;
    }
    let k = Kilowatch::spawn(SERVER).await;
    let t = now_s();
    assert_eq!(post(&k, Some(WRITE), format!("meter,meter=grid energy_kwh=1 {t}\nmeter,meter=it energy_kwh=2 {t}\n").into_bytes(), &[]).await.status(), 204);
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: kilowatch\n    metrics_path: /metrics\n    authorization:\n      type: Bearer\n      credentials: {READ}\n    static_configs:\n      - targets: ['{}']\n",
            k.addr
        ),
    )
    .expect("config");
    let port = free_port();
    let prom_log = dir.path().join("prometheus.log");
    let prom = common::Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prom_log).expect("log file"))
            .spawn()
            .expect("start prometheus"),
    );
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let query = |q: &'static str| {
        let c = client.clone();
        async move {
            let r = c.get(format!("http://127.0.0.1:{port}/api/v1/query")).query(&[("query", q)]).send().await.ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok())
        }
    };
    // Bounded: Prometheus starts, scrapes every second, and the sample becomes queryable.
    let t0 = Instant::now();
    let (mut up, mut lines) = (None, None);
    while t0.elapsed() < Duration::from_secs(90) {
        up = query("up{job=\"kilowatch\"}").await;
        lines = query("kilowatch_ingest_lines_accepted_total{job=\"kilowatch\"}").await;
        if up == Some(1.0) && lines.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let targets = match client.get(format!("http://127.0.0.1:{port}/api/v1/targets")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    drop(prom);
    let log = std::fs::read_to_string(&prom_log).unwrap_or_default();
    assert_eq!(up, Some(1.0), "the target is up (targets: {targets})\n{log}");
    assert_eq!(lines, Some(2.0), "a kilowatch_ metric is queryable through Prometheus");
}
