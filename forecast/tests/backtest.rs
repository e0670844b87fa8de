//! The forecast beats persistence on the simulated site, and following the advice in a heat
//! wave saves water and CO2 on the simulator's ground truth. (The full year and the figures:
//! `cargo run -p kilowatch-forecast --example backtest`.)

mod support;

use kilowatch_forecast::advice::{Request, Weight, advise};
use kilowatch_model::Timestamp;
use kilowatch_sim::{HeatWave, Scenario};
use support::simsite::{DAY, HOUR, SimSite, day_ahead};

const HISTORY_DAYS: i64 = 28;

#[test]
fn summer_day_ahead_beats_persistence() {
    // 2025-05-01 + 28 days of history, then 40 days scored.
    let start = 1_746_057_600;
    let s = SimSite::run(start, HISTORY_DAYS + 42, Scenario::none());
    let (mp, pp, mw, pw, n) = day_ahead(&s, HISTORY_DAYS, 40);
    assert_eq!(n, 40);
    assert!(mp < pp, "PUE MAE {mp} vs persistence {pp}");
    assert!(mw < pw, "WUE MAE {mw} vs persistence {pw}");
}

#[test]
fn following_the_advice_in_a_heat_wave_saves_water_and_co2() {
    let wave = 1_752_451_200; // 2025-07-14
    let hw = HeatWave { start: Timestamp::from_secs(wave), ramp_s: 12.0 * 3600.0, hold_s: 5.0 * DAY as f64, delta_c: 8.0, dew_delta_c: 4.0 };
    let s = SimSite::run(wave - (HISTORY_DAYS + 1) * DAY, HISTORY_DAYS + 1 + 7 + 3, Scenario { heat_wave: Some(hw), cooling_failure: None });
    let req = Request { gpus: 64, hours: 6, within_h: 42, weight: Weight::Balanced, kw_per_gpu: 1.275 };
    let (mut now, mut adv) = ((0.0, 0.0), (0.0, 0.0));
    for d in 0..7 {
        let issue = wave + d * DAY + 6 * HOUR;
        let a = advise(&s.forecast_at(issue, HISTORY_DAYS), &req, chrono_tz::Europe::Paris);
        let best = a.best.first().unwrap_or_else(|| panic!("day {d}: {:?}", a.refused));
        let n = s.job_truth(issue, 6, 64.0 * 1.275);
        let b = s.job_truth(best.start_s, 6, 64.0 * 1.275);
        now = (now.0 + n.1, now.1 + n.2);
        adv = (adv.0 + b.1, adv.1 + b.2);
    }
    assert!(adv.0 < now.0 * 0.9, "water {} L advised vs {} L now", adv.0, now.0);
    assert!(adv.1 < now.1, "CO2 {} kg advised vs {} kg now", adv.1, now.1);
}
