//! Psychrometrics for the ASHRAE envelope and the evaporative plant: dew point and wet-bulb
//! temperature from dry bulb and relative humidity, at sea-level pressure.
//!
//! - Dew point: Magnus formula with the Alduchov & Eskridge (1996) constants a = 17.625,
//!   b = 243.04 °C (J. Appl. Meteor. 35, 601–609; recommended by Lawrence 2005, BAMS 86,
//!   225–233). Saturation pressure within 0.384 % of the exact value over −40…50 °C, which puts
//!   the dew point within 0.1 °C of the exact one there (tested against ASHRAE's table).
//! - Wet bulb: Stull (2011), "Wet-Bulb Temperature from Relative Humidity and Air
//!   Temperature", J. Appl. Meteor. Climatol. 50, 2267–2269. An empirical fit valid for RH
//!   5–99 % and −20…50 °C at 101.325 kPa except the cold and dry corner (see
//!   [`wet_bulb_in_range`]); mean absolute error under 0.3 °C, worst cases −1 °C and +0.65 °C.

const A: f64 = 17.625;
const B: f64 = 243.04;
/// Saturation vapour pressure at 0 °C, kPa (Alduchov & Eskridge: 6.1094 hPa).
const C_KPA: f64 = 0.610_94;

/// Saturation vapour pressure over liquid water by the Magnus formula, kPa.
pub fn saturation_pressure_kpa(temp_c: f64) -> f64 {
    C_KPA * (A * temp_c / (B + temp_c)).exp()
}

/// Dew point, °C, from dry bulb (°C) and relative humidity (%, 0 < RH ≤ 100). `None` for
/// RH ≤ 0 (no water: no dew point) or non-finite input.
pub fn dew_point_c(temp_c: f64, rh_pct: f64) -> Option<f64> {
    if !(temp_c.is_finite() && rh_pct.is_finite()) || rh_pct <= 0.0 {
        return None;
    }
    let g = (rh_pct.min(100.0) / 100.0).ln() + A * temp_c / (B + temp_c);
    Some(B * g / (A - g))
}

/// Wet-bulb temperature, °C, by Stull (2011). Outside the fit's range (RH 5–99 %, −20…50 °C)
/// the value is still returned but its error is not bounded; callers that need to know check
/// [`wet_bulb_in_range`].
pub fn wet_bulb_c(temp_c: f64, rh_pct: f64) -> f64 {
    let (t, rh) = (temp_c, rh_pct);
    t * (0.151_977 * (rh + 8.313_659).sqrt()).atan() + (t + rh).atan() - (rh - 1.676_331).atan() + 0.003_918_38 * rh.powf(1.5) * (0.023_101 * rh).atan() - 4.686_035
}

/// Whether Stull's fit is valid for these conditions: RH 5–99 %, −20…50 °C, less the cold and
/// dry corner the paper excludes (taken here as RH < −2·T − 10, e.g. below 30 % at −20 °C,
/// where the fit's wet bulb exceeds the dry bulb).
pub fn wet_bulb_in_range(temp_c: f64, rh_pct: f64) -> bool {
    (-20.0..=50.0).contains(&temp_c) && (5.0..=99.0).contains(&rh_pct) && rh_pct >= -2.0 * temp_c - 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saturation pressure of water vapour over liquid water, kPa: ASHRAE Handbook —
    /// Fundamentals (2017), chapter 1, Table 3 (Hyland–Wexler).
    const ASHRAE_PWS: &[(f64, f64)] = &[(0.0, 0.6112), (5.0, 0.8726), (10.0, 1.2282), (15.0, 1.7058), (20.0, 2.3393), (25.0, 3.1699), (30.0, 4.2470), (35.0, 5.6290), (40.0, 7.3849)];

    #[test]
    fn magnus_is_within_its_stated_error_of_ashrae() {
        for &(t, p) in ASHRAE_PWS {
            let rel = (saturation_pressure_kpa(t) - p).abs() / p;
            assert!(rel < 0.00384, "{t} °C: {} vs {p} ({rel})", saturation_pressure_kpa(t));
        }
    }

    #[test]
    fn dew_point_matches_ashrae_table_within_0_1_c() {
        // Air at dry bulb T whose vapour pressure is the table's p_ws(Td) has dew point Td, and
        // RH = p_ws(Td) / p_ws(T).
        for &(t, pt) in ASHRAE_PWS {
            for &(td, ptd) in ASHRAE_PWS.iter().filter(|(td, _)| *td <= t) {
                let rh = 100.0 * ptd / pt;
                let got = dew_point_c(t, rh).expect("dew point");
                assert!((got - td).abs() < 0.1, "T {t} RH {rh:.2}: {got} vs {td}");
            }
        }
        assert_eq!(dew_point_c(20.0, 0.0), None);
    }

    #[test]
    fn wet_bulb_matches_stull() {
        // Stull (2011), worked example in the paper: 20 °C and 50 % RH give 13.7 °C.
        assert!((wet_bulb_c(20.0, 50.0) - 13.7).abs() < 0.05, "{}", wet_bulb_c(20.0, 50.0));
        assert!(!wet_bulb_in_range(-20.0, 20.0) && wet_bulb_in_range(-20.0, 40.0) && !wet_bulb_in_range(20.0, 100.0));
        // Physical bounds within the fit's stated error: dew point ≤ wet bulb ≤ dry bulb.
        for t in (-20..=50).step_by(5).map(f64::from) {
            for rh in (5..=99).step_by(2).map(f64::from).filter(|&rh| wet_bulb_in_range(t, rh)) {
                let w = wet_bulb_c(t, rh);
                let d = dew_point_c(t, rh).expect("dp");
                assert!(w <= t + 0.65 && w >= d - 1.0, "T {t} RH {rh}: Tw {w}, Td {d}");
            }
        }
    }
}
