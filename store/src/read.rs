//! The store's read path: blocks, chunks and heads merged, with the roll-ups' readings standing
//! in where the raw samples have expired.
//!
//! Reads run outside `inner` for their disk work: each takes a pooled connection (`Readers`)
//! and, holding `inner` only for memory work and the pinning of its snapshot, copies the
//! horizons and the samples not yet in chunks, then opens a read transaction. A checkpoint
//! drops its swapped-out heads under `inner` only after their chunks are committed, so a
//! snapshot pinned before that commit is paired with those heads, one pinned after it finds
//! the chunks. Maintenance moves a horizon (under `inner`) before it deletes the rows behind
//! it, so a read whose snapshot misses the rows has the moved horizon.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::{Horizons, Inner, SeriesId, Store, StoreError, Value, codec, open_conn, rollup, sort_dedup};

/// Idle read connections kept open, each with its own page cache (`READER_CACHE_KIB`): more
/// concurrent reads than this open a connection and close it after.
const READERS_KEPT: usize = 4;
/// SQLite's page cache per read connection (negative: KiB), 16 MB: four of them hold what the
/// single 64 MB read cache held before.
const READER_CACHE_KIB: i64 = -16384;

/// The pool of read connections.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// A pooled connection, then, once pinned, a read transaction on it; ended (and the
/// connection handed back) on drop.
pub(super) struct Snapshot<'a> {
    pool: &'a Readers,
    conn: Option<Connection>,
    pinned: bool,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Readers {
        Readers { path: path.to_owned(), idle: Mutex::new(Vec::new()) }
    }

    /// A connection, not yet in a transaction.
    pub(super) fn take(&self) -> Result<Snapshot<'_>, StoreError> {
        let pooled = self.idle.lock().map_err(|_| StoreError::Poisoned)?.pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(&self.path, READER_CACHE_KIB)?,
        };
        Ok(Snapshot { pool: self, conn: Some(conn), pinned: false })
    }

    /// A read transaction with its snapshot pinned, for reads of what only store.db holds.
    pub(super) fn begin(&self) -> Result<Snapshot<'_>, StoreError> {
        let mut snap = self.take()?;
        snap.pin()?;
        Ok(snap)
    }
}

impl Snapshot<'_> {
    pub(super) fn conn(&self) -> &Connection {
        // Invariant: `conn` is only taken in `drop`.
        self.conn.as_ref().expect("a snapshot holds its connection until dropped")
    }

    /// Opens the read transaction and pins its snapshot: what it reads later is store.db as
    /// it is now, whatever commits meanwhile.
    pub(super) fn pin(&mut self) -> Result<(), StoreError> {
        self.conn().execute_batch("BEGIN")?;
        self.pinned = true;
        // A WAL read transaction takes its snapshot at its first read, not at BEGIN.
        self.conn().prepare_cached("SELECT COUNT(*) FROM state")?.query_row([], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // A connection whose transaction would not end is not handed back.
        if self.pinned && conn.execute_batch("COMMIT").is_err() {
            return;
        }
        if let Ok(mut idle) = self.pool.idle.lock()
            && idle.len() < READERS_KEPT
        {
            idle.push(conn);
        }
    }
}

/// Reads redone, at most, while maintenance moves the horizons under them, before a read waits
/// for maintenance's writer instead.
const CONSISTENT_TRIES: usize = 4;

impl Store {
    /// Runs `read` (several reads of one series: roll-ups up to a horizon, raw samples after it)
    /// so that it sees each sample once, in one resolution, whatever maintenance commits
    /// meanwhile. Every horizon moves with maintenance's writer held: `rolled_to` after the
    /// roll-ups behind it are committed, the others before the rows behind them are deleted. A
    /// read whose horizons were the same before and after it therefore found every row it was
    /// told to look for; one that raced a move is done again, and after a few tries under the
    /// writer, which holds the horizons still (reads of a large view are per series, so a
    /// retry costs one series).
    pub fn read_consistent<T>(&self, mut read: impl FnMut(Horizons) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut h = self.horizons()?;
        for _ in 0..CONSISTENT_TRIES {
            let out = read(h)?;
            let now = self.horizons()?;
            if now == h {
                return Ok(out);
            }
            h = now;
        }
        let _held = self.writer()?;
        read(self.horizons()?)
    }

    /// [`Store::read_with_neighbours`]: under `inner` (memory work and the pin only) the
    /// horizons, the samples of `id` not yet in chunks and a snapshot of store.db pinned to go
    /// with them; the disk reads after, outside it.
    pub(super) fn read_pinned(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, Value)>, StoreError> {
        let mut snap = self.readers.take()?;
        let mut recent = Vec::new();
        let horizons = {
            let g = self.lock()?;
            g.recent(id, &mut recent)?;
            snap.pin()?;
            g.horizons
        };
        read_in_tx(snap.conn(), horizons, id, from, to, recent)
    }

    /// [`Store::read_with_neighbours`] of many series from one snapshot taken under one pass
    /// of `inner` (a query's selector reads every series it matches together, not each with
    /// its own lock, pin and transaction). `each` gets the index in `ids` and the samples of
    /// each series in turn, so one series' samples are dropped before the next is decoded.
    pub fn read_many_with_neighbours(&self, ids: &[SeriesId], from: i64, to: i64, mut each: impl FnMut(usize, Vec<(i64, Value)>)) -> Result<(), StoreError> {
        let mut snap = self.readers.take()?;
        let mut recents = Vec::with_capacity(ids.len());
        let horizons = {
            let g = self.lock()?;
            for id in ids {
                let mut recent = Vec::new();
                g.recent(*id, &mut recent)?;
                recents.push(recent);
            }
            snap.pin()?;
            g.horizons
        };
        for (i, (id, recent)) in ids.iter().zip(recents).enumerate() {
            each(i, read_in_tx(snap.conn(), horizons, *id, from, to, recent)?);
        }
        Ok(())
    }
}

/// Blobs of `table` (chunks or blocks) of one series overlapping `[from, to]`, plus the
/// nearest on each side, in write order, each with its layout (`chunks.fmt`; 0 for blocks).
fn blobs(conn: &Connection, table: &str, sid: i64, from: i64, to: i64) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
    let fmt = if table == "chunks" { "fmt" } else { "0" };
    let sql = format!(
        "SELECT data, f FROM (SELECT rowid AS r, data, {fmt} AS f FROM {table} WHERE series_id = ?1 AND t_max >= ?2 AND t_min <= ?3
         UNION SELECT * FROM (SELECT rowid AS r, data, {fmt} AS f FROM {table} WHERE series_id = ?1 AND t_max < ?2 ORDER BY t_max DESC LIMIT 1)
         UNION SELECT * FROM (SELECT rowid AS r, data, {fmt} AS f FROM {table} WHERE series_id = ?1 AND t_min > ?3 ORDER BY t_min LIMIT 1)) ORDER BY r"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut q = st.query(params![sid, from, to])?;
    let mut blobs = Vec::new();
    while let Some(r) = q.next()? {
        blobs.push((r.get(0)?, r.get(1)?));
    }
    Ok(blobs)
}

/// Roll-up rows `(t0, data)` of a series whose buckets may start in `[from, to)`, and with
/// `neighbours` the nearest row on each side.
pub(super) fn rollup_rows(conn: &Connection, id: SeriesId, level: rollup::Level, from: i64, to: i64, neighbours: bool) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
    let span = level.row_span();
    let lo = from.div_euclid(span).saturating_mul(span);
    let sql = if neighbours {
        "SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4
         UNION SELECT * FROM (SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 < ?3 ORDER BY t0 DESC LIMIT 1)
         UNION SELECT * FROM (SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?4 ORDER BY t0 LIMIT 1) ORDER BY t0"
    } else {
        "SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4 ORDER BY t0"
    };
    let mut st = conn.prepare_cached(sql)?;
    let mut q = st.query(params![i64::from(id), level.code(), lo, to])?;
    let mut rows = Vec::new();
    while let Some(r) = q.next()? {
        rows.push((r.get(0)?, r.get(1)?));
    }
    Ok(rows)
}

/// The last reading of each roll-up bucket of `level` in `[from, to]` and around it, and
/// the first of those starting on an hour.
fn rollup_lasts(conn: &Connection, id: SeriesId, level: rollup::Level, from: i64, to: i64, out: &mut Vec<(i64, Value)>) -> Result<(), StoreError> {
    let mut buckets = Vec::new();
    for (t0, data) in rollup_rows(conn, id, level, from, to.saturating_add(1), true)? {
        rollup::decode_row(t0, level.step(), &data, &mut buckets)?;
    }
    for b in buckets {
        out.extend(b.first);
        out.extend(b.last);
    }
    Ok(())
}

/// The samples of `id` in `[from, to]` and its neighbours, from `conn` (inside a read
/// transaction) and `recent`, the samples not yet in chunks, taken after the transaction's
/// snapshot was pinned.
pub(super) fn read_in_tx(conn: &Connection, h: Horizons, id: SeriesId, from: i64, to: i64, recent: Vec<(i64, Value)>) -> Result<Vec<(i64, Value)>, StoreError> {
    let mut all: Vec<(i64, Value)> = Vec::new();
    // Where the raw samples are gone, the last reading of each roll-up bucket stands in:
    // hour buckets before the minute ones, then minute buckets up to the raw samples.
    // Within an hour after a horizon, the newer resolution may hold nothing before `from`,
    // so the older one is asked too, for the left neighbour.
    let near = |horizon: i64| horizon != i64::MIN && from < horizon.saturating_add(rollup::HOUR);
    if near(h.raw_from) {
        if near(h.minute_from) {
            rollup_lasts(conn, id, rollup::Level::Hour, from, to.min(h.minute_from - 1), &mut all)?;
        }
        rollup_lasts(conn, id, rollup::Level::Minute, from, to.min(h.raw_from - 1), &mut all)?;
    }
    let sid = i64::from(id);
    // Blocks are compacted chunks: older than every chunk left, so they go first.
    for table in ["blocks", "chunks"] {
        for (b, fmt) in blobs(conn, table, sid, from, to)? {
            if table == "blocks" {
                codec::decode_block(&b, &mut all)?;
            } else {
                codec::decode_chunk_fmt(fmt, &b, &mut all)?;
            }
        }
    }
    // Roll-ups, blocks, chunks in write order, then the heads: the last write of a timestamp
    // wins.
    all.extend(recent);
    let mut dedup = all;
    sort_dedup(&mut dedup);
    let first_in = dedup.partition_point(|(t, _)| *t < from);
    let last_in = dedup.partition_point(|(t, _)| *t <= to);
    let lo = first_in.saturating_sub(1);
    let hi = (last_in + 1).min(dedup.len());
    // In place: a long read is mostly kept, and copying it again costs more than the read.
    dedup.truncate(hi);
    dedup.drain(..lo);
    Ok(dedup)
}

impl Inner {
    /// The series' samples not yet in chunks: those a checkpoint is writing, then the head's.
    pub(super) fn recent(&self, id: SeriesId, out: &mut Vec<(i64, Value)>) -> Result<(), StoreError> {
        for snap in &self.flushing {
            if let Some(h) = snap.get(id as usize) {
                h.decode_into(out)?;
            }
        }
        if let Some(h) = self.heads.get(id as usize) {
            h.decode_into(out)?;
        }
        Ok(())
    }

    /// The oldest timestamp among the samples not yet in chunks, over every series.
    pub(super) fn recent_min(&self, from: i64) -> Option<i64> {
        self.flushing.iter().flat_map(|s| s.iter()).chain(self.heads.iter()).flat_map(|h| h.segments.iter()).filter(|s| s.t_max >= from).map(|s| if s.t_min >= from { s.t_min } else { from }).min()
    }

    /// A read on `inner`'s own connection, for the few callers that already hold `inner`
    /// (a deletion looking for a series' new newest sample).
    pub(super) fn read(&mut self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, Value)>, StoreError> {
        let mut recent = Vec::new();
        self.recent(id, &mut recent)?;
        // One read transaction: a compaction or an expiry committing on the writer connection
        // between two of the statements cannot hide samples from this read.
        self.conn.execute_batch("BEGIN")?;
        let r = read_in_tx(&self.conn, self.horizons, id, from, to, recent);
        let end = self.conn.execute_batch(if r.is_ok() { "COMMIT" } else { "ROLLBACK" });
        let r = r?;
        end?;
        Ok(r)
    }
}
