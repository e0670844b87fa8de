//! Backtest of the forecast on a simulated year, and the heat-wave week's advice.
//!
//!     cargo run -p kilowatch-forecast --example backtest [-- DAYS]
//!
//! Prints the day-ahead mean absolute error of daily PUE and WUE against persistence (tomorrow
//! = today), then, for a humid heat-wave week, what following the advice for a 64-GPU 6-hour
//! job saves against starting at once, on the simulator's ground truth.

#[path = "../tests/support/simsite.rs"]
mod simsite;

use kilowatch_forecast::advice::{Request, Weight, advise};
use kilowatch_model::Timestamp;
use kilowatch_sim::{HeatWave, Scenario};
use simsite::{DAY, HOUR, SimSite, day_ahead};

/// 2025-01-01T00:00:00Z
const YEAR_START: i64 = 1_735_689_600;
const HISTORY_DAYS: i64 = 28;

fn main() {
    let days: i64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(365);
    let t0 = std::time::Instant::now();
    let s = SimSite::run(YEAR_START - HISTORY_DAYS * DAY, HISTORY_DAYS + days + 2, Scenario::none());
    eprintln!("simulated {} hours in {:.1} s", s.hours.len(), t0.elapsed().as_secs_f64());
    let (mp, pp, mw, pw, n) = day_ahead(&s, HISTORY_DAYS, days);
    println!("day-ahead backtest, {n} days from 2025-01-01 (seed 5, model refitted daily on the previous {HISTORY_DAYS} days):");
    println!("  daily PUE MAE: model {mp:.4}, persistence {pp:.4} ({:.0} % lower)", 100.0 * (1.0 - mp / pp));
    println!("  daily WUE MAE: model {mw:.4} L/kWh, persistence {pw:.4} L/kWh ({:.0} % lower)", 100.0 * (1.0 - mw / pw));

    heat_wave();
}

/// A humid heat wave over the week of 14 July 2025: +8 °C dry bulb and +4 °C dew point for five
/// days, with 12-hour ramps. Each morning at 08:00 Paris time a 64-GPU 6-hour job asks for
/// advice; the cost of the advised start and of starting at once is read on the ground truth.
fn heat_wave() {
    let wave_start = 1_752_451_200; // 2025-07-14T00:00:00Z
    let hw = HeatWave { start: Timestamp::from_secs(wave_start), ramp_s: 12.0 * 3600.0, hold_s: 5.0 * DAY as f64, delta_c: 8.0, dew_delta_c: 4.0 };
    let scenario = Scenario { heat_wave: Some(hw), cooling_failure: None };
    let sim_start = wave_start - (HISTORY_DAYS + 1) * DAY;
    let s = SimSite::run(sim_start, HISTORY_DAYS + 1 + 7 + 3, scenario);
    println!("heat-wave week from 2025-07-14 (+8 °C, dew point +4 °C), 64 GPUs × 6 h, advice asked daily at 08:00 Paris:");
    for weight in [Weight::Balanced, Weight::Water, Weight::Co2, Weight::Energy] {
        let req = Request { gpus: 64, hours: 6, within_h: 42, weight, kw_per_gpu: 1.275 };
        let it_kw = 64.0 * 1.275;
        let (mut now_t, mut adv_t) = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0));
        for d in 0..7 {
            let issue = wave_start + d * DAY + 6 * HOUR;
            let f = s.forecast_at(issue, HISTORY_DAYS);
            let a = advise(&f, &req, chrono_tz::Europe::Paris);
            let Some(best) = a.best.first() else {
                println!("  day {d}: no advice ({:?})", a.refused);
                continue;
            };
            let n = s.job_truth(issue, 6, it_kw);
            let b = s.job_truth(best.start_s, 6, it_kw);
            now_t = (now_t.0 + n.0, now_t.1 + n.1, now_t.2 + n.2);
            adv_t = (adv_t.0 + b.0, adv_t.1 + b.1, adv_t.2 + b.2);
        }
        println!(
            "  weight {weight:?}: facility {:.0} → {:.0} kWh ({:+.1} %), water {:.0} → {:.0} L ({:+.1} %), CO2 {:.1} → {:.1} kg ({:+.1} %)",
            now_t.0,
            adv_t.0,
            100.0 * (adv_t.0 / now_t.0 - 1.0),
            now_t.1,
            adv_t.1,
            100.0 * (adv_t.1 / now_t.1 - 1.0),
            now_t.2,
            adv_t.2,
            100.0 * (adv_t.2 / now_t.2 - 1.0)
        );
    }
}
