//! Validation of facility readings before they leave the collector: values outside physical
//! range are dropped and counted with a reason; a frozen sensor, a counter that rolls over or is
//! reset (meter swap), and a device that stops answering become `facility_event` points the
//! alert engine can match on (`kind` tag).
//!
//! Why here and not in the aggregator: only the collector knows the register width (a 32-bit
//! counter wrapping is not a reset) and whether the device answered at all.

use std::collections::{BTreeMap, HashMap};

use kilowatch_model::{FieldValue, Labels, Point, Timestamp};
use serde::Deserialize;

/// Measurement of events: tags `device`, `kind` (`frozen`, `rollover`, `reset`,
/// `no_response`, `recovered`) and `signal` (the field concerned, where there is one).
pub const EVENT: &str = "facility_event";
/// Measurement of drop counters: tags `device`, `reason`; field `count` (cumulative since the
/// collector started).
pub const DROPPED: &str = "facility_dropped";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Frozen,
    Rollover,
    Reset,
    NoResponse,
    Recovered,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Frozen => "frozen",
            EventKind::Rollover => "rollover",
            EventKind::Reset => "reset",
            EventKind::NoResponse => "no_response",
            EventKind::Recovered => "recovered",
        }
    }
}

/// Builds one event point. `base` holds the device's tags (site, …).
pub fn event(base: &Labels, device: &str, kind: EventKind, signal: Option<&str>, ts: Timestamp, message: &str) -> Point {
    let mut p = Point::new(EVENT, ts);
    p.tags = base.clone();
    p.tags.insert("device".into(), device.into());
    p.tags.insert("kind".into(), kind.as_str().into());
    if let Some(s) = signal {
        p.tags.insert("signal".into(), s.into());
    }
    p.field("message", message)
}

/// Lower and upper plausibility bounds of one unit, in the unit itself; either left out keeps
/// the default.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Overrides of [`DEFAULT_BOUNDS`] by unit (`[bounds.w] max = 2e8` in a register map), the unit
/// being the end of the field name after its last `_` (`power_w` → `w`).
pub type Bounds = BTreeMap<String, Bound>;

/// Default plausibility bounds per unit: (unit, min, max). Wide enough for any single meter of
/// a large site (100 MW, 10 TWh), narrow enough to refuse a register that reads all ones
/// (4.29 GW from a 32-bit watt register). Temperatures: −50…80 °C, wider than any ASHRAE class.
pub const DEFAULT_BOUNDS: &[(&str, f64, f64)] =
    &[("w", 0.0, 1e8), ("kw", 0.0, 1e5), ("kwh", 0.0, 1e10), ("j", 0.0, 3.6e16), ("mj", 0.0, 3.6e19), ("m3", 0.0, 1e10), ("c", -50.0, 80.0), ("pct", 0.0, 100.0)];

/// The unit of a field: what follows its last `_`.
pub fn unit_of(field: &str) -> &str {
    field.rsplit('_').next().unwrap_or(field)
}

/// Checks an override table: known units, finite bounds, min below max.
pub fn check_bounds(bounds: &Bounds) -> Result<(), String> {
    for (unit, b) in bounds {
        let Some(&(_, lo, hi)) = DEFAULT_BOUNDS.iter().find(|d| d.0 == unit) else {
            let known: Vec<&str> = DEFAULT_BOUNDS.iter().map(|d| d.0).collect();
            return Err(format!("bounds.{unit}: unknown unit (known: {})", known.join(", ")));
        };
        let (min, max) = (b.min.unwrap_or(lo), b.max.unwrap_or(hi));
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(format!("bounds.{unit}: min ({min}) and max ({max}) must be finite numbers, min below max"));
        }
    }
    Ok(())
}

/// Why a value was dropped, or `None` when it is plausible: not finite, or outside its unit's
/// bounds (`overrides` first, then [`DEFAULT_BOUNDS`]).
pub fn range_reason(field: &str, v: f64, overrides: &Bounds) -> Option<&'static str> {
    if !v.is_finite() {
        return Some("not_finite");
    }
    let unit = unit_of(field);
    let &(_, lo, hi) = DEFAULT_BOUNDS.iter().find(|d| d.0 == unit)?;
    let b = overrides.get(unit).copied().unwrap_or_default();
    let (min, max) = (b.min.unwrap_or(lo), b.max.unwrap_or(hi));
    if (min..=max).contains(&v) {
        return None;
    }
    let counter = is_counter_field(field) || matches!(unit, "kwh" | "j" | "mj" | "m3");
    Some(match unit {
        "c" => "temp_out_of_range",
        "pct" if field.ends_with("rh_pct") => "rh_out_of_range",
        "pct" => "pct_out_of_range",
        "w" | "kw" if v < 0.0 => "negative_power",
        "w" | "kw" => "implausible_power",
        _ if counter && v < 0.0 => "negative_counter",
        _ => "implausible_counter",
    })
}

/// Counter fields of the wire schema.
pub fn is_counter_field(field: &str) -> bool {
    matches!(field, "energy_kwh" | "volume_m3" | "energy_j" | "energy_mj")
}

/// Sensors whose readings always jitter a little (temperatures, humidity): an unchanged value
/// for long means a stuck transmitter. Power of an idle feeder or a generator can be a true
/// constant zero, so it is not checked.
fn frozen_candidate(field: &str) -> bool {
    field.ends_with("_c") || field.ends_with("_pct")
}

#[derive(Debug, Clone)]
struct Seen {
    value: f64,
    since: Timestamp,
    reported: bool,
}

/// Per-device validator: keeps what it needs to recognise frozen sensors, and drop counts.
#[derive(Debug, Clone)]
pub struct Validator {
    device: String,
    base: Labels,
    frozen_after_ns: Option<i64>,
    seen: HashMap<(String, Labels, String), Seen>,
    dropped: BTreeMap<&'static str, u64>,
    bounds: Bounds,
}

impl Validator {
    /// `frozen_after_s` = 0 disables the frozen-sensor check.
    pub fn new(device: &str, base: Labels, frozen_after_s: f64) -> Self {
        let frozen_after_ns = (frozen_after_s > 0.0).then_some((frozen_after_s * 1e9) as i64);
        Validator { device: device.into(), base, frozen_after_ns, seen: HashMap::new(), dropped: BTreeMap::new(), bounds: Bounds::new() }
    }

    /// With per-unit bounds overriding the defaults (a register map's `[bounds]`).
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// Why `v` is implausible for `field` on this device, if it is.
    pub fn implausible(&self, field: &str, v: f64) -> Option<&'static str> {
        range_reason(field, v, &self.bounds)
    }

    pub fn dropped(&self) -> &BTreeMap<&'static str, u64> {
        &self.dropped
    }

    pub fn count_drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    /// Drops implausible fields (counting them), appends frozen-sensor events to `events`, and
    /// returns the points that still carry a field.
    pub fn check(&mut self, points: Vec<Point>, events: &mut Vec<Point>) -> Vec<Point> {
        let mut out = Vec::with_capacity(points.len());
        for mut p in points {
            let ts = p.ts;
            let mut kept = Vec::with_capacity(p.fields.len());
            for (k, v) in std::mem::take(&mut p.fields) {
                let Some(x) = v.as_f64() else {
                    kept.push((k, v));
                    continue;
                };
                if let Some(reason) = self.implausible(&k, x) {
                    self.count_drop(reason);
                    tracing::debug!(device = %self.device, field = %k, value = x, reason, "reading dropped");
                    continue;
                }
                if let Some(limit) = self.frozen_after_ns
                    && frozen_candidate(&k)
                {
                    let key = (p.measurement.clone(), p.tags.clone(), k.clone());
                    let s = self.seen.entry(key).or_insert(Seen { value: x, since: ts, reported: false });
                    if s.value != x {
                        *s = Seen { value: x, since: ts, reported: false };
                    } else if !s.reported && ts.0 - s.since.0 >= limit {
                        s.reported = true;
                        let mut e = event(&self.base, &self.device, EventKind::Frozen, Some(&k), ts, "value unchanged past frozen_after_s");
                        e.tags.extend(p.tags.iter().map(|(a, b)| (a.clone(), b.clone())));
                        e.fields.push(("value".into(), FieldValue::F64(x)));
                        e.fields.push(("since_s".into(), FieldValue::F64((ts.0 - s.since.0) as f64 / 1e9)));
                        events.push(e);
                    }
                }
                kept.push((k, v));
            }
            if !kept.is_empty() {
                p.fields = kept;
                out.push(p);
            }
        }
        out
    }

    /// The drop counters as points (one per reason), so they reach the aggregator.
    pub fn drop_points(&self, ts: Timestamp) -> Vec<Point> {
        self.dropped
            .iter()
            .map(|(reason, n)| {
                let mut p = Point::new(DROPPED, ts);
                p.tags = self.base.clone();
                p.tags.insert("device".into(), self.device.clone());
                p.tags.insert("reason".into(), (*reason).into());
                p.field("count", FieldValue::U64(*n))
            })
            .collect()
    }
}

/// Follows one raw counter register across rollovers of a `bits`-wide register (unwrapped, so
/// the energy across a wrap is exact) and resets (a meter swap or a device reset: reported and
/// passed on, and the aggregator counts from the new value).
#[derive(Debug, Clone, Default)]
pub struct CounterTracker {
    last: Option<i128>,
    offset: i128,
}

impl CounterTracker {
    /// Returns the unwrapped raw value and what happened, if anything.
    pub fn track(&mut self, bits: Option<u32>, raw: i128) -> (i128, Option<EventKind>) {
        let mut ev = None;
        if let Some(last) = self.last
            && raw < last
        {
            match bits {
                // A wrap goes from the top quarter of the range to the bottom quarter; anything
                // else that goes down is a replaced or reset meter.
                Some(b) if last >= (3i128 << b) / 4 && raw < (1i128 << b) / 4 => {
                    self.offset += 1i128 << b;
                    ev = Some(EventKind::Rollover);
                }
                _ => {
                    self.offset = 0;
                    ev = Some(EventKind::Reset);
                }
            }
        }
        self.last = Some(raw);
        (raw + self.offset, ev)
    }

    /// For float counters: any decrease is a reset.
    pub fn track_f64(&mut self, last: &mut Option<f64>, v: f64) -> Option<EventKind> {
        let ev = matches!(*last, Some(l) if v < l).then_some(EventKind::Reset);
        *last = Some(v);
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(field: &str, v: f64, t: i64) -> Point {
        Point::new("cooling", Timestamp::from_secs(t)).tag("unit", "cu-01").field(field, v)
    }

    #[test]
    fn out_of_range_is_dropped_and_counted() {
        let mut v = Validator::new("cu-01", Labels::new(), 0.0);
        let mut ev = Vec::new();
        let pts = vec![p("outside_rh_pct", 101.0, 0), p("outside_temp_c", -60.0, 0), p("fan_power_w", -1.0, 0), p("supply_temp_c", 22.0, 0), p("outside_temp_c", f64::NAN, 0)];
        let kept = v.check(pts, &mut ev);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].get_f64("supply_temp_c"), Some(22.0));
        let d = v.dropped();
        assert_eq!((d["rh_out_of_range"], d["temp_out_of_range"], d["negative_power"], d["not_finite"]), (1, 1, 1, 1));
        assert_eq!(v.drop_points(Timestamp::from_secs(1)).len(), 4);
    }

    #[test]
    fn bounds_per_unit_with_overrides() {
        let none = Bounds::new();
        assert_eq!(range_reason("power_w", 4_294_967_295.0, &none), Some("implausible_power"), "an all-ones 32-bit watt register");
        assert_eq!(range_reason("power_w", 2.5e6, &none), None);
        assert_eq!(range_reason("energy_kwh", 1.8e19, &none), Some("implausible_counter"));
        assert_eq!(range_reason("energy_kwh", -1.0, &none), Some("negative_counter"));
        assert_eq!(range_reason("mode", 7.0, &none), None, "no unit, no bound");
        let big: Bounds = [("w".to_owned(), Bound { min: None, max: Some(5e9) })].into_iter().collect();
        assert_eq!(range_reason("power_w", 4_294_967_295.0, &big), None, "raised by the map");
        assert_eq!(range_reason("power_w", -1.0, &big), Some("negative_power"), "the default min stays");
        let mut v = Validator::new("m", Labels::new(), 0.0).with_bounds(big.clone());
        assert!(v.check(vec![p("power_w", 4e9, 0)], &mut Vec::new()).len() == 1);
        assert!(check_bounds(&big).is_ok());
        let bad: Bounds = [("w".to_owned(), Bound { min: Some(10.0), max: Some(f64::NAN) })].into_iter().collect();
        assert!(check_bounds(&bad).expect_err("nan").contains("bounds.w"));
        let unknown: Bounds = [("furlongs".to_owned(), Bound::default())].into_iter().collect();
        assert!(check_bounds(&unknown).expect_err("unit").contains("bounds.furlongs"));
    }

    #[test]
    fn frozen_sensor_is_reported_once() {
        let mut v = Validator::new("cu-01", Labels::new(), 600.0);
        let mut ev = Vec::new();
        for t in (0..=1200).step_by(60) {
            v.check(vec![p("outside_temp_c", 21.5, t), p("fan_power_w", 0.0, t)], &mut ev);
        }
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].tag_value("kind"), Some("frozen"));
        assert_eq!(ev[0].tag_value("signal"), Some("outside_temp_c"));
        assert_eq!(ev[0].ts, Timestamp::from_secs(600));
        // It moves again, then freezes again: a second event.
        v.check(vec![p("outside_temp_c", 21.6, 1300)], &mut ev);
        v.check(vec![p("outside_temp_c", 21.6, 1900)], &mut ev);
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn rollover_is_unwrapped_and_swap_is_a_reset() {
        let mut c = CounterTracker::default();
        assert_eq!(c.track(Some(16), 65_530), (65_530, None));
        assert_eq!(c.track(Some(16), 4), (65_540, Some(EventKind::Rollover)));
        assert_eq!(c.track(Some(16), 10), (65_546, None));
        let mut c = CounterTracker::default();
        assert_eq!(c.track(Some(32), 4_294_967_290), (4_294_967_290, None));
        assert_eq!(c.track(Some(32), 6), (4_294_967_302, Some(EventKind::Rollover)));
        // A new meter reading 120 after 3,000,000: a swap, not a wrap.
        let mut c = CounterTracker::default();
        c.track(Some(32), 3_000_000);
        assert_eq!(c.track(Some(32), 120), (120, Some(EventKind::Reset)));
        let mut last = None;
        assert_eq!(c.track_f64(&mut last, 10.0), None);
        assert_eq!(c.track_f64(&mut last, 9.0), Some(EventKind::Reset));
    }
}
