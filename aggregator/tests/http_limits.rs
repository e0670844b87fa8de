//! The HTTP layer under abuse, against the real `kilowatch serve` binary: a tokenless flood of
//! gzip bombs is refused before any body is read (peak memory stays low, every answer is 401);
//! body bytes and requests in progress are capped (503 with Retry-After, health still
//! answers) and slow bodies time out (408); a client that stops reading is cut off; 2,000 idle sockets neither stop health checks nor
//! stay open past the header timeout; a connection cap holds; SIGTERM with a live stream open
//! stops within seconds, and a request that lingers is dropped at the grace deadline; the live
//! stream's `?token=` is percent-decoded; `--insecure-no-auth` refuses a non-loopback address;
//! a jobs query stops computing when its client goes.

mod kilowatch_bin;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kilowatch_bin::{Kilowatch, READ, WRITE};

/// The documented bound (docs/security.md) on the server's peak resident memory under the
/// tokenless flood: without the token check before the body, the same flood took 1.5 GB.
const FLOOD_PEAK_RSS_BOUND_KB: u64 = 128 * 1024;

/// A gzip body that inflates to `inflated` bytes of line protocol.
fn gzip_bomb(inflated: usize) -> Vec<u8> {
    let line = b"gpu,site=dc5,node=dgx-001,gpu=0 power_w=512.5,temp_c=61 1790812800000000000\n";
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut left = inflated;
    while left > 0 {
        let n = left.min(line.len());
        enc.write_all(&line[..n]).expect("gzip");
        left -= n;
    }
    enc.finish().expect("gzip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tokenless_flood_of_gzip_bombs_is_refused_before_reading() {
    let k = Kilowatch::spawn("").await;
    let base_kb = k.peak_rss_kb();
    let bomb = axum::body::Bytes::from(gzip_bomb(30 << 20));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    let mut tasks = Vec::new();
    for _ in 0..120 {
        let (c, url, body) = (client.clone(), k.url("/api/v2/write?precision=ns"), bomb.clone());
        tasks.push(tokio::spawn(async move { c.post(url).header("Content-Encoding", "gzip").body(body).send().await.map(|r| r.status().as_u16()) }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("join").expect("every request gets an answer"));
    }
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    let peak_kb = k.peak_rss_kb();
    eprintln!("peak RSS: {base_kb} kB before the flood, {peak_kb} kB after ({} kB compressed per request, 30 MiB inflated)", bomb.len() / 1024);
    assert!(peak_kb < FLOOD_PEAK_RSS_BOUND_KB, "peak RSS {peak_kb} kB over the documented {FLOOD_PEAK_RSS_BOUND_KB} kB");
    // Still serving, and nothing was stored.
    let h = k.health(Some(READ)).await;
    assert_eq!(h["store"]["requests_written"], 0, "{h}");
}

/// Writes a request head and `sent` bytes of a body announced as `len` bytes long, on a raw
/// socket (a client that stalls mid-body).
fn partial_post(addr: SocketAddr, path: &str, token: &str, len: usize, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!("POST {path} HTTP/1.1\r\nHost: k\r\nAuthorization: Token {token}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(sent).expect("body");
    s
}

/// The status line and headers of the answer on `s`, read within a bounded time.
fn read_head(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&buf).to_string()
}

fn lines(n_bytes: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(n_bytes + 100);
    let mut i = 0u64;
    while body.len() < n_bytes {
        body.extend_from_slice(format!("meter,site=dc5,meter=grid-a,role=facility energy_kwh={i} {}\n", 1_790_812_800 + i).as_bytes());
        i += 1;
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_progress_are_capped_and_slow_bodies_time_out() {
    let k = Kilowatch::spawn("max_body_bytes = 2097152\nmax_inflight_bytes = 2359296\nbody_timeout_s = 3\n").await;
    let addr = k.addr;
    let body = lines(1536 << 10);
    let (a, b) = tokio::task::spawn_blocking(move || {
        // A holds 1 MiB in progress; B's 1.5 MiB would take the total past 2.25 MiB.
        let mut a = partial_post(addr, "/api/v2/write?precision=s", WRITE, body.len(), &body[..1 << 20]);
        std::thread::sleep(Duration::from_millis(500));
        let mut b = partial_post(addr, "/api/v2/write?precision=s", WRITE, body.len(), &body);
        let b_head = read_head(&mut b);
        a.write_all(&body[1 << 20..]).expect("rest of a");
        (read_head(&mut a), b_head)
    })
    .await
    .expect("join");
    assert!(b.starts_with("HTTP/1.1 503") && b.to_ascii_lowercase().contains("retry-after: 1"), "{b}");
    assert!(a.starts_with("HTTP/1.1 204"), "{a}");
    // A body that stops arriving: 408 at server.body_timeout_s.
    let slow = tokio::task::spawn_blocking(move || read_head(&mut partial_post(addr, "/api/v1/jobs", WRITE, 100, b"{\"job\":"))).await.expect("join");
    assert!(slow.starts_with("HTTP/1.1 408") && slow.contains("application/json"), "{slow}");
}

/// Raises this test process's soft open-files limit to its hard limit.
fn raise_nofile(need: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    if l.current.is_some_and(|c| c < need) {
        setrlimit(Resource::Nofile, Rlimit { current: l.maximum, maximum: l.maximum }).expect("raise the open-files limit");
    }
    let now = getrlimit(Resource::Nofile).current;
    assert!(now.is_none_or(|c| c >= need), "this test needs {need} open files; the hard limit allows {now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sockets_neither_stop_health_nor_stay_open() {
    raise_nofile(2_300);
    let k = Kilowatch::spawn("header_read_timeout_s = 3\n").await;
    let addr = k.addr;
    let idle: Vec<TcpStream> = tokio::task::spawn_blocking(move || (0..2_000).map(|_| TcpStream::connect(addr).expect("connect")).collect()).await.expect("join");
    let t0 = Instant::now();
    let h = k.health(None).await;
    assert_eq!(h["status"], "pass", "{h}");
    // Anonymous: the status only, nothing about the version, the store or forwarding.
    assert_eq!(h.as_object().map(|o| o.len()), Some(2), "{h}");
    assert!(t0.elapsed() < Duration::from_secs(3), "health answered within the header timeout");
    // Past server.header_read_timeout_s the server has closed every one of them.
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter(|s| {
                s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
                let mut b = [0u8; 512];
                // EOF, or the answer hyper sends before closing, then EOF.
                (&*s).read(&mut b).is_ok_and(|n| n == 0 || (&*s).read(&mut b).is_ok_and(|n| n == 0))
            })
            .count()
    })
    .await
    .expect("join");
    assert_eq!(closed, 2_000, "idle sockets closed by the server");
    assert_eq!(k.health(None).await["status"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_once() {
    let k = Kilowatch::spawn("max_connections = 50\n").await;
    let addr = k.addr;
    let (closed, open) = tokio::task::spawn_blocking(move || {
        let socks: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(addr).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(500));
        let closed = socks
            .iter()
            .filter(|s| {
                s.set_nonblocking(true).expect("nonblocking");
                // Closed: end of file or a reset; held open: nothing to read yet.
                !(&**s).read(&mut [0u8; 16]).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        (closed, socks.len() - closed)
    })
    .await
    .expect("join");
    assert_eq!((closed, open), (50, 50), "past the cap of 50, connections are closed at once; the first 50 are held");
    assert!(k.log().contains("server.max_connections reached"), "the refusal is logged");
    assert!(scrape(&k).await.contains("\nkilowatch_connections_refused_total 50\n"), "and counted");
}

/// `/metrics` with the read token, retried while the held connections are being closed.
async fn scrape(k: &Kilowatch) -> String {
    let t0 = Instant::now();
    loop {
        let r = reqwest::Client::new().get(k.url("/metrics")).bearer_auth(READ).timeout(Duration::from_secs(5)).send().await;
        match r {
            Ok(r) if r.status() == 200 => return r.text().await.expect("text"),
            other => assert!(t0.elapsed() < Duration::from_secs(20), "no /metrics: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_open_live_stream_stops_within_seconds() {
    // A token with characters that percent-encoding changes: the live stream decodes ?token=.
    let token = "read+token/0123456789==";
    let k = Kilowatch::spawn_with("", &[("KILOWATCH_READ_TOKEN", token)]).await;
    let url = k.url("/dashboard/live?token=read%2Btoken%2F0123456789%3D%3D");
    let mut live = reqwest::Client::new().get(&url).send().await.expect("live");
    assert_eq!(live.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(20), live.chunk()).await.expect("an event in time").expect("read");
    assert!(first.is_some_and(|c| String::from_utf8_lossy(&c).contains("event:")), "an SSE event");
    // The raw, undecoded token is not the token.
    let raw = reqwest::get(k.url("/dashboard/live?token=read%2Btoken%2F0123456789%3D%3Dx")).await.expect("send");
    assert_eq!(raw.status(), 401);
    let t0 = Instant::now();
    let status = k.terminate_and_wait(Duration::from_secs(15)).expect("exited within 15 s of SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(8), "stopped in {took:?}: a few seconds at most");
    // The stream ended with the server (end of stream or a closed connection, not a hang).
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match live.chunk().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the live stream ended");
}

#[test]
fn insecure_no_auth_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kilowatch"))
        .args(["serve", "--insecure-no-auth", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("KILOWATCH_WRITE_TOKEN", WRITE)
        .env_remove("KILOWATCH_READ_TOKEN")
        .output()
        .expect("run kilowatch");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-no-auth") && stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_query_stops_when_its_client_goes() {
    let k = Kilowatch::spawn("").await;
    // Open jobs sharing one node's GPUs for a year: every hour of the window attributes to all
    // of them, seconds of work.
    let jobs: Vec<_> = (0..2_000).map(|i| serde_json::json!({"job": format!("j{i}"), "owner": "ada", "node": "dgx-001", "gpus": [0, 1, 2, 3, 4, 5, 6, 7], "start": "2024-01-01T00:00:00Z"})).collect();
    let r = reqwest::Client::new().post(k.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&jobs).send().await.expect("post");
    assert_eq!(r.status(), 200);
    let gone = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client")
        .get(k.url("/api/v1/jobs?from=2024-01-01T00:00:00Z&to=2025-01-20T00:00:00Z"))
        .header("Authorization", format!("Token {READ}"))
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the query outlasts the client's patience");
    let t0 = Instant::now();
    while !k.log().contains("jobs query stopped: the client went away") {
        assert!(t0.elapsed() < Duration::from_secs(60), "the computation went on after its client left: {}", k.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_cap_get_503_and_a_stop_drops_what_lingers() {
    let k = Kilowatch::spawn("max_concurrent_requests = 1\nshutdown_grace_s = 1\n").await;
    // A request whose body never finishes holds the only slot.
    let mut stuck = partial_post(k.addr, "/api/v1/jobs", WRITE, 100, b"{\"job\":");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = reqwest::Client::new().get(k.url("/api/v1/kpi?period=day")).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert_eq!(r.json::<serde_json::Value>().await.expect("json")["code"], "unavailable");
    // Health is never refused for load, nor is a metrics scrape, which shows the refusal.
    assert_eq!(k.health(None).await["status"], "pass");
    let page = scrape(&k).await;
    assert!(page.contains("\nkilowatch_http_requests_refused_total{reason=\"max_concurrent_requests\"} 1\n"), "{page}");
    assert!(page.contains("\nkilowatch_http_requests_in_progress 1\n"), "the stuck request holds the slot: {page}");
    // SIGTERM: the stuck request is dropped at server.shutdown_grace_s, not at the body timeout.
    let t0 = Instant::now();
    let status = k.terminate_and_wait(Duration::from_secs(15)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(8), "stopped in {:?}", t0.elapsed());
    let mut rest = Vec::new();
    stuck.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let _ = stuck.read_to_end(&mut rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off() {
    let k = Kilowatch::spawn("write_timeout_s = 2\n").await;
    let addr = k.addr;
    let (answers, took) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        // Far more answer than the socket buffers hold (about 40 MB), and nobody reading it.
        let asks = "GET /dashboard/assets/app.js HTTP/1.1\r\nHost: k\r\n\r\n".repeat(4_000);
        let writer = s.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut w = writer;
            let _ = w.write_all(asks.as_bytes());
        });
        std::thread::sleep(Duration::from_secs(5));
        let t0 = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        (all.windows(12).filter(|w| w == b"HTTP/1.1 200").count(), t0.elapsed())
    })
    .await
    .expect("join");
    assert!(answers < 4_000, "the server gave up on the stalled client after {answers} answers");
    assert!(took < Duration::from_secs(15), "the connection was closed, not left open ({took:?})");
    assert_eq!(k.health(None).await["status"], "pass");
}
