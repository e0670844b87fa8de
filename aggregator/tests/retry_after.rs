//! `Retry-After` on a write refused for the memory budget (issue 31 item 3), through
//! `kilowatch serve`: it says when the next checkpoint will have freed the heads, from the
//! durations of the checkpoints measured (`kilowatch_store_checkpoint_duration_seconds`), not a
//! constant, within 1 to 60 s; a sender that waits what it is told gets in.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Reaped, WRITE};

fn config(dir: &std::path::Path, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kilowatch.toml");
    let data = dir.join("data");
    std::fs::write(&path, format!("[server]\nlisten = \"{addr}\"\ndata_dir = {data:?}\n[report]\nenabled = false\n[store]\nmemory_budget_mb = 64\ncheckpoint_interval_s = 3600\n")).expect("config");
    path
}

/// The checkpoints' count and total seconds, from `/metrics`.
async fn checkpoints(c: &reqwest::Client, addr: SocketAddr) -> (f64, f64) {
    let text = c.get(format!("http://{addr}/metrics")).header("Authorization", format!("Token {}", common::READ)).send().await.expect("metrics").text().await.expect("text");
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0);
    (value("kilowatch_store_checkpoint_duration_seconds_count"), value("kilowatch_store_checkpoint_duration_seconds_sum"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_follows_the_measured_checkpoints() {
    let dir = tempfile::tempdir().expect("tmp");
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let _server: Reaped = common::serve_process(&config(dir.path(), addr), &dir.path().join("kilowatch.log"));
    let c = reqwest::Client::new();
    let up = Instant::now();
    while !c.get(format!("http://{addr}/api/v1/health")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(up.elapsed() < Duration::from_secs(60), "kilowatch did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 1 MB strings of one series, a new timestamp each: the heads fill the 64 MB budget in
    // about 60 requests, a checkpoint empties them.
    let big = "x".repeat(1 << 20);
    let t = kilowatch_model::Timestamp::now().0 / 1_000_000_000 - 3600;
    // (Retry-After, checkpoints measured then and their mean seconds, 503s in a row before).
    let mut told: Vec<(u64, f64, f64, usize)> = Vec::new();
    let mut in_a_row = 0;
    let mut i = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while told.iter().filter(|(_, n, _, _)| *n >= 1.0).count() < 4 {
        assert!(Instant::now() < deadline, "never refused for the budget after a checkpoint: {told:?}");
        let body = format!("note,n=a text=\"{big}\" {}\n", t + i);
        let r = c.post(format!("http://{addr}/api/v2/write?precision=s")).header("Authorization", format!("Token {WRITE}")).body(body).send().await.expect("post");
        match r.status().as_u16() {
            204 => {
                i += 1;
                in_a_row = 0;
            }
            503 => {
                let wait: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("503 carries Retry-After");
                let (n, sum) = checkpoints(&c, addr).await;
                told.push((wait, n, if n > 0.0 { sum / n } else { 0.0 }, in_a_row));
                in_a_row += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            other => panic!("answered {other}: {}", r.text().await.unwrap_or_default()),
        }
    }
    eprintln!("(Retry-After s, checkpoints measured, their mean s, 503s in a row before): {told:?}");
    for (wait, n, mean, _) in told.iter().filter(|(_, n, _, _)| *n >= 1.0) {
        assert!((1..=60).contains(wait), "{wait}");
        // The next checkpoint starts within a second and takes about what the measured ones
        // took (the heads are as full as they were then): told more than that, the sender
        // waits for nothing (the constant 5 s of before, with sub-second checkpoints).
        let bound = (1.0 + 3.0 * mean).ceil() as u64 + 1;
        assert!(*wait <= bound, "Retry-After {wait} s with {n} checkpoints of {mean:.2} s on average measured (at most {bound} s expected)");
    }
    // Waiting what it is told is enough: a sender is rarely refused twice in a row.
    let twice = told.iter().filter(|(_, _, _, row)| *row >= 2).count();
    assert!(twice == 0, "refused three times in a row although it waited as told: {told:?}");
}
