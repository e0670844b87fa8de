//! Database snapshots (`GET /api/v1/admin/snapshot/{file}`, what `kilowatch restore` fetches)
//! are bounded (issue 31 item 9), through `kilowatch serve`: the snapshots a crash left in the
//! data directory are removed at start, and while one snapshot is being sent a second request
//! is answered 503 with `Retry-After`; once the first is done (or its client gone), the next
//! one is served.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, WRITE};
use kilowatch_aggregator::auth::sha256_hex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Text that does not compress: each snapshot is as large as what was written.
fn noise(seed: &mut u64, n: usize) -> String {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(*seed % 62) as usize])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_snapshot_at_a_time_and_crash_leftovers_removed_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // What a crash during a snapshot leaves: the copy (never unlinked) and a side file of it.
    let leftovers = [data.join(".snapshot-1796000000000000000-store.db"), data.join(".snapshot-1796000000000000000-0-jobs.db-journal")];
    for l in &leftovers {
        std::fs::write(l, vec![7u8; 100_000]).expect("leftover");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let cfg = dir.path().join("kilowatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n[alerts]\nenabled = false\n[[auth.tokens]]\nname = \"ops on call\"\nsha256 = \"{}\"\nscope = \"admin\"\n",
            data.display().to_string(),
            sha256_hex(ADMIN)
        ),
    )
    .expect("config");
    let log = dir.path().join("kilowatch.log");
    let _server = common::serve_process(&cfg, &log);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "kilowatch did not listen: {}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for l in &leftovers {
        assert!(!l.exists(), "{} removed at start", l.display());
    }
    assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("left by a crash is removed"), "logged");

    // About 12 MB that does not compress: more than the socket buffers hold between the
    // server and a client that does not read.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for batch in 0..4u64 {
        let body: String = (0..3000u64).map(|i| format!("blob,node=dgx-001 payload=\"{}\" {}\n", noise(&mut seed, 1000), now - 20_000 + batch * 3000 + i)).collect();
        let r = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/api/v2/write?precision=s")).header("Authorization", format!("Token {WRITE}")).body(body).send().await.expect("send");
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    }

    // A client that asks for store.db and reads nothing past the head, with a small receive
    // buffer: the snapshot is still being sent.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut slow = sock.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    slow.write_all(format!("GET /api/v1/admin/snapshot/store.db HTTP/1.1\r\nhost: x\r\nauthorization: Token {ADMIN}\r\n\r\n").as_bytes()).await.expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 4096, "a head");
        tokio::time::timeout(Duration::from_secs(60), slow.read_exact(&mut byte)).await.expect("the snapshot starts").expect("read");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let announced: u64 = head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|v| v.trim().parse().ok()).expect("content-length");
    assert!(announced > 10_000_000, "the copy holds what was written: {announced}");

    let client = reqwest::Client::new();
    let get = |file: &'static str| client.get(format!("http://127.0.0.1:{port}/api/v1/admin/snapshot/{file}")).header("Authorization", format!("Token {ADMIN}")).send();
    for file in ["store.db", "jobs.db"] {
        let r = get(file).await.expect("send");
        assert_eq!(r.status(), 503, "a second snapshot while one is sent ({file})");
        assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("30"));
        let body = r.text().await.unwrap_or_default();
        assert!(body.contains("another database snapshot"), "{body}");
    }

    // The first client goes: its slot is free again.
    drop(slow);
    let started = Instant::now();
    loop {
        let r = get("jobs.db").await.expect("send");
        if r.status() == 200 {
            let len = r.content_length();
            let bytes = r.bytes().await.expect("body");
            assert_eq!(Some(bytes.len() as u64), len, "a whole snapshot");
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(30), "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stray: Vec<String> = std::fs::read_dir(&data).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".snapshot-")).collect();
    assert!(stray.is_empty(), "no snapshot copy left on disk: {stray:?}");
}
