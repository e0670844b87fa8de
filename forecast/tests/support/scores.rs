//! What the backtests score on a simulated site: the day-ahead error of the model and of two
//! baselines, the decisions the advice takes against the best start in hindsight, and bootstrap
//! intervals over days. Shared by `examples/backtest.rs` and `tests/backtest.rs`.

#![allow(dead_code)]

use super::simsite::{DAY, HOUR, SimSite};
use kilowatch_forecast::advice::{Request, advise};

/// Who forecasts a day: the model, persistence (tomorrow = today) and climatology (the mean of
/// the daily PUE, or WUE, of the previous `history_days` days of the same simulated history:
/// each run is one history, so there are no earlier years to average).
pub const MODEL: usize = 0;
pub const PERSISTENCE: usize = 1;
pub const CLIMATOLOGY: usize = 2;
pub const FORECASTERS: [&str; 3] = ["model", "persistence", "climatology"];

/// The absolute errors of one scored day, indexed by [`MODEL`], [`PERSISTENCE`], [`CLIMATOLOGY`].
/// The three forecasters are scored on the same days by construction: a day the model cannot
/// forecast is dropped for all three.
#[derive(Debug, Clone, Copy)]
pub struct DayErrors {
    pub day_s: i64,
    pub pue: [f64; 3],
    pub wue: [f64; 3],
}

/// Day-ahead errors over `days` after `history_days` of warm-up: the daily PUE and WUE forecast
/// issued at 00:00 UTC for that day (model refitted on the previous `history_days`), against the
/// simulator's ground truth.
pub fn day_errors(s: &SimSite, history_days: i64, days: i64) -> Vec<DayErrors> {
    let mut out = Vec::with_capacity(days as usize);
    for d in history_days..history_days + days {
        let day_s = s.start_s() + d * DAY;
        let f = s.forecast_at(day_s, history_days);
        if f.hours.len() < 24 {
            continue;
        }
        let model_pue = f.hours[..24].iter().map(|h| h.pue.value).sum::<f64>() / 24.0;
        let model_wue = f.hours[..24].iter().map(|h| h.wue_l_per_kwh.map_or(0.0, |b| b.value)).sum::<f64>() / 24.0;
        let (pers_pue, pers_wue) = s.daily(day_s - DAY);
        let past: Vec<(f64, f64)> = (1..=history_days).map(|k| s.daily(day_s - k * DAY)).collect();
        let clim_pue = past.iter().map(|p| p.0).sum::<f64>() / past.len() as f64;
        let clim_wue = past.iter().map(|p| p.1).sum::<f64>() / past.len() as f64;
        let (pue, wue) = s.daily(day_s);
        out.push(DayErrors { day_s, pue: [(model_pue - pue).abs(), (pers_pue - pue).abs(), (clim_pue - pue).abs()], wue: [(model_wue - wue).abs(), (pers_wue - wue).abs(), (clim_wue - wue).abs()] });
    }
    out
}

/// One morning's advice measured on the ground truth.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub day_s: i64,
    /// Facility kWh, water L and CO2 kg, in this order.
    /// Advised start minus the best start in hindsight among the same candidate starts, per
    /// quantity (each against its own best start): never negative.
    pub regret: [f64; 3],
    /// Starting at once minus the advised start, per quantity: positive is saved.
    pub saved: [f64; 3],
    /// What starting at once costs, per quantity (the scale of the two above).
    pub at_once: [f64; 3],
}

/// Each day at `issue_hour_utc`, asks the advice for `req` and reads the advised start, every
/// start the advice could have chosen (each hour up to `within_h`) and starting at once on the
/// simulator's ground truth. Days the advice refuses are skipped. The site must run
/// `within_h + hours` past the last issue.
pub fn decisions(s: &SimSite, history_days: i64, days: i64, issue_hour_utc: i64, req: &Request, tz: chrono_tz::Tz) -> Vec<Decision> {
    let it_kw = f64::from(req.gpus) * req.kw_per_gpu;
    let hours = i64::from(req.hours);
    let mut out = Vec::with_capacity(days as usize);
    for d in history_days..history_days + days {
        let issue = s.start_s() + d * DAY + issue_hour_utc * HOUR;
        let f = s.forecast_at(issue, history_days);
        let a = advise(&f, req, tz);
        let Some(best) = a.best.first() else { continue };
        let truth = |start: i64| -> [f64; 3] {
            let (kwh, water, co2) = s.job_truth(start, hours, it_kw);
            [kwh, water, co2]
        };
        let last_start = i64::from(req.within_h).min(f.hours.len() as i64 - hours);
        let candidates: Vec<[f64; 3]> = (0..=last_start).map(|k| truth(issue + k * HOUR)).collect();
        let advised = truth(best.start_s);
        let now = truth(issue);
        let hindsight = |q: usize| candidates.iter().map(|c| c[q]).fold(f64::INFINITY, f64::min);
        out.push(Decision { day_s: issue, regret: [0, 1, 2].map(|q| advised[q] - hindsight(q)), saved: [0, 1, 2].map(|q| now[q] - advised[q]), at_once: now });
    }
    out
}

/// SplitMix64: a small deterministic generator, so the intervals are the same on every run
/// without a dependency.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is below 1e-15 for the sizes used here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A mean and its 95 % percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// How the days are resampled.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub resamples: usize,
    /// Days drawn together (a moving-block bootstrap): consecutive days' errors share the
    /// weather, so drawing single days would make the interval too narrow. 1 draws single days.
    pub block_days: usize,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap { resamples: 1000, block_days: 7, seed: 29_016 }
    }
}

impl Bootstrap {
    /// The mean of `x` (one value per day, in day order) and its 95 % interval. Series of the
    /// same length drawn with the same settings use the same resampled days, so the interval of
    /// a difference is taken on the per-day difference.
    pub fn interval(&self, x: &[f64]) -> Interval {
        let n = x.len();
        let mean = x.iter().sum::<f64>() / n.max(1) as f64;
        if n == 0 {
            return Interval { mean, low: mean, high: mean };
        }
        let block = self.block_days.clamp(1, n);
        let mut rng = SplitMix64::new(self.seed);
        let mut means: Vec<f64> = (0..self.resamples.max(1))
            .map(|_| {
                let (mut sum, mut k) = (0.0, 0);
                while k < n {
                    let from = rng.below(n - block + 1);
                    for v in &x[from..(from + block).min(from + n - k)] {
                        sum += v;
                        k += 1;
                    }
                }
                sum / n as f64
            })
            .collect();
        means.sort_by(f64::total_cmp);
        let at = |p: f64| means[((p * means.len() as f64) as usize).min(means.len() - 1)];
        Interval { mean, low: at(0.025), high: at(0.975) }
    }
}
