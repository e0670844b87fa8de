//! Checkpoints: the heads become chunks and the log segments they came from are deleted.
//!
//! Swap, then write: under the lock the heads are swapped for empty ones and the log moves to a
//! new segment (memory work and one sync); the chunks are written and committed on the writer
//! connection without the lock, while ingest fills the new heads and reads see the swapped-out
//! heads (`flushing`) until their chunks are in. A checkpoint that fails keeps its heads in
//! `flushing` and its segments on disk: the next one writes them again, oldest first.

use std::sync::Arc;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{SeriesId, Store, StoreError, Value, codec, head};

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
            series: Vec<(SeriesId, String, String, String, String)>,
            upto: usize,
            lasts: Vec<(SeriesId, i64, Value)>,
            dirty: Vec<i64>,
            records: u64,
            seq: u64,
        }
        let t = {
            let mut g = self.lock()?;
            if g.stats.head_samples == 0 && g.flushing.is_empty() && g.last_changed.is_empty() && g.new_keys.is_empty() && g.stats.log_records == 0 {
                return Ok(0);
            }
            // First: if the log cannot move on, nothing has changed yet.
            let seq = self.wal.rotate()?;
            let n = g.heads.len();
            let heads = std::mem::replace(&mut g.heads, vec![head::Head::default(); n]);
            g.flushing_bytes += std::mem::take(&mut g.head_bytes);
            g.flushing_samples += std::mem::take(&mut g.stats.head_samples);
            g.flushing.push(Arc::new(heads));
            let upto = g.meta.len();
            let series = g.meta[g.persisted_series..]
                .iter()
                .zip(&g.new_keys)
                .map(|(m, k)| (m.id, k.clone(), m.measurement.clone(), serde_json::to_string(&m.tags).unwrap_or_else(|_| "{}".into()), m.field.clone()))
                .collect();
            let changed = std::mem::take(&mut g.last_changed);
            let mut lasts = Vec::with_capacity(changed.len());
            for id in changed {
                if let Some(f) = g.last_flag.get_mut(id as usize) {
                    *f = false;
                }
                if let Some(Some((ts, v))) = g.last.get(id as usize) {
                    lasts.push((id, *ts, v.clone()));
                }
            }
            let dirty = g.dirty.iter().copied().collect();
            let records = std::mem::take(&mut g.stats.log_records);
            Taken { snaps: g.flushing.clone(), series, upto, lasts, dirty, records, seq }
        };
        match write_chunks(w, &t.snaps, &t.series, &t.lasts, &t.dirty) {
            Ok(moved) => {
                {
                    let mut g = self.lock()?;
                    // Only checkpoints add to `flushing`, one at a time (they hold the writer).
                    let done = t.snaps.len().min(g.flushing.len());
                    g.flushing.drain(..done);
                    g.flushing_bytes = 0;
                    g.flushing_samples = 0;
                    let persisted = g.persisted_series;
                    g.new_keys.drain(..t.upto - persisted);
                    g.persisted_series = t.upto;
                    g.stats.checkpoints += 1;
                }
                self.wal.remove_before(t.seq)?;
                Ok(moved)
            }
            Err(e) => {
                let mut g = self.lock()?;
                for (id, _, _) in &t.lasts {
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

    /// Bytes held by recent samples, and the series count.
    pub fn memory_use(&self) -> Result<MemoryUse, StoreError> {
        let g = self.lock()?;
        Ok(MemoryUse { head_bytes: g.head_bytes, flushing_bytes: g.flushing_bytes, series: g.meta.len() })
    }
}

fn write_chunks(
    w: &mut Connection,
    snaps: &[Arc<Vec<head::Head>>],
    series: &[(SeriesId, String, String, String, String)],
    lasts: &[(SeriesId, i64, Value)],
    dirty: &[i64],
) -> Result<usize, StoreError> {
    let tx = w.transaction()?;
    let mut moved = 0;
    {
        let mut ser = tx.prepare_cached("INSERT INTO series(id, key, measurement, tags, field) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for (id, key, measurement, tags, field) in series {
            ser.execute(params![id, key, measurement, tags, field])?;
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
                }
            }
        }
        // Only the series that moved: a checkpoint of a large, mostly idle site would
        // otherwise rewrite every series' row each time.
        let mut last = tx.prepare_cached("INSERT OR REPLACE INTO last_values(series_id, ts, data) VALUES (?1, ?2, ?3)")?;
        for (id, ts, v) in lasts {
            last.execute(params![i64::from(*id), ts, codec::encode_chunk(&[(*ts, v.clone())])])?;
        }
        let mut d = tx.prepare_cached("INSERT OR IGNORE INTO dirty_hours(t) VALUES (?1)")?;
        for t in dirty {
            d.execute(params![t])?;
        }
        // Rows of a log kept in SQLite by an older version, replayed when the store opened.
        tx.execute("DELETE FROM log", [])?;
    }
    tx.commit()?;
    Ok(moved)
}
