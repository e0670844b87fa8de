//! The store's read path: blocks, chunks and heads merged, with the roll-ups' readings standing
//! in where the raw samples have expired.

use rusqlite::params;

use super::{Inner, SeriesId, StoreError, Value, codec, rollup, sort_dedup};

impl Inner {
    /// Blobs of `table` (chunks or blocks) of one series overlapping `[from, to]`, plus the
    /// nearest on each side, in write order, each with its layout (`chunks.fmt`; 0 for blocks).
    pub(super) fn blobs(&mut self, table: &str, sid: i64, from: i64, to: i64) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
        let fmt = if table == "chunks" { "fmt" } else { "0" };
        let sql = format!(
            "SELECT data, f FROM (SELECT rowid AS r, data, {fmt} AS f FROM {table} WHERE series_id = ?1 AND t_max >= ?2 AND t_min <= ?3
             UNION SELECT * FROM (SELECT rowid AS r, data, {fmt} AS f FROM {table} WHERE series_id = ?1 AND t_max < ?2 ORDER BY t_max DESC LIMIT 1)
             UNION SELECT * FROM (SELECT rowid AS r, data, {fmt} AS f FROM {table} WHERE series_id = ?1 AND t_min > ?3 ORDER BY t_min LIMIT 1)) ORDER BY r"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut q = st.query(params![sid, from, to])?;
        let mut blobs = Vec::new();
        while let Some(r) = q.next()? {
            blobs.push((r.get(0)?, r.get(1)?));
        }
        Ok(blobs)
    }

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
        self.flushing
            .iter()
            .flat_map(|s| s.iter())
            .chain(self.heads.iter())
            .flat_map(|h| h.segments.iter())
            .filter(|s| s.t_max >= from)
            .map(|s| if s.t_min >= from { s.t_min } else { from })
            .min()
    }

    /// Roll-up rows `(t0, data)` of a series whose buckets may start in `[from, to)`, and with
    /// `neighbours` the nearest row on each side.
    pub(super) fn rollup_rows(&mut self, id: SeriesId, level: rollup::Level, from: i64, to: i64, neighbours: bool) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let span = level.row_span();
        let lo = from.div_euclid(span).saturating_mul(span);
        let sql = if neighbours {
            "SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4
             UNION SELECT * FROM (SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 < ?3 ORDER BY t0 DESC LIMIT 1)
             UNION SELECT * FROM (SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?4 ORDER BY t0 LIMIT 1) ORDER BY t0"
        } else {
            "SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4 ORDER BY t0"
        };
        let mut st = self.conn.prepare_cached(sql)?;
        let mut q = st.query(params![i64::from(id), level.code(), lo, to])?;
        let mut rows = Vec::new();
        while let Some(r) = q.next()? {
            rows.push((r.get(0)?, r.get(1)?));
        }
        Ok(rows)
    }

    /// The last reading of each roll-up bucket of `level` in `[from, to]` and around it, and
    /// the first of those starting on an hour.
    pub(super) fn rollup_lasts(&mut self, id: SeriesId, level: rollup::Level, from: i64, to: i64, out: &mut Vec<(i64, Value)>) -> Result<(), StoreError> {
        let mut buckets = Vec::new();
        for (t0, data) in self.rollup_rows(id, level, from, to.saturating_add(1), true)? {
            rollup::decode_row(t0, level.step(), &data, &mut buckets)?;
        }
        for b in buckets {
            out.extend(b.first);
            out.extend(b.last);
        }
        Ok(())
    }

    pub(super) fn read(&mut self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, Value)>, StoreError> {
        // One read transaction: a compaction or an expiry committing on the writer connection
        // between two of the statements below cannot hide samples from this read.
        self.conn.execute_batch("BEGIN")?;
        let r = self.read_in_tx(id, from, to);
        let end = self.conn.execute_batch(if r.is_ok() { "COMMIT" } else { "ROLLBACK" });
        let r = r?;
        end?;
        Ok(r)
    }

    fn read_in_tx(&mut self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, Value)>, StoreError> {
        let mut all: Vec<(i64, Value)> = Vec::new();
        // Where the raw samples are gone, the last reading of each roll-up bucket stands in:
        // hour buckets before the minute ones, then minute buckets up to the raw samples.
        // Within an hour after a horizon, the newer resolution may hold nothing before `from`,
        // so the older one is asked too, for the left neighbour.
        let h = self.horizons;
        let near = |horizon: i64| horizon != i64::MIN && from < horizon.saturating_add(rollup::HOUR);
        if near(h.raw_from) {
            if near(h.minute_from) {
                self.rollup_lasts(id, rollup::Level::Hour, from, to.min(h.minute_from - 1), &mut all)?;
            }
            self.rollup_lasts(id, rollup::Level::Minute, from, to.min(h.raw_from - 1), &mut all)?;
        }
        let sid = i64::from(id);
        // Blocks are compacted chunks: older than every chunk left, so they go first.
        for table in ["blocks", "chunks"] {
            for (b, fmt) in self.blobs(table, sid, from, to)? {
                if table == "blocks" {
                    codec::decode_block(&b, &mut all)?;
                } else {
                    codec::decode_chunk_fmt(fmt, &b, &mut all)?;
                }
            }
        }
        self.recent(id, &mut all)?;
        // Roll-ups, blocks, chunks in write order, then the head: the last write of a
        // timestamp wins.
        let mut dedup = all;
        sort_dedup(&mut dedup);
        let first_in = dedup.partition_point(|(t, _)| *t < from);
        let last_in = dedup.partition_point(|(t, _)| *t <= to);
        let lo = first_in.saturating_sub(1);
        let hi = (last_in + 1).min(dedup.len());
        Ok(dedup.drain(lo..hi).collect())
    }
}
