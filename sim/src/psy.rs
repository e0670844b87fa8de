//! The sim's humidity-ratio helpers for the evaporative plant, on top of
//! [`kilowatch_model::psychro`] (dew point, wet bulb and the saturation pressure all come from
//! there, so the sim and the aggregator share one set of constants). Sea-level pressure: Paris
//! sits at ~35–100 m, a 1 % effect we ignore.

use kilowatch_model::psychro;

/// Standard atmosphere, Pa.
pub const P_ATM: f64 = 101_325.0;
/// Specific heat of dry air, J/(kg·K).
pub const CP_AIR: f64 = 1006.0;
/// Latent heat of vaporisation of water near 20 °C, J/kg.
pub const H_FG: f64 = 2.45e6;

/// Saturation vapour pressure, Pa.
#[inline]
pub fn p_sat(t_c: f64) -> f64 {
    1000.0 * psychro::saturation_pressure_kpa(t_c)
}

/// Dew point, °C; RH below 0.1 % counts as 0.1 % so that the plant always has a figure.
#[inline]
pub fn dew_point(t_c: f64, rh_pct: f64) -> f64 {
    psychro::dew_point_c(t_c, rh_pct.max(0.1)).unwrap_or(f64::NAN)
}

#[inline]
pub fn rh_from_dew_point(t_c: f64, td_c: f64) -> f64 {
    (100.0 * p_sat(td_c) / p_sat(t_c)).min(100.0)
}

/// Humidity ratio (kg water / kg dry air) of air whose dew point is `td_c`.
#[inline]
pub fn humidity_ratio_from_dew_point(td_c: f64) -> f64 {
    let pv = p_sat(td_c);
    0.622 * pv / (P_ATM - pv)
}

/// Dew point of air with humidity ratio `w`.
#[cfg(test)]
#[inline]
pub fn dew_point_from_humidity_ratio(w: f64) -> f64 {
    let pv = (w * P_ATM / (0.622 + w)).max(1.0);
    // The dew point depends on the vapour pressure alone: any dry bulb hot enough to keep the
    // RH under 100 % gives it.
    const HOT: f64 = 80.0;
    dew_point(HOT, 100.0 * pv / p_sat(HOT))
}

/// Relative humidity of air at `t_c` with humidity ratio `w`.
#[inline]
pub fn rh_from_humidity_ratio(t_c: f64, w: f64) -> f64 {
    let pv = w * P_ATM / (0.622 + w);
    (100.0 * pv / p_sat(t_c)).clamp(0.0, 100.0)
}

/// Wet-bulb temperature (Stull 2011), with the RH held inside the fit's 5–99 % so that an
/// evaporative stage is sized from a bounded figure.
#[inline]
pub fn wet_bulb(t_c: f64, rh_pct: f64) -> f64 {
    psychro::wet_bulb_c(t_c, rh_pct.clamp(5.0, 99.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // 25 °C, 50 % RH: dew point 13.9 °C, wet bulb 18.0 °C, W ≈ 9.9 g/kg.
        let td = dew_point(25.0, 50.0);
        assert!((td - 13.85).abs() < 0.2, "{td}");
        assert!((wet_bulb(25.0, 50.0) - 18.0).abs() < 0.4);
        let w = humidity_ratio_from_dew_point(td);
        assert!((w - 0.0099).abs() < 0.0003, "{w}");
        assert!((rh_from_humidity_ratio(25.0, w) - 50.0).abs() < 0.5);
        assert!((dew_point_from_humidity_ratio(w) - td).abs() < 0.05);
        assert!((rh_from_dew_point(25.0, td) - 50.0).abs() < 0.1);
    }
}
