//! The site model's switch points and its hot tail, through the crate's public API (issue 29
//! item 15): a plant whose modes switch elsewhere than the simulator's gets its own switch
//! points from its cooling-mode history (the constants, said so, without one), and beyond the
//! hottest hour of the history the forecast continues the last segment's slope.

use kilowatch_forecast::model::{Conditions, CoolingMode, DEFAULT_EVAPORATIVE_ABOVE_C, DEFAULT_FREE_ABOVE_C, FitOptions, HourRecord, ModelState, fit};

/// A plant that switches to free cooling at 18 °C and wets its media at 28 °C (not the
/// simulator's 23 and 25), with PUE rising 0.02 per kelvin above 28 °C: the switch points are
/// learnt from its mode history; without that history the constants are used, and said so.
fn other_plant(hours: i64, with_modes: bool) -> Vec<HourRecord> {
    (0..hours)
        .map(|h| {
            let t = 5.0 + 29.0 * (((h as f64) * 0.37).sin() * 0.5 + 0.5);
            let wb = t - 5.0;
            let mode = if t < 18.0 {
                CoolingMode::Mix
            } else if t < 28.0 {
                CoolingMode::Free
            } else {
                CoolingMode::Evaporative
            };
            let pue = 1.1 + 0.02 * (t - 28.0).max(0.0);
            HourRecord { t: h * 3600, it_kwh: 1000.0, facility_kwh: 1000.0 * pue, water_l: None, dry_bulb_c: t, wet_bulb_c: wb, mode: with_modes.then_some(mode) }
        })
        .collect()
}

#[test]
fn switch_points_come_from_the_sites_mode_history() {
    let ModelState::Ready(m) = fit(&other_plant(30 * 24, true), &FitOptions::default()) else { panic!("enough history") };
    let sp = &m.report.switch_points;
    assert!(sp.free_learnt && sp.evaporative_learnt && sp.note.is_none(), "{sp:?}");
    assert!((sp.free_above_c - 18.0).abs() < 0.3, "{sp:?}");
    assert!((sp.evaporative_above_c - 28.0).abs() < 0.3, "{sp:?}");
    assert!(m.report.features.iter().any(|f| f == &format!("max(0, dry_bulb_c - {})", sp.evaporative_above_c)), "{:?}", m.report.features);
    let ModelState::Ready(m) = fit(&other_plant(30 * 24, false), &FitOptions::default()) else { panic!("enough history") };
    let sp = &m.report.switch_points;
    assert_eq!((sp.free_above_c, sp.evaporative_above_c, sp.free_learnt), (DEFAULT_FREE_ABOVE_C, DEFAULT_EVAPORATIVE_ABOVE_C, false));
    assert!(sp.note.as_deref().is_some_and(|n| n.contains("simulated plant's constants")), "{sp:?}");
}

/// History up to 34 °C of a plant whose PUE rises 0.02 per kelvin above 28 °C, its few hours
/// above 33.3 °C reading 0.015 low (what fitting the simulator's hot tail met): at 38 °C the
/// forecast continues the slope instead of going flat or falling with those hours.
#[test]
fn beyond_the_hottest_hour_the_last_slope_continues() {
    let mut rs = other_plant(30 * 24, true);
    for r in rs.iter_mut().filter(|r| r.dry_bulb_c > 33.3) {
        r.facility_kwh -= 15.0;
    }
    let ModelState::Ready(m) = fit(&rs, &FitOptions::default()) else { panic!("enough history") };
    assert!((m.report.hottest_c - 34.0).abs() < 0.1, "{}", m.report.hottest_c);
    let at = |t: f64| m.predict(&Conditions { dry_bulb_c: t, wet_bulb_c: t - 5.0, it_kw: 1000.0 }).pue;
    let want = |t: f64| 1.1 + 0.02 * (t - 28.0);
    assert!((at(33.0) - want(33.0)).abs() < 0.005, "inside the history: {}", at(33.0));
    // Beyond 34 °C the slope is most of the plant's 0.02 per kelvin (0.0145 measured); the
    // fitted hinges alone, read past the history as before, give 0.003: nearly flat.
    let slope = (at(38.0) - at(34.0)) / 4.0;
    assert!((0.0125..=0.025).contains(&slope), "from 34 to 38 °C: {} to {}, {slope} per K", at(34.0), at(38.0));
    assert!(at(40.0) > at(38.0) && at(38.0) > at(36.0), "still rising");
}
