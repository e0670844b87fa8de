//! Validation of facility readings before they leave the collector: values outside physical
//! range are dropped and counted with a reason; a frozen sensor, a counter that rolls over or is
//! reset (meter swap), and a device that stops answering become `facility_event` points the
//! alert engine can match on (`kind` tag).
//!
//! Why here and not in the aggregator: only the collector knows the register width (a 32-bit
//! counter wrapping is not a reset) and whether the device answered at all.

use std::collections::{BTreeMap, HashMap};

use kilowatch_model::{FieldValue, Labels, Point, Timestamp};

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

/// Why a value was dropped, or `None` when it is plausible. Limits: RH 0–100 %, temperatures
/// −50…80 °C (the physical range, wider than any ASHRAE class), no negative power or
/// counter, nothing non-finite.
pub fn range_reason(field: &str, v: f64) -> Option<&'static str> {
    if !v.is_finite() {
        return Some("not_finite");
    }
    if field.ends_with("rh_pct") && !(0.0..=100.0).contains(&v) {
        return Some("rh_out_of_range");
    }
    if field.ends_with("temp_c") && !(-50.0..=80.0).contains(&v) {
        return Some("temp_out_of_range");
    }
    if field.ends_with("power_w") && v < 0.0 {
        return Some("negative_power");
    }
    if is_counter_field(field) && v < 0.0 {
        return Some("negative_counter");
    }
    None
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
}

impl Validator {
    /// `frozen_after_s` = 0 disables the frozen-sensor check.
    pub fn new(device: &str, base: Labels, frozen_after_s: f64) -> Self {
        let frozen_after_ns = (frozen_after_s > 0.0).then_some((frozen_after_s * 1e9) as i64);
        Validator { device: device.into(), base, frozen_after_ns, seen: HashMap::new(), dropped: BTreeMap::new() }
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
                if let Some(reason) = range_reason(&k, x) {
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
        let pts = vec![
            p("outside_rh_pct", 101.0, 0),
            p("outside_temp_c", -60.0, 0),
            p("fan_power_w", -1.0, 0),
            p("supply_temp_c", 22.0, 0),
            p("outside_temp_c", f64::NAN, 0),
        ];
        let kept = v.check(pts, &mut ev);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].get_f64("supply_temp_c"), Some(22.0));
        let d = v.dropped();
        assert_eq!((d["rh_out_of_range"], d["temp_out_of_range"], d["negative_power"], d["not_finite"]), (1, 1, 1, 1));
        assert_eq!(v.drop_points(Timestamp::from_secs(1)).len(), 4);
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
