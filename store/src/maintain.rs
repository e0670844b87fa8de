//! Background maintenance of the store: roll-ups, compaction and retention, in one pass that
//! the aggregator runs every minute or so (`server::spawn_maintenance`).
//!
//! - Roll-up: every complete hour (two minutes after it ends, in data time) is summarised into
//!   minute and hour buckets (`rollup.rs`); hours that receive samples after that (a collector
//!   replaying its spool) are rolled up again.
//! - Compaction: the chunks written by checkpoints (a few minutes each, a varint layout cheap to
//!   write) are merged, per series and hour, into blocks compressed with pco.
//! - Retention: raw samples older than the raw retention, minute buckets older than theirs, hour
//!   buckets older than theirs (if any) are deleted, never before they are rolled up.
//!
//! The store's lock is taken per series or per batch, never for the whole pass, and never while
//! writing: writes go through the writer connection (see `lib.rs` on locks), so ingest and
//! reads go on while a batch commits.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::rollup::{self, Bucket, DAY, EnergyKind, HOUR, Level};
use super::{Inner, SeriesId, Store, StoreError, Value, codec, sort_dedup};

/// How long an hour is left open for late samples before its first roll-up.
const SETTLE_NS: i64 = 120 * 1_000_000_000;
/// Series rolled up between two write transactions, at most.
const BATCH_SERIES: usize = 512;
/// Bytes of roll-up rows held before they are written, at most (beyond a group of
/// `READ_SERIES`): a batch of 1 Hz series holds a day of minute rows each.
const BATCH_BYTES: usize = 16 << 20;
/// Days of one roll-up slice at most, when far behind (see `Store::slice_end`).
const SLICE_DAYS: i64 = 7;
/// Series read from one snapshot of the store.
const READ_SERIES: usize = 64;
/// Chunk bytes compacted in one write transaction, at most: a commit per series was a third
/// of a catch-up's CPU (its WAL sync and checkpoint), and one for all would hold the writer,
/// and checkpoints behind it, for as long as the whole compaction.
const COMPACT_BATCH_BYTES: usize = 8 << 20;
/// Series compacted in one write transaction, at most.
const COMPACT_BATCH_SERIES: usize = 4096;
/// Rows deleted per statement, so that retention never holds the lock for long.
const DELETE_BATCH: i64 = 20_000;
/// A stretch with no sample at all longer than this is skipped by the roll-up instead of rolled
/// up day by day. A first sample stamped decades ago (a node whose clock had been reset to 1970)
/// made the catch-up walk every empty day since, filling each minute with a counter's increase
/// spread over the gap: a pass that never ended, and retention that never ran behind it. Reads
/// across a skipped gap still use the readings on both sides of it.
const SKIP_EMPTY_NS: i64 = 7 * DAY;

/// How long each resolution is kept, ns. `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw: i64,
    pub minute: i64,
    pub hour: Option<i64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { raw: 48 * HOUR, minute: 35 * DAY, hour: None }
    }
}

/// What one pass did, for the log and `/api/v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    pub hours_rolled_up: usize,
    pub hours_rolled_up_again: usize,
    /// Late samples for hours whose raw samples were already deleted: kept as they are, but
    /// their hour's roll-ups are not recomputed (the rest of that hour is gone).
    pub late_hours_ignored: usize,
    pub rollup_rows_written: usize,
    pub chunks_compacted: usize,
    pub blocks_written: usize,
    pub raw_rows_deleted: usize,
    pub rollup_rows_deleted: usize,
    /// Hours without any sample skipped by the roll-up (see `SKIP_EMPTY_NS`).
    pub empty_hours_skipped: usize,
    /// The pass ended early because the store was asked to stop ([`Store::stop_maintenance`]);
    /// what it committed stays, and the next pass (the next start) goes on from there.
    pub stopped: bool,
}

/// Where a roll-up slice stopped: its batches up to `done` (a series id) are committed. Kept in
/// `state` so that a pass stopped or killed mid-slice resumes there at the next start instead
/// of computing the slice again (a day of a large site is minutes of work).
const SLICE_FROM: &str = "rolling_from";
const SLICE_TO: &str = "rolling_to";
const SLICE_DONE: &str = "rolling_done";

/// Returned inside a pass when the store is asked to stop; the pass reports `stopped`.
struct Stop;

/// A batch of a slice's roll-ups, computed and not yet written.
#[derive(Default)]
struct Pending {
    /// Every series read (their minute rows of the slice are replaced, or deleted if none).
    read: Vec<SeriesId>,
    minute_rows: Vec<(SeriesId, i64, Vec<u8>)>,
    hour_buckets: Vec<(SeriesId, Vec<Bucket>)>,
    series: usize,
    bytes: usize,
}

impl Pending {
    /// Adds the roll-ups of one series over `[a, b)` from its samples (and neighbours).
    fn add(&mut self, id: SeriesId, kind: EnergyKind, samples: &[(i64, Value)], a: i64, b: i64) {
        self.read.push(id);
        self.series += 1;
        if !samples.iter().any(|(t, _)| *t >= a && *t < b) && kind == EnergyKind::None {
            return;
        }
        let minutes = rollup::compute(samples, a, b, Level::Minute.step(), kind);
        let mut by_hour: BTreeMap<i64, Vec<Bucket>> = BTreeMap::new();
        for m in minutes {
            by_hour.entry(floor(m.t, HOUR)).or_default().push(m);
        }
        for (t0, bs) in by_hour {
            let row = rollup::encode_row(t0, Level::Minute.step(), &bs);
            self.bytes += row.len();
            self.minute_rows.push((id, t0, row));
        }
        let hours = rollup::compute(samples, a, b, Level::Hour.step(), kind);
        if !hours.is_empty() {
            self.bytes += hours.len() * std::mem::size_of::<Bucket>();
            self.hour_buckets.push((id, hours));
        }
    }
}

/// Called with each span `[from, to)` a pass rolls up (first time or again), after its roll-ups
/// are written and before any raw sample expires: what is derived from the raw samples, such
/// as job runs from `gpu_job` points, is recorded there.
pub type OnRolled<'a> = dyn FnMut(&Store, i64, i64) + 'a;

/// Deletes up to `?2` rows of `level` starting before `?1` (the table has no rowid).
fn rollup_delete(level: Level) -> String {
    format!("DELETE FROM rollups WHERE (series_id, level, t0) IN (SELECT series_id, level, t0 FROM rollups WHERE level = {} AND t0 < ?1 LIMIT ?2)", level.code())
}

/// `t` rounded down to a multiple of `step`, saturated (never wrapped) near the end of time.
fn floor(t: i64, step: i64) -> i64 {
    t.div_euclid(step).saturating_mul(step)
}

impl Store {
    /// Marks the hour holding `t` to be rolled up again at the next maintenance pass, if it was
    /// rolled up and its raw samples are kept (a job posted late for a past hour: its edges are
    /// recorded then).
    pub fn mark_dirty(&self, t: i64) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let h = t.div_euclid(rollup::HOUR).saturating_mul(rollup::HOUR);
        if g.horizons.rolled_to.is_some_and(|r| h < r) && h >= g.horizons.raw_from {
            g.dirty.insert(h);
        }
        Ok(())
    }

    /// One maintenance pass. `wall_now` (ns) caps the data time used to judge ages, so that a
    /// sample stamped in the far future cannot expire everything else.
    pub fn maintain(&self, keep: &Retention, wall_now: i64) -> Result<MaintenanceReport, StoreError> {
        self.maintain_with(keep, wall_now, &mut |_, _, _| {})
    }

    /// [`Store::maintain`], calling `on_rolled` for each span rolled up.
    pub fn maintain_with(&self, keep: &Retention, wall_now: i64, on_rolled: &mut OnRolled<'_>) -> Result<MaintenanceReport, StoreError> {
        let mut rep = MaintenanceReport::default();
        let res = match self.maintain_pass(keep, wall_now, on_rolled, &mut rep) {
            Ok(Ok(())) => Ok(rep),
            Ok(Err(Stop)) => {
                rep.stopped = true;
                tracing::info!(hours_rolled_up = rep.hours_rolled_up, "store maintenance stopped; the next start resumes it");
                Ok(rep)
            }
            Err(e) => Err(e),
        };
        let mut g = self.lock()?;
        match &res {
            Ok(r) => {
                g.stats.maintenance_passes += 1;
                g.stats.last_maintenance = Some(r.clone());
            }
            Err(_) => g.stats.maintenance_failures += 1,
        }
        res
    }

    /// Asks a maintenance pass in progress, and any later one, to stop at its next unit of work
    /// (a batch of series, a series' compaction, a batch of deletions): a stop of the process
    /// is then prompt even during a catch-up roll-up of weeks. What was committed stays.
    pub fn stop_maintenance(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn check_stop(&self) -> Result<(), Stop> {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) { Err(Stop) } else { Ok(()) }
    }

    /// The pass; `Ok(Err(Stop))` when it was asked to stop.
    fn maintain_pass(&self, keep: &Retention, wall_now: i64, on_rolled: &mut OnRolled<'_>, rep: &mut MaintenanceReport) -> Result<Result<(), Stop>, StoreError> {
        macro_rules! stop_if_asked {
            ($e:expr) => {
                if let Err(Stop) = $e {
                    return Ok(Err(Stop));
                }
            };
        }
        let (now, target, start, taken, dirty, series) = {
            let mut g = self.lock()?;
            let Some(newest) = g.stats.newest_ts else { return Ok(Ok(())) };
            let now = newest.min(wall_now.saturating_add(HOUR));
            let start = match g.horizons.rolled_to {
                Some(r) => Some(r),
                None => g.oldest()?.map(|t| floor(t, HOUR)),
            };
            let raw_from = g.horizons.raw_from;
            let rolled_to = g.horizons.rolled_to.unwrap_or(i64::MIN);
            let taken = !g.dirty.is_empty();
            let dirty: Vec<i64> = std::mem::take(&mut g.dirty).into_iter().filter(|h| *h < rolled_to).collect();
            rep.late_hours_ignored = dirty.iter().filter(|h| **h < raw_from).count();
            let dirty: Vec<i64> = dirty.into_iter().filter(|h| *h >= raw_from).collect();
            // Most passes find no complete hour and nothing late: they end here, cheaply.
            let target = floor(now.saturating_sub(SETTLE_NS), HOUR);
            let due = start.is_some_and(|a| a < target);
            let series: Vec<(SeriesId, EnergyKind)> = if dirty.is_empty() && !due { Vec::new() } else { g.meta.iter().map(|m| (m.id, rollup::energy_kind(m))).collect() };
            (now, target, start, taken, dirty, series)
        };
        for (i, h) in dirty.iter().enumerate() {
            if self.check_stop().is_err() {
                // Not rolled up again yet: kept for the next pass (and the next start).
                self.lock()?.dirty.extend(dirty[i..].iter().copied());
                self.persist_dirty()?;
                return Ok(Err(Stop));
            }
            stop_if_asked!(self.roll_up(&series, *h, h + HOUR, false, rep)?);
            rep.hours_rolled_up_again += 1;
            on_rolled(self, *h, h + HOUR);
        }
        // The table mirrors the set taken above plus what arrived since; unchanged if none was.
        if taken {
            self.persist_dirty()?;
        }
        if let Some(mut a) = start {
            // Slices of whole days (`slice_end`): a day's hour row is written once per slice,
            // and a catch-up over weeks (a backfill) releases the lock between them.
            while a < target {
                let next = self.lock()?.first_sample_from(a)?.map_or(target, |n| floor(n, HOUR).clamp(a, target));
                if next.saturating_sub(a) > SKIP_EMPTY_NS {
                    self.set_horizon("rolled_to", next, |h| h.rolled_to = Some(next))?;
                    rep.empty_hours_skipped += usize::try_from(next.saturating_sub(a) / HOUR).unwrap_or(usize::MAX);
                    a = next;
                    continue;
                }
                let b = self.slice_end(a, target)?;
                stop_if_asked!(self.roll_up(&series, a, b, true, rep)?);
                rep.hours_rolled_up += ((b - a) / HOUR) as usize;
                on_rolled(self, a, b);
                a = b;
            }
        }
        let rolled = rep.hours_rolled_up + rep.hours_rolled_up_again > 0;
        if let Some(rolled_to) = self.horizons()?.rolled_to {
            let raw_cut = match self.expire(keep, now, rolled_to, rep)? {
                Ok(cut) => cut,
                Err(Stop) => return Ok(Err(Stop)),
            };
            // Chunks only become compactable when an hour is rolled up. (Stopped before the
            // end, the rest is compacted by the next pass that rolls an hour up.)
            // Many series a transaction, each series' blocks and the deletion of its chunks
            // in the same one (a read sees either); bounded in bytes and series so that the
            // writer, and a checkpoint waiting for it, is never held for long.
            let mut todo = series.iter().filter(|_| rolled).map(|(id, _)| *id).peekable();
            while todo.peek().is_some() {
                stop_if_asked!(self.check_stop());
                let w = self.writer()?;
                let tx = w.unchecked_transaction()?;
                let (mut bytes, mut n) = (0, 0);
                while bytes < COMPACT_BATCH_BYTES && n < COMPACT_BATCH_SERIES && self.check_stop().is_ok() {
                    let Some(id) = todo.next() else { break };
                    let done = compact(&tx, id, rolled_to, raw_cut)?;
                    rep.chunks_compacted += done.chunks;
                    rep.blocks_written += done.blocks;
                    bytes += done.bytes;
                    n += 1;
                }
                tx.commit()?;
            }
        }
        Ok(Ok(()))
    }

    /// Writes the dirty hours held in memory to `dirty_hours`, replacing what it held.
    fn persist_dirty(&self) -> Result<(), StoreError> {
        let w = self.writer()?;
        let now_dirty: Vec<i64> = self.lock()?.dirty.iter().copied().collect();
        let tx = w.unchecked_transaction()?;
        tx.execute("DELETE FROM dirty_hours", [])?;
        let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO dirty_hours(t) VALUES (?1)")?;
        for t in &now_dirty {
            ins.execute(params![t])?;
        }
        drop(ins);
        tx.commit()?;
        Ok(())
    }

    /// Rolls `[a, b)` (whole hours) up for every series; `advance` moves `rolled_to` to `b`.
    /// Stops between series when asked (`Ok(Err(Stop))`); a slice that advances `rolled_to`
    /// records after each batch where it is (`SLICE_*`), and resumes from there.
    fn roll_up(&self, series: &[(SeriesId, EnergyKind)], a: i64, b: i64, advance: bool, rep: &mut MaintenanceReport) -> Result<Result<(), Stop>, StoreError> {
        // `rolled_to` moves only once the slice's roll-ups are committed (below): moved first,
        // a read between the two took `[a, b)` from roll-ups not yet written and from no raw
        // sample either (a 15-hour hole in a day chart during a backfill's first pass). Samples
        // for `[a, b)` that arrive meanwhile are found by the hours they wrote since `seq`.
        // A slice stopped after some of its batches: those series are not computed again, and
        // every write into the slice since this process started (the log replayed when it
        // opened included) counts as late: it may have come after the batches done read it.
        let done = if advance { self.slice_done(a, b)? } else { None };
        let seq = if done.is_some() { 0 } else { self.lock()?.write_seq };
        let todo: Vec<(SeriesId, EnergyKind)> = series.iter().copied().filter(|(id, _)| done.is_none_or(|d| i64::from(*id) > d)).collect();
        let mut pending = Pending::default();
        let mut committed_any = false;
        let groups = todo.len().div_ceil(READ_SERIES);
        for (gi, group) in todo.chunks(READ_SERIES).enumerate() {
            if let Err(Stop) = self.check_stop() {
                return Ok(Err(Stop));
            }
            let ids: Vec<SeriesId> = group.iter().map(|(id, _)| *id).collect();
            // One snapshot for the group: a read per series took a lock, a pin and a
            // transaction each, a fifth of the catch-up's CPU on a sparse backfill.
            self.read_many_with_neighbours(&ids, a, b - 1, |i, samples| {
                let (id, kind) = group[i];
                pending.add(id, kind, &samples, a, b);
            })?;
            let last_group = gi + 1 == groups;
            if pending.series >= BATCH_SERIES || pending.bytes >= BATCH_BYTES || last_group {
                let last = group.last().map(|(id, _)| *id);
                self.commit_rollups(std::mem::take(&mut pending), a, b, advance, (last_group, last), seq, rep)?;
                committed_any = true;
            }
        }
        if advance && !committed_any {
            let w = self.writer()?;
            let tx = w.unchecked_transaction()?;
            tx.execute("INSERT OR REPLACE INTO state(key, value) VALUES ('rolled_to', ?1)", params![b])?;
            tx.execute("DELETE FROM state WHERE key IN (?1, ?2, ?3)", params![SLICE_FROM, SLICE_TO, SLICE_DONE])?;
            tx.commit()?;
            self.lock()?.publish_rolled_to(a, b, seq);
        }
        Ok(Ok(()))
    }

    /// Writes a batch of a slice's roll-ups in one transaction. `(end, last)`: whether it is
    /// the slice's last batch (`rolled_to` then moves to `b`), and the last series it covers
    /// (recorded, for a slice that advances, so that a stopped pass resumes after it).
    #[allow(clippy::too_many_arguments)]
    fn commit_rollups(&self, p: Pending, a: i64, b: i64, advance: bool, (end, last): (bool, Option<SeriesId>), seq: u64, rep: &mut MaintenanceReport) -> Result<(), StoreError> {
        let w = self.writer()?;
        let tx = w.unchecked_transaction()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4")?;
            let mut put = tx.prepare_cached("INSERT OR REPLACE INTO rollups(series_id, level, t0, data) VALUES (?1, ?2, ?3, ?4)")?;
            for id in &p.read {
                del.execute(params![i64::from(*id), Level::Minute.code(), a, b])?;
            }
            for (id, t0, data) in &p.minute_rows {
                put.execute(params![i64::from(*id), Level::Minute.code(), t0, data])?;
            }
            rep.rollup_rows_written += p.minute_rows.len();
            let mut get = tx.prepare_cached("SELECT data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 = ?3")?;
            for (id, hours) in p.hour_buckets {
                let mut by_day: BTreeMap<i64, Vec<Bucket>> = BTreeMap::new();
                for h in hours {
                    by_day.entry(floor(h.t, DAY)).or_default().push(h);
                }
                for (t0, new) in by_day {
                    let mut old = Vec::new();
                    // A slice over the whole day (most of a catch-up) replaces all of the row.
                    let whole_day = a <= t0 && t0.saturating_add(DAY) <= b;
                    if !whole_day && let Some(data) = get.query_row(params![i64::from(id), Level::Hour.code(), t0], |r| r.get::<_, Vec<u8>>(0)).optional()? {
                        rollup::decode_row(t0, HOUR, &data, &mut old)?;
                    }
                    let merged = rollup::splice(old, new, a, b);
                    put.execute(params![i64::from(id), Level::Hour.code(), t0, rollup::encode_row(t0, HOUR, &merged)])?;
                    rep.rollup_rows_written += 1;
                }
            }
            if advance && end {
                tx.execute("INSERT OR REPLACE INTO state(key, value) VALUES ('rolled_to', ?1)", params![b])?;
                tx.execute("DELETE FROM state WHERE key IN (?1, ?2, ?3)", params![SLICE_FROM, SLICE_TO, SLICE_DONE])?;
            } else if advance && let Some(last) = last {
                let mut put = tx.prepare_cached("INSERT OR REPLACE INTO state(key, value) VALUES (?1, ?2)")?;
                for (k, v) in [(SLICE_FROM, a), (SLICE_TO, b), (SLICE_DONE, i64::from(last))] {
                    put.execute(params![k, v])?;
                }
            }
        }
        tx.commit()?;
        if advance && end {
            // Published with the writer still held: a read that holds it sees horizons
            // that match what is committed (`Store::read_consistent`).
            self.lock()?.publish_rolled_to(a, b, seq);
        }
        Ok(())
    }

    /// Where the slice of the roll-up starting at `a` ends: the end of `a`'s day, or, far
    /// behind `target` (a backfill, a restore, a long outage), up to `SLICE_DAYS` days, a
    /// quarter of the days behind, as long as each holds samples. A slice writes each series'
    /// rows of its days together: inserted day by day, the rows of the 13,000 series of a
    /// site went between those of the day before, each splitting a page of the table, and
    /// SQLite wrote (and checkpointed) about four pages a series and day for one page of rows.
    /// A slice stopped midway ends where it was going to (`SLICE_TO`), so that it resumes.
    fn slice_end(&self, a: i64, target: i64) -> Result<i64, StoreError> {
        let w = self.writer()?;
        let mut get = w.prepare_cached("SELECT value FROM state WHERE key = ?1")?;
        let mut stored = |k: &str| -> Result<Option<i64>, StoreError> { Ok(get.query_row(params![k], |r| r.get(0)).optional()?) };
        if let (Some(from), Some(to)) = (stored(SLICE_FROM)?, stored(SLICE_TO)?)
            && from == a
            && to > a
            && to <= target
        {
            return Ok(to);
        }
        drop(get);
        drop(w);
        let behind = target.saturating_sub(a) / DAY;
        let days = (behind / 4).clamp(1, SLICE_DAYS);
        let mut b = floor(a, DAY).saturating_add(DAY).min(target);
        for _ in 1..days {
            let next = b.saturating_add(DAY).min(target);
            if b >= target || self.lock()?.first_sample_from(b)?.is_none_or(|t| t >= next) {
                break;
            }
            b = next;
        }
        Ok(b)
    }

    /// The last series whose roll-up of the slice `[a, b)` a stopped pass committed, if the
    /// slice in progress was this one.
    fn slice_done(&self, a: i64, b: i64) -> Result<Option<i64>, StoreError> {
        let w = self.writer()?;
        let mut get = w.prepare_cached("SELECT value FROM state WHERE key = ?1")?;
        let mut value = |k: &str| -> Result<Option<i64>, StoreError> { Ok(get.query_row(params![k], |r| r.get(0)).optional()?) };
        Ok(match (value(SLICE_FROM)?, value(SLICE_TO)?, value(SLICE_DONE)?) {
            (Some(x), Some(y), done) if x == a && y == b => done,
            _ => None,
        })
    }

    /// Deletes what is past its retention, oldest first, in short statements. Returns the raw
    /// cut: raw samples before it are expired.
    fn expire(&self, keep: &Retention, now: i64, rolled_to: i64, rep: &mut MaintenanceReport) -> Result<Result<i64, Stop>, StoreError> {
        let raw_cut = floor(now.saturating_sub(keep.raw), HOUR).min(rolled_to);
        let minute_cut = floor(now.saturating_sub(keep.minute), HOUR).min(raw_cut);
        let hour_cut = keep.hour.map(|k| floor(now.saturating_sub(k), DAY).min(floor(minute_cut, DAY)));
        let h = self.horizons()?;
        // Each horizon moves before its rows go: a read meanwhile takes the coarser resolution
        // for the range and may find the finer rows still there too, never neither. (A crash in
        // between leaves rows behind the horizon; the next pass deletes them.)
        if raw_cut > h.raw_from {
            self.set_horizon("raw_from", raw_cut, |h| h.raw_from = raw_cut)?;
            for table in ["chunks", "blocks"] {
                match self.delete_batched(&format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE t_max < ?1 LIMIT ?2)"), raw_cut)? {
                    Ok(n) => rep.raw_rows_deleted += n,
                    Err(Stop) => return Ok(Err(Stop)),
                }
            }
        }
        if minute_cut > h.minute_from {
            self.set_horizon("minute_from", minute_cut, |h| h.minute_from = minute_cut)?;
            match self.delete_batched(&rollup_delete(Level::Minute), minute_cut)? {
                Ok(n) => rep.rollup_rows_deleted += n,
                Err(Stop) => return Ok(Err(Stop)),
            }
        }
        if let Some(cut) = hour_cut.filter(|c| *c > h.hour_from) {
            self.set_horizon("hour_from", cut, |h| h.hour_from = cut)?;
            match self.delete_batched(&rollup_delete(Level::Hour), cut)? {
                Ok(n) => rep.rollup_rows_deleted += n,
                Err(Stop) => return Ok(Err(Stop)),
            }
        }
        Ok(Ok(raw_cut))
    }

    /// Deletes in batches, stopping between them when asked (the horizon has moved already:
    /// the rows left are deleted by the next pass).
    fn delete_batched(&self, sql: &str, cut: i64) -> Result<Result<usize, Stop>, StoreError> {
        let mut total = 0;
        loop {
            if let Err(Stop) = self.check_stop() {
                return Ok(Err(Stop));
            }
            let n = self.writer()?.prepare_cached(sql)?.execute(params![cut, DELETE_BATCH])?;
            total += n;
            if (n as i64) < DELETE_BATCH {
                return Ok(Ok(total));
            }
        }
    }

    fn set_horizon(&self, key: &str, v: i64, apply: impl FnOnce(&mut super::Horizons)) -> Result<(), StoreError> {
        let w = self.writer()?;
        w.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?1, ?2)", params![key, v])?;
        apply(&mut self.lock()?.horizons);
        Ok(())
    }
}

impl Inner {
    /// Moves `rolled_to` to `b` once `[a, b)` is rolled up, and marks dirty the hours of it that
    /// a write touched since `seq` (after the roll-up may have read them): they are rolled up
    /// again next pass, as samples arriving after the hour's roll-up are.
    fn publish_rolled_to(&mut self, a: i64, b: i64, seq: u64) {
        self.horizons.rolled_to = Some(b);
        let hours = (a.div_euclid(HOUR)..b.div_euclid(HOUR)).filter(|h| self.hour_seq.get(h).is_some_and(|s| *s > seq));
        let late: Vec<i64> = hours.map(|h| h * HOUR).collect();
        self.dirty.extend(late);
    }

    /// The first timestamp stored at or after `a`, raw, or `a` itself where a chunk or block
    /// spans it.
    fn first_sample_from(&mut self, a: i64) -> Result<Option<i64>, StoreError> {
        let stored: Option<i64> = self.conn.query_row(
            "SELECT MIN(t) FROM (SELECT MAX(MIN(t_min), ?1) AS t FROM chunks WHERE t_max >= ?1 UNION ALL SELECT MAX(MIN(t_min), ?1) FROM blocks WHERE t_max >= ?1)",
            params![a],
            |r| r.get(0),
        )?;
        let heads = self.recent_min(a);
        Ok(match (stored, heads) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        })
    }

    /// The oldest timestamp stored, raw.
    fn oldest(&mut self) -> Result<Option<i64>, StoreError> {
        let stored = match self.oldest_known {
            Some(known) => known,
            None => {
                let stored: Option<i64> = self.conn.query_row("SELECT MIN(t) FROM (SELECT MIN(t_min) AS t FROM chunks UNION ALL SELECT MIN(t_min) FROM blocks)", [], |r| r.get(0))?;
                self.oldest_known = Some(stored);
                stored
            }
        };
        let heads = self.recent_min(i64::MIN);
        Ok(match (stored, heads) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

/// What [`compact`] did to one series.
struct Compacted {
    chunks: usize,
    blocks: usize,
    /// Bytes of chunks read.
    bytes: usize,
}

/// Merges the series' oldest chunks that end before `before` into one block per hour,
/// dropping samples before `drop_before` (expired). Only a prefix in write order is merged,
/// so every chunk left is newer than every block and reads can keep "blocks, then chunks,
/// in write order; the last write wins". The series' newest chunk may straddle `before`:
/// its older part is merged and the rest written back as the newest chunk.
fn compact(conn: &Connection, id: SeriesId, before: i64, drop_before: i64) -> Result<Compacted, StoreError> {
    let sid = i64::from(id);
    let mut rows: Vec<(i64, i64, i64)> = Vec::new();
    {
        let mut st = conn.prepare_cached("SELECT rowid, t_min, t_max FROM chunks WHERE series_id = ?1 ORDER BY rowid")?;
        let mut q = st.query(params![sid])?;
        while let Some(r) = q.next()? {
            rows.push((r.get(0)?, r.get(1)?, r.get(2)?));
        }
    }
    let mut n = rows.iter().take_while(|(_, _, t_max)| *t_max < before).count();
    let split_last = n + 1 == rows.len() && rows.last().is_some_and(|(_, t_min, _)| *t_min < before);
    if split_last {
        n += 1;
    }
    let Some(&(upto, _, _)) = rows.get(n.wrapping_sub(1)) else { return Ok(Compacted { chunks: 0, blocks: 0, bytes: 0 }) };
    let mut samples: Vec<(i64, Value)> = Vec::new();
    let mut bytes = 0;
    {
        let mut st = conn.prepare_cached("SELECT data, fmt FROM chunks WHERE series_id = ?1 AND rowid <= ?2 ORDER BY rowid")?;
        let mut q = st.query(params![sid, upto])?;
        while let Some(r) = q.next()? {
            let data: Vec<u8> = r.get(0)?;
            bytes += data.len();
            codec::decode_chunk_fmt(r.get(1)?, &data, &mut samples)?;
        }
    }
    sort_dedup(&mut samples);
    let keep_from = samples.partition_point(|(t, _)| *t < drop_before);
    let split = samples.partition_point(|(t, _)| *t < before);
    let (old, rest) = samples.split_at(split);
    let old = old.get(keep_from..).unwrap_or(&[]);
    // Inside the caller's transaction, with other series: the blocks and the deletion of the
    // chunks they replace commit together.
    let tx = conn;
    let mut blocks = 0;
    {
        let mut ins = tx.prepare_cached("INSERT INTO blocks(series_id, t_min, t_max, n, data) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for hour in old.chunk_by(|a, b| floor(a.0, HOUR) == floor(b.0, HOUR)) {
            let (Some((t_min, _)), Some((t_max, _))) = (hour.first(), hour.last()) else { continue };
            ins.execute(params![sid, t_min, t_max, hour.len() as i64, codec::encode_block(hour)])?;
            blocks += 1;
        }
        tx.execute("DELETE FROM chunks WHERE series_id = ?1 AND rowid <= ?2", params![sid, upto])?;
        if let (Some((t_min, _)), Some((t_max, _))) = (rest.first(), rest.last()) {
            tx.prepare_cached("INSERT INTO chunks(series_id, t_min, t_max, n, data) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![sid, t_min, t_max, rest.len() as i64, codec::encode_chunk(rest)])?;
        }
    }
    Ok(Compacted { chunks: n, blocks, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kilowatch_model::{Point, Timestamp};

    const S: i64 = 1_000_000_000;
    /// 2026-10-01T00:00:00Z.
    const T0: i64 = 1_790_812_800 * S;

    fn write_hours(s: &Store, from_s: i64, to_s: i64) {
        let mut pts = Vec::new();
        for i in from_s..to_s {
            let t = T0 + i * S;
            pts.push(Point::new("meter", Timestamp(t)).tag("meter", "grid").field("energy_kwh", 1000.0 + i as f64 * 0.25).field("power_w", 900_000.0 + (i % 7) as f64));
            pts.push(Point::new("cooling", Timestamp(t)).tag("unit", "cu1").field("mode", if (i / 1800) % 2 == 0 { "free" } else { "evaporative" }));
            if pts.len() >= 600 {
                s.write(&pts).expect("write");
                pts.clear();
            }
        }
        s.write(&pts).expect("write");
        s.checkpoint().expect("checkpoint");
    }

    fn id(s: &Store, m: &str, f: &str) -> SeriesId {
        s.find_series(m, f, &[]).expect("find")[0].id
    }

    #[test]
    fn rolls_up_compacts_expires_and_reads_stay_exact() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        write_hours(&s, 0, 5 * 3600 + 300);
        let e = id(&s, "meter", "energy_kwh");
        let mode = id(&s, "cooling", "mode");
        let before = s.read_with_neighbours(e, T0, T0 + 3 * HOUR).expect("read");
        let keep = Retention { raw: 2 * HOUR, minute: 3 * HOUR, hour: None };
        let rep = s.maintain(&keep, i64::MAX).expect("maintain");
        assert_eq!(rep.hours_rolled_up, 5, "{rep:?}");
        let h = s.horizons().expect("horizons");
        assert_eq!(h.rolled_to, Some(T0 + 5 * HOUR));
        // Newest is 05:05, so raw older than 03:00 and minutes older than 02:00 are gone.
        assert_eq!((h.raw_from, h.minute_from), (T0 + 3 * HOUR, T0 + 2 * HOUR));
        assert!(rep.rollup_rows_deleted > 0 && rep.blocks_written > 0, "{rep:?}");

        // Raw data kept: compaction changed nothing a reader sees.
        let recent = s.read_with_neighbours(e, T0 + 3 * HOUR, T0 + 4 * HOUR).expect("read");
        assert_eq!(recent.len(), 3601 + 2);
        assert_eq!(recent[1], (T0 + 3 * HOUR, Value::Num(1000.0 + 3.0 * 3600.0 * 0.25)));
        // Expired raw: minute lasts between 02:00 and 03:00, hour lasts before, and the counter's
        // differences between them are still exact.
        let old = s.read_with_neighbours(e, T0, T0 + 3 * HOUR).expect("read");
        assert!(old.len() < before.len());
        let at = |t: i64| old.iter().find(|(x, _)| *x == t).and_then(|(_, v)| v.as_f64());
        assert_eq!(at(T0 + 3599 * S), Some(1000.0 + 3599.0 * 0.25));
        assert_eq!(at(T0 + 2 * HOUR + 59 * S), Some(1000.0 + 7259.0 * 0.25));
        // 60 minute lasts and the first reading of the hour.
        assert_eq!(old.iter().filter(|(t, _)| *t >= T0 + 2 * HOUR && *t < T0 + 3 * HOUR).count(), 61);
        assert_eq!(old.iter().filter(|(t, _)| *t < T0 + 2 * HOUR).count(), 4);

        // Hour buckets carry the energy of the hour, equal to the counter's increase.
        let hours = s.read_rollups(e, Level::Hour, T0, T0 + 5 * HOUR).expect("rollups");
        assert_eq!(hours.len(), 5);
        assert!((hours[1].energy.expect("energy") - 900.0).abs() < 1e-9, "{:?}", hours[1]);
        assert_eq!(hours[1].n, 3600);
        let minutes = s.read_rollups(e, Level::Minute, T0 + 2 * HOUR, T0 + 3 * HOUR).expect("rollups");
        assert_eq!(minutes.len(), 60);
        let sum: f64 = minutes.iter().filter_map(|b| b.energy).sum();
        assert!((sum - 900.0).abs() < 1e-6, "{sum}");
        // A label keeps its last value per bucket.
        let modes = s.read_with_neighbours(mode, T0 + 2 * HOUR, T0 + 2 * HOUR + 40 * 60 * S).expect("read");
        assert_eq!(modes.iter().filter(|(_, v)| v.as_text() == Some("evaporative")).count(), 12, "{modes:?}");

        // Horizons and roll-ups survive a restart.
        drop(s);
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.horizons().expect("h"), h);
        assert_eq!(s.read_with_neighbours(e, T0, T0 + 3 * HOUR).expect("read"), old);
    }

    #[test]
    fn a_first_sample_decades_old_does_not_stall_the_roll_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        // A node whose clock was reset sent a counter reading from 1971, and one from the very
        // start of time; the site's data is from today.
        let m = |t: i64, v: f64| Point::new("meter", Timestamp(t)).tag("meter", "grid").field("energy_kwh", v).field("power_w", 1000.0);
        s.write(&[m(i64::MIN + 1, 0.5), m(365 * DAY, 1.0)]).expect("write");
        write_hours(&s, 0, 3 * 3600 + 300);
        let rep = s.maintain(&Retention::default(), T0 + 4 * HOUR).expect("maintain");
        assert_eq!(s.horizons().expect("h").rolled_to, Some(T0 + 3 * HOUR), "{rep:?}");
        // The three hours of data, the day slice of 1677 and the hour of 1971; the decades
        // between are skipped, not rolled up minute by minute.
        assert!(rep.hours_rolled_up <= 3 + 2 * 24, "{rep:?}");
        assert!(rep.empty_hours_skipped > 400_000, "{rep:?}");
        assert!(rep.rollup_rows_written < 200, "{rep:?}");
        // Retention ran behind it: the 1971 reading's raw sample is gone, its roll-up stays.
        assert_eq!(s.horizons().expect("h").raw_from, T0 + 3 * HOUR - 48 * HOUR);
        let e = id(&s, "meter", "energy_kwh");
        assert_eq!(s.read_with_neighbours(e, 365 * DAY, 365 * DAY).expect("read"), vec![(i64::MIN + 1, Value::Num(0.5)), (365 * DAY, Value::Num(1.0)), (T0, Value::Num(1000.0))]);
    }

    #[test]
    fn an_hourly_meter_read_after_its_hour_was_rolled_up_keeps_the_tail() {
        // A utility meter read at :05 past each hour, on a site whose other series (a gauge
        // every minute) roll each hour up at :02, before the meter's next reading arrives.
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let live = Retention::default();
        for minute in 0..(6 * 60) {
            let t = T0 + minute * 60 * S;
            let mut pts = vec![Point::new("cooling", Timestamp(t)).tag("unit", "cu1").field("outside_temp_c", 20.0)];
            if minute % 60 == 5 {
                // 600 kWh an hour, steady.
                pts.push(Point::new("meter", Timestamp(t)).tag("meter", "utility").field("energy_kwh", minute as f64 * 10.0));
            }
            s.write(&pts).expect("write");
            if minute % 10 == 3 {
                s.maintain(&live, i64::MAX).expect("maintain");
            }
        }
        let e = id(&s, "meter", "energy_kwh");
        let bounds = [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR];
        let raw = s.ledger(e, EnergyKind::Counter, &bounds).expect("raw");
        assert_eq!(raw.values, vec![600.0, 600.0, 600.0]);
        s.maintain(&Retention { raw: HOUR, minute: 100 * HOUR, hour: None }, i64::MAX).expect("maintain");
        assert!(s.horizons().expect("h").raw_from >= T0 + 4 * HOUR);
        let old = s.ledger(e, EnergyKind::Counter, &bounds).expect("from buckets");
        for (a, b) in old.values.iter().zip(&raw.values) {
            assert!((a - b).abs() < 1e-9, "{:?} vs raw {:?}", old.values, raw.values);
        }
    }

    #[test]
    fn late_samples_roll_their_hour_up_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        write_hours(&s, 0, 2 * 3600 + 300);
        s.maintain(&Retention::default(), i64::MAX).expect("maintain");
        let p = id(&s, "meter", "power_w");
        let first = s.read_rollups(p, Level::Hour, T0, T0 + HOUR).expect("r")[0].clone();
        // A replayed sample with a different value, as a collector could send after a fix.
        s.write(&[Point::new("meter", Timestamp(T0 + 10 * S)).tag("meter", "grid").field("power_w", 2_000_000.0)]).expect("write");
        s.checkpoint().expect("checkpoint");
        let rep = s.maintain(&Retention::default(), i64::MAX).expect("maintain");
        assert_eq!(rep.hours_rolled_up_again, 1, "{rep:?}");
        let again = s.read_rollups(p, Level::Hour, T0, T0 + HOUR).expect("r")[0].clone();
        assert_eq!(again.max, 2_000_000.0);
        assert_eq!(again.n, first.n);
        // And the raw read sees the replacement once, after compaction merged the late chunk.
        let raw = s.read_with_neighbours(p, T0 + 10 * S, T0 + 10 * S).expect("read");
        assert_eq!(raw[1], (T0 + 10 * S, Value::Num(2_000_000.0)));
    }

    /// A catch-up far behind rolls up in slices of several days (`slice_end`); the rows are
    /// the ones a pass a day writes, and so are reads over them.
    #[test]
    fn a_catch_up_in_week_slices_writes_what_day_slices_write() {
        let write = |s: &Store| {
            for q in 0..(20 * 24 * 4) {
                let t = T0 + q * 900 * S;
                let pts = [
                    Point::new("meter", Timestamp(t)).tag("meter", "grid").field("energy_kwh", 1000.0 + q as f64 * 2.5).field("power_w", 900_000.0 + (q % 7) as f64),
                    Point::new("cooling", Timestamp(t)).tag("unit", "cu1").field("mode", if (q / 13) % 2 == 0 { "free" } else { "evaporative" }),
                ];
                s.write(&pts).expect("write");
            }
            s.checkpoint().expect("checkpoint");
        };
        let keep = Retention { raw: 3 * DAY, minute: 10 * DAY, hour: None };
        let (d1, d2) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        let (behind, daily) = (Store::open(d1.path()).expect("open"), Store::open(d2.path()).expect("open"));
        write(&behind);
        write(&daily);
        let rep = behind.maintain(&keep, i64::MAX).expect("maintain");
        assert_eq!(rep.hours_rolled_up, 20 * 24 - 1, "{rep:?}");
        for day in 1..=21 {
            daily.maintain(&keep, T0 + day * DAY).expect("maintain");
        }
        assert_eq!(behind.horizons().expect("h"), daily.horizons().expect("h"));
        for (m, f) in [("meter", "energy_kwh"), ("meter", "power_w"), ("cooling", "mode")] {
            let (a, b) = (id(&behind, m, f), id(&daily, m, f));
            for level in [Level::Minute, Level::Hour] {
                let (x, y) = (behind.read_rollups(a, level, T0, T0 + 21 * DAY).expect("r"), daily.read_rollups(b, level, T0, T0 + 21 * DAY).expect("r"));
                assert!(!x.is_empty() && x.len() == y.len(), "{m}.{f} {level:?}: {} vs {}", x.len(), y.len());
                for (p, q) in x.iter().zip(&y) {
                    assert_eq!((p.t, p.n, p.last.clone(), p.first.clone(), p.energy, p.resets), (q.t, q.n, q.last.clone(), q.first.clone(), q.energy, q.resets), "{m}.{f} {level:?}");
                }
            }
            assert_eq!(behind.read_with_neighbours(a, T0, T0 + 21 * DAY).expect("read"), daily.read_with_neighbours(b, T0, T0 + 21 * DAY).expect("read"), "{m}.{f}");
        }
    }

    /// What a chart reads of one series over `[from, to)`, as the dashboard does: hour
    /// roll-ups before the minute horizon, minute ones up to `rolled_to`, raw samples after;
    /// returns how many samples that covers.
    fn samples_seen(s: &Store, id: SeriesId, from: i64, to: i64) -> u32 {
        s.read_consistent(|h| {
            let rolled = h.rolled_to.unwrap_or(i64::MIN).clamp(from, to);
            let minute_from = h.minute_from.clamp(from, rolled);
            let mut n = 0;
            n += s.read_rollups(id, Level::Hour, from, minute_from)?.iter().map(|b| b.n).sum::<u32>();
            n += s.read_rollups(id, Level::Minute, minute_from, rolled)?.iter().map(|b| b.n).sum::<u32>();
            n += s.read_with_neighbours(id, rolled, to - 1)?.iter().filter(|(t, _)| *t >= rolled && *t < to).count() as u32;
            Ok(n)
        })
        .expect("read")
    }

    /// Reads in a loop while checkpoints, roll-ups (several batches of series), compaction and
    /// retention run: every read sees each sample of the window once, never in neither place
    /// nor in two.
    #[test]
    fn reads_during_maintenance_see_each_sample_once() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let dir = tempfile::tempdir().expect("tmp");
        let s = std::sync::Arc::new(Store::open(dir.path()).expect("open"));
        // Three batches of series, a reading a minute.
        let gpus = 2 * BATCH_SERIES + 100;
        let write_minutes = |s: &Store, from: i64, to: i64| {
            for m in from..to {
                let pts: Vec<Point> = (0..gpus).map(|g| Point::new("gpu", Timestamp(T0 + m * 60 * S)).tag("gpu", g.to_string()).field("power_w", 300.0 + (m % 11) as f64)).collect();
                s.write(&pts).expect("write");
            }
            s.checkpoint().expect("checkpoint");
        };
        write_minutes(&s, 0, 6 * 60 + 5);
        let ids: Vec<SeriesId> = [0, gpus / 2, gpus - 1].iter().map(|g| s.find_series("gpu", "power_w", &[("gpu", &g.to_string())]).expect("find")[0].id).collect();
        let window = (T0, T0 + 6 * HOUR);
        let want = 6 * 60;
        for id in &ids {
            assert_eq!(samples_seen(&s, *id, window.0, window.1), want);
        }
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let reads = std::sync::Arc::new(AtomicUsize::new(0));
        let reader = {
            let (s, done, reads, ids) = (s.clone(), done.clone(), reads.clone(), ids.clone());
            std::thread::spawn(move || {
                let mut wrong = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    for id in &ids {
                        let n = samples_seen(&s, *id, window.0, window.1);
                        if n != want {
                            wrong.push((*id, n, s.horizons().expect("h")));
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                wrong
            })
        };
        // Raw kept 2 hours and minute buckets 3: the pass after the catch-up expires both.
        let keep = Retention { raw: 2 * HOUR, minute: 3 * HOUR, hour: None };
        let rep = s.maintain(&keep, i64::MAX).expect("maintain");
        assert_eq!(rep.hours_rolled_up, 6, "{rep:?}");
        let during_first = reads.load(Ordering::Relaxed);
        write_minutes(&s, 6 * 60 + 5, 8 * 60 + 5);
        let rep = s.maintain(&keep, i64::MAX).expect("maintain");
        assert!(rep.raw_rows_deleted > 0 && rep.rollup_rows_deleted > 0 && rep.blocks_written > 0, "{rep:?}");
        done.store(true, Ordering::Relaxed);
        let wrong = reader.join().expect("reader");
        assert!(during_first >= 3, "the reader ran during the catch-up ({during_first} reads)");
        assert!(wrong.is_empty(), "{} of {} reads saw a hole or a double, e.g. {:?}", wrong.len(), reads.load(Ordering::Relaxed), &wrong[..wrong.len().min(3)]);
        for id in &ids {
            assert_eq!(samples_seen(&s, *id, window.0, window.1), want);
        }
    }

    /// Before the first roll-up, a pass starts from the oldest sample it knows of: one that
    /// was in the heads when it looked, and in store.db after a checkpoint, still counts.
    #[test]
    fn the_oldest_sample_is_kept_across_checkpoints_until_the_first_roll_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let meter = |t: i64| Point::new("meter", Timestamp(T0 + t * S)).tag("meter", "grid").field("power_w", 900_000.0);
        // Only in the heads when the pass looks: store.db is empty.
        s.write(&(0..600).map(meter).collect::<Vec<_>>()).expect("write");
        let rep = s.maintain(&Retention::default(), i64::MAX).expect("maintain");
        assert_eq!(rep.hours_rolled_up, 0, "no complete hour yet: {rep:?}");
        s.checkpoint().expect("checkpoint");
        write_hours(&s, 3 * 3600, 3 * 3600 + 300);
        s.checkpoint().expect("checkpoint");
        s.maintain(&Retention::default(), i64::MAX).expect("maintain");
        let p = id(&s, "meter", "power_w");
        assert_eq!(s.read_rollups(p, Level::Hour, T0, T0 + HOUR).expect("r").len(), 1, "the first hour is rolled up");
    }
}
