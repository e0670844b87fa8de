//! Backtest of the forecast over several simulated years and seeds, against persistence and
//! climatology, with bootstrap intervals and the advice's decisions; then the heat-wave week.
//!
//!     cargo run --release -p kilowatch-forecast --example backtest -- \
//!         [--years 2023-2025] [--seeds 3] [--days 365] [--resamples 1000] [--block-days 7]
//!
//! For each year and each seed 1..=N, the simulated site runs from 28 days before 1 January;
//! each day is forecast at 00:00 UTC by the model refitted on the previous 28 days, by
//! persistence (tomorrow = today) and by climatology (the mean of the previous 28 days of the
//! same simulated history). Each morning at 06:00 UTC a 64-GPU 6-hour job asks for advice
//! (start within 42 h); the advised start is read on the ground truth against the best start
//! in hindsight (regret) and against starting at once (saved). Intervals: 95 %, a moving-block
//! bootstrap over the pooled days with a fixed seed, so the output is the same on every run.

#[path = "../tests/support/scores.rs"]
mod scores;
#[path = "../tests/support/simsite.rs"]
mod simsite;

use kilowatch_forecast::advice::{Request, Weight, advise};
use kilowatch_model::Timestamp;
use kilowatch_sim::{HeatWave, Scenario};
use scores::{Bootstrap, CLIMATOLOGY, DayErrors, Decision, FORECASTERS, Interval, MODEL, PERSISTENCE, day_errors, decisions};
use simsite::{DAY, HOUR, SimSite};

const HISTORY_DAYS: i64 = 28;
const WEIGHTS: [Weight; 3] = [Weight::Balanced, Weight::Water, Weight::Co2];

struct Options {
    years: Vec<i32>,
    seeds: u64,
    days: i64,
    boot: Bootstrap,
}

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\nusage: backtest [--years 2023-2025|2024] [--seeds N] [--days D] [--resamples R] [--block-days B]");
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options { years: vec![2025], seeds: 1, days: 365, boot: Bootstrap::default() };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| v.parse::<i64>().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")));
        match flag.as_str() {
            "--years" => {
                let (a, b) = value.split_once('-').unwrap_or((&value, &value));
                o.years = (num(a) as i32..=num(b) as i32).collect();
            }
            "--seeds" => o.seeds = num(&value).max(1) as u64,
            "--days" => o.days = num(&value).clamp(1, 365),
            "--resamples" => o.boot.resamples = num(&value).max(1) as usize,
            "--block-days" => o.boot.block_days = num(&value).max(1) as usize,
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    o
}

fn year_start(year: i32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(year, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map_or_else(|| usage(&format!("bad year {year}")), |d| d.and_utc().timestamp())
}

/// One simulated history: its scored days and, per weight, its decisions.
struct Run {
    errors: Vec<DayErrors>,
    picks: Vec<Vec<Decision>>,
}

fn run(year: i32, seed: u64, days: i64) -> Run {
    let s = SimSite::run_seeded(year_start(year) - HISTORY_DAYS * DAY, HISTORY_DAYS + days + 3, Scenario::none(), seed);
    let picks = WEIGHTS
        .iter()
        .map(|&weight| {
            let req = Request { gpus: 64, hours: 6, within_h: 42, weight, kw_per_gpu: 1.275 };
            decisions(&s, HISTORY_DAYS, days, 6, &req, chrono_tz::Europe::Paris)
        })
        .collect();
    Run { errors: day_errors(&s, HISTORY_DAYS, days), picks }
}

fn fmt(i: &Interval, digits: usize) -> String {
    format!("{:.d$} [{:.d$}, {:.d$}]", i.mean, i.low, i.high, d = digits)
}

fn main() {
    let o = options();
    let t0 = std::time::Instant::now();
    let runs: Vec<Run> = std::thread::scope(|sc| {
        let handles: Vec<_> = o.years.iter().flat_map(|&y| (1..=o.seeds).map(move |seed| (y, seed))).map(|(y, seed)| sc.spawn(move || run(y, seed, o.days))).collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let errors: Vec<DayErrors> = runs.iter().flat_map(|r| r.errors.iter().copied()).collect();
    eprintln!("{} runs in {:.1} s", runs.len(), t0.elapsed().as_secs_f64());
    println!(
        "day-ahead backtest: years {:?} × seeds 1..={}, {} days each from 1 January, {} scored days; 95 % intervals from {} resamples of {}-day blocks",
        o.years,
        o.seeds,
        o.days,
        errors.len(),
        o.boot.resamples,
        o.boot.block_days
    );
    println!("| MAE | {} | {} | {} | model − persistence | model − climatology |", FORECASTERS[MODEL], FORECASTERS[PERSISTENCE], FORECASTERS[CLIMATOLOGY]);
    println!("|---|---|---|---|---|---|");
    for (name, pick, digits) in [("daily PUE", 0, 4), ("daily WUE (L/kWh)", 1, 3)] {
        let get = |d: &DayErrors, k: usize| if pick == 0 { d.pue[k] } else { d.wue[k] };
        let col = |f: &dyn Fn(&DayErrors) -> f64| o.boot.interval(&errors.iter().map(f).collect::<Vec<_>>());
        let cells: Vec<String> = (0..3).map(|k| fmt(&col(&|d| get(d, k)), digits)).collect();
        let diffs: Vec<String> = [PERSISTENCE, CLIMATOLOGY].iter().map(|&b| fmt(&col(&|d| get(d, MODEL) - get(d, b)), digits)).collect();
        println!("| {name} | {} | {} |", cells.join(" | "), diffs.join(" | "));
    }
    by_quarter(&errors, &o.boot);

    println!("\nadvice, 64 GPUs × 6 h within 42 h, asked daily at 06:00 UTC, per job (mean [95 % interval]):");
    println!("| weight | jobs | regret kWh | regret water L | regret CO2 kg | saved water L | saved CO2 kg | at once: water L, CO2 kg |");
    println!("|---|---|---|---|---|---|---|---|");
    for (w, weight) in WEIGHTS.iter().enumerate() {
        let picks: Vec<Decision> = runs.iter().flat_map(|r| r.picks[w].iter().copied()).collect();
        let col = |f: &dyn Fn(&Decision) -> f64, digits| fmt(&o.boot.interval(&picks.iter().map(f).collect::<Vec<_>>()), digits);
        let at_once = format!("{:.0}, {:.1}", mean(&picks, |p| p.at_once[1]), mean(&picks, |p| p.at_once[2]));
        println!(
            "| {weight:?} | {} | {} | {} | {} | {} | {} | {} |",
            picks.len(),
            col(&|p| p.regret[0], 1),
            col(&|p| p.regret[1], 0),
            col(&|p| p.regret[2], 2),
            col(&|p| p.saved[1], 0),
            col(&|p| p.saved[2], 2),
            at_once
        );
    }

    heat_wave();
}

fn mean(picks: &[Decision], f: impl Fn(&Decision) -> f64) -> f64 {
    picks.iter().map(f).sum::<f64>() / picks.len().max(1) as f64
}

/// The model's error against the baselines by quarter of the year: where it does not win.
fn by_quarter(errors: &[DayErrors], boot: &Bootstrap) {
    use chrono::Datelike;
    println!("\nmodel − baseline by quarter (MAE difference, negative is the model better):");
    println!("| quarter | days | PUE − persistence | PUE − climatology | WUE − persistence | WUE − climatology |");
    println!("|---|---|---|---|---|---|");
    for q in 0..4 {
        let days: Vec<DayErrors> = errors.iter().copied().filter(|d| chrono::DateTime::from_timestamp(d.day_s, 0).is_some_and(|t| t.month0() / 3 == q)).collect();
        let diff = |f: &dyn Fn(&DayErrors) -> f64, digits| fmt(&boot.interval(&days.iter().map(f).collect::<Vec<_>>()), digits);
        println!(
            "| Q{} | {} | {} | {} | {} | {} |",
            q + 1,
            days.len(),
            diff(&|d| d.pue[MODEL] - d.pue[PERSISTENCE], 4),
            diff(&|d| d.pue[MODEL] - d.pue[CLIMATOLOGY], 4),
            diff(&|d| d.wue[MODEL] - d.wue[PERSISTENCE], 3),
            diff(&|d| d.wue[MODEL] - d.wue[CLIMATOLOGY], 3)
        );
    }
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
    println!("\nheat-wave week from 2025-07-14 (+8 °C, dew point +4 °C), 64 GPUs × 6 h, advice asked daily at 08:00 Paris:");
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
