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

/// A pump drawing more than this is circulating water over the media (controls and standby
/// draw stay well below it).
const PUMP_ON_W: f64 = 50.0;

/// The cooling mode of a unit that does not report one, from what it does report: water over
/// the media (a water flow, or the pump running) means evaporative cooling when the outside air
/// is warmer than the supply and humidification when it is colder; without water, supply air
/// clearly warmer than outside means hot return air is mixed in, else it is free cooling.
pub fn infer_mode(outside_c: f64, supply_c: f64, water_on: bool) -> &'static str {
    match (water_on, outside_c >= supply_c) {
        (true, true) => "evaporative",
        (true, false) => "humidify",
        (false, _) if supply_c - outside_c > 1.0 => "mix",
        (false, _) => "free",
    }
}

/// Adds `mode` (and `mode_inferred = true`) to cooling points without one, where the inputs of
/// [`infer_mode`] are present: `water_flow_l_min` if the unit reports it, else `pump_power_w`.
pub fn add_inferred_mode(points: &mut [Point]) {
    for p in points.iter_mut().filter(|p| p.measurement == COOLING && p.get("mode").is_none()) {
        let (Some(o), Some(s)) = (p.get_f64("outside_temp_c"), p.get_f64("supply_temp_c")) else { continue };
        let water = match (p.get_f64("water_flow_l_min"), p.get_f64("pump_power_w")) {
            (Some(f), _) => f > 0.0,
            (None, Some(w)) => w > PUMP_ON_W,
            (None, None) => continue,
        };
        p.fields.push(("mode".into(), FieldValue::Str(infer_mode(o, s, water).into())));
        p.fields.push(("mode_inferred".into(), FieldValue::Bool(true)));
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

#[cfg(test)]
mod mode_tests {
    use super::*;
    use kilowatch_model::Timestamp;

    #[test]
    fn mode_is_inferred_only_where_missing() {
        assert_eq!(infer_mode(34.0, 26.0, true), "evaporative");
        assert_eq!(infer_mode(-5.0, 20.0, true), "humidify");
        assert_eq!(infer_mode(5.0, 20.0, false), "mix");
        assert_eq!(infer_mode(21.0, 21.5, false), "free");
        let t = Timestamp::from_secs(0);
        let mut pts = vec![
            Point::new("cooling", t).field("outside_temp_c", 33.0).field("supply_temp_c", 25.0).field("pump_power_w", 900.0),
            Point::new("cooling", t).field("outside_temp_c", 33.0).field("supply_temp_c", 25.0).field("pump_power_w", 900.0).field("mode", "free"),
        ];
        add_inferred_mode(&mut pts);
        assert_eq!(pts[0].get("mode").and_then(|m| m.as_str()), Some("evaporative"));
        assert_eq!(pts[1].get("mode").and_then(|m| m.as_str()), Some("free"), "a reported mode wins");
        assert_eq!(pts[1].get("mode_inferred"), None);
    }
}
