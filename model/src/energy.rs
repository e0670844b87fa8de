//! Energy and water from cumulative counters and power readings, by the rules in DOMAIN.md:
//! deltas between consecutive readings, a decrease taken as a reset (never negative energy),
//! readings that straddle a boundary split by linear interpolation, and the trapezoid rule for
//! power where no counter exists.
//!
//! Two shapes: [`counter_delta`] and [`trapezoid_joules`] over one window, and ledgers
//! ([`counter_ledger`], [`power_ledger`]) that split a series over consecutive segments
//! `[b0,b1), [b1,b2), …` in one pass over its samples (attribution asks for hundreds of
//! segments per GPU over a month; one window at a time would rescan the samples each time).

use serde::Serialize;

/// What a counter says about one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CounterDelta {
    /// The increase over the window, in the counter's unit.
    pub delta: f64,
    /// Decreases seen inside the window. The interval holding one counts from the new reading:
    /// what was consumed between the last reading before the reset and the reset itself is
    /// unknown and left out rather than guessed.
    pub resets: u32,
    /// Seconds of the window covered by a pair of readings.
    pub covered_s: f64,
    /// Longest stretch between two consecutive readings inside the window, in seconds.
    pub max_gap_s: f64,
    pub readings: usize,
}

/// `b - a` in ns as a float, exact in sign and never overflowing: samples may lie anywhere in
/// the i64 range (a first reading from a clock reset to 1970, or from before it).
fn span(a: i64, b: i64) -> f64 {
    (i128::from(b) - i128::from(a)) as f64
}

/// A pair of consecutive readings and the part `[lo, hi]` of it inside the window.
struct Overlap {
    t0: i64,
    v0: f64,
    t1: i64,
    v1: f64,
    lo: i64,
    hi: i64,
}

fn overlaps(samples: &[(i64, f64)], from: i64, to: i64) -> impl Iterator<Item = Overlap> + '_ {
    samples.windows(2).filter_map(move |pair| {
        let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
        let (lo, hi) = (t0.max(from), t1.min(to));
        (t1 > t0 && hi > lo).then_some(Overlap { t0, v0, t1, v1, lo, hi })
    })
}

/// `samples` are `(ts_ns, value)` sorted by time, including the nearest reading on each side of
/// the window when there is one. The window is `[from, to]` in ns.
pub fn counter_delta(samples: &[(i64, f64)], from: i64, to: i64) -> CounterDelta {
    let mut out = CounterDelta::default();
    if to <= from {
        return out;
    }
    out.readings = samples.iter().filter(|(t, _)| *t >= from && *t <= to).count();
    for Overlap { t0, v0, t1, v1, lo, hi } in overlaps(samples, from, to) {
        let (whole, inside) = (span(t0, t1), span(lo, hi));
        out.covered_s += inside / 1e9;
        out.max_gap_s = out.max_gap_s.max(whole / 1e9);
        let d = v1 - v0;
        if d < 0.0 {
            out.resets += 1;
            continue;
        }
        // Whole pairs add their delta exactly, so that windows aligned on readings reproduce
        // the meters' own differences bit for bit.
        out.delta += if inside == whole { d } else { d * (inside / whole) };
    }
    out
}

/// Trapezoid integration of a power series (W) over `[from, to]`, in joules, for sources with
/// no energy counter. Edge pairs are cut by linear interpolation of the power.
pub fn trapezoid_joules(samples: &[(i64, f64)], from: i64, to: i64) -> f64 {
    let mut j = 0.0;
    for Overlap { t0, v0: p0, t1, v1: p1, lo, hi } in overlaps(samples, from, to) {
        let at = |t: i64| p0 + (p1 - p0) * (span(t0, t) / span(t0, t1));
        j += (at(lo) + at(hi)) / 2.0 * (span(lo, hi) / 1e9);
    }
    j
}

/// A series' contribution to each segment, with what the caller needs to judge it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// One value per segment (`bounds.len() - 1` of them), never negative: the counter's unit
    /// for counters, joules for power.
    pub values: Vec<f64>,
    /// Seconds of each segment covered by a pair of readings.
    pub covered_s: Vec<f64>,
    pub resets: u32,
    /// Median spacing between readings, in seconds: the counter's effective update period as
    /// this store sees it, used to flag windows too short to trust.
    pub median_step_s: f64,
    /// True when the values come from integrating power (no counter).
    pub estimated: bool,
    /// Readings inside `[first bound, last bound]`.
    pub readings: usize,
    /// Longest stretch between two consecutive readings overlapping the bounds, seconds.
    pub max_gap_s: f64,
    /// The first and last instants of the bounds covered by a pair of readings: the span this
    /// series can speak for (a counter covers its gaps; only the ends can be uncovered).
    pub covered_span: Option<(i64, i64)>,
}

impl Ledger {
    /// An empty ledger of `n` segments.
    pub fn zeros(n: usize, estimated: bool) -> Ledger {
        Ledger { values: vec![0.0; n], covered_s: vec![0.0; n], estimated, ..Ledger::default() }
    }

    pub fn total(&self) -> f64 {
        self.values.iter().sum()
    }

    pub fn total_covered_s(&self) -> f64 {
        self.covered_s.iter().sum()
    }

    /// Widens the covered span to include `[lo, hi]`.
    pub fn cover(&mut self, lo: i64, hi: i64) {
        self.covered_span = Some(match self.covered_span {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }

    /// Adds `other` (same segments) into `self`: values, coverage, counts and span.
    pub fn absorb(&mut self, other: &Ledger) {
        for (a, v) in self.values.iter_mut().zip(&other.values) {
            *a += v;
        }
        for (a, v) in self.covered_s.iter_mut().zip(&other.covered_s) {
            *a += v;
        }
        self.resets += other.resets;
        self.readings += other.readings;
        self.max_gap_s = self.max_gap_s.max(other.max_gap_s);
        self.estimated |= other.estimated;
        if let Some((lo, hi)) = other.covered_span {
            self.cover(lo, hi);
        }
    }
}

pub fn median_step(samples: &[(i64, f64)]) -> f64 {
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
fn split<F>(samples: &[(i64, f64)], bounds: &[i64], estimated: bool, mut contrib: F) -> Ledger
where
    F: FnMut((i64, f64), (i64, f64), i64, i64) -> Option<f64>,
{
    let n = bounds.len().saturating_sub(1);
    let mut out = Ledger::zeros(n, estimated);
    out.median_step_s = median_step(samples);
    if n == 0 {
        return out;
    }
    let (first, last) = (bounds[0], bounds[n]);
    out.readings = samples.iter().filter(|(t, _)| *t >= first && *t <= last).count();
    let mut seg = 0usize;
    for pair in samples.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.0 <= a.0 || b.0 <= first || a.0 >= last {
            continue;
        }
        out.max_gap_s = out.max_gap_s.max(span(a.0, b.0) / 1e9);
        out.cover(a.0.max(first), b.0.min(last));
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
                out.covered_s[s] += span(lo, hi) / 1e9;
                match contrib(a, b, lo, hi) {
                    Some(v) => out.values[s] += v,
                    None if !reset_counted => {
                        out.resets += 1;
                        reset_counted = true;
                    }
                    None => {}
                }
            }
            s += 1;
        }
    }
    out
}

/// Counter deltas per segment.
pub fn counter_ledger(samples: &[(i64, f64)], bounds: &[i64]) -> Ledger {
    split(samples, bounds, false, |(t0, v0), (t1, v1), lo, hi| {
        let d = v1 - v0;
        if d < 0.0 {
            return None;
        }
        // A whole pair adds its delta exactly, so aligned windows reproduce the meter's own
        // differences bit for bit.
        Some(if lo == t0 && hi == t1 { d } else { d * (span(lo, hi) / span(t0, t1)) })
    })
}

/// Trapezoid integration of a power series (W) per segment, in joules, flagged estimated.
pub fn power_ledger(samples: &[(i64, f64)], bounds: &[i64]) -> Ledger {
    split(samples, bounds, true, |(t0, p0), (t1, p1), lo, hi| {
        let at = |t: i64| p0 + (p1 - p0) * (span(t0, t) / span(t0, t1));
        Some(((at(lo) + at(hi)) / 2.0 * (span(lo, hi) / 1e9)).max(0.0))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn aligned_window_is_exact() {
        // DOMAIN example 5: totaliser 4,512.300 → 4,726.300 m³ = 214 m³.
        let d = counter_delta(&[(0, 4512.3), (3600 * S, 4726.3)], 0, 3600 * S);
        assert_eq!(d.delta, 4726.3 - 4512.3);
        assert_eq!(d.resets, 0);
        assert_eq!(d.covered_s, 3600.0);
    }

    #[test]
    fn edges_are_interpolated() {
        let d = counter_delta(&[(0, 0.0), (10 * S, 100.0), (20 * S, 300.0)], 5 * S, 15 * S);
        assert!((d.delta - 150.0).abs() < 1e-12, "{d:?}");
        assert_eq!(d.covered_s, 10.0);
    }

    #[test]
    fn resets_never_go_negative() {
        // DOMAIN example 10 then a driver reload.
        let d = counter_delta(&[(0, 1_000_000_000.0), (S, 1_025_200_000.0), (2 * S, 5_000.0), (3 * S, 10_000.0)], 0, 3 * S);
        assert_eq!(d.delta, 25_200_000.0 + 5_000.0);
        assert_eq!(d.resets, 1);
    }

    #[test]
    fn missing_data_shows_in_coverage() {
        let d = counter_delta(&[(10 * S, 1.0), (20 * S, 2.0)], 0, 40 * S);
        assert_eq!(d.delta, 1.0);
        assert_eq!(d.covered_s, 10.0);
        assert_eq!(counter_delta(&[], 0, S), CounterDelta::default());
    }

    #[test]
    fn trapezoid_matches_domain_examples() {
        // Example 8: 6,000/9,000/10,000/8,000 W at 0/60/120/180 s → 1,560,000 J.
        let p = [(0, 6000.0), (60 * S, 9000.0), (120 * S, 10000.0), (180 * S, 8000.0)];
        assert!((trapezoid_joules(&p, 0, 180 * S) - 1_560_000.0).abs() < 1e-6);
        // Example 9: t = 0/10/40 s, P = 700/700/400 W → 23,500 J.
        let p = [(0, 700.0), (10 * S, 700.0), (40 * S, 400.0)];
        assert!((trapezoid_joules(&p, 0, 40 * S) - 23_500.0).abs() < 1e-6);
    }

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
