//! The store's open, replay and checkpoint basics.
use super::*;
use kilowatch_model::Timestamp;

fn pt(v: f64, t: i64) -> Point {
    Point::new("meter", Timestamp(t)).tag("meter", "grid-a").field("energy_kwh", v)
}

/// The commit before a 204 must be on disk: SQLite's FULL (2), not NORMAL (1).
#[test]
fn commits_are_synced() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    let snap = s.readers.begin().expect("reader");
    let mode: i64 = snap.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).expect("pragma");
    assert_eq!(mode, 2, "synchronous=FULL");
}

#[test]
fn survives_reopen_with_and_without_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let s = Store::open(dir.path()).expect("open");
        s.write(&[pt(1.0, 10), pt(2.0, 20)]).expect("write");
        s.checkpoint().expect("checkpoint");
        s.write(&[pt(3.0, 30), pt(3.0, 30)]).expect("write");
    }
    let s = Store::open(dir.path()).expect("reopen");
    let ids = s.find_series("meter", "energy_kwh", &[("meter", "grid-a")]).expect("find");
    assert_eq!(ids.len(), 1);
    let got = s.read_with_neighbours(ids[0].id, 0, 100).expect("read");
    assert_eq!(got, vec![(10, Value::Num(1.0)), (20, Value::Num(2.0)), (30, Value::Num(3.0))]);
    assert_eq!(s.latest(&[ids[0].id]).expect("latest")[0], Some((30, Value::Num(3.0))));
    // A replay of already checkpointed data is stored once.
    s.write(&[pt(2.0, 20)]).expect("write");
    s.checkpoint().expect("checkpoint");
    assert_eq!(s.read_with_neighbours(ids[0].id, 0, 100).expect("read").len(), 3);
    // Neighbours on both sides of a narrow range.
    assert_eq!(s.read_with_neighbours(ids[0].id, 15, 16).expect("read"), vec![(10, Value::Num(1.0)), (20, Value::Num(2.0))]);
}

#[test]
fn a_checkpoint_writes_only_the_last_values_that_moved() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    let pts: Vec<Point> = (0..500).map(|i| Point::new("gpu", Timestamp(10)).tag("gpu", i.to_string()).field("power_w", 1.0)).collect();
    s.write(&pts).expect("write");
    s.checkpoint().expect("checkpoint");
    s.write(&[Point::new("gpu", Timestamp(20)).tag("gpu", "7").field("power_w", 2.0)]).expect("write");
    let changes = |s: &Store| s.writer().expect("writer").total_changes();
    let before = changes(&s);
    s.checkpoint().expect("checkpoint");
    // One chunk and one last value: not 500 last values.
    assert_eq!(changes(&s) - before, 2);
    drop(s);
    let s = Store::open(dir.path()).expect("reopen");
    let id = s.find_series("gpu", "power_w", &[("gpu", "7")]).expect("find")[0].id;
    assert_eq!(s.latest(&[id, 0]).expect("latest"), vec![Some((20, Value::Num(2.0))), Some((10, Value::Num(1.0)))]);
}

/// Reads run outside the store's lock, on their own snapshot: while checkpoints swap heads
/// out and commit them as chunks, a read still finds every sample written before it began.
#[test]
fn reads_racing_checkpoints_miss_nothing() {
    use std::sync::atomic::{AtomicI64, Ordering};
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    s.write(&[pt(0.0, 0)]).expect("first write");
    let id = s.find_series("meter", "energy_kwh", &[]).expect("find")[0].id;
    let written = AtomicI64::new(0);
    const N: i64 = 3000;
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for t in 1..=N {
                s.write(&[pt(t as f64, t)]).expect("write");
                written.store(t, Ordering::SeqCst);
            }
        });
        sc.spawn(|| {
            while written.load(Ordering::SeqCst) < N {
                s.checkpoint().expect("checkpoint");
            }
        });
        let mut reads = 0;
        while written.load(Ordering::SeqCst) < N || reads == 0 {
            let before = written.load(Ordering::SeqCst);
            let got = s.read_with_neighbours(id, 0, N).expect("read");
            let ts: Vec<i64> = got.iter().map(|(t, _)| *t).collect();
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "sorted and one per timestamp");
            assert!(ts.len() as i64 > before, "a read after {before} writes found {} samples", ts.len());
            assert_eq!(ts[..=before as usize], (0..=before).collect::<Vec<_>>()[..], "no gap");
            reads += 1;
        }
    });
}
