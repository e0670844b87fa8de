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

/// One read of many series answers what a read of each does: chunks and heads merged, in the
/// order asked, an unknown series empty.
#[test]
fn many_series_read_at_once_as_one_by_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    let meter = |m: &str, v: f64, t: i64| Point::new("meter", Timestamp(t)).tag("meter", m).field("energy_kwh", v);
    s.write(&[meter("a", 1.0, 10), meter("b", 5.0, 10), meter("a", 2.0, 20)]).expect("write");
    s.checkpoint().expect("checkpoint");
    s.write(&[meter("b", 6.0, 30), meter("a", 3.0, 40), meter("b", 7.0, 50)]).expect("write");
    let mut ids: Vec<SeriesId> = s.find_series("meter", "energy_kwh", &[]).expect("find").iter().map(|m| m.id).collect();
    ids.reverse();
    ids.push(SeriesId::MAX);
    let mut many = vec![Vec::new(); ids.len()];
    s.read_many_with_neighbours(&ids, 15, 45, |i, samples| many[i] = samples).expect("read many");
    assert_eq!(many.len(), ids.len());
    for (id, got) in ids.iter().zip(&many) {
        assert_eq!(got, &s.read_with_neighbours(*id, 15, 45).expect("read"), "series {id}");
    }
    assert!(many.iter().filter(|r| r.len() == 3).count() == 2, "{many:?}");
    assert!(many[2].is_empty());
}

#[test]
fn a_checkpoint_writes_only_the_newest_samples_that_moved() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    let pts: Vec<Point> = (0..500).map(|i| Point::new("gpu", Timestamp(10)).tag("gpu", i.to_string()).field("power_w", 1.0)).collect();
    s.write(&pts).expect("write");
    s.checkpoint().expect("checkpoint");
    s.write(&[Point::new("gpu", Timestamp(20)).tag("gpu", "7").field("power_w", 2.0)]).expect("write");
    let changes = |s: &Store| s.writer().expect("writer").total_changes();
    let before = changes(&s);
    s.checkpoint().expect("checkpoint");
    // One chunk and one row of newest samples, holding one series: not 500 rows.
    assert_eq!(changes(&s) - before, 2);
    drop(s);
    let s = Store::open(dir.path()).expect("reopen");
    let id = s.find_series("gpu", "power_w", &[("gpu", "7")]).expect("find")[0].id;
    assert_eq!(s.latest(&[id, 0]).expect("latest"), vec![Some((20, Value::Num(2.0))), Some((10, Value::Num(1.0)))]);
}

/// Newest samples come back after a restart whichever rows hold them: partial rows (a few
/// series moved), full rows (most moved, or the partial rows outgrew the last full one), and
/// rows a delete wrote. The table stays small.
#[test]
fn newest_samples_survive_reopen_through_partial_and_full_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let gpu = |i: usize, t: i64, v: f64| Point::new("gpu", Timestamp(t)).tag("gpu", format!("{i:04}")).field("power_w", v);
    let mut expect: Vec<(i64, f64)> = vec![(10, 0.0); 1000];
    {
        let s = Store::open(dir.path()).expect("open");
        s.write(&(0..1000).map(|i| gpu(i, 10, 0.0)).collect::<Vec<_>>()).expect("write");
        s.checkpoint().expect("checkpoint");
        for round in 1..200_i64 {
            // Mostly a few series; every 50th round all of them.
            let moved: Vec<usize> = if round % 50 == 0 { (0..1000).collect() } else { (0..7).map(|k| ((round * 131 + k * 17) % 1000) as usize).collect() };
            let t = 10 + round;
            s.write(&moved.iter().map(|i| gpu(*i, t, round as f64 + *i as f64 / 1000.0)).collect::<Vec<_>>()).expect("write");
            for i in &moved {
                expect[*i] = (t, round as f64 + *i as f64 / 1000.0);
            }
            s.checkpoint().expect("checkpoint");
        }
        let rows: i64 = s.writer().expect("writer").query_row("SELECT COUNT(*) FROM newest", [], |r| r.get(0)).expect("count");
        assert!(rows < 120, "{rows} rows of newest samples");
    }
    let s = Store::open(dir.path()).expect("reopen");
    let ids: Vec<SeriesId> = (0..1000).map(|i| s.find_series("gpu", "power_w", &[("gpu", &format!("{i:04}"))]).expect("find")[0].id).collect();
    let got = s.latest(&ids).expect("latest");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, Some((expect[i].0, Value::Num(expect[i].1))), "series {i}");
    }
    assert_eq!(s.stats().expect("stats").newest_ts, Some(10 + 199));
}

/// A store written by a version that kept a row per series in `last_values`: its rows are
/// read, and the first checkpoint with a change replaces them by one full row.
#[test]
fn newest_samples_of_an_older_store_are_read_then_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    let ids = {
        let s = Store::open(dir.path()).expect("open");
        s.write(&[pt(1.0, 10), Point::new("pdu", Timestamp(12)).tag("pdu", "a").field("mode", "free")]).expect("write");
        s.checkpoint().expect("checkpoint");
        let w = s.writer().expect("writer");
        w.execute_batch("DELETE FROM newest").expect("clear");
        w.execute("INSERT INTO last_values(series_id, ts, data) VALUES (0, 10, ?1)", [codec::encode_chunk(&[(10, Value::Num(1.0))])]).expect("legacy");
        w.execute("INSERT INTO last_values(series_id, ts, data) VALUES (1, 12, ?1)", [codec::encode_chunk(&[(12, Value::Text("free".into()))])]).expect("legacy");
        vec![0, 1]
    };
    let latest = |s: &Store| s.latest(&ids).expect("latest");
    let s = Store::open(dir.path()).expect("reopen");
    assert_eq!(latest(&s), vec![Some((10, Value::Num(1.0))), Some((12, Value::Text("free".into())))]);
    s.write(&[pt(2.0, 20)]).expect("write");
    s.checkpoint().expect("checkpoint");
    let legacy: i64 = s.writer().expect("writer").query_row("SELECT COUNT(*) FROM last_values", [], |r| r.get(0)).expect("count");
    assert_eq!(legacy, 0);
    drop(s);
    let s = Store::open(dir.path()).expect("reopen");
    assert_eq!(latest(&s), vec![Some((20, Value::Num(2.0))), Some((12, Value::Text("free".into())))]);
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

/// A body logged by an older version, holding a line this version refuses (a duplicate tag
/// key), replays without that line instead of stopping the store from opening after an upgrade.
#[test]
fn a_logged_body_with_a_line_now_refused_replays_the_others() {
    let dir = tempfile::tempdir().expect("tmp");
    drop(Store::open(dir.path()).expect("open"));
    {
        let (wal, _) = wal::Wal::open(&dir.path().join("wal")).expect("wal");
        let text = "meter,meter=grid-a energy_kwh=1 10\nmeter,meter=x,meter=y energy_kwh=5 10\nmeter,meter=grid-a energy_kwh=2 20\n";
        let body = Body { text, precision: kilowatch_model::Precision::Ns, default_ts: Timestamp(0) };
        let mut head = Vec::new();
        record::encode_body_head(&mut head, &body, &[]);
        let pos = wal.append_parts(&[&head, text.as_bytes()]).expect("append");
        wal.sync(pos).expect("sync");
    }
    let s = Store::open(dir.path()).expect("reopen after a body with a refused line");
    let ids = s.find_series("meter", "energy_kwh", &[("meter", "grid-a")]).expect("find");
    assert_eq!(ids.len(), 1);
    assert_eq!(s.read_with_neighbours(ids[0].id, 0, 100).expect("read"), vec![(10, Value::Num(1.0)), (20, Value::Num(2.0))]);
    assert!(s.find_series("meter", "energy_kwh", &[("meter", "y")]).expect("find").is_empty());
}

/// Names past `max_name_bytes` are refused whether or not the line carries its series' text
/// (the shortcut that reads that text alone must not let a long field key through).
#[test]
fn long_names_are_refused_with_and_without_the_series_text() {
    use kilowatch_model::{FieldValueRef, Lines};
    let dir = tempfile::tempdir().expect("tmp");
    let s = Store::open(dir.path()).expect("open");
    s.set_policy(WritePolicy { max_name_bytes: Some(12), ..WritePolicy::default() }).expect("policy");
    let mut lines = Lines::default();
    let ts = Timestamp(1_000);
    lines.push_line(Some("m,host=a"), "m", [("host", "a")], [("v", FieldValueRef::F64(1.0))], ts);
    lines.push_line(Some("m,host=a"), "m", [("host", "a")], [("a_long_field_key", FieldValueRef::F64(1.0))], ts);
    lines.push_line(None, "m", [("host", "a_long_value!")], [("v", FieldValueRef::F64(1.0))], ts);
    lines.push_line(Some("m,host=abcdefgh"), "m", [("host", "abcdefgh")], [("v", FieldValueRef::F64(1.0))], ts);
    lines.push_line(Some("m,host=abcdefghijklmn"), "m", [("host", "abcdefghijklmn")], [("v", FieldValueRef::F64(1.0))], ts);
    let out = s.write_lines(&lines).expect("write");
    let refused: Vec<(usize, bool)> = out.refused.iter().map(|r| (r.line, r.reason.contains("max_name_bytes"))).collect();
    assert_eq!(refused, [(2, true), (3, true), (5, true)], "{:?}", out.refused);
    assert_eq!(out.samples, 2);
}
