//! Ledgers: a series' energy (or water) split over consecutive segments `[b0,b1), [b1,b2), …`
//! in one pass over its samples. Attribution asks for hundreds of segments per GPU over a month
//! (hours, job starts and ends); calling `counter_delta` once per segment would rescan the
//! samples each time, so this walks samples and boundaries together instead.
//!
//! The rules are the ones of `counter.rs`: a decrease is a reset (the pair adds nothing and is
//! counted), and a pair of readings straddling a boundary is split by linear interpolation.

use crate::store::{SeriesId, Store, StoreError};

/// A series' contribution to each segment, with what the caller needs to judge it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// One value per segment (`bounds.len() - 1` of them), never negative.
    pub values: Vec<f64>,
    /// Seconds of each segment covered by a pair of readings.
    pub covered_s: Vec<f64>,
    pub resets: u32,
    /// Median spacing between readings, in seconds: the counter's effective update period as
    /// this store sees it, used to flag windows too short to trust.
    pub median_step_s: f64,
    /// True when the values come from integrating power (no counter).
    pub estimated: bool,
}

/// Numeric samples of a series over `[from, to]` plus the neighbour on each side.
pub fn read_f64(store: &Store, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, StoreError> {
    Ok(store
        .read_with_neighbours(id, from, to)?
        .into_iter()
        .filter_map(|(t, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (t, f)))
        .collect())
}

/// `b - a` in ns as a float, exact in sign and never overflowing: samples may lie anywhere in
/// the i64 range (a first reading from a clock reset to 1970, or from before it).
fn span(a: i64, b: i64) -> f64 {
    (i128::from(b) - i128::from(a)) as f64
}

fn median_step(samples: &[(i64, f64)]) -> f64 {
    let mut d: Vec<i64> = samples.windows(2).map(|w| w[1].0.saturating_sub(w[0].0)).filter(|d| *d > 0).collect();
    if d.is_empty() {
        return 0.0;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable(mid);
    *m as f64 / 1e9
}

/// Splits each pair's contribution over the segments it overlaps. `contrib(t0, v0, t1, v1,
/// lo, hi)` gives what the pair adds on `[lo, hi]` (a sub-span of `[t0, t1]`), or `None` for a
/// reset.
fn split<F>(samples: &[(i64, f64)], bounds: &[i64], mut contrib: F) -> (Vec<f64>, Vec<f64>, u32)
where
    F: FnMut((i64, f64), (i64, f64), i64, i64) -> Option<f64>,
{
    let n = bounds.len().saturating_sub(1);
    let mut values = vec![0.0; n];
    let mut covered = vec![0.0; n];
    let mut resets = 0;
    if n == 0 {
        return (values, covered, resets);
    }
    let (first, last) = (bounds[0], bounds[n]);
    let mut seg = 0usize;
    for pair in samples.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.0 <= a.0 || b.0 <= first || a.0 >= last {
            continue;
        }
        // Segments only move forward because samples are sorted.
        while seg < n && bounds[seg + 1] <= a.0 {
            seg += 1;
        }
        let mut s = seg;
        let mut reset_counted = false;
        while s < n && bounds[s] < b.0 {
            let lo = a.0.max(bounds[s]);
            let hi = b.0.min(bounds[s + 1]);
            if hi > lo {
                covered[s] += span(lo, hi) / 1e9;
                match contrib(a, b, lo, hi) {
                    Some(v) => values[s] += v,
                    None if !reset_counted => {
                        resets += 1;
                        reset_counted = true;
                    }
                    None => {}
                }
            }
            s += 1;
        }
    }
    (values, covered, resets)
}

/// Counter deltas per segment.
pub fn counter_ledger(samples: &[(i64, f64)], bounds: &[i64]) -> Ledger {
    let (values, covered_s, resets) = split(samples, bounds, |(t0, v0), (t1, v1), lo, hi| {
        let d = v1 - v0;
        if d < 0.0 {
            return None;
        }
        // A whole pair adds its delta exactly, so aligned windows reproduce the meter's own
        // differences bit for bit.
        Some(if lo == t0 && hi == t1 { d } else { d * (span(lo, hi) / span(t0, t1)) })
    });
    Ledger { values, covered_s, resets, median_step_s: median_step(samples), estimated: false }
}

/// Trapezoid integration of a power series (W) per segment, in joules, flagged estimated.
pub fn power_ledger(samples: &[(i64, f64)], bounds: &[i64]) -> Ledger {
    let (values, covered_s, _) = split(samples, bounds, |(t0, p0), (t1, p1), lo, hi| {
        let at = |t: i64| p0 + (p1 - p0) * (span(t0, t) / span(t0, t1));
        Some(((at(lo) + at(hi)) / 2.0 * (span(lo, hi) / 1e9)).max(0.0))
    });
    Ledger { values, covered_s, resets: 0, median_step_s: median_step(samples), estimated: true }
}

/// Hour boundaries (UTC hours, which are local hours in every zone with whole-hour offsets,
/// Europe/Paris included) strictly inside `(from, to)`, plus `from` and `to`.
pub fn hour_bounds(from: i64, to: i64) -> Vec<i64> {
    step_bounds(from, to, 3_600_000_000_000)
}

/// Multiples of `step` ns strictly inside `(from, to)`, plus `from` and `to`.
pub fn step_bounds(from: i64, to: i64, step: i64) -> Vec<i64> {
    let step = step.max(1);
    let mut b = vec![from];
    let mut t = from.div_euclid(step).saturating_add(1).saturating_mul(step);
    while t < to {
        b.push(t);
        let Some(next) = t.checked_add(step) else { break };
        t = next;
    }
    if to > from {
        b.push(to);
    }
    b
}

/// The site's meters per segment: E_IT (best category present), E_DC (grid + generator) and
/// water, with the quality flags attribution reports.
#[derive(Debug, Clone, Default)]
pub struct SiteLedgers {
    pub it_kwh: Vec<f64>,
    pub facility_kwh: Vec<f64>,
    pub water_m3: Vec<f64>,
    pub it_category: Option<u8>,
    pub it_estimated: bool,
    pub counter_resets: u32,
}

pub fn site_ledgers(store: &Store, bounds: &[i64]) -> Result<SiteLedgers, StoreError> {
    use kilowatch_model::metric::{METER, WATER, role};
    let n = bounds.len().saturating_sub(1);
    let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else { return Ok(SiteLedgers::default()) };
    let mut out = SiteLedgers { it_kwh: vec![0.0; n], facility_kwh: vec![0.0; n], water_m3: vec![0.0; n], ..SiteLedgers::default() };
    let counters = store.find_series(METER, "energy_kwh", &[])?;
    let powers: Vec<_> = store.find_series(METER, "power_w", &[])?.into_iter().filter(|p| !counters.iter().any(|c| c.tags == p.tags)).collect();
    let cat = |m: &crate::store::SeriesMeta| m.tag("category").and_then(|c| c.parse::<u8>().ok()).unwrap_or(1);
    // Same rule as the KPIs: E_IT at the best category present, never mixed.
    out.it_category = counters.iter().chain(&powers).filter(|m| m.tag("role") == Some(role::IT)).map(cat).min();
    let add = |acc: &mut Vec<f64>, l: &Ledger, scale: f64| {
        for (a, v) in acc.iter_mut().zip(&l.values) {
            *a += v * scale;
        }
    };
    for (m, is_counter) in counters.iter().map(|m| (m, true)).chain(powers.iter().map(|m| (m, false))) {
        let role_tag = m.tag("role");
        let is_it = role_tag == Some(role::IT) && Some(cat(m)) == out.it_category;
        let is_fac = matches!(role_tag, Some(role::FACILITY | role::GENERATOR));
        if !is_it && !is_fac {
            continue;
        }
        let samples = read_f64(store, m.id, from, to)?;
        let (l, scale) = if is_counter { (counter_ledger(&samples, bounds), 1.0) } else { (power_ledger(&samples, bounds), 1.0 / 3.6e6) };
        out.counter_resets += l.resets;
        if is_it {
            out.it_estimated |= l.estimated;
            add(&mut out.it_kwh, &l, scale);
        } else {
            add(&mut out.facility_kwh, &l, scale);
        }
    }
    for m in store.find_series(WATER, "volume_m3", &[])? {
        let l = counter_ledger(&read_f64(store, m.id, from, to)?, bounds);
        out.counter_resets += l.resets;
        add(&mut out.water_m3, &l, 1.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::counter_delta;

    const S: i64 = 1_000_000_000;

    #[test]
    fn segments_add_up_to_the_window_delta() {
        let s = [(0, 10.0), (7 * S, 17.0), (13 * S, 2.0), (20 * S, 9.0), (31 * S, 20.0)];
        let bounds = [2 * S, 5 * S, 13 * S, 18 * S, 30 * S];
        let l = counter_ledger(&s, &bounds);
        let whole = counter_delta(&s, 2 * S, 30 * S);
        assert!((l.values.iter().sum::<f64>() - whole.delta).abs() < 1e-9, "{l:?} {whole:?}");
        assert_eq!(l.resets, 1);
        for (i, w) in bounds.windows(2).enumerate() {
            assert!((l.values[i] - counter_delta(&s, w[0], w[1]).delta).abs() < 1e-9);
        }
    }

    #[test]
    fn power_matches_domain_example_9() {
        let p = [(0, 700.0), (10 * S, 700.0), (40 * S, 400.0)];
        let l = power_ledger(&p, &[0, 25 * S, 40 * S]);
        assert!((l.values.iter().sum::<f64>() - 23_500.0).abs() < 1e-6);
        assert!(l.estimated);
    }

    #[test]
    fn hours() {
        let h = 3600 * S;
        assert_eq!(hour_bounds(10, 2 * h + 5), vec![10, h, 2 * h, 2 * h + 5]);
        assert_eq!(hour_bounds(0, h), vec![0, h]);
    }
}
