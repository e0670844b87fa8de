//! The collector's spool on a disk that fills up and frees again, through the real collector
//! shipping to the real aggregator: the spool lives on a 2 MiB tmpfs, the aggregator goes away
//! until the disk is full, then comes back. Every batch is either stored once or counted as
//! dropped, the dropped ones are the oldest of the outage (one contiguous run), no record is
//! left torn, and once delivered the spool's segments are deleted and the disk is free again.
//!
//! Mounting a tmpfs needs root (CAP_SYS_ADMIN); without it the test is skipped with a note,
//! except under CI, where it fails.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Server;
use kilowatch_collector::agent::{Agent, AgentStats};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::source::{Sampling, SimSource, Source};
use kilowatch_model::{Point, Timestamp};
use kilowatch_ship::{Fsync, Spool, SpoolConfig};
use kilowatch_ship::{Shipper, ShipperConfig};
use kilowatch_sim::SimConfig;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().expect("tmp");
        let dir = parent.path().join("spool-disk");
        std::fs::create_dir(&dir).expect("mkdir");
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir, _parent: parent }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "cannot mount a tmpfs under CI: {why}");
                eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// One point per cycle numbered from 0: which numbers arrive tells which batches were lost.
struct Numbered(i64);

impl Source for Numbered {
    fn name(&self) -> &str {
        "numbered"
    }
    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move {
            self.0 += 1;
            Ok(vec![Point::new("spooltest", now).tag("node", "seq").field("n", self.0 - 1)])
        })
    }
}

fn segment_bytes_on(dir: &Path) -> (usize, u64) {
    let segs: Vec<u64> =
        std::fs::read_dir(dir).expect("dir").filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".seg")).map(|e| e.metadata().map_or(0, |m| m.len())).collect();
    (segs.len(), segs.iter().sum())
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    for _ in 0..secs * 20 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {secs} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_loses_only_the_oldest_and_counts_them() {
    let Some(disk) = Tmpfs::mount("2m") else { return };
    let data = tempfile::tempdir().expect("tmp");
    let s = Server::start(data.path()).await;
    let addr = s.addr;
    let start = Timestamp::parse_rfc3339("2025-05-05T08:00:00Z").expect("time");
    let stats = Arc::new(AgentStats::default());
    let agent = Agent {
        sources: vec![Box::new(Numbered(0)), Box::new(SimSource::new(SimConfig { start, nodes: 4, ..SimConfig::default() }))],
        shipper: Shipper::new(&ShipperConfig {
            url: format!("http://{addr}"),
            token: common::WRITE.into(),
            org: Some("dc5".into()),
            bucket: Some("kilowatch".into()),
            timeout: Duration::from_secs(5),
        })
        .expect("shipper"),
        interval: Duration::from_millis(10),
        clock: Clock::scaled(start, 60.0),
        // The spool's own bound is far above the disk: the disk fills first.
        spool: Spool::open(SpoolConfig { dir: disk.dir.clone(), max_bytes: 1 << 30, segment_bytes: 64 << 10, fsync: Fsync::Always }).expect("spool"),
        stats: stats.clone(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(agent.run(rx));
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    wait_for("first batches delivered", 20, || get(&stats.batches_sent) > 5).await;
    s.stop().await;
    // The disk fills; the spool drops its oldest segments to go on taking new batches.
    wait_for("the spool disk filled and old batches were dropped", 60, || get(&stats.batches_dropped) > 60).await;
    assert_eq!(get(&stats.spool_errors), 0, "a full disk is not an error while there is older data to drop");
    let (_, on_disk) = segment_bytes_on(&disk.dir);
    assert!(on_disk > 1 << 20, "the disk really filled ({on_disk} bytes of segments)");

    let s = Server::start_on(data.path(), addr).await;
    wait_for("the spool drained", 90, || get(&stats.spool_batches) == 0 && get(&stats.batches_sent) > 0).await;
    let dropped_at_recovery = get(&stats.batches_dropped);
    // Freed: new batches go on being spooled and sent with nothing more dropped.
    let sent = get(&stats.batches_sent);
    wait_for("batches after the recovery", 20, || get(&stats.batches_sent) > sent + 20).await;
    let _ = stop.send(true);
    running.await.expect("agent");
    // The last batches sampled before the stop wait in the spool: a restarted collector sends them.
    let restarted = common::drain_spool(addr, &disk.dir).await;
    assert_eq!(get(&restarted.spool_batches), 0, "the spool drained after the restart");
    assert_eq!(get(&restarted.batches_dropped) + get(&restarted.spool_corrupt), 0, "the restart lost nothing");

    let cycles = get(&stats.cycles);
    let dropped = get(&stats.batches_dropped);
    assert_eq!(dropped, dropped_at_recovery, "nothing dropped once the disk was free");
    assert_eq!(get(&stats.spool_corrupt), 0, "no torn record");
    assert_eq!(get(&stats.batches_rejected), 0);
    let series = s.store.find_series("spooltest", "n", &[("node", "seq")]).expect("find");
    let stored: BTreeSet<i64> = s.store.read_with_neighbours(series[0].id, 0, i64::MAX).expect("read").iter().filter_map(|(_, v)| v.as_f64()).map(|v| v as i64).collect();
    let missing: Vec<i64> = (0..cycles as i64).filter(|n| !stored.contains(n)).collect();
    assert_eq!(stored.len() as u64 + dropped, cycles, "every batch stored or counted as dropped");
    assert_eq!(missing.len() as u64, dropped, "what is missing is exactly what was counted");
    let (first, last) = (missing[0], missing[missing.len() - 1]);
    eprintln!("{cycles} batches sampled, {} stored, {dropped} dropped (batches {first}..={last})", stored.len());
    assert_eq!(last - first + 1, missing.len() as i64, "the dropped batches are one contiguous run, oldest first: {first}..={last}");
    assert!(first > 0, "batches sent before the outage stayed delivered");
    assert!(stored.range(last + 1..).count() > 100, "the newest batches of the outage were kept");

    let (files, bytes) = segment_bytes_on(&disk.dir);
    assert!(files <= 1 && bytes <= 64 << 10, "sent segments are deleted ({files} files, {bytes} bytes left)");
    // A restart finds nothing to resend and nothing to repair.
    let reopened = Spool::open(SpoolConfig { dir: disk.dir.clone(), max_bytes: 1 << 30, segment_bytes: 64 << 10, fsync: Fsync::Always }).expect("reopen");
    assert_eq!(reopened.pending_records(), 0);
    assert_eq!(reopened.corrupt_records(), 0);
    drop(reopened);
    s.stop().await;
    drop(disk);
}
