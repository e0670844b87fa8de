//! Deleting samples: the admin API's cure for a series that received wrong data, such as a
//! sample from a clock a year ahead (stored before the skew limit existed) or an afternoon of a
//! misconfigured meter. Raw samples go from chunks and blocks; roll-up buckets starting in the
//! range go too, and rolled-up hours whose raw samples are still kept are marked dirty, so that
//! maintenance computes them again from what is left. Each series' newest sample is found again.

use std::collections::BTreeSet;

use rusqlite::params;
use serde::Serialize;

use super::rollup::{self, HOUR, Level};
use super::{Inner, SeriesId, Store, StoreError, Value, codec};

/// Which samples to delete: the series of `measurement` whose tags include every `(k, v)` of
/// `tags` (and whose field is `field`, if given), at times in `[from, to)`, ns.
#[derive(Debug, Clone, Serialize)]
pub struct Selector {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub field: Option<String>,
    pub from: i64,
    pub to: i64,
}

/// What a deletion removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    /// Series the selector matched.
    pub series: usize,
    /// Raw samples deleted.
    pub samples: usize,
    /// Roll-up buckets (minute and hour) deleted.
    pub rollup_buckets: usize,
}

impl Store {
    /// Deletes the selected samples (see [`Selector`]) and commits before returning.
    pub fn delete(&self, sel: &Selector) -> Result<Deleted, StoreError> {
        self.lock()?.delete(sel)
    }
}

impl Inner {
    fn delete(&mut self, sel: &Selector) -> Result<Deleted, StoreError> {
        let ids: Vec<SeriesId> = self
            .meta
            .iter()
            .filter(|m| m.measurement == sel.measurement && sel.field.as_ref().is_none_or(|f| *f == m.field) && sel.tags.iter().all(|(k, v)| m.tag(k) == Some(v)))
            .map(|m| m.id)
            .collect();
        let mut out = Deleted { series: ids.len(), ..Deleted::default() };
        if ids.is_empty() || sel.to <= sel.from {
            return Ok(out);
        }
        // Heads and the request log into chunks first: a replay of the log after a crash would
        // otherwise bring the deleted samples back.
        self.checkpoint()?;
        let mut hours: BTreeSet<i64> = BTreeSet::new();
        let tx = self.conn.transaction()?;
        for id in &ids {
            let sid = i64::from(*id);
            for table in ["chunks", "blocks"] {
                let mut rows: Vec<(i64, Vec<u8>)> = Vec::new();
                {
                    let mut st = tx.prepare_cached(&format!("SELECT rowid, data FROM {table} WHERE series_id = ?1 AND t_max >= ?2 AND t_min < ?3"))?;
                    let mut q = st.query(params![sid, sel.from, sel.to])?;
                    while let Some(r) = q.next()? {
                        rows.push((r.get(0)?, r.get(1)?));
                    }
                }
                for (rowid, data) in rows {
                    let mut samples: Vec<(i64, Value)> = Vec::new();
                    if table == "blocks" {
                        codec::decode_block(&data, &mut samples)?;
                    } else {
                        codec::decode_chunk(&data, &mut samples)?;
                    }
                    let before = samples.len();
                    samples.retain(|(t, _)| {
                        let hit = *t >= sel.from && *t < sel.to;
                        if hit {
                            hours.insert(t.div_euclid(HOUR));
                        }
                        !hit
                    });
                    out.samples += before - samples.len();
                    match (samples.first(), samples.last()) {
                        _ if samples.len() == before => {}
                        (Some((t_min, _)), Some((t_max, _))) => {
                            // Updated in place: the rowid is the write order that decides which of
                            // two writes of one timestamp wins.
                            let data = if table == "blocks" { codec::encode_block(&samples) } else { codec::encode_chunk(&samples) };
                            tx.execute(&format!("UPDATE {table} SET t_min = ?1, t_max = ?2, n = ?3, data = ?4 WHERE rowid = ?5"), params![t_min, t_max, samples.len() as i64, data, rowid])?;
                        }
                        _ => {
                            tx.execute(&format!("DELETE FROM {table} WHERE rowid = ?1"), params![rowid])?;
                        }
                    }
                }
            }
            for level in [Level::Minute, Level::Hour] {
                let span = level.row_span();
                let lo = sel.from.div_euclid(span).saturating_mul(span);
                let mut rows: Vec<(i64, Vec<u8>)> = Vec::new();
                {
                    let mut st = tx.prepare_cached("SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4")?;
                    let mut q = st.query(params![sid, level.code(), lo, sel.to])?;
                    while let Some(r) = q.next()? {
                        rows.push((r.get(0)?, r.get(1)?));
                    }
                }
                for (t0, data) in rows {
                    let mut buckets = Vec::new();
                    rollup::decode_row(t0, level.step(), &data, &mut buckets)?;
                    let before = buckets.len();
                    buckets.retain(|b| {
                        let hit = b.t >= sel.from && b.t < sel.to;
                        if hit {
                            hours.insert(b.t.div_euclid(HOUR));
                        }
                        !hit
                    });
                    out.rollup_buckets += before - buckets.len();
                    if buckets.len() == before {
                        continue;
                    }
                    if buckets.is_empty() {
                        tx.execute("DELETE FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 = ?3", params![sid, level.code(), t0])?;
                    } else {
                        tx.execute("UPDATE rollups SET data = ?4 WHERE series_id = ?1 AND level = ?2 AND t0 = ?3", params![sid, level.code(), t0, rollup::encode_row(t0, level.step(), &buckets)])?;
                    }
                }
            }
        }
        // Rolled-up hours whose raw samples are kept are rolled up again by the next
        // maintenance pass, from what is left.
        let (raw_from, rolled_to) = (self.horizons.raw_from, self.horizons.rolled_to.unwrap_or(i64::MIN));
        let dirty: Vec<i64> = hours.iter().map(|h| h.saturating_mul(HOUR)).filter(|t| *t >= raw_from && *t < rolled_to).collect();
        {
            let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO dirty_hours(t) VALUES (?1)")?;
            for t in &dirty {
                ins.execute(params![t])?;
            }
        }
        // A series whose newest sample went has no stored newest until it is found again below:
        // a crash in between leaves it unset (the next write sets it), never the deleted one.
        let stale: Vec<SeriesId> = ids.iter().copied().filter(|id| self.last.get(*id as usize).cloned().flatten().is_some_and(|(t, _)| t >= sel.from && t < sel.to)).collect();
        for id in &stale {
            tx.execute("DELETE FROM last_values WHERE series_id = ?1", params![i64::from(*id)])?;
        }
        tx.commit()?;
        self.dirty.extend(dirty);
        self.write_seq += 1;
        for h in &hours {
            self.hour_seq.insert(*h, self.write_seq);
        }
        for id in stale {
            let last = self.newest_stored(id)?;
            if let Some((t, v)) = &last {
                self.conn.execute("INSERT OR REPLACE INTO last_values(series_id, ts, data) VALUES (?1, ?2, ?3)", params![i64::from(id), t, codec::encode_chunk(&[(*t, v.clone())])])?;
            }
            if let Some(slot) = self.last.get_mut(id as usize) {
                *slot = last;
            }
        }
        self.stats.newest_ts = self.last.iter().flatten().map(|(t, _)| *t).max();
        self.sync_newest();
        Ok(out)
    }

    /// The newest sample stored for a series (heads are empty: called after a checkpoint).
    fn newest_stored(&mut self, id: SeriesId) -> Result<Option<(i64, Value)>, StoreError> {
        let sid = i64::from(id);
        let t: Option<i64> = self.conn.query_row(
            "SELECT MAX(t) FROM (SELECT MAX(t_max) AS t FROM chunks WHERE series_id = ?1 UNION ALL SELECT MAX(t_max) FROM blocks WHERE series_id = ?1)",
            params![sid],
            |r| r.get(0),
        )?;
        let samples = match t {
            Some(t) => self.read(id, t, t)?,
            // Only roll-ups left (raw samples expired): their last readings.
            None => self.read(id, i64::MIN, i64::MAX)?,
        };
        Ok(match t {
            Some(t) => samples.into_iter().find(|(x, _)| *x == t),
            None => samples.into_iter().last(),
        })
    }
}
