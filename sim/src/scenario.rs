//! Events injected into the simulated site, for alert tests and demos: a heat wave and a
//! cooling unit failure. The default scenario injects nothing, and then the simulator takes
//! exactly the code paths it took before scenarios existed (same numbers, byte for byte).

use kilowatch_model::Timestamp;

use crate::psy;
use crate::weather::OutsideAir;

/// A heat wave: the outside dry bulb rises by `delta_c` over `ramp_s`, holds for `hold_s`,
/// falls back over `ramp_s`. With `dew_delta_c` = 0 the air keeps its moisture, so RH drops and
/// the wet bulb rises less than the dry bulb, unless `dew_delta_c` brings moisture too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatWave {
    pub start: Timestamp,
    pub ramp_s: f64,
    pub hold_s: f64,
    pub delta_c: f64,
    /// Moisture advected with the hot air mass, as dew point rise: what defeats evaporative
    /// cooling (its floor is the wet bulb), so a humid heat wave is the one to test.
    pub dew_delta_c: f64,
}

/// One cooling unit stops (fans and pumps off) from `start` to `end` (or for good). The
/// nodes it cools breathe recirculated hot air: their inlet rises by `inlet_rise_c`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoolingFailure {
    /// 0-based unit index: 2 is `cu-03`.
    pub unit: usize,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub inlet_rise_c: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scenario {
    pub heat_wave: Option<HeatWave>,
    pub cooling_failure: Option<CoolingFailure>,
}

impl Scenario {
    pub fn none() -> Self {
        Scenario::default()
    }

    /// `heatwave`, `cooling-failure` or `both`, starting at `start`: a humid heat wave
    /// (+14 °C dry bulb, +6 °C dew point, 30 min ramps, 6 h hold; Paris saw 42.6 °C in July
    /// 2019) and unit cu-03 failing an hour in.
    pub fn named(name: &str, start: Timestamp) -> Option<Self> {
        let hw = HeatWave { start, ramp_s: 1800.0, hold_s: 6.0 * 3600.0, delta_c: 14.0, dew_delta_c: 6.0 };
        let cf = CoolingFailure { unit: 2, start: Timestamp(start.0 + 3600 * 1_000_000_000), end: None, inlet_rise_c: 20.0 };
        match name {
            "none" => Some(Scenario::none()),
            "heatwave" | "heat-wave" => Some(Scenario { heat_wave: Some(hw), cooling_failure: None }),
            "cooling-failure" => Some(Scenario { heat_wave: None, cooling_failure: Some(CoolingFailure { start, ..cf }) }),
            "both" => Some(Scenario { heat_wave: Some(hw), cooling_failure: Some(cf) }),
            _ => None,
        }
    }

    /// The outside air with the heat wave applied, or `None` when it changes nothing (so the
    /// caller keeps the untouched value).
    pub(crate) fn air(&self, air: &OutsideAir, t_s: f64) -> Option<OutsideAir> {
        let hw = self.heat_wave?;
        let e = t_s - hw.start.as_secs_f64();
        let total = 2.0 * hw.ramp_s + hw.hold_s;
        if e <= 0.0 || e >= total {
            return None;
        }
        let k = if e < hw.ramp_s {
            e / hw.ramp_s
        } else if e < hw.ramp_s + hw.hold_s {
            1.0
        } else {
            (total - e) / hw.ramp_s
        };
        let temp_c = air.temp_c + k * hw.delta_c;
        let dew_point_c = (air.dew_point_c + k * hw.dew_delta_c).min(temp_c);
        let rh_pct = psy::rh_from_dew_point(temp_c, dew_point_c);
        Some(OutsideAir { temp_c, rh_pct, dew_point_c, wet_bulb_c: psy::wet_bulb(temp_c, rh_pct) })
    }

    /// Inlet rise of unit `unit` at `t`, `None` when it runs normally.
    pub(crate) fn unit_failed(&self, unit: usize, t: Timestamp) -> Option<f64> {
        let cf = self.cooling_failure?;
        (cf.unit == unit && t >= cf.start && cf.end.is_none_or(|e| t < e)).then_some(cf.inlet_rise_c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimConfig, Site};

    const H: i64 = 3600 * 1_000_000_000;

    #[test]
    fn events_change_only_what_they_touch_and_only_when_active() {
        // 2025-07-15T10:00:00Z; 16 nodes on 2 units: dgx-001..008 on cu-01, dgx-009..016 on cu-02.
        let start = Timestamp::from_secs(1_752_573_600);
        let base = SimConfig { start, site_nodes: 16, nodes: 16, cooling_units: 2, ..SimConfig::default() };
        let cf = CoolingFailure { unit: 1, start: Timestamp(start.0 + H), end: Some(Timestamp(start.0 + 3 * H)), inlet_rise_c: 20.0 };
        let mut plain = Site::new(base.clone());
        let mut failing = Site::new(SimConfig { scenario: Scenario { heat_wave: None, cooling_failure: Some(cf) }, ..base.clone() });
        let at = |s: &mut Site, t: i64| {
            s.advance_to(Timestamp(start.0 + t));
            s.points()
        };
        assert_eq!(at(&mut plain, H / 2), at(&mut failing, H / 2), "identical before the failure");
        let (p, f) = (at(&mut plain, 2 * H), at(&mut failing, 2 * H));
        let gpu =
            |pts: &[kilowatch_model::Point], node: &str| pts.iter().filter(|x| x.measurement == "gpu" && x.tag_value("node") == Some(node)).filter_map(|x| x.get_f64("temp_c")).collect::<Vec<_>>();
        assert_eq!(gpu(&p, "dgx-003"), gpu(&f, "dgx-003"), "cu-01's nodes are untouched");
        for (a, b) in gpu(&p, "dgx-012").iter().zip(gpu(&f, "dgx-012")) {
            assert!((b - a - 20.0).abs() <= 1.0, "cu-02's nodes breathe hot air: {a} → {b}");
        }
        let fan = |pts: &[kilowatch_model::Point], unit: &str| pts.iter().find(|x| x.measurement == "cooling" && x.tag_value("unit") == Some(unit)).and_then(|x| x.get_f64("fan_power_w"));
        assert_eq!(fan(&f, "cu-02"), Some(0.0));
        assert!(fan(&f, "cu-01").is_some_and(|w| w > 0.0));
        let (p, f) = (at(&mut plain, 4 * H), at(&mut failing, 4 * H));
        assert_eq!(gpu(&p, "dgx-012"), gpu(&f, "dgx-012"), "repaired");

        let hw = Scenario::named("heatwave", Timestamp(start.0 + H)).and_then(|s| s.heat_wave).expect("heat wave");
        let air = crate::weather::Weather::new(5).at(start.as_secs_f64() + 2.0 * 3600.0);
        let hot = Scenario { heat_wave: Some(hw), cooling_failure: None }.air(&air, start.as_secs_f64() + 2.0 * 3600.0).expect("active");
        assert!((hot.temp_c - air.temp_c - hw.delta_c).abs() < 1e-9);
        assert!(hot.wet_bulb_c > air.wet_bulb_c && hot.dew_point_c > air.dew_point_c);
        assert!(Scenario::none().air(&air, start.as_secs_f64()).is_none());
    }
}
