//! A stop during a catch-up roll-up, through the real `kilowatch serve`: SIGTERM ends the
//! process within `server.shutdown_grace_s` plus a few seconds (a demo stopped during the
//! roll-up of a 70-day backfill ran 15 minutes after SIGTERM), and a SIGKILL in the middle of
//! the roll-up loses nothing: after a restart the ledger (`/api/v1/kpi`, `/api/v1/jobs`) is the
//! one an uninterrupted run gives.

mod common;
mod maintenance_common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{READ, Reaped, WRITE};
use maintenance_common::{backfill, config, free_addr, http, serve, store_health, until};

const GRACE_S: u64 = 1;
/// What "a few seconds" after the grace allows: a unit of maintenance work and the final
/// checkpoint.
const STOP_SLACK_S: u64 = 5;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn start(dir: &Path, data: &Path, name: &str) -> (Reaped, SocketAddr, std::path::PathBuf) {
    let addr = free_addr();
    let log = dir.join(format!("{name}.log"));
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("mkdir");
    (Reaped(serve(&config(&sub, data, addr, GRACE_S), &log, WRITE, READ)), addr, log)
}

/// The roll-up is under way: a slice is done, the first pass is not.
async fn mid_roll_up(addr: SocketAddr, past: Option<i64>) -> Option<i64> {
    let h = store_health(addr, READ).await?;
    let rolled = h["horizons"]["rolled_to"].as_i64()?;
    (h["maintenance_passes"].as_u64() == Some(0) && past.is_none_or(|p| rolled > p)).then_some(rolled)
}

async fn caught_up(addr: SocketAddr) -> bool {
    let Some(h) = store_health(addr, READ).await else { return false };
    h["maintenance_passes"].as_u64().unwrap_or(0) >= 1 && h["last_maintenance"]["stopped"] == false
}

async fn get(addr: SocketAddr, path: &str) -> serde_json::Value {
    let r = http().get(format!("http://{addr}{path}")).header("Authorization", format!("Token {READ}")).send().await.expect("get");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

/// The same JSON, numbers to 1e-9 relative.
fn same(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            if x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) { Ok(()) } else { Err(format!("{at}: {x} vs {y}")) }
        }
        (Array(x), Array(y)) if x.len() == y.len() => x.iter().zip(y).enumerate().try_for_each(|(i, (x, y))| same(x, y, &format!("{at}[{i}]"))),
        (Object(x), Object(y)) if x.len() == y.len() => x.iter().try_for_each(|(k, v)| same(v, y.get(k).unwrap_or(&Null), &format!("{at}.{k}"))),
        _ if a == b => Ok(()),
        _ => Err(format!("{at}: {a} vs {b}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_mid_roll_up_is_prompt_and_a_kill_mid_roll_up_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let data = d.join("data");
    // Six days of 8 nodes (about 700 series), a reading every 2 minutes: a roll-up of several
    // day slices of two batches each.
    backfill(&data, 6, 8, 120);
    let reference = d.join("reference");
    copy_dir(&data, &reference);

    // SIGTERM in the middle of the roll-up: the process ends promptly.
    let (mut first, addr, log) = start(d, &data, "first");
    until("a slice rolled up, the pass not done", 300, &log, async || mid_roll_up(addr, None).await.is_some()).await;
    let rolled_at_term = mid_roll_up(addr, None).await;
    let pid = first.0.id().to_string();
    let t0 = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = loop {
        if let Some(s) = first.0.try_wait().expect("wait") {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "still running 120 s after SIGTERM\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stop_s = t0.elapsed().as_secs_f64();
    eprintln!("stopped {stop_s:.2} s after SIGTERM, mid roll-up (rolled_to {rolled_at_term:?})");
    assert!(status.success(), "{status:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(
        stop_s < (GRACE_S + STOP_SLACK_S) as f64,
        "stopped {stop_s:.1} s after SIGTERM, more than the grace ({GRACE_S} s) plus {STOP_SLACK_S} s\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Restarted, it goes on from there; SIGKILL in the middle of the roll-up again.
    let (second, addr, log) = start(d, &data, "second");
    until("the roll-up resumed and rolled another slice", 300, &log, async || mid_roll_up(addr, rolled_at_term).await.is_some()).await;
    drop(second);

    // Restarted after the kill, it finishes; the uninterrupted reference does the same work.
    let (_third, addr, log) = start(d, &data, "third");
    until("caught up after the kill", 600, &log, async || caught_up(addr).await).await;
    let (_reference, ref_addr, ref_log) = start(d, &reference, "reference");
    until("the reference caught up", 600, &ref_log, async || caught_up(ref_addr).await).await;

    let h = store_health(addr, READ).await.expect("health");
    let rolled_to = h["horizons"]["rolled_to"].as_i64().expect("rolled");
    assert_eq!(store_health(ref_addr, READ).await.expect("health")["horizons"], h["horizons"]);
    let to = kilowatch_model::Timestamp(rolled_to);
    let from = kilowatch_model::Timestamp(rolled_to - 5 * 86_400 * 1_000_000_000);
    let window = format!("from={}&to={}", from.to_rfc3339(), to.to_rfc3339()).replace('+', "%2B");
    for path in [format!("/api/v1/kpi?{window}"), format!("/api/v1/jobs?{window}")] {
        let (got, want) = (get(addr, &path).await, get(ref_addr, &path).await);
        if let Err(e) = same(&got, &want, &path) {
            panic!("after a SIGTERM and a SIGKILL mid roll-up, {path} differs from an uninterrupted run: {e}");
        }
    }
    let kpi = get(addr, &format!("/api/v1/kpi?{window}")).await;
    assert!(kpi["it_energy_kwh"].as_f64().is_some_and(|e| e > 0.0), "{kpi}");
}
