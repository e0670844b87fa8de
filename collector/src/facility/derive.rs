//! Values the cooling units do not report but the envelope checks need: dew point and wet bulb
//! of the outside and supply air, from dry bulb and RH (formulas and accuracy in
//! `kilowatch_model::psychro`). Added after validation, so they derive from plausible inputs
//! only.

use kilowatch_model::metric::COOLING;
use kilowatch_model::psychro::{dew_point_c, wet_bulb_c, wet_bulb_in_range};
use kilowatch_model::{FieldValue, Point};

/// Adds `outside_dew_point_c`, `outside_wet_bulb_c` and `supply_dew_point_c` to cooling points
/// that carry the dry bulb and RH they need. Wet bulb only where Stull's fit is valid.
pub fn add_psychrometrics(points: &mut [Point]) {
    for p in points.iter_mut().filter(|p| p.measurement == COOLING) {
        for side in ["outside", "supply"] {
            let (Some(t), Some(rh)) = (p.get_f64(&format!("{side}_temp_c")), p.get_f64(&format!("{side}_rh_pct"))) else { continue };
            if let Some(dp) = dew_point_c(t, rh) {
                p.fields.push((format!("{side}_dew_point_c"), FieldValue::F64(dp)));
            }
            if side == "outside" && wet_bulb_in_range(t, rh) {
                p.fields.push(("outside_wet_bulb_c".into(), FieldValue::F64(wet_bulb_c(t, rh))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kilowatch_model::Timestamp;

    #[test]
    fn cooling_points_gain_dew_point_and_wet_bulb() {
        let mut pts = vec![
            Point::new("cooling", Timestamp::from_secs(0)).field("outside_temp_c", 20.0).field("outside_rh_pct", 50.0).field("supply_temp_c", 22.0),
            Point::new("meter", Timestamp::from_secs(0)).field("power_w", 1.0),
        ];
        add_psychrometrics(&mut pts);
        assert!((pts[0].get_f64("outside_wet_bulb_c").expect("wb") - 13.7).abs() < 0.05);
        assert!((pts[0].get_f64("outside_dew_point_c").expect("dp") - 9.3).abs() < 0.05);
        assert_eq!(pts[0].get("supply_dew_point_c"), None, "no supply RH, no dew point");
        assert_eq!(pts[1].fields.len(), 1);
    }
}
