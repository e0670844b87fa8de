//! Deleting samples: the admin API's cure for a series that received wrong data, such as a
//! sample from a clock a year ahead (stored before the skew limit existed) or an afternoon of a
//! misconfigured meter. Raw samples go from chunks and blocks; roll-up buckets starting in the
//! range go too, and rolled-up hours whose raw samples are still kept are marked dirty, so that
//! maintenance computes them again from what is left. Each series' newest sample is found again.

use std::collections::BTreeSet;

use rusqlite::params;
use serde::Serialize;

use super::rollup::{self, HOUR, Level};
use super::{Inner, SeriesId, Store, StoreError, Value, codec, newest};

/// Which samples to delete: the series of `measurement` whose tags include every `(k, v)` of
/// `tags` (and whose field is `field`, if given), at times in `[from, to)`, ns; without `to`,
/// every sample from `from` on (the last instant included).
#[derive(Debug, Clone, Serialize)]
pub struct Selector {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub field: Option<String>,
    pub from: i64,
    pub to: Option<i64>,
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
        // Heads and the log into chunks first, the writer held throughout: a replay of the log
        // after a crash would otherwise bring the deleted samples back.
        let mut w = self.writer()?;
        self.checkpoint_with(&mut w)?;
        self.lock()?.delete(sel)
    }
}

impl Inner {
    fn delete(&mut self, sel: &Selector) -> Result<Deleted, StoreError> {
        let ids: Vec<SeriesId> = self
            .meta
            .iter()
            .filter(|m| *m.measurement == *sel.measurement && sel.field.as_deref().is_none_or(|f| *f == *m.field) && sel.tags.iter().all(|(k, v)| m.tag(k) == Some(v)))
            .map(|m| m.id)
            .collect();
        let mut out = Deleted { series: ids.len(), ..Deleted::default() };
        // Inclusive bounds from here on.
        let (from, last) = (sel.from, sel.to.map_or(i64::MAX, |t| t.saturating_sub(1)));
        if ids.is_empty() || last < from {
            return Ok(out);
        }
        let mut hours: BTreeSet<i64> = BTreeSet::new();
        self.oldest_known = None;
        let tx = self.conn.transaction()?;
        for id in &ids {
            let sid = i64::from(*id);
            for table in ["chunks", "blocks"] {
                let mut rows: Vec<(i64, Vec<u8>, i64)> = Vec::new();
                {
                    let fmt = if table == "chunks" { "fmt" } else { "0" };
                    let mut st = tx.prepare_cached(&format!("SELECT rowid, data, {fmt} FROM {table} WHERE series_id = ?1 AND t_max >= ?2 AND t_min <= ?3"))?;
                    let mut q = st.query(params![sid, from, last])?;
                    while let Some(r) = q.next()? {
                        rows.push((r.get(0)?, r.get(1)?, r.get(2)?));
                    }
                }
                for (rowid, data, fmt) in rows {
                    let mut samples: Vec<(i64, Value)> = Vec::new();
                    if table == "blocks" {
                        codec::decode_block(&data, &mut samples)?;
                    } else {
                        codec::decode_chunk_fmt(fmt, &data, &mut samples)?;
                        // Packed chunks keep arrival order; within one chunk the last write of a
                        // timestamp wins, as a read would decide.
                        super::sort_dedup(&mut samples);
                    }
                    let before = samples.len();
                    samples.retain(|(t, _)| {
                        let hit = (from..=last).contains(t);
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
                            let fmt = if table == "chunks" { ", fmt = 0" } else { "" };
                            tx.execute(&format!("UPDATE {table} SET t_min = ?1, t_max = ?2, n = ?3, data = ?4{fmt} WHERE rowid = ?5"), params![t_min, t_max, samples.len() as i64, data, rowid])?;
                        }
                        _ => {
                            tx.execute(&format!("DELETE FROM {table} WHERE rowid = ?1"), params![rowid])?;
                        }
                    }
                }
            }
            for level in [Level::Minute, Level::Hour] {
                let span = level.row_span();
                let lo = from.div_euclid(span).saturating_mul(span);
                let mut rows: Vec<(i64, Vec<u8>)> = Vec::new();
                {
                    let mut st = tx.prepare_cached("SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 <= ?4")?;
                    let mut q = st.query(params![sid, level.code(), lo, last])?;
                    while let Some(r) = q.next()? {
                        rows.push((r.get(0)?, r.get(1)?));
                    }
                }
                for (t0, data) in rows {
                    let mut buckets = Vec::new();
                    rollup::decode_row(t0, level.step(), &data, &mut buckets)?;
                    let before = buckets.len();
                    buckets.retain(|b| {
                        let hit = (from..=last).contains(&b.t);
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
        let stale: Vec<SeriesId> = ids.iter().copied().filter(|id| self.last.get(*id as usize).cloned().flatten().is_some_and(|(t, _)| (from..=last).contains(&t))).collect();
        let unset = newest::encode(stale.iter().map(|id| (*id, None)));
        if !unset.is_empty() {
            newest::write(&tx, &unset, false)?;
        }
        tx.commit()?;
        self.newest_log.wrote(unset.len(), false);
        self.dirty.extend(dirty);
        self.write_seq += 1;
        for h in &hours {
            self.hour_seq.insert(*h, self.write_seq);
        }
        let mut found = Vec::new();
        for id in stale {
            let last = self.newest_stored(id)?;
            if last.is_some() {
                found.push(id);
            }
            if let Some(slot) = self.last.get_mut(id as usize) {
                *slot = last;
            }
        }
        if !found.is_empty() {
            let data = newest::encode(found.iter().map(|id| (*id, self.last.get(*id as usize).and_then(Option::as_ref))));
            let tx = self.conn.unchecked_transaction()?;
            newest::write(&tx, &data, false)?;
            tx.commit()?;
            self.newest_log.wrote(data.len(), false);
        }
        self.stats.newest_ts = self.last.iter().flatten().map(|(t, _)| *t).max();
        self.sync_newest();
        Ok(out)
    }

    /// The newest sample stored for a series (heads are empty: called after a checkpoint).
    fn newest_stored(&mut self, id: SeriesId) -> Result<Option<(i64, Value)>, StoreError> {
        let sid = i64::from(id);
        let t: Option<i64> =
            self.conn
                .query_row("SELECT MAX(t) FROM (SELECT MAX(t_max) AS t FROM chunks WHERE series_id = ?1 UNION ALL SELECT MAX(t_max) FROM blocks WHERE series_id = ?1)", params![sid], |r| r.get(0))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Retention;
    use kilowatch_model::{Point, Timestamp};

    const S: i64 = 1_000_000_000;
    /// 2026-10-01T00:00:00Z.
    const T0: i64 = 1_790_812_800 * S;

    #[test]
    fn deletes_raw_samples_and_roll_ups_and_rolls_kept_hours_up_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let p = |t: i64, v: f64| Point::new("meter", Timestamp(t)).tag("meter", "grid").field("power_w", v);
        for h in 0..6 {
            s.write(&(0..360).map(|i| p(T0 + h * HOUR + i * 10 * S, 1000.0)).collect::<Vec<_>>()).expect("write");
        }
        // A bad spike in hour 4, still raw after maintenance; hour 0 is expired to roll-ups.
        s.write(&[p(T0 + 4 * HOUR + 5 * S, 5e6)]).expect("write");
        s.checkpoint().expect("checkpoint");
        s.maintain(&Retention { raw: 3 * HOUR, minute: 10 * HOUR, hour: None }, i64::MAX).expect("maintain");
        let id = s.find_series("meter", "power_w", &[]).expect("find")[0].id;
        assert_eq!(s.horizons().expect("h").raw_from, T0 + 2 * HOUR);
        let hour4 = |s: &Store| s.read_rollups(id, Level::Hour, T0 + 4 * HOUR, T0 + 5 * HOUR).expect("rollups")[0].clone();
        assert_eq!((hour4(&s).n, hour4(&s).max), (361, 5e6));

        let sel = |from: i64, to: Option<i64>| Selector { measurement: "meter".into(), tags: vec![("meter".into(), "grid".into())], field: None, from, to };
        let d = s.delete(&sel(T0 + 4 * HOUR + 5 * S, Some(T0 + 4 * HOUR + 6 * S))).expect("delete the spike");
        assert_eq!((d.series, d.samples, d.rollup_buckets), (1, 1, 0));
        let rep = s.maintain(&Retention { raw: 3 * HOUR, minute: 10 * HOUR, hour: None }, i64::MAX).expect("maintain");
        assert_eq!(rep.hours_rolled_up_again, 1, "{rep:?}");
        assert_eq!((hour4(&s).n, hour4(&s).max), (360, 1000.0), "the hour is rolled up again without it");

        // Hour 0 has only roll-ups left: its minute buckets and its hour bucket go.
        let d = s.delete(&sel(T0, Some(T0 + HOUR))).expect("delete an expired hour");
        assert_eq!((d.samples, d.rollup_buckets), (0, 61));
        assert!(s.read_rollups(id, Level::Minute, T0, T0 + HOUR).expect("r").is_empty());
        assert!(s.read_with_neighbours(id, T0, T0 + HOUR - 1).expect("read").iter().all(|(t, _)| *t >= T0 + HOUR));
        // Everything: the series is empty, its newest gone with it.
        s.delete(&sel(i64::MIN, None)).expect("delete all");
        assert_eq!(s.latest(&[id]).expect("latest")[0], None);
        assert_eq!(s.stats().expect("stats").newest_ts, None);
    }
}
