//! Checkpoints: the heads become chunks and the log segments they came from are deleted.
//!
//! Swap, then write: under the lock the heads are swapped for empty ones and the log moves to a
//! new segment (memory work and one sync); the chunks are written and committed on the writer
//! connection without the lock, while ingest fills the new heads and reads see the swapped-out
//! heads (`flushing`) until their chunks are in. A checkpoint that fails keeps its heads in
//! `flushing` and its segments on disk: the next one writes them again, oldest first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{SeriesId, SeriesMeta, Store, StoreError, head, names, newest};

/// What the store holds in memory, in bytes where it can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemoryUse {
    /// Compressed samples since the last checkpoint.
    pub head_bytes: usize,
    /// Compressed samples a checkpoint is writing.
    pub flushing_bytes: usize,
    pub series: usize,
}

impl Store {
    /// Moves the heads into chunks and deletes the log segments they covered; returns the
    /// samples moved. Ingest and reads go on meanwhile.
    pub fn checkpoint(&self) -> Result<usize, StoreError> {
        let mut w = self.writer()?;
        self.checkpoint_with(&mut w)
    }

    /// [`Store::checkpoint`] with the writer connection already held.
    pub(super) fn checkpoint_with(&self, w: &mut Connection) -> Result<usize, StoreError> {
        struct Taken {
            snaps: Vec<Arc<Vec<head::Head>>>,
            series: Vec<SeriesMeta>,
            upto: usize,
            changed: Vec<SeriesId>,
            newest: Option<(Vec<u8>, bool)>,
            dirty: Vec<i64>,
            records: u64,
            seq: u64,
        }
        let t = {
            let mut g = self.lock()?;
            if g.stats.head_samples == 0 && g.flushing.is_empty() && g.last_changed.is_empty() && g.persisted_series == g.meta.len() && g.stats.log_records == 0 {
                return Ok(0);
            }
            // First: if the log cannot move on, nothing has changed yet.
            let seq = self.wal.rotate()?;
            let next: Vec<head::Head> = g.heads.iter().map(head::Head::successor).collect();
            let heads = std::mem::replace(&mut g.heads, next);
            g.flushing_bytes += std::mem::take(&mut g.head_bytes);
            g.flushing_samples += std::mem::take(&mut g.stats.head_samples);
            g.flushing.push(Arc::new(heads));
            let upto = g.meta.len();
            // Their names are shared: the rows' text is made one at a time as they are written
            // (800,000 new series made 300 MB of text at once).
            let series = g.meta[g.persisted_series..].to_vec();
            let changed = std::mem::take(&mut g.last_changed);
            for id in &changed {
                if let Some(f) = g.last_flag.get_mut(*id as usize) {
                    *f = false;
                }
            }
            // Encoded here, under the lock: copying the values out first took as long.
            let newest = (!changed.is_empty()).then(|| newest::row_for(&changed, &g.last, &g.newest_log));
            let dirty = g.dirty.iter().copied().collect();
            let records = std::mem::take(&mut g.stats.log_records);
            self.pace.started(g.flushing_bytes);
            Taken { snaps: g.flushing.clone(), series, upto, changed, newest, dirty, records, seq }
        };
        let newest = t.newest.as_ref().map(|(data, full)| (data.as_slice(), *full));
        let written = write_chunks(w, &t.snaps, &t.series, newest, &t.dirty);
        self.pace.ended(written.is_ok());
        match written {
            Ok((moved, oldest)) => {
                {
                    let mut g = self.lock()?;
                    // Only checkpoints add to `flushing`, one at a time (they hold the writer).
                    let done = t.snaps.len().min(g.flushing.len());
                    g.flushing.drain(..done);
                    // Under the same lock as the heads leave: `oldest` never misses them.
                    if let (Some(known), Some(o)) = (g.oldest_known.as_mut(), oldest) {
                        *known = Some(known.map_or(o, |k| k.min(o)));
                    }
                    g.flushing_bytes = 0;
                    g.flushing_samples = 0;
                    g.persisted_series = t.upto;
                    if let Some((data, full)) = newest {
                        g.newest_log.wrote(data.len(), full);
                    }
                    g.stats.checkpoints += 1;
                }
                self.wal.remove_before(t.seq)?;
                Ok(moved)
            }
            Err(e) => {
                let mut g = self.lock()?;
                for id in &t.changed {
                    if let Some(f) = g.last_flag.get_mut(*id as usize).filter(|f| !**f) {
                        *f = true;
                        g.last_changed.push(*id);
                    }
                }
                g.stats.log_records += t.records;
                Err(e)
            }
        }
    }

    /// The error a write would get now for the memory budget, if any: a cheap check that lets
    /// the server refuse a request before parsing it.
    pub fn over_budget(&self) -> Result<Option<StoreError>, StoreError> {
        Ok(self.lock()?.over_budget())
    }

    /// Bytes held by recent samples, and the series count.
    pub fn memory_use(&self) -> Result<MemoryUse, StoreError> {
        let g = self.lock()?;
        Ok(MemoryUse { head_bytes: g.head_bytes, flushing_bytes: g.flushing_bytes, series: g.meta.len() })
    }
}

/// Recent checkpoints' bytes and durations, to tell a writer refused for memory how long a
/// checkpoint will take to free it ([`Store::retry_after_s`]).
#[derive(Debug, Default)]
pub(super) struct Pace(Mutex<PaceState>);

#[derive(Debug, Default)]
struct PaceState {
    /// (bytes written, how long it took) of the last few checkpoints that succeeded.
    recent: VecDeque<(usize, Duration)>,
    /// The checkpoint in progress: when it started and the bytes it writes.
    running: Option<(Instant, usize)>,
}

/// Checkpoints remembered: enough to smooth one slow disk sync, few enough to follow a load
/// that changes.
const PACE_KEPT: usize = 8;
/// Bounds of `Retry-After`: a sender told less comes back before anything changed; one told
/// more than a minute waits past its own buffers.
pub const RETRY_MIN_S: u64 = 1;
pub const RETRY_MAX_S: u64 = 60;
/// Told before any checkpoint was measured (the constant the answer used to be).
const RETRY_UNMEASURED_S: u64 = 5;
/// The checkpointer looks at the heads once a second: a checkpoint due starts within this.
const LOOK: Duration = Duration::from_secs(1);

impl Pace {
    fn state(&self) -> std::sync::MutexGuard<'_, PaceState> {
        // Only figures: one left half-updated by a panic is still a fine estimate.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn started(&self, bytes: usize) {
        self.state().running = Some((Instant::now(), bytes));
    }

    fn ended(&self, ok: bool) {
        let mut s = self.state();
        if let Some((t0, bytes)) = s.running.take()
            && ok
        {
            if s.recent.len() == PACE_KEPT {
                s.recent.pop_front();
            }
            s.recent.push_back((bytes, t0.elapsed()));
        }
    }

    /// Seconds until a checkpoint has written `heads` bytes (waiting in the heads) and the one
    /// in progress, if any, has ended: at the rate recent checkpoints wrote, plus the time a
    /// checkpoint takes whatever its size (the smallest one measured), within
    /// [`RETRY_MIN_S`]..=[`RETRY_MAX_S`].
    pub(super) fn retry_after_s(&self, heads: usize, now: Instant) -> u64 {
        let s = self.state();
        if s.recent.is_empty() {
            return RETRY_UNMEASURED_S;
        }
        let bytes: f64 = s.recent.iter().map(|(b, _)| *b as f64).sum::<f64>().max(1.0);
        let secs: f64 = s.recent.iter().map(|(_, d)| d.as_secs_f64()).sum();
        let fixed = s.recent.iter().map(|(_, d)| d.as_secs_f64()).fold(f64::INFINITY, f64::min);
        let per_byte = secs / bytes;
        let take = |b: usize| fixed.max(b as f64 * per_byte);
        let running = s.running.map_or(0.0, |(t0, b)| (take(b) - now.saturating_duration_since(t0).as_secs_f64()).max(0.0));
        let wait = running + LOOK.as_secs_f64() + take(heads);
        (wait.ceil() as u64).clamp(RETRY_MIN_S, RETRY_MAX_S)
    }
}

impl Store {
    /// How long a writer refused because the store is over its memory budget should wait
    /// (`Retry-After`), in seconds: what the next checkpoint needs to free the heads, from the
    /// durations and sizes of recent checkpoints; 1 to 60.
    pub fn retry_after_s(&self) -> Result<u64, StoreError> {
        let heads = self.lock()?.head_bytes;
        Ok(self.pace.retry_after_s(heads, Instant::now()))
    }
}

fn write_chunks(w: &mut Connection, snaps: &[Arc<Vec<head::Head>>], series: &[SeriesMeta], newest: Option<(&[u8], bool)>, dirty: &[i64]) -> Result<(usize, Option<i64>), StoreError> {
    let tx = w.transaction()?;
    let (mut moved, mut oldest) = (0, None);
    {
        let mut ser = tx.prepare_cached("INSERT INTO series(id, key, measurement, tags, field) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for m in series {
            let tags = serde_json::to_string(m.tags.as_ref()).unwrap_or_else(|_| "{}".into());
            ser.execute(params![m.id, names::series_key(&m.measurement, m.tags.iter(), &m.field), &*m.measurement, tags, &*m.field])?;
        }
        let mut ins = tx.prepare_cached("INSERT INTO chunks(series_id, t_min, t_max, n, data, fmt) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        for snap in snaps {
            for (id, h) in snap.iter().enumerate().filter(|(_, h)| !h.is_empty()) {
                // One chunk per UTC day (the head keeps one segment per day): retention drops
                // whole chunks of past days, and a backfill of weeks does not become one chunk
                // that every roll-up of it would decode again.
                for seg in &h.segments {
                    ins.execute(params![id as i64, seg.t_min, seg.t_max, i64::from(seg.n), seg.to_chunk(), head::FMT_PACKED])?;
                    moved += seg.n as usize;
                    oldest = Some(oldest.map_or(seg.t_min, |o: i64| o.min(seg.t_min)));
                }
            }
        }
        if let Some((data, full)) = newest {
            newest::write(&tx, data, full)?;
        }
        let mut d = tx.prepare_cached("INSERT OR IGNORE INTO dirty_hours(t) VALUES (?1)")?;
        for t in dirty {
            d.execute(params![t])?;
        }
        // Rows of a log kept in SQLite by an older version, replayed when the store opened.
        tx.execute("DELETE FROM log", [])?;
    }
    tx.commit()?;
    Ok((moved, oldest))
}

#[cfg(test)]
mod wal_tests {
    use super::*;
    use crate::{Body, Point, SERIES_BYTES, Value, WritePolicy, WriteSummary};
    use kilowatch_model::{Precision, Timestamp, parse_batch};

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_790_812_800 * S;

    fn body_write(s: &Store, text: &str, writer: &str) -> WriteSummary {
        let b = Body { text, precision: Precision::S, default_ts: Timestamp(T0) };
        let lines = parse_batch(b.text, b.precision, b.default_ts).expect("valid");
        s.write_body(&b, &lines, writer).expect("write")
    }

    fn values(s: &Store, m: &str, f: &str) -> Vec<(i64, Value)> {
        let id = s.find_series(m, f, &[]).expect("find")[0].id;
        s.read_with_neighbours(id, i64::MIN, i64::MAX).expect("read")
    }

    /// A crash before the checkpoint: the log's bodies are parsed again on opening, the lines
    /// refused at the time stay out, and the series come back with their ids.
    #[test]
    fn logged_bodies_replay_as_stored_refusals_included() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = T0 / S;
        {
            let s = Store::open(dir.path()).expect("open");
            s.set_policy(WritePolicy { max_name_bytes: Some(8), ..WritePolicy::default() }).expect("policy");
            let w = body_write(&s, &format!("meter,m=a kwh=1 {t}\nmeter,m=a,very_long_tag=x kwh=5 {t}\nmeter,m=a kwh=2 {}\nmeter,m=a kwh=3", t + 1), "w");
            assert_eq!((w.points, w.refused.len()), (3, 1));
            // Points are logged as names and values.
            s.write(&[Point::new("pdu", Timestamp(T0)).tag("p", "1").field("w", f64::NAN).field("mode", "free")]).expect("write");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.stats().expect("stats").series, 3);
        // The line without a timestamp took the time the write gave it.
        assert_eq!(values(&s, "meter", "kwh"), vec![(T0, Value::Num(3.0)), (T0 + S, Value::Num(2.0))]);
        assert!(values(&s, "pdu", "w")[0].1.as_f64().is_some_and(f64::is_nan));
        assert_eq!(values(&s, "pdu", "mode"), vec![(T0, Value::Text("free".into()))]);
        // After a checkpoint the log is gone and the chunks hold the same.
        s.checkpoint().expect("checkpoint");
        drop(s);
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.stats().expect("stats").log_records, 0);
        assert_eq!(values(&s, "meter", "kwh"), vec![(T0, Value::Num(3.0)), (T0 + S, Value::Num(2.0))]);
    }

    /// A checkpoint that cannot commit keeps its samples readable and its log on disk; the
    /// next one writes them, once.
    #[test]
    fn a_failed_checkpoint_loses_nothing_and_the_next_one_writes_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = T0 / S;
        let s = Store::open(dir.path()).expect("open");
        body_write(&s, &format!("meter,m=a kwh=1 {t}"), "w");
        s.checkpoint().expect("checkpoint");
        body_write(&s, &format!("meter,m=a kwh=2 {}\nmeter,m=b kwh=7 {}", t + 1, t + 1), "w");
        // Another program took series id 1: the checkpoint's insert of series m=b fails.
        let other = rusqlite::Connection::open(dir.path().join("store.db")).expect("open");
        other.execute("INSERT INTO series(id, key, measurement, tags, field) VALUES (1, 'x', 'x', '{}', 'x')", []).expect("insert");
        assert!(s.checkpoint().is_err());
        assert_eq!(values(&s, "meter", "kwh").len(), 2);
        body_write(&s, &format!("meter,m=a kwh=3 {}", t + 2), "w");
        other.execute("DELETE FROM series WHERE id = 1", []).expect("delete");
        assert_eq!(s.checkpoint().expect("checkpoint"), 3);
        drop(s);
        let s = Store::open(dir.path()).expect("reopen");
        let a = s.find_series("meter", "kwh", &[("m", "a")]).expect("find")[0].id;
        assert_eq!(s.read_with_neighbours(a, i64::MIN, i64::MAX).expect("read"), vec![(T0, Value::Num(1.0)), (T0 + S, Value::Num(2.0)), (T0 + 2 * S, Value::Num(3.0))]);
        let b = s.find_series("meter", "kwh", &[("m", "b")]).expect("find")[0].id;
        assert_eq!(s.read_with_neighbours(b, i64::MIN, i64::MAX).expect("read"), vec![(T0 + S, Value::Num(7.0))]);
        let stored: i64 = s.writer().expect("w").query_row("SELECT SUM(n) FROM chunks", [], |r| r.get(0)).expect("count");
        assert_eq!(stored, 4, "each sample written once");
    }

    #[test]
    fn the_memory_budget_refuses_whole_writes_until_a_checkpoint() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        s.set_policy(WritePolicy { memory_budget_bytes: Some(SERIES_BYTES + crate::write::set_cost("meter", [("m", "a")].into_iter()) + 600), ..WritePolicy::default() }).expect("policy");
        let t = T0 / S;
        let many: String = (0..200).map(|i| format!("meter,m=a kwh={}.{i} {}\n", i * 7, t + i)).collect();
        body_write(&s, &many, "w");
        let b = Body { text: "meter,m=a kwh=1 1", precision: Precision::S, default_ts: Timestamp(T0) };
        let lines = parse_batch(b.text, b.precision, b.default_ts).expect("valid");
        let e = s.write_body(&b, &lines, "w").expect_err("over budget");
        assert!(e.to_string().contains("[store] memory_budget_mb"), "{e}");
        assert_eq!(s.stats().expect("stats").samples_written, 200);
        s.checkpoint().expect("checkpoint");
        s.write_body(&b, &lines, "w").expect("room again");
    }

    /// Many tags and long strings are counted at what they take (issue 31: a series of 64 tags
    /// cost ~41 KB and was counted as 1 KB; 1 MB string values were not counted as held).
    #[test]
    fn the_budget_counts_many_tags_and_long_strings() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let t = T0 / S;
        let tags: String = (0..64).map(|i| format!(",tag{i:02}=value-{i:04}")).collect();
        body_write(
            &s,
            &format!(
                "wide{tags} v=1 {t}
"
            ),
            "w",
        );
        let wide = s.stats().expect("stats").memory_bytes;
        assert!(wide >= 41_000, "a 64-tag series counts {wide} bytes");
        let big = "x".repeat(1 << 20);
        body_write(&s, &format!("note,n=a text=\"{big}\" {t}\n"), "w");
        let with_text = s.stats().expect("stats").memory_bytes - wide;
        assert!(with_text >= 2 << 20, "a 1 MB string is held in the head and as the newest value: {with_text}");
        s.checkpoint().expect("checkpoint");
        let after = s.stats().expect("stats").memory_bytes - wide;
        assert!((1 << 20..2 << 20).contains(&after), "after a checkpoint the newest value is still held: {after}");
        drop(s);
        let s = Store::open(dir.path()).expect("reopen");
        body_write(&s, &format!("note,n=b v=1 {t}\n"), "w");
        assert!(s.stats().expect("stats").memory_bytes > wide + (1 << 20), "counted again at opening");
    }

    /// String values kept as newest are held to the series' share of the budget: past it, the
    /// line is refused naming the budget; a shorter string replacing a long one still gets in.
    #[test]
    fn long_strings_past_the_series_share_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        s.set_policy(WritePolicy { memory_budget_bytes: Some(8 << 20), ..WritePolicy::default() }).expect("policy");
        let t = T0 / S;
        let big = "x".repeat(1 << 20);
        let body: String = (0..10).map(|i| format!("note,n={i} text=\"{big}\" {t}\n")).collect();
        let sum = body_write(&s, &body, "w");
        assert!(sum.points >= 5 && sum.points < 8, "{} of 10 MB of strings in 7 MB of series share", sum.points);
        assert!(sum.refused[0].reason.contains("[store] memory_budget_mb"), "{}", sum.refused[0].reason);
        s.checkpoint().expect("checkpoint");
        assert_eq!(body_write(&s, &format!("note,n=0 text=\"short\" {}\n", t + 1), "w").points, 1);
    }

    /// Series may fill the budget but an eighth; past that, new series are refused by line
    /// (naming the key) while the series that exist go on being written, and writes are never
    /// refused for good: a budget lowered under the series already held still takes samples
    /// until the heads hold an eighth of it, and again after each checkpoint.
    #[test]
    fn series_fill_the_budget_but_an_eighth_and_writes_never_stop_for_good() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        // What one series of its own tag set costs (the ten one-digit uuids cost 2 bytes less).
        let per = SERIES_BYTES + crate::write::set_cost("gpu", [("uuid", "GPU-10")].into_iter());
        let budget = 16 * per;
        s.set_policy(WritePolicy { memory_budget_bytes: Some(budget), ..WritePolicy::default() }).expect("policy");
        let t = T0 / S;
        let lines = |n: usize, at: i64| (0..n).map(|i| format!("gpu,uuid=GPU-{i} w=1 {at}\n")).collect::<String>();
        let first = body_write(&s, &lines(20, t), "w");
        assert_eq!((first.new_series, first.refused.len()), (14, 6), "16 series of budget, less an eighth");
        assert!(first.refused[0].reason.contains("[store] memory_budget_mb") && first.refused[0].retry_after_s.is_none(), "{:?}", first.refused[0]);
        // The budget lowered to less than the series held: samples of existing series go on.
        s.set_policy(WritePolicy { memory_budget_bytes: Some(8 * per), ..WritePolicy::default() }).expect("policy");
        let mut at = t + 1;
        let refused_at = loop {
            let b = lines(14, at);
            let body = Body { text: &b, precision: Precision::S, default_ts: Timestamp(T0) };
            let parsed = parse_batch(body.text, body.precision, body.default_ts).expect("valid");
            match s.write_body(&body, &parsed, "w") {
                Ok(sum) => assert_eq!((sum.points, sum.new_series), (14, 0)),
                Err(e) => break (at, e),
            }
            at += 1;
            assert!(at < t + 10_000, "the heads never filled their eighth");
        };
        assert!(refused_at.1.to_string().contains("[store] memory_budget_mb"), "{}", refused_at.1);
        let heads = s.memory_use().expect("use").head_bytes;
        assert!(heads > per && heads < 2 * per, "refused once the heads passed an eighth of the budget (one write past it): {heads}");
        s.checkpoint().expect("checkpoint");
        assert_eq!(body_write(&s, &lines(14, at), "w").points, 14, "in again after the checkpoint");
    }

    /// `Retry-After` for the memory budget: what the checkpoint in progress has left, the next
    /// look of the checkpointer, and the heads at the rate measured; bounded.
    #[test]
    fn retry_after_follows_the_measured_checkpoints() {
        use std::time::{Duration, Instant};
        let p = Pace::default();
        let now = Instant::now();
        assert_eq!(p.retry_after_s(1 << 20, now), 5, "nothing measured yet");
        // 8 MB written in 2 s.
        p.state().recent.push_back((8 << 20, Duration::from_secs(2)));
        let after = Instant::now();
        assert_eq!(p.retry_after_s(8 << 20, after), 1 + 2);
        assert_eq!(p.retry_after_s(32 << 20, after), 1 + 8);
        assert_eq!(p.retry_after_s(0, after), 1 + 2, "a checkpoint takes the shortest one measured, whatever its size");
        // A 16 MB one started a second ago has 3 s left.
        p.state().running = Some((after - Duration::from_secs(1), 16 << 20));
        assert_eq!(p.retry_after_s(8 << 20, after), 3 + 1 + 2);
        assert_eq!(p.retry_after_s(1 << 40, after), RETRY_MAX_S);
        // A failed checkpoint measures nothing; fast ones bring the answer down.
        p.ended(false);
        assert_eq!(p.retry_after_s(8 << 20, after), 3);
        for _ in 0..PACE_KEPT {
            p.state().running = Some((Instant::now() - Duration::from_millis(100), 8 << 20));
            p.ended(true);
        }
        assert_eq!(p.retry_after_s(8 << 20, Instant::now()), RETRY_MIN_S + 1, "1 s for the checkpointer's look and 0.1 s of checkpoint");
    }

    #[test]
    fn new_series_are_capped_per_writer_and_in_all_and_say_when_to_retry() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        s.set_policy(WritePolicy { max_new_series_per_minute: Some(8), max_new_series_per_minute_per_writer: Some(5), ..WritePolicy::default() }).expect("policy");
        let t = T0 / S;
        let lines = |host: &str| (0..10).map(|i| format!("gpu,host={host},uuid=GPU-{i} w=1 {t}\n")).collect::<String>();
        let a = body_write(&s, &lines("a"), "a");
        assert_eq!((a.new_series, a.refused.len()), (5, 5));
        assert!(a.refused[0].reason.contains("[store] max_new_series_per_minute_per_token"), "{}", a.refused[0].reason);
        assert!(a.refused.iter().all(|r| r.retry_after_s.is_some_and(|w| (1..=60).contains(&w))));
        let b = body_write(&s, &lines("b"), "b");
        assert_eq!(b.new_series, 3, "8 a minute in all");
        assert!(b.refused[0].reason.contains("[store] max_new_series_per_minute)"), "{}", b.refused[0].reason);
        // Existing series are never limited.
        let again = body_write(&s, &lines("a"), "a");
        assert_eq!(again.points, 5);
        assert_eq!(again.new_series, 0);
    }
}
