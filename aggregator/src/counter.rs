//! Energy and water from cumulative counters over a window, by the rules in DOMAIN.md:
//! deltas between consecutive readings, a decrease taken as a reset (never negative energy),
//! and readings that straddle the window's edges split by linear interpolation.

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
        let span = (t1 - t0) as f64;
        let inside = (hi - lo) as f64;
        out.covered_s += inside / 1e9;
        out.max_gap_s = out.max_gap_s.max(span / 1e9);
        let d = v1 - v0;
        if d < 0.0 {
            out.resets += 1;
            continue;
        }
        // Whole pairs add their delta exactly, so that windows aligned on readings reproduce
        // the meters' own differences bit for bit.
        out.delta += if inside == span { d } else { d * (inside / span) };
    }
    out
}

/// Trapezoid integration of a power series (W) over `[from, to]`, in joules, for sources with
/// no energy counter. Edge pairs are cut by linear interpolation of the power.
pub fn trapezoid_joules(samples: &[(i64, f64)], from: i64, to: i64) -> f64 {
    let mut j = 0.0;
    for Overlap { t0, v0: p0, t1, v1: p1, lo, hi } in overlaps(samples, from, to) {
        let at = |t: i64| p0 + (p1 - p0) * ((t - t0) as f64 / (t1 - t0) as f64);
        j += (at(lo) + at(hi)) / 2.0 * ((hi - lo) as f64 / 1e9);
    }
    j
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
}
