//! A site in a few lines: meters whose counters read given kWh over a window.

use kilowatch_accounting::memory::MemoryReader;
use kilowatch_model::{TimeRange, Timestamp};

pub const S: i64 = 1_000_000_000;
pub const H: i64 = 3600 * S;
/// 2026-10-01T00:00:00Z, on the hour.
pub const T0: i64 = 1_790_812_800 * S;

/// `[T0 + a, T0 + b)`, in ns offsets.
pub fn window(a: i64, b: i64) -> TimeRange {
    TimeRange::new(Timestamp(T0 + a), Timestamp(T0 + b))
}

/// The relative difference, for the worked examples' tolerance (1e-9 relative).
pub fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1e-12)
}

/// A kWh counter on `meter` with `role` (and its extra tags) that reads `kwh` more at each of
/// `times` (ns offsets from T0) than at the one before, from 1,000 kWh.
pub fn counter(r: &mut MemoryReader, meter: &str, role: &str, extra: &[(&str, &str)], readings: &[(i64, f64)]) {
    let mut tags = vec![("meter", meter), ("role", role)];
    tags.extend_from_slice(extra);
    tags.sort();
    let mut v = 1000.0;
    for (i, (t, kwh)) in readings.iter().enumerate() {
        if i > 0 {
            v += kwh;
        }
        r.push("meter", "energy_kwh", &tags, T0 + t, v);
    }
}

/// A meter whose counter rises by `kwh` over the hour `[T0, T0 + 1 h]`.
pub fn hour(r: &mut MemoryReader, meter: &str, role: &str, extra: &[(&str, &str)], kwh: f64) {
    counter(r, meter, role, extra, &[(0, 0.0), (H, kwh)]);
}

/// A water totaliser reading `from` then `to` m³ at the hour's two ends.
pub fn water(r: &mut MemoryReader, meter: &str, potable: bool, from: f64, to: f64) {
    let tags = [("meter", meter), ("potable", if potable { "true" } else { "false" })];
    r.push("water", "volume_m3", &tags, T0, from).push("water", "volume_m3", &tags, T0 + H, to);
}
