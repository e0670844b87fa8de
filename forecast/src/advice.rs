//! Advice for flexible work: when a job of N GPUs for H hours should start within the
//! forecast, to use the least facility energy, water or CO2, against starting now.

use std::str::FromStr;

use serde::Serialize;

use crate::forecast::{CarbonBasis, Forecast, rfc3339};

/// What to minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Weight {
    /// Among the starts no worse than now on any of energy, water and CO2 (expected), the one
    /// with the lowest sum of the three relative to starting now.
    #[default]
    Balanced,
    Energy,
    Water,
    Co2,
}

impl FromStr for Weight {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "balanced" => Ok(Weight::Balanced),
            "energy" => Ok(Weight::Energy),
            "water" => Ok(Weight::Water),
            "co2" | "carbon" => Ok(Weight::Co2),
            _ => Err(format!("weight {s:?}: use water, energy, co2 or balanced")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub gpus: u32,
    pub hours: u32,
    /// The job must start within this many hours.
    pub within_h: u32,
    pub weight: Weight,
    /// IT kW per GPU, node share included.
    pub kw_per_gpu: f64,
}

/// What one start time costs, expected (and low–high from the forecast's intervals).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Cost {
    pub facility_kwh: f64,
    pub facility_kwh_low: f64,
    pub facility_kwh_high: f64,
    /// `None` when the site has no water meter.
    pub water_l: Option<f64>,
    pub co2_kg: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StartOption {
    pub start: String,
    pub start_s: i64,
    /// The same instant in the site's time zone, as Slurm's `--begin` reads it.
    pub start_local: String,
    pub in_h: u32,
    pub expected: Cost,
    /// Against starting now: positive is saved.
    pub saves: Savings,
    pub sbatch: String,
    /// Hours of the job whose grid intensity is not a provider's forecast but a repeated daily
    /// profile of recent observations or the configured flat factor (issue 29 item 14).
    pub carbon_not_forecast_h: u32,
    /// Says so in words where that is any hour: the CO2 figure then rests on an assumption.
    pub caveat: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Savings {
    pub facility_kwh: f64,
    pub water_l: Option<f64>,
    pub co2_kg: f64,
    pub facility_pct: f64,
    pub water_pct: Option<f64>,
    pub co2_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub site: String,
    pub issued: String,
    pub gpus: u32,
    pub hours: u32,
    pub within_h: u32,
    pub weight: Weight,
    /// The job's IT energy, kWh (the same whenever it runs).
    pub it_kwh: f64,
    /// When set, no start time is ranked: the forecast is stale or missing, and this says why.
    pub refused: Option<String>,
    pub now: Option<StartOption>,
    /// Best first; distinct starts at least half the job's length apart.
    pub best: Vec<StartOption>,
    /// What the advice rests on that the reader should know: switch points taken from the
    /// simulated plant's constants rather than the site's history; hours beyond the hottest the
    /// history holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn cost(f: &Forecast, start: usize, hours: usize, it_kw: f64) -> Option<Cost> {
    let window = f.hours.get(start..start + hours)?;
    // Hours must follow each other: a gap in the forecast is not a free hour.
    if window.windows(2).any(|w| w[1].t_s - w[0].t_s != 3600) {
        return None;
    }
    let mut c = Cost { water_l: Some(0.0), ..Cost::default() };
    for h in window {
        c.facility_kwh += it_kw * h.pue.value;
        c.facility_kwh_low += it_kw * h.pue.low;
        c.facility_kwh_high += it_kw * h.pue.high;
        c.water_l = match (c.water_l, h.wue_l_per_kwh) {
            (Some(w), Some(b)) => Some(w + it_kw * b.value),
            _ => None,
        };
        c.co2_kg += it_kw * h.co2_g_per_it_kwh.value / 1000.0;
    }
    Some(c)
}

fn score(c: &Cost, now: &Cost, w: Weight) -> f64 {
    let rel = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    match w {
        Weight::Energy => c.facility_kwh,
        Weight::Water => c.water_l.unwrap_or(c.facility_kwh),
        Weight::Co2 => c.co2_kg,
        Weight::Balanced => rel(c.facility_kwh, now.facility_kwh) + rel(c.co2_kg, now.co2_kg) + rel(c.water_l.unwrap_or(0.0), now.water_l.unwrap_or(0.0)),
    }
}

fn pct(saved: f64, base: f64) -> f64 {
    if base > 0.0 { 100.0 * saved / base } else { 0.0 }
}

/// Ranks start times. `tz` is the site's time zone (Slurm reads `--begin` in local time).
/// What the model's fit says the advice rests on.
fn model_notes(f: &Forecast) -> Vec<String> {
    let crate::model::ModelState::Ready(m) = &f.model else { return Vec::new() };
    let r = &m.report;
    let mut v: Vec<String> = r.switch_points.note.iter().cloned().collect();
    if let Some(h) = f.hours.iter().map(|h| h.dry_bulb_c).max_by(f64::total_cmp).filter(|h| *h > r.hottest_c) {
        v.push(format!("forecast air up to {h:.1} °C is hotter than any hour of the history ({:.1} °C): PUE and WUE there continue the last segment's slope", r.hottest_c));
    }
    v
}

pub fn advise(f: &Forecast, req: &Request, tz: chrono_tz::Tz) -> Advice {
    let it_kw = f64::from(req.gpus) * req.kw_per_gpu;
    let hours = req.hours.max(1) as usize;
    let mut out = Advice {
        site: f.site.clone(),
        issued: f.issued.clone(),
        gpus: req.gpus,
        hours: req.hours,
        within_h: req.within_h,
        weight: req.weight,
        it_kwh: it_kw * hours as f64,
        refused: None,
        now: None,
        best: Vec::new(),
        notes: model_notes(f),
    };
    if let Some(s) = &f.stale {
        out.refused = Some(format!("the forecast is stale, so no start time is advised: {}", s.reasons.join("; ")));
        return out;
    }
    let Some(now) = cost(f, 0, hours, it_kw) else {
        out.refused = Some(format!("the forecast does not cover a {hours}-hour job starting now ({} hours forecast)", f.hours.len()));
        return out;
    };
    let option = |start: usize, c: Cost| {
        let h = &f.hours[start];
        let local = chrono::DateTime::from_timestamp(h.t_s, 0).map(|d| d.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S").to_string()).unwrap_or_default();
        let water_saved = c.water_l.zip(now.water_l).map(|(a, b)| b - a);
        let not_forecast = f.hours.iter().skip(start).take(hours).filter(|h| h.carbon_basis != CarbonBasis::Forecast).count() as u32;
        StartOption {
            carbon_not_forecast_h: not_forecast,
            caveat: (not_forecast > 0)
                .then(|| format!("the grid's CO2 for {not_forecast} of the job's {hours} hours is a repeated daily profile of recent observations or the configured factor, not a forecast")),
            start: rfc3339(h.t_s),
            start_s: h.t_s,
            // Slurm reads `--begin` in the controller's local time, which should be the site's.
            sbatch: format!("sbatch --begin={local} --gpus={} job.sh", req.gpus),
            start_local: local,
            in_h: start as u32,
            expected: c,
            saves: Savings {
                facility_kwh: now.facility_kwh - c.facility_kwh,
                water_l: water_saved,
                co2_kg: now.co2_kg - c.co2_kg,
                facility_pct: pct(now.facility_kwh - c.facility_kwh, now.facility_kwh),
                water_pct: water_saved.zip(now.water_l).map(|(s, b)| pct(s, b)),
                co2_pct: pct(now.co2_kg - c.co2_kg, now.co2_kg),
            },
        }
    };
    let last_start = (req.within_h as usize).min(f.hours.len().saturating_sub(hours));
    let no_worse = |c: &Cost| c.facility_kwh <= now.facility_kwh && c.co2_kg <= now.co2_kg && c.water_l.zip(now.water_l).is_none_or(|(a, b)| a <= b);
    let mut ranked: Vec<(f64, usize, Cost)> =
        (0..=last_start).filter_map(|s| cost(f, s, hours, it_kw).map(|c| (score(&c, &now, req.weight), s, c))).filter(|(_, _, c)| req.weight != Weight::Balanced || no_worse(c)).collect();
    // Ties go to the earlier start: no reason to wait for nothing.
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let apart = hours.div_ceil(2).max(1);
    for (_, s, c) in ranked {
        if out.best.len() == 3 {
            break;
        }
        // Starting now is listed as an option only when it is the best: it is `now` already.
        if (s > 0 || out.best.is_empty()) && out.best.iter().all(|o| (o.in_h as usize).abs_diff(s) >= apart) {
            out.best.push(option(s, c));
        }
    }
    out.now = Some(option(0, now));
    out
}
