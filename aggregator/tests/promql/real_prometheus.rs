//! A real Prometheus beside Kilowatch, for the tests that compare their answers: the same
//! samples backfilled into Debian's `prometheus` (`promtool tsdb create-blocks-from
//! openmetrics`) and written to Kilowatch as line protocol.

use std::io::Write;
use std::time::Duration;

use crate::common::{self, Reaped, Server, WRITE};

pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

pub fn series(name: &str, labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> Series {
    Series { name: name.into(), labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(), samples }
}

/// The samples as OpenMetrics, for `promtool tsdb create-blocks-from openmetrics`.
pub fn openmetrics(data: &[Series]) -> String {
    let mut s = String::new();
    for x in data {
        let labels: Vec<String> = x.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        for (t, v) in &x.samples {
            s.push_str(&format!("{}{{{}}} {} {}\n", x.name, labels.join(","), v, t));
        }
    }
    s.push_str("# EOF\n");
    s
}

/// The samples as line protocol bodies: measurement = the metric name, field `value`.
pub fn line_protocol(data: &[Series]) -> Vec<String> {
    let mut bodies = vec![String::new()];
    for x in data {
        let tags: String = x.labels.iter().map(|(k, v)| format!(",{k}={v}")).collect();
        for (t, v) in &x.samples {
            let body = bodies.last_mut().expect("one body");
            body.push_str(&format!("{}{} value={} {}\n", x.name, tags, v, t));
            if body.len() > 4_000_000 {
                bodies.push(String::new());
            }
        }
    }
    bodies
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Debian's Prometheus on the backfilled blocks, ready to answer.
pub async fn start_prometheus(dir: &std::path::Path, data: &[Series]) -> (Reaped, String) {
    let om = dir.join("data.om");
    std::fs::write(&om, openmetrics(data)).expect("openmetrics");
    let tsdb = dir.join("tsdb");
    let out = std::process::Command::new("promtool").args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&om).arg(&tsdb).output().expect("promtool");
    assert!(out.status.success(), "backfill: {}", String::from_utf8_lossy(&out.stderr));
    let cfg = dir.join("prometheus.yml");
    std::fs::File::create(&cfg).and_then(|mut f| f.write_all(b"global:\n  scrape_interval: 1h\n")).expect("config");
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let child = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let reaped = Reaped(child);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{url}/-/ready")).await.is_ok_and(|r| r.status() == 200) {
            return (reaped, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("prometheus did not become ready: {}", std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default());
}

/// Debian's Prometheus and a Kilowatch server in `dir`, both holding `data`; none where
/// `prometheus` or `promtool` is not installed (outside CI).
pub async fn both(dir: &std::path::Path, data: &[Series]) -> Option<(Reaped, String, Server)> {
    if !common::require_tool("prometheus", "prometheus") || !common::require_tool("promtool", "prometheus") {
        return None;
    }
    let (prom, url) = start_prometheus(dir, data).await;
    std::fs::create_dir_all(dir.join("kw")).expect("dir");
    let srv = Server::start(&dir.join("kw")).await;
    for body in line_protocol(data) {
        let r = srv.write(&body, "s", WRITE).await;
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    }
    Some((prom, url, srv))
}
