//! An outbox shipping to a write endpoint on loopback that goes down, comes back, and refuses
//! one batch as invalid: every other batch arrives once and in order, the bad one is isolated
//! and dropped (counted), and batches spooled while nobody listened survive a restart.
//! The aggregator's own tests ship through the same code to the real `kilowatch serve`
//! (`aggregator/tests/{outage,ship_pair,spool_full_disk,influx_sink}.rs`); this one needs a
//! receiver it can switch off and make refuse a batch on cue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use kilowatch_ship::{Fsync, Outbox, ShipStats, Shipper, ShipperConfig, Spool, SpoolConfig};
use tokio::sync::watch;

/// What the receiver took, line by line, and whether it answers at all.
#[derive(Default)]
struct Receiver {
    up: AtomicBool,
    lines: Mutex<Vec<String>>,
}

/// Down: 503 (retry later). Up: a request holding a `bad` line is invalid as a whole (400),
/// as InfluxDB answers a malformed batch; anything else is stored.
async fn write(State(r): State<Arc<Receiver>>, body: String) -> StatusCode {
    if !r.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if body.lines().any(|l| l.starts_with("bad")) {
        return StatusCode::BAD_REQUEST;
    }
    r.lines.lock().expect("lines").extend(body.lines().map(str::to_owned));
    StatusCode::NO_CONTENT
}

async fn receiver() -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new().route("/api/v2/write", axum::routing::post(write)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

fn shipper(url: &str) -> Shipper {
    Shipper::new(&ShipperConfig { url: url.to_owned(), token: "t".into(), org: None, bucket: None, timeout: Duration::from_secs(5) }).expect("shipper")
}

fn spool(dir: &std::path::Path) -> Spool {
    Spool::open(SpoolConfig { dir: dir.to_path_buf(), fsync: Fsync::Never, ..SpoolConfig::default() }).expect("spool")
}

/// Waits (at most 30 s) until `ok` holds.
async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::SeqCst)
}

/// Appends off the runtime, as producers must (file I/O).
async fn append(outbox: &Outbox, body: String) {
    let o = outbox.clone();
    tokio::task::spawn_blocking(move || o.append(&body, "lost")).await.expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_a_bad_batch_is_isolated() {
    let (rx, url) = receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (stop, shutdown) = watch::channel(false);
    let stats = Arc::new(ShipStats::default());
    let (outbox, shipping) = Outbox::start(shipper(&url), spool(dir.path()), stats.clone(), shutdown);
    for i in 0..5 {
        append(&outbox, format!("m v={i} {i}\n")).await;
    }
    wait_for("a failed send while the receiver is down", || get(&stats.send_errors) > 0).await;
    append(&outbox, "bad v=1 5\n".into()).await;
    for i in 6..8 {
        append(&outbox, format!("m v={i} {i}\n")).await;
    }
    assert_eq!(get(&stats.spool_batches), 8, "every batch waits in the spool");
    assert!(rx.lines.lock().expect("lines").is_empty());

    rx.up.store(true, Ordering::SeqCst);
    wait_for("the spool to drain", || get(&stats.spool_batches) == 0).await;
    let want: Vec<String> = [0, 1, 2, 3, 4, 6, 7].iter().map(|i| format!("m v={i} {i}")).collect();
    assert_eq!(*rx.lines.lock().expect("lines"), want, "each good batch once, in order");
    assert_eq!((get(&stats.batches_sent), get(&stats.batches_rejected), get(&stats.batches_dropped)), (7, 1, 0));
    stop.send(true).expect("stop");
    shipping.await.expect("ship loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_spooled_while_down_survive_a_restart() {
    let (rx, url) = receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (stop, shutdown) = watch::channel(false);
    let (outbox, shipping) = Outbox::start(shipper(&url), spool(dir.path()), Arc::new(ShipStats::default()), shutdown);
    for i in 0..3 {
        append(&outbox, format!("m v={i} {i}\n")).await;
    }
    stop.send(true).expect("stop");
    shipping.await.expect("ship loop");
    drop(outbox);

    // A new process: the same folder, the receiver back.
    rx.up.store(true, Ordering::SeqCst);
    let reopened = spool(dir.path());
    assert_eq!(reopened.pending_records(), 3);
    let (stop, shutdown) = watch::channel(false);
    let stats = Arc::new(ShipStats::default());
    let (_outbox, shipping) = Outbox::start(shipper(&url), reopened, stats.clone(), shutdown);
    wait_for("the replay", || get(&stats.spool_batches) == 0 && get(&stats.batches_sent) == 3).await;
    assert_eq!(*rx.lines.lock().expect("lines"), ["m v=0 0", "m v=1 1", "m v=2 2"]);
    stop.send(true).expect("stop");
    shipping.await.expect("ship loop");
}
