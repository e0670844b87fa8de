//! Roll-ups: each series summarised per minute and per hour, so that charts over weeks and
//! KPIs over months no longer need the raw 1 Hz samples, which are kept only for the raw
//! retention (48 h by default).
//!
//! A bucket holds the count, min, max and mean of its readings, its last reading with that
//! reading's exact timestamp, and for energy-like series the energy of the bucket: the counter's
//! increase for counters (same rules as `ledger::counter_ledger`: resets add nothing, pairs
//! straddling a boundary are split linearly), the trapezoid integral in joules for power in
//! watts. The last reading is a real sample, unchanged: once the raw samples are gone, reads
//! return these, so counter differences between them stay exact.
//!
//! Rows: one per series and hour for minute buckets, one per series and day for hour buckets.

use kilowatch_model::metric::{Kind, Unit, lookup_metric};
use kilowatch_model::time::NANOS_PER_SEC;

use super::codec::{CorruptRecord, Reader, get_value, put_ivarint, put_uvarint, put_value};
use super::{SeriesMeta, Value};
use kilowatch_model::energy;

pub const MINUTE: i64 = 60 * NANOS_PER_SEC;
pub const HOUR: i64 = 3600 * NANOS_PER_SEC;
pub const DAY: i64 = 86_400 * NANOS_PER_SEC;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Minute,
    Hour,
}

impl Level {
    /// Width of a bucket, ns.
    pub fn step(self) -> i64 {
        match self {
            Level::Minute => MINUTE,
            Level::Hour => HOUR,
        }
    }
    /// Width of one stored row, ns.
    pub fn row_span(self) -> i64 {
        match self {
            Level::Minute => HOUR,
            Level::Hour => DAY,
        }
    }
    /// The `level` column: the bucket width in seconds.
    pub fn code(self) -> i64 {
        self.step() / NANOS_PER_SEC
    }
}

/// How a series' bucket energy is computed, from the metric table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnergyKind {
    None,
    Counter,
    Power,
}

pub fn energy_kind(meta: &SeriesMeta) -> EnergyKind {
    match lookup_metric(&meta.measurement, &meta.field) {
        Some(d) if d.kind == Kind::Counter => EnergyKind::Counter,
        Some(d) if d.kind == Kind::Gauge && d.unit == Unit::Watt => EnergyKind::Power,
        _ => EnergyKind::None,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, ns.
    pub t: i64,
    /// Readings inside the bucket (numeric or text).
    pub n: u32,
    /// Min, max and mean of the numeric readings; NaN when there are none. Stored as `f32`:
    /// they draw charts, while energy and the last reading, which feed the accounting, keep
    /// full precision.
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// The newest reading inside the bucket and its timestamp.
    pub last: Option<(i64, Value)>,
    /// The oldest reading, kept only for buckets that start on an hour. With the previous
    /// bucket's last it is the pair of readings around the hour, the two that raw reads would
    /// interpolate between: windows on whole hours (days, months) read the same as from raw.
    pub first: Option<(i64, Value)>,
    /// Counter increase (in the counter's unit) or energy in joules (power in W) over the
    /// bucket; `None` for other series and where no pair of readings covers the bucket.
    pub energy: Option<f64>,
    /// Seconds of the bucket covered by a pair of readings (what `energy` speaks for); rows
    /// written before this was kept read as the whole bucket where they have energy.
    pub covered_s: f64,
    /// Counter resets (a reading below the one before) whose later reading is in the bucket.
    pub resets: u32,
}

/// Buckets of width `step` for `[from, to)` (both multiples of `step`) from `samples`: sorted,
/// one per timestamp, which may include a neighbour on each side (they count for energy only).
/// Buckets with neither a reading nor energy are left out.
pub fn compute(samples: &[(i64, Value)], from: i64, to: i64, step: i64, kind: EnergyKind) -> Vec<Bucket> {
    let nb = ((to - from) / step).max(0) as usize;
    let mut out: Vec<Bucket> = Vec::new();
    let mut cur: Option<Bucket> = None;
    let mut sum = 0.0;
    let mut nums = 0u32;
    let close = |b: Option<Bucket>, sum: f64, nums: u32, out: &mut Vec<Bucket>| {
        if let Some(mut b) = b {
            if nums > 0 {
                b.mean = sum / f64::from(nums);
            }
            out.push(b);
        }
    };
    for (t, v) in samples.iter().filter(|(t, _)| *t >= from && *t < to) {
        let bt = from + (t - from) / step * step;
        if cur.as_ref().is_none_or(|b| b.t != bt) {
            close(cur.take(), sum, nums, &mut out);
            let first = (bt.rem_euclid(HOUR) == 0).then(|| (*t, v.clone()));
            cur = Some(Bucket { t: bt, first, ..Bucket::empty(bt) });
            sum = 0.0;
            nums = 0;
        }
        if let Some(b) = cur.as_mut() {
            b.n += 1;
            if let Some(f) = v.as_f64().filter(|f| f.is_finite()) {
                b.min = if b.min.is_nan() { f } else { b.min.min(f) };
                b.max = if b.max.is_nan() { f } else { b.max.max(f) };
                sum += f;
                nums += 1;
            }
            b.last = Some((*t, v.clone()));
        }
    }
    close(cur.take(), sum, nums, &mut out);
    if kind == EnergyKind::None || nb == 0 {
        return out;
    }
    let nums: Vec<(i64, f64)> = samples.iter().filter_map(|(t, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (*t, f))).collect();
    let bounds: Vec<i64> = (0..=nb).map(|i| from + i as i64 * step).collect();
    let l = if kind == EnergyKind::Counter { energy::counter_ledger(&nums, &bounds) } else { energy::power_ledger(&nums, &bounds) };
    // Resets by the bucket of the reading after the drop, as `counter_ledger` counts them once
    // per pair.
    let mut resets = vec![0u32; nb];
    if kind == EnergyKind::Counter {
        for w in nums.windows(2) {
            if w[1].1 < w[0].1 && w[1].0 > from && w[0].0 < to {
                let i = ((w[1].0.min(to - 1) - from) / step).max(0) as usize;
                if let Some(r) = resets.get_mut(i) {
                    *r += 1;
                }
            }
        }
    }
    let mut with_energy: Vec<Bucket> = Vec::with_capacity(out.len());
    let mut it = out.into_iter().peekable();
    for (i, &t) in bounds.iter().take(nb).enumerate() {
        let covered_s = l.covered_s.get(i).copied().unwrap_or(0.0);
        let covered = covered_s > 0.0;
        let energy = covered.then(|| l.values.get(i).copied().unwrap_or(0.0));
        let r = resets[i];
        match it.next_if(|b| b.t == t) {
            Some(mut b) => {
                b.energy = energy;
                b.covered_s = covered_s;
                b.resets = r;
                with_energy.push(b);
            }
            None if covered || r > 0 => with_energy.push(Bucket { energy, covered_s, resets: r, ..Bucket::empty(t) }),
            None => {}
        }
    }
    with_energy
}

const HAS_STATS: u8 = 1;
const HAS_LAST: u8 = 2;
const HAS_ENERGY: u8 = 4;
const HAS_FIRST: u8 = 8;
const HAS_COVER: u8 = 16;
const HAS_RESETS: u8 = 32;

impl Bucket {
    /// A bucket starting at `t` with nothing in it yet.
    pub fn empty(t: i64) -> Bucket {
        Bucket { t, n: 0, min: f64::NAN, max: f64::NAN, mean: f64::NAN, last: None, first: None, energy: None, covered_s: 0.0, resets: 0 }
    }
}

/// One row: the buckets of `[t0, t0 + row_span)`, each as its index from `t0` in steps.
///
/// The seconds covered are left out where they are the whole bucket, which is what a row
/// without them has always read as: 8 bytes of each of the 60 energy buckets of a minute row.
/// That keeps the minute row of a sparse hour (a reading every 15 minutes, its energy
/// interpolated into every minute) under the ~1,000 bytes SQLite keeps inside a page of the
/// `rollups` table; past that, each row took an overflow page of 4 KiB of its own, written to
/// the WAL and again to the database: three quarters of a catch-up's writes.
pub fn encode_row(t0: i64, step: i64, buckets: &[Bucket]) -> Vec<u8> {
    let whole = step as f64 / 1e9;
    let mut buf = Vec::with_capacity(buckets.len() * 32 + 2);
    put_uvarint(&mut buf, buckets.len() as u64);
    for b in buckets {
        put_uvarint(&mut buf, ((b.t - t0) / step) as u64);
        put_uvarint(&mut buf, u64::from(b.n));
        let stats = !b.mean.is_nan();
        let cover = b.energy.is_some() && b.covered_s != whole;
        let flags = [(stats, HAS_STATS), (b.last.is_some(), HAS_LAST), (b.energy.is_some(), HAS_ENERGY), (b.first.is_some(), HAS_FIRST), (cover, HAS_COVER), (b.resets > 0, HAS_RESETS)]
            .into_iter()
            .fold(0, |f, (on, bit)| if on { f | bit } else { f });
        buf.push(flags);
        if stats {
            for x in [b.min, b.max, b.mean] {
                buf.extend_from_slice(&(x as f32).to_le_bytes());
            }
        }
        if let Some((lt, v)) = &b.last {
            put_ivarint(&mut buf, lt - b.t);
            put_value(&mut buf, v);
        }
        if let Some(e) = b.energy {
            buf.extend_from_slice(&e.to_le_bytes());
        }
        if let Some((ft, v)) = &b.first {
            put_ivarint(&mut buf, ft - b.t);
            put_value(&mut buf, v);
        }
        if cover {
            buf.extend_from_slice(&b.covered_s.to_le_bytes());
        }
        if b.resets > 0 {
            put_uvarint(&mut buf, u64::from(b.resets));
        }
    }
    buf
}

pub fn decode_row(t0: i64, step: i64, data: &[u8], out: &mut Vec<Bucket>) -> Result<(), CorruptRecord> {
    let mut r = Reader::new(data);
    let n = r.uvarint()? as usize;
    for _ in 0..n {
        let idx = i64::try_from(r.uvarint()?).map_err(|_| CorruptRecord("bucket index out of range"))?;
        let t = idx.checked_mul(step).and_then(|d| t0.checked_add(d)).ok_or(CorruptRecord("bucket time out of range"))?;
        let count = u32::try_from(r.uvarint()?).map_err(|_| CorruptRecord("bucket count out of range"))?;
        let flags = r.bytes(1)?[0];
        let mut b = Bucket { n: count, ..Bucket::empty(t) };
        if flags & HAS_STATS != 0 {
            b.min = f64::from(r.f32()?);
            b.max = f64::from(r.f32()?);
            b.mean = f64::from(r.f32()?);
        }
        if flags & HAS_LAST != 0 {
            let lt = t + r.ivarint()?;
            b.last = Some((lt, get_value(&mut r)?));
        }
        if flags & HAS_ENERGY != 0 {
            b.energy = Some(r.f64()?);
        }
        if flags & HAS_FIRST != 0 {
            let ft = t + r.ivarint()?;
            b.first = Some((ft, get_value(&mut r)?));
        }
        if flags & HAS_COVER != 0 {
            b.covered_s = r.f64()?;
        } else if b.energy.is_some() {
            b.covered_s = step as f64 / 1e9;
        }
        if flags & HAS_RESETS != 0 {
            b.resets = u32::try_from(r.uvarint()?).map_err(|_| CorruptRecord("reset count out of range"))?;
        }
        out.push(b);
    }
    Ok(())
}

/// Replaces, in `old`, the buckets inside `[from, to)` by `new` (all inside it), sorted.
pub fn splice(old: Vec<Bucket>, new: Vec<Bucket>, from: i64, to: i64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = old.into_iter().filter(|b| b.t < from || b.t >= to).chain(new).collect();
    out.sort_by_key(|b| b.t);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = NANOS_PER_SEC;

    fn num(v: &[(i64, f64)]) -> Vec<(i64, Value)> {
        v.iter().map(|(t, f)| (*t, Value::Num(*f))).collect()
    }

    #[test]
    fn counter_buckets_add_up_to_the_counter_delta() {
        // A counter read every 90 s from 30 s before the hour: minute buckets without a
        // reading still get their share, and the sum over the hour is the interpolated delta.
        let samples = num(&(0..45).map(|i| (-30 * S + i * 90 * S, 1000.0 + 9.0 * i as f64)).collect::<Vec<_>>());
        let b = compute(&samples, 0, HOUR, MINUTE, EnergyKind::Counter);
        assert_eq!(b.len(), 60);
        let total: f64 = b.iter().filter_map(|b| b.energy).sum();
        // 9 per 90 s = 0.1 per second over 3600 s.
        assert!((total - 360.0).abs() < 1e-9, "{total}");
        assert_eq!(b.iter().map(|b| b.n).sum::<u32>(), 40);
        let last = b.iter().rev().find_map(|b| b.last.clone()).expect("a reading");
        assert_eq!(last, (3570 * S, Value::Num(1000.0 + 9.0 * 40.0)));
    }

    #[test]
    fn rows_round_trip_and_gauge_stats() {
        let samples = num(&[(5 * S, 10.0), (20 * S, 30.0), (61 * S, 7.0)]);
        let mut b = compute(&samples, 0, HOUR, MINUTE, EnergyKind::Power);
        assert_eq!((b[0].min, b[0].max, b[0].mean, b[0].n), (10.0, 30.0, 20.0, 2));
        // Power 10 W → 30 W over 15 s, then 30 → 7 over 41 s: trapezoids in J.
        let e0 = b[0].energy.expect("covered");
        let want0 = 20.0 * 15.0 + (30.0 + (30.0 - 23.0 * 40.0 / 41.0)) / 2.0 * 40.0;
        assert!((e0 - want0).abs() < 1e-9, "{e0} vs {want0}");
        assert_eq!(b[0].first, Some((5 * S, Value::Num(10.0))));
        assert_eq!(b[1].first, None);
        b.push(Bucket { n: 1, last: Some((150 * S, Value::Text("free".into()))), ..Bucket::empty(120 * S) });
        let mut back = Vec::new();
        decode_row(0, MINUTE, &encode_row(0, MINUTE, &b), &mut back).expect("valid");
        assert_eq!(back.len(), b.len());
        assert_eq!(back[0].energy, b[0].energy);
        assert_eq!(back[0].last, b[0].last);
        assert_eq!(back[0].first, b[0].first);
        assert_eq!(back[2].last, b[2].last);
        assert!(back[2].mean.is_nan());
        assert!(decode_row(0, MINUTE, &[3, 0], &mut back).is_err());
        // A whole minute covered is left out and read back as such; a part is kept.
        for b in &b {
            assert!(b.energy.is_none() || b.covered_s > 0.0);
        }
        let whole = Bucket { energy: Some(5.0), covered_s: 60.0, ..Bucket::empty(0) };
        let part = Bucket { energy: Some(5.0), covered_s: 42.5, ..Bucket::empty(MINUTE) };
        let rows = [encode_row(0, MINUTE, std::slice::from_ref(&whole)), encode_row(0, MINUTE, std::slice::from_ref(&part))];
        assert_eq!(rows[0].len() + 8, rows[1].len());
        let mut back = Vec::new();
        for r in &rows {
            decode_row(0, MINUTE, r, &mut back).expect("valid");
        }
        assert_eq!((back[0].covered_s, back[1].covered_s), (60.0, 42.5));
    }
}
