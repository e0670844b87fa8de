//! The simulated site as the forecast's backtests see it: its hourly ledger from the
//! simulator's ground truth (meters integrated every 15 minutes), the air in each hour, and
//! forecasts issued from the simulator's weather and grid curves. Shared by
//! `examples/backtest.rs` and `tests/backtest.rs`.

#![allow(dead_code)]

use kilowatch_forecast::forecast::{self, Inputs};
use kilowatch_forecast::inputs::{Air, Series};
use kilowatch_forecast::model::{CoolingMode, FitOptions, HourRecord, ModelState, fit};
use kilowatch_model::Timestamp;
use kilowatch_sim::{Emit, Scenario, SimConfig, Site};

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;
/// Sub-steps per hour for the meters' integration.
const STEPS: i64 = 4;

/// One hour of ground truth: the ledger and the grid intensity.
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    pub rec: HourRecord,
    pub grid_g_per_kwh: f64,
}

pub struct SimSite {
    pub site: Site,
    pub hours: Vec<Truth>,
}

/// The simulator's default seed, the one the single-run backtests use.
pub const DEFAULT_SEED: u64 = 5;

pub fn config(start_s: i64, scenario: Scenario, seed: u64) -> SimConfig {
    SimConfig { seed, start: Timestamp::from_secs(start_s), scenario, emit: Emit { gpus: false, nodes: false, facility: true }, ..SimConfig::default() }
}

/// The mode the plant ran most of the samples of an hour in (what the `cooling` series' mode
/// field says hour by hour).
pub fn majority(modes: &[&str]) -> Option<CoolingMode> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for m in modes {
        match counts.iter_mut().find(|(n, _)| n == m) {
            Some(c) => c.1 += 1,
            None => counts.push((m, 1)),
        }
    }
    counts.into_iter().max_by_key(|c| c.1).and_then(|(m, _)| CoolingMode::parse(m))
}

impl SimSite {
    /// Runs the site of the default seed from `start_s` for `days`, keeping each hour's truth.
    pub fn run(start_s: i64, days: i64, scenario: Scenario) -> SimSite {
        SimSite::run_seeded(start_s, days, scenario, DEFAULT_SEED)
    }

    /// Runs the site of `seed` (its own weather, grid and jobs) from `start_s` for `days`.
    pub fn run_seeded(start_s: i64, days: i64, scenario: Scenario, seed: u64) -> SimSite {
        let mut site = Site::new(config(start_s, scenario, seed));
        let mut hours = Vec::with_capacity((days * 24) as usize);
        for h in 0..days * 24 {
            let t = start_s + h * HOUR;
            let before = site.truth();
            let (mut db, mut wb, mut grid) = (0.0, 0.0, 0.0);
            let mut modes: Vec<&'static str> = Vec::with_capacity(STEPS as usize);
            for k in 1..=STEPS {
                let mid = Timestamp::from_secs(t + (2 * k - 1) * HOUR / (2 * STEPS));
                let a = site.air_at(mid);
                db += a.temp_c / STEPS as f64;
                wb += a.wet_bulb_c / STEPS as f64;
                grid += site.grid_intensity(mid) / STEPS as f64;
                site.advance_to(Timestamp::from_secs(t + k * HOUR / STEPS));
                modes.push(site.cooling_mode().as_str());
            }
            let after = site.truth();
            let rec = HourRecord {
                t,
                it_kwh: after.it_kwh - before.it_kwh,
                facility_kwh: after.facility_kwh - before.facility_kwh,
                water_l: Some((after.water_m3 - before.water_m3) * 1000.0),
                dry_bulb_c: db,
                wet_bulb_c: wb,
                mode: majority(&modes),
            };
            hours.push(Truth { rec, grid_g_per_kwh: grid });
        }
        SimSite { site, hours }
    }

    pub fn start_s(&self) -> i64 {
        self.hours.first().map_or(0, |h| h.rec.t)
    }

    /// Index of the hour starting at `t`.
    pub fn index(&self, t: i64) -> usize {
        ((t - self.start_s()) / HOUR) as usize
    }

    /// The model fitted at `issue_s` on the `history_days` before it (the daily refit).
    pub fn fit_at(&self, issue_s: i64, history_days: i64) -> ModelState {
        let i = self.index(issue_s);
        let from = i.saturating_sub((history_days * 24) as usize);
        let recs: Vec<HourRecord> = self.hours[from..i].iter().map(|h| h.rec).collect();
        fit(&recs, &FitOptions::default())
    }

    /// The weather and grid forecasts the simulator issues at `issue_s` for 48 hours.
    pub fn inputs_at(&self, issue_s: i64) -> (Series<Air>, Series<f64>) {
        let issued = Timestamp::from_secs(issue_s);
        let hours: Vec<i64> = (0..forecast::HORIZON_H as i64).map(|k| issue_s + k * HOUR).collect();
        let air = hours
            .iter()
            .map(|&t| {
                let a = self.site.forecast_air(issued, Timestamp::from_secs(t + HOUR / 2));
                (t, Air { dry_bulb_c: a.temp_c, wet_bulb_c: a.wet_bulb_c })
            })
            .collect();
        let grid = hours.iter().map(|&t| (t, self.site.forecast_grid_intensity(issued, Timestamp::from_secs(t + HOUR / 2)))).collect();
        (Series { provider: "sim".into(), issued_s: issue_s, ahead: true, hours: air }, Series { provider: "sim".into(), issued_s: issue_s, ahead: true, hours: grid })
    }

    /// The IT load the forecast assumes at `issue_s`: the last day's mean, kW.
    pub fn it_kw_at(&self, issue_s: i64) -> f64 {
        let i = self.index(issue_s);
        let d = &self.hours[i.saturating_sub(24)..i];
        d.iter().map(|h| h.rec.it_kwh).sum::<f64>() / d.len().max(1) as f64
    }

    pub fn forecast_at(&self, issue_s: i64, history_days: i64) -> forecast::Forecast {
        let model = self.fit_at(issue_s, history_days);
        let (w, c) = self.inputs_at(issue_s);
        forecast::build(&model, &Inputs { site: "dc5", now_s: issue_s, weather: Some(&w), carbon: Some(&c), configured_g_per_kwh: 56.0, it_kw: self.it_kw_at(issue_s), stale_after_h: 12.0 })
    }

    /// Actual daily PUE and WUE of the day starting at `day_s`.
    pub fn daily(&self, day_s: i64) -> (f64, f64) {
        let i = self.index(day_s);
        let d = &self.hours[i..i + 24];
        let it: f64 = d.iter().map(|h| h.rec.it_kwh).sum();
        let fac: f64 = d.iter().map(|h| h.rec.facility_kwh).sum();
        let w: f64 = d.iter().map(|h| h.rec.water_l.unwrap_or(0.0)).sum();
        (fac / it, w / it)
    }

    /// What a job of `it_kw` costs if it runs `hours` from `start_s`, on the ground truth: the
    /// PUE, WUE and grid intensity of the same hours (DOMAIN.md's attribution rule).
    pub fn job_truth(&self, start_s: i64, hours: i64, it_kw: f64) -> (f64, f64, f64) {
        let i = self.index(start_s);
        let (mut fac, mut water, mut co2) = (0.0, 0.0, 0.0);
        for h in &self.hours[i..i + hours as usize] {
            let pue = h.rec.facility_kwh / h.rec.it_kwh;
            let wue = h.rec.water_l.unwrap_or(0.0) / h.rec.it_kwh;
            fac += it_kw * pue;
            water += it_kw * wue;
            co2 += it_kw * pue * h.grid_g_per_kwh / 1000.0;
        }
        (fac, water, co2)
    }
}
