//! Private psychrometric helpers (the public psychrometrics module lives elsewhere). Magnus
//! formula over water with Sonntag-style constants (a = 17.62, b = 243.12 °C), good to ~0.1 °C
//! between −45 and 60 °C, which is all an outside-air plant sees. Sea-level pressure: Paris
//! sits at ~35–100 m, a 1 % effect we ignore.

const A: f64 = 17.62;
const B: f64 = 243.12;
/// Standard atmosphere, Pa.
pub const P_ATM: f64 = 101_325.0;
/// Specific heat of dry air, J/(kg·K).
pub const CP_AIR: f64 = 1006.0;
/// Latent heat of vaporisation of water near 20 °C, J/kg.
pub const H_FG: f64 = 2.45e6;

/// Saturation vapour pressure, Pa.
#[inline]
pub fn p_sat(t_c: f64) -> f64 {
    611.2 * (A * t_c / (B + t_c)).exp()
}

#[inline]
pub fn dew_point(t_c: f64, rh_pct: f64) -> f64 {
    let g = (rh_pct.max(0.1) / 100.0).ln() + A * t_c / (B + t_c);
    B * g / (A - g)
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
    let g = (pv / 611.2).ln();
    B * g / (A - g)
}

/// Relative humidity of air at `t_c` with humidity ratio `w`.
#[inline]
pub fn rh_from_humidity_ratio(t_c: f64, w: f64) -> f64 {
    let pv = w * P_ATM / (0.622 + w);
    (100.0 * pv / p_sat(t_c)).clamp(0.0, 100.0)
}

/// Wet-bulb temperature, Stull (2011) empirical fit: ±0.3 °C for RH 5–99 % and −20–50 °C,
/// enough to size an evaporative stage.
#[inline]
pub fn wet_bulb(t_c: f64, rh_pct: f64) -> f64 {
    let rh = rh_pct.clamp(5.0, 99.0);
    t_c * (0.151_977 * (rh + 8.313_659).sqrt()).atan() + (t_c + rh).atan() - (rh - 1.676_331).atan()
        + 0.003_918_38 * rh.powf(1.5) * (0.023_101 * rh).atan()
        - 4.686_035
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
