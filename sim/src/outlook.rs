//! What a forecaster would have told the site: the weather ahead with a forecast's error, and
//! the grid's carbon intensity (a France-like daily curve) with its own forecast error. Pure
//! functions of (issue time, target time), like the rest of the simulator, so a forecast issued
//! at the same instant is the same forecast whatever asked for it.

use crate::noise::value_noise;
use crate::psy;
use crate::weather::{OutsideAir, paris_offset_secs};

const S_FC_TEMP: u64 = 0xF0C1;
const S_FC_DEW: u64 = 0xF0C2;
const S_GRID_DAY: u64 = 0xF0C3;
const S_GRID_SLOW: u64 = 0xF0C4;
const S_FC_GRID: u64 = 0xF0C5;

/// Dry-bulb forecast error, °C (one standard deviation): ~0.8 °C at issue growing to ~1.6 °C
/// at 24 h and ~2.1 °C at 48 h, the order of a good regional model's 2 m temperature error.
pub fn temp_error_sd(lead_h: f64) -> f64 {
    0.8 + 0.8 * (lead_h.max(0.0) / 24.0).sqrt()
}

/// The forecast of `truth` (the air that will be at `target_s`) issued at `issued_s`: the
/// error is smooth along the target time (a forecast misplaces a warm front by hours, not by
/// one hour at a time) and independent between issues.
pub fn forecast_air(seed: u64, truth: &OutsideAir, issued_s: f64, target_s: f64) -> OutsideAir {
    let lead_h = ((target_s - issued_s) / 3600.0).max(0.0);
    let issue = (issued_s / 3600.0).floor() as i64 as u64;
    let sd = temp_error_sd(lead_h);
    let x = target_s / (6.0 * 3600.0);
    let temp_c = truth.temp_c + sd * value_noise(seed ^ issue, S_FC_TEMP, x);
    let dew = truth.dew_point_c + 0.8 * sd * value_noise(seed ^ issue, S_FC_DEW, x);
    let dew_point_c = dew.min(temp_c - 0.2);
    let rh_pct = psy::rh_from_dew_point(temp_c, dew_point_c);
    OutsideAir { temp_c, rh_pct, dew_point_c, wet_bulb_c: psy::wet_bulb(temp_c, rh_pct) }
}

/// Grid carbon intensity at `secs`, g CO2eq/kWh: a nuclear-heavy grid (France-like, mean about
/// 50 g) whose gas peakers run in the evening peak (18–21 h local) and, less, in the morning
/// ramp, with solar lowering the early afternoon; winter and cold spells lean on gas more.
/// The daily swing is about 3× between the afternoon trough and the evening peak.
pub fn grid_intensity(seed: u64, secs: f64) -> f64 {
    let days = secs / 86_400.0;
    let local_h = ((secs + paris_offset_secs(secs) as f64) / 3600.0).rem_euclid(24.0);
    let bump = |centre: f64, width: f64| {
        let d = (local_h - centre + 12.0).rem_euclid(24.0) - 12.0;
        (-(d * d) / (2.0 * width * width)).exp()
    };
    let winter = (std::f64::consts::TAU * (days.rem_euclid(365.2425) - 18.0) / 365.2425).cos().max(0.0);
    let base = 28.0 + 14.0 * winter + 6.0 * value_noise(seed, S_GRID_SLOW, days / 2.0);
    let evening = (45.0 + 25.0 * winter) * (1.0 + 0.25 * value_noise(seed, S_GRID_DAY, days));
    let shape = evening * bump(19.5, 1.8) + 0.45 * evening * bump(8.0, 1.5) - 10.0 * bump(13.5, 2.5);
    (base + shape).max(12.0)
}

/// The grid intensity forecast for `target_s` issued at `issued_s`: a relative error growing
/// with lead time (about 8 % at 24 h), smooth along the target time.
pub fn forecast_grid_intensity(seed: u64, issued_s: f64, target_s: f64) -> f64 {
    let lead_h = ((target_s - issued_s) / 3600.0).max(0.0);
    let issue = (issued_s / 3600.0).floor() as i64 as u64;
    let rel = 0.02 + 0.06 * (lead_h / 24.0).sqrt();
    let e = rel * value_noise(seed ^ issue, S_FC_GRID, target_s / (4.0 * 3600.0));
    grid_intensity(seed, target_s) * (1.0 + e).max(0.2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weather::Weather;

    #[test]
    fn grid_swings_about_threefold_within_a_day() {
        let t0 = 1_735_689_600.0 + 40.0 * 86_400.0;
        let v: Vec<f64> = (0..24).map(|h| grid_intensity(5, t0 + h as f64 * 3600.0)).collect();
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(hi / lo > 2.0 && hi / lo < 6.0, "{lo} .. {hi}");
    }

    #[test]
    fn forecast_error_grows_with_lead() {
        let w = Weather::new(5);
        let t0 = 1_735_689_600.0;
        let (mut e1, mut e2) = (0.0, 0.0);
        for i in 0..400 {
            let issued = t0 + i as f64 * 86_400.0 * 0.77;
            let near = issued + 3.0 * 3600.0;
            let far = issued + 46.0 * 3600.0;
            e1 += (forecast_air(5, &w.at(near), issued, near).temp_c - w.at(near).temp_c).abs();
            e2 += (forecast_air(5, &w.at(far), issued, far).temp_c - w.at(far).temp_c).abs();
        }
        assert!(e2 > e1 * 1.3, "{e1} vs {e2}");
        assert!(e2 / 400.0 < 3.0, "{}", e2 / 400.0);
    }
}
