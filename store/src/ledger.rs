//! The one read every published figure goes through: a series' energy (or volume) per
//! segment, the same whatever the age of the data (`../shared/DOMAIN.md`, "Numbers that do not
//! depend on the data's age").
//!
//! The window is cut where the store's resolutions change:
//! - raw samples from `raw_from` on: counter deltas or the trapezoid rule on the readings, with
//!   the real reading before `raw_from` (kept in the roll-ups) as the left neighbour;
//! - minute buckets between `minute_from` and `raw_from`, hour buckets before `minute_from`:
//!   each bucket's exact energy, computed from the raw samples when it was rolled up (resets
//!   and power-only meters resolved there), goes whole to the segment holding the bucket.
//!
//! Whole buckets therefore give the raw answer (to rounding). A segment edge inside a bucket
//! is exact where the energy up to that instant was recorded while the raw samples were there
//! (`edges`: the starts and ends of jobs, recorded as each hour is rolled up); elsewhere it
//! splits that bucket's energy in proportion to time over the part of the bucket its readings
//! cover: the error is at most the energy of the one bucket at each edge (a minute of that
//! meter's energy once raw samples have expired, an hour once minute buckets have), and nil
//! where the meter's rate is steady over that bucket.

use kilowatch_model::energy::{self, Ledger};
use rusqlite::{OptionalExtension, params};

use super::rollup::{self, Bucket, EnergyKind, HOUR, Level};
use super::{SeriesId, Store, StoreError};

impl Store {
    /// `id`'s energy per segment of `bounds` (sorted, at least two): counter units for counters,
    /// joules for power (flagged estimated). Empty for other series.
    pub fn ledger(&self, id: SeriesId, kind: EnergyKind, bounds: &[i64]) -> Result<Ledger, StoreError> {
        // The reads below are separate snapshots: `read_consistent` redoes them when a
        // maintenance pass moved a horizon (and deleted the rows behind it) meanwhile.
        self.read_consistent(|h| self.ledger_at(id, kind, bounds, h))
    }

    fn ledger_at(&self, id: SeriesId, kind: EnergyKind, bounds: &[i64], h: super::Horizons) -> Result<Ledger, StoreError> {
        let n = bounds.len().saturating_sub(1);
        let mut out = Ledger::zeros(n, kind == EnergyKind::Power);
        let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else { return Ok(out) };
        if kind == EnergyKind::None || to <= from {
            return Ok(out);
        }
        let raw_from = h.raw_from;
        // Minute buckets were kept back to `minute_from`; before that only hour buckets remain.
        let minute_from = h.minute_from.min(raw_from);
        if from < minute_from {
            self.bucket_era(id, Level::Hour, bounds, from, to.min(minute_from), &mut out)?;
        }
        if from < raw_from && to > minute_from {
            self.bucket_era(id, Level::Minute, bounds, from.max(minute_from), to.min(raw_from), &mut out)?;
        }
        if to > raw_from {
            let lo = from.max(raw_from);
            let samples: Vec<(i64, f64)> = self.read_with_neighbours(id, lo, to)?.into_iter().filter_map(|(t, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (t, f))).collect();
            // Segments before `lo` become empty; the others keep their index.
            let clamped: Vec<i64> = bounds.iter().map(|b| (*b).max(lo)).collect();
            let raw = if kind == EnergyKind::Counter { energy::counter_ledger(&samples, &clamped) } else { energy::power_ledger(&samples, &clamped) };
            // The median step of the raw readings describes the meter better than buckets do.
            let step = raw.median_step_s;
            out.absorb(&raw);
            if step > 0.0 {
                out.median_step_s = step;
            }
        }
        Ok(out)
    }

    /// Adds the buckets of `level` overlapping `[lo, hi)` to `out`, each bucket's energy split
    /// over the segments of `bounds` by the share of the bucket's time inside each.
    fn bucket_era(&self, id: SeriesId, level: Level, bounds: &[i64], lo: i64, hi: i64, out: &mut Ledger) -> Result<(), StoreError> {
        if hi <= lo {
            return Ok(());
        }
        let step = level.step();
        // Minute buckets are read from the start of `lo`'s hour: an edge's recorded energy
        // counts from its hour's start, less the minutes before its own.
        let hour0 = lo.div_euclid(HOUR) * HOUR;
        let buckets: Vec<Bucket> = self.read_rollups(id, level, hour0, hi)?.into_iter().filter(|b| b.energy.is_some() || b.resets > 0).collect();
        let cut_inside = bounds.iter().any(|b| *b > lo && *b < hi && b.rem_euclid(step) != 0);
        let edges = if cut_inside { self.edges(id, lo, hi)? } else { Default::default() };
        let first_with_energy = buckets.iter().position(|b| b.energy.is_some());
        let last_with_energy = buckets.iter().rposition(|b| b.energy.is_some());
        let mut seg = 0usize;
        let n = bounds.len() - 1;
        let (mut readings, mut covered_total) = (0.0, 0.0);
        // Energy of this hour's buckets before the current one.
        let (mut prefix_hour, mut prefix) = (i64::MIN, 0.0);
        for (i, b) in buckets.iter().enumerate() {
            let bucket_hour = b.t.div_euclid(HOUR);
            if bucket_hour != prefix_hour {
                (prefix_hour, prefix) = (bucket_hour, 0.0);
            }
            let before = prefix;
            prefix += b.energy.unwrap_or(0.0);
            let (olo, ohi) = (b.t.max(lo), b.t.saturating_add(step).min(hi));
            if ohi <= olo {
                continue;
            }
            out.resets += b.resets;
            let Some(e) = b.energy else { continue };
            let share_of_bucket = (ohi - olo) as f64 / step as f64;
            readings += f64::from(b.n) * share_of_bucket;
            covered_total += b.covered_s * share_of_bucket;
            let (b0, b1) = (b.t, b.t.saturating_add(step));
            if b.n > 0 {
                out.max_gap_s = out.max_gap_s.max(b.covered_s / f64::from(b.n));
            } else {
                // A pair of readings spans the whole bucket.
                out.max_gap_s = out.max_gap_s.max(step as f64 / 1e9);
            }
            // Where in a partly covered bucket the readings were is not kept. Pairs of readings
            // cover a series from its first reading to its last, gaps included, so only its
            // first and last buckets are partly covered: the first at its end, the last at its
            // start.
            let cov = ((b.covered_s * 1e9) as i64).clamp(1, step);
            let (c0, c1) = match (Some(i) == first_with_energy, Some(i) == last_with_energy) {
                (true, false) => (b1 - cov, b1),
                (_, true) => (b0, b0 + cov),
                (false, false) => (b0, b1),
            };
            let (clo, chi) = (c0.max(olo), c1.min(ohi));
            if chi <= clo {
                continue;
            }
            out.cover(clo, chi);
            // The bucket's energy from its covered start to `t`: exact where the raw samples
            // were read there at roll-up (an edge), else in proportion to time.
            let upto = |t: i64| -> f64 {
                if t <= c0 {
                    0.0
                } else if t >= c1 {
                    e
                } else if let Some(since_hour) = edges.get(&t) {
                    (since_hour - before).clamp(0.0, e)
                } else {
                    e * ((t - c0) as f64 / (c1 - c0) as f64)
                }
            };
            while seg < n && bounds[seg + 1] <= clo {
                seg += 1;
            }
            let mut s = seg;
            while s < n && bounds[s] < chi {
                let (a, z) = (clo.max(bounds[s]), chi.min(bounds[s + 1]));
                if z > a {
                    // A bucket's covered part wholly inside one segment adds its energy
                    // unscaled, so whole buckets reproduce the raw figures to rounding.
                    out.values[s] += if z - a == c1 - c0 { e } else { upto(z) - upto(a) };
                    out.covered_s[s] += (z - a) as f64 / 1e9;
                }
                s += 1;
            }
        }
        out.readings += readings.round() as usize;
        if out.median_step_s == 0.0 && readings > 0.0 {
            out.median_step_s = covered_total / readings;
        }
        Ok(())
    }
}

/// What the ledger keeps beside the buckets: the energy at job edges and when a series began.
impl Store {
    /// Records, for each instant of `ts` inside the hour starting at `hour`, the series'
    /// energy from the hour's start to it, read now (while the raw samples are there).
    pub fn record_edges(&self, id: SeriesId, kind: rollup::EnergyKind, hour: i64, ts: &[i64]) -> Result<usize, StoreError> {
        let end = hour.saturating_add(rollup::HOUR);
        let mut bounds: Vec<i64> = ts.iter().copied().filter(|t| *t > hour && *t < end).collect();
        if bounds.is_empty() || kind == rollup::EnergyKind::None {
            return Ok(0);
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut all = Vec::with_capacity(bounds.len() + 2);
        all.push(hour);
        all.extend_from_slice(&bounds);
        all.push(end);
        let l = self.ledger(id, kind, &all)?;
        let w = self.writer()?;
        let tx = w.unchecked_transaction()?;
        {
            let mut put = tx.prepare_cached("INSERT OR REPLACE INTO edges(series_id, t, e) VALUES (?1, ?2, ?3)")?;
            let mut cum = 0.0;
            for (t, v) in bounds.iter().zip(&l.values) {
                cum += v;
                put.execute(params![i64::from(id), t, cum])?;
            }
        }
        tx.commit()?;
        Ok(bounds.len())
    }

    /// The recorded edges of a series in `[from, to)`: instant → energy since its hour's start.
    pub fn edges(&self, id: SeriesId, from: i64, to: i64) -> Result<std::collections::BTreeMap<i64, f64>, StoreError> {
        let snap = self.readers.begin()?;
        let mut st = snap.conn().prepare_cached("SELECT t, e FROM edges WHERE series_id = ?1 AND t >= ?2 AND t < ?3")?;
        let rows = st.query_map(params![i64::from(id), from, to], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the series was first seen: its oldest raw sample, or the start of its oldest hour
    /// bucket once raw samples have expired. `None` for a series with nothing stored.
    pub fn first_seen(&self, id: SeriesId) -> Result<Option<i64>, StoreError> {
        let mut snap = self.readers.take()?;
        // The heads' oldest sample with the snapshot pinned under `inner`: a checkpoint's
        // heads are then either still in memory or in what the snapshot reads.
        let head = {
            let g = self.lock()?;
            snap.pin()?;
            g.flushing.iter().filter_map(|s| s.get(id as usize)).chain(g.heads.get(id as usize)).filter_map(|h| h.t_min()).min()
        };
        let sid = i64::from(id);
        let raw: Option<i64> = snap
            .conn()
            .prepare_cached("SELECT MIN(t) FROM (SELECT MIN(t_min) AS t FROM blocks WHERE series_id = ?1 UNION ALL SELECT MIN(t_min) FROM chunks WHERE series_id = ?1)")?
            .query_row(params![sid], |r| r.get(0))?;
        // Hour buckets keep the first reading of each hour: the oldest one is the series' first.
        let mut buckets = Vec::new();
        let oldest: Option<(i64, Vec<u8>)> = snap
            .conn()
            .prepare_cached("SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 ORDER BY t0 LIMIT 1")?
            .query_row(params![sid, rollup::Level::Hour.code()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((t0, data)) = oldest {
            rollup::decode_row(t0, rollup::HOUR, &data, &mut buckets)?;
        }
        let rolled = buckets.iter().find_map(|b| b.first.as_ref().or(b.last.as_ref()).map(|(t, _)| *t));
        Ok([raw, rolled, head].into_iter().flatten().min())
    }
}
