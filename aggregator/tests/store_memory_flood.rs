//! `store.memory_budget_mb` bounds the memory of the real binary under the floods of issue 31
//! item 3: series of 64 tags, and 1 MB string values, under a 256 MB budget. Peak RSS (VmHWM)
//! stays under a documented ceiling (docs/security.md), writes past the budget are refused
//! (503 with `Retry-After` while a checkpoint frees the heads; 422 naming the budget for what no
//! retry lets in), and every write that was acknowledged is in the store after a SIGKILL.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{READ, Reaped, WRITE};
use kilowatch_store::Store;

const BUDGET_MB: u64 = 256;
/// The documented ceiling: peak RSS under these floods, for a 256 MB budget.
const CEILING_MB: u64 = 1024;

fn config(dir: &Path, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kilowatch.toml");
    let data = dir.join("data");
    std::fs::write(&path, format!("[server]\nlisten = \"{addr}\"\ndata_dir = {data:?}\n[report]\nenabled = false\n[store]\nmemory_budget_mb = {BUDGET_MB}\ncheckpoint_interval_s = 3600\n"))
        .expect("config");
    path
}

fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmHWM");
    kb / 1024
}

/// POSTs `body` until it is answered other than 503 (waiting as `Retry-After` says, which
/// must be there); returns the final status and how many 503s came first.
async fn write(c: &reqwest::Client, addr: SocketAddr, body: String) -> (u16, usize) {
    let mut busy = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = c.post(format!("http://{addr}/api/v2/write?precision=s")).header("Authorization", format!("Token {WRITE}")).body(body.clone()).send().await.expect("post");
        if r.status() != 503 {
            return (r.status().as_u16(), busy);
        }
        let wait: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("503 carries Retry-After");
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        busy += 1;
        assert!(Instant::now() < deadline, "still refused after 120 s: the checkpoint never freed the budget");
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}

/// A `kilowatch serve` under the 256 MB budget, started and answering.
async fn start(d: &Path) -> (Reaped, SocketAddr, reqwest::Client) {
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    // `KILOWATCH_BIN` runs a copy of the binary: in a build folder shared by several
    // worktrees, target/debug/kilowatch can be another branch's by the time the test runs.
    let bin = std::env::var("KILOWATCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kilowatch").to_owned());
    let log = std::fs::File::create(d.join("kilowatch.log")).expect("log");
    let server = Reaped(
        std::process::Command::new(bin)
            .args(["serve", "--config"])
            .arg(config(d, addr))
            .env("KILOWATCH_WRITE_TOKEN", WRITE)
            .env("KILOWATCH_READ_TOKEN", READ)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kilowatch"),
    );
    let c = reqwest::Client::new();
    let up = Instant::now();
    while !c.get(format!("http://{addr}/api/v1/health")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(up.elapsed() < Duration::from_secs(60), "kilowatch did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, addr, c)
}

fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).expect("VmRSS") / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_64_tag_series_is_refused_past_the_budget_under_the_ceiling() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (server, addr, c) = start(d).await;
    let before = rss_mb(server.0.id());
    let t = kilowatch_model::Timestamp::now().0 / 1_000_000_000 - 3600;
    // Series of 64 tags, 500 a request: about 43 KB each as counted, so ~5,000 fit.
    let mut acked = Vec::new();
    let mut refused = 0;
    for r in 0..20 {
        let body: String = (0..500)
            .map(|i| {
                let n = r * 500 + i;
                let tags: String = (0..64).map(|k| format!(",tag{k:02}=s{n:05}-value-{k:02}")).collect();
                format!("wide,n={n}{tags} v={n} {t}\n")
            })
            .collect();
        match write(&c, addr, body).await.0 {
            204 => acked.extend((r * 500)..(r * 500 + 500)),
            422 => refused += 1,
            other => panic!("wide series: answered {other}"),
        }
    }
    assert!(refused > 0, "10,000 series of 64 tags fit a 256 MB budget: the tags are not counted");
    assert!(!acked.is_empty());
    let (peak, now) = (peak_rss_mb(server.0.id()), rss_mb(server.0.id()));
    eprintln!("64-tag flood: peak RSS {peak} MB (RSS {before} MB before, {now} MB after); series acknowledged {}", acked.len());
    assert!(peak < CEILING_MB, "peak RSS {peak} MB over the documented ceiling of {CEILING_MB} MB");
    drop(server); // SIGKILL: what was acknowledged is in the log.
    let s = Store::open(&d.join("data")).expect("open");
    for n in &acked {
        assert_eq!(s.find_series("wide", "v", &[("n", &n.to_string())]).expect("find").len(), 1, "wide series {n} acknowledged and lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_1_mb_strings_is_refused_past_the_budget_under_the_ceiling() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (server, addr, c) = start(d).await;
    let t = kilowatch_model::Timestamp::now().0 / 1_000_000_000 - 3600;
    // 1 MB strings, 8 a request, each a series of its own: 480 MB in all.
    let big = "x".repeat(1 << 20);
    let (mut acked, mut refused, mut busy) = (Vec::new(), 0, 0);
    for r in 0..60 {
        let body: String = (0..8).map(|i| format!("note,n={} text=\"{big}\" {t}\n", r * 8 + i)).collect();
        let (status, b) = write(&c, addr, body).await;
        busy += b;
        match status {
            204 => acked.extend((r * 8)..(r * 8 + 8)),
            // Partly or wholly refused: the lines refused are named, the rest is stored.
            422 => refused += 1,
            other => panic!("strings: answered {other}"),
        }
    }
    assert!(refused > 0, "480 MB of strings kept as newest values fit a 256 MB budget");
    assert!(!acked.is_empty());
    let peak = peak_rss_mb(server.0.id());
    eprintln!("1 MB strings: peak RSS {peak} MB; requests acknowledged whole {}, partly or wholly refused {refused}, 503s waited out {busy}", acked.len() / 8);
    assert!(peak < CEILING_MB, "peak RSS {peak} MB over the documented ceiling of {CEILING_MB} MB");
    drop(server);
    let s = Store::open(&d.join("data")).expect("open");
    for n in &acked {
        let ids = s.find_series("note", "text", &[("n", &n.to_string())]).expect("find");
        assert_eq!(ids.len(), 1, "string series {n} acknowledged and lost");
        let got = s.read_with_neighbours(ids[0].id, i64::MIN, i64::MAX).expect("read");
        assert!(got.iter().any(|(_, v)| v.as_text().is_some_and(|t| t.len() == 1 << 20)), "string {n} lost");
    }
}
