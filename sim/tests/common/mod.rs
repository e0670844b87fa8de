#![allow(dead_code)]

use kilowatch_model::{Point, Timestamp};

pub const MIN: i64 = 60_000_000_000;

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).expect("valid RFC 3339")
}

pub fn meter<'a>(points: &'a [Point], name: &str) -> &'a Point {
    points.iter().find(|p| p.measurement == "meter" && p.tag_value("meter") == Some(name)).unwrap_or_else(|| panic!("meter {name} missing"))
}

/// Facility counters read from the emitted points: (grid + generator kWh, UPS-out kWh,
/// cooling, losses, other, water m³).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub facility: f64,
    pub it: f64,
    pub cooling: f64,
    pub losses: f64,
    pub other: f64,
    pub water: f64,
}

pub fn counters(points: &[Point]) -> Counters {
    let e = |n: &str| meter(points, n).get_f64("energy_kwh").expect("energy_kwh");
    let water = points.iter().find(|p| p.measurement == "water").and_then(|p| p.get_f64("volume_m3")).expect("water point");
    Counters { facility: e("grid-a") + e("grid-b") + e("gen-1"), it: e("ups-a-out") + e("ups-b-out"), cooling: e("cooling"), losses: e("losses"), other: e("other"), water }
}
