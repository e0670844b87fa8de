//! The forecast: 48 hourly values of PUE, WUE and CO2 per IT kWh, with intervals, from the site
//! model, the weather forecast, the grid intensity and the expected IT load.

use serde::Serialize;

use crate::inputs::{Air, Series};
use crate::model::{Conditions, ModelState};

/// Hours forecast ahead.
pub const HORIZON_H: usize = 48;

/// A value with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Band {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// Where an hour's grid intensity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CarbonBasis {
    /// The provider's forecast for that hour.
    Forecast,
    /// The same hour of day in the provider's recent observations (éCO2mix, ENTSO-E actuals).
    DailyProfile,
    /// The configured `[carbon]` factor, flat.
    Configured,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastHour {
    /// Start of the hour, Unix s and RFC 3339 (UTC).
    pub t_s: i64,
    pub t: String,
    pub lead_h: usize,
    pub dry_bulb_c: f64,
    pub wet_bulb_c: f64,
    /// The IT load assumed, kW (the last day's mean).
    pub it_kw: f64,
    pub pue: Band,
    /// Facility kWh per IT kWh: the PUE, as the multiplier a job's IT energy takes.
    pub facility_kwh_per_it_kwh: Band,
    /// `None` where the site has no water meter.
    pub wue_l_per_kwh: Option<Band>,
    pub litres_per_it_kwh: Option<Band>,
    pub grid_g_per_kwh: f64,
    pub carbon_basis: CarbonBasis,
    pub co2_g_per_it_kwh: Band,
}

/// Why a forecast should not be acted on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Staleness {
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub site: String,
    pub issued_s: i64,
    pub issued: String,
    /// `None` when fresh; else what is stale (advice then refuses to rank start times).
    pub stale: Option<Staleness>,
    pub model: ModelState,
    pub weather_provider: Option<String>,
    pub weather_issued: Option<String>,
    pub carbon_provider: Option<String>,
    pub carbon_issued: Option<String>,
    /// What the grid intensity counts (issue 29 item 14): without a carbon series, the
    /// configured factor's.
    pub carbon_series_basis: SeriesBasis,
    pub hours: Vec<ForecastHour>,
    /// How the forecasts kept over the model's history did, when the caller scored them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
}

/// What a grid-intensity series counts: two series of different bases differ by tens of percent
/// for the same grid, so each is labelled (docs/forecast.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeriesBasis {
    /// `life-cycle` (upstream emissions of fuels and plants included) or `direct` (combustion).
    pub emissions: &'static str,
    /// `consumption` (imports traced, what the zone's loads draw) or `production` (the zone's plants).
    pub accounting: &'static str,
    /// `average` (all generation) or `marginal`.
    pub kind: &'static str,
}

const UNKNOWN: &str = "unknown";

impl SeriesBasis {
    /// Each adapter's basis, from its provider's documentation; a series written by a script
    /// (`forecast` points) or the configured factor is `unknown` unless the provider is known.
    pub fn of(provider: Option<&str>) -> SeriesBasis {
        match provider {
            // Electricity Maps' v3 default: `emissionFactorType=lifecycle`, flow-traced consumption.
            Some("electricity-maps") => SeriesBasis { emissions: "life-cycle", accounting: "consumption", kind: "average" },
            // éCO2mix's `taux_co2`: direct emissions of French production.
            Some("rte-eco2mix") => SeriesBasis { emissions: "direct", accounting: "production", kind: "average" },
            // The generation mix per type weighted by IPCC life-cycle medians.
            Some("entsoe") => SeriesBasis { emissions: "life-cycle", accounting: "production", kind: "average" },
            _ => SeriesBasis { emissions: UNKNOWN, accounting: UNKNOWN, kind: UNKNOWN },
        }
    }
}

/// Everything [`build`] needs besides the model.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub site: &'a str,
    pub now_s: i64,
    pub weather: Option<&'a Series<Air>>,
    pub carbon: Option<&'a Series<f64>>,
    /// The configured grid factor, g/kWh, for hours no carbon series speaks for.
    pub configured_g_per_kwh: f64,
    /// Expected IT load, kW.
    pub it_kw: f64,
    pub stale_after_h: f64,
}

pub fn rfc3339(t_s: i64) -> String {
    chrono::DateTime::from_timestamp(t_s, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

/// The interval widens with lead time: the held-back residuals measure the model's error on
/// observed weather; a forecast's weather error roughly doubles that spread by 48 h (an
/// assumption to calibrate by scoring the kept forecasts).
fn widen(lead_h: usize) -> f64 {
    1.0 + lead_h as f64 / HORIZON_H as f64
}

/// The grid intensity for hour `t`, and its basis.
fn carbon_at(c: Option<&Series<f64>>, t: i64, configured: f64) -> (f64, CarbonBasis) {
    let Some(c) = c else { return (configured, CarbonBasis::Configured) };
    if let Some(v) = c.at(t) {
        return (v, if c.ahead { CarbonBasis::Forecast } else { CarbonBasis::DailyProfile });
    }
    // The same hour of day on the newest days the series holds.
    let same: Vec<f64> = c.hours.iter().rev().filter(|(h, _)| (t - h).rem_euclid(86_400) == 0).take(2).map(|(_, v)| *v).collect();
    if same.is_empty() { (configured, CarbonBasis::Configured) } else { (same.iter().sum::<f64>() / same.len() as f64, CarbonBasis::DailyProfile) }
}

pub fn build(model: &ModelState, inp: &Inputs<'_>) -> Forecast {
    let hour0 = inp.now_s.div_euclid(3600) * 3600;
    let mut reasons = Vec::new();
    let max_age = (inp.stale_after_h * 3600.0) as i64;
    match inp.weather {
        None => reasons.push("no weather forecast: configure [forecast.weather] or write `forecast` points (input=weather)".to_string()),
        Some(w) if inp.now_s - w.issued_s > max_age => reasons.push(format!("the weather forecast from {} was issued at {}, more than {} h ago", w.provider, rfc3339(w.issued_s), inp.stale_after_h)),
        Some(_) => {}
    }
    if let Some(c) = inp.carbon {
        let newest = c.hours.last().map_or(c.issued_s, |h| h.0);
        let age = if c.ahead { inp.now_s - c.issued_s } else { inp.now_s - newest };
        if age > max_age {
            reasons.push(format!("the grid intensity from {} is {} h old (limit {} h)", c.provider, age / 3600, inp.stale_after_h));
        }
    }
    if let ModelState::TooLittleHistory { hours, needed } = model {
        reasons.push(format!("too little history: {hours} usable hours of the ledger, {needed} needed"));
    }
    let mut hours = Vec::new();
    if let (ModelState::Ready(m), Some(w)) = (model, inp.weather) {
        for lead in 0..HORIZON_H {
            let t = hour0 + lead as i64 * 3600;
            let Some(air) = w.at(t) else { continue };
            let p = m.predict(&Conditions { dry_bulb_c: air.dry_bulb_c, wet_bulb_c: air.wet_bulb_c, it_kw: inp.it_kw });
            let k = widen(lead);
            let r = &m.report;
            let pue = Band { value: p.pue, low: (p.pue + k * r.pue.p10).max(1.0), high: p.pue + k * r.pue.p90 };
            let wue = match (p.wue_l_per_kwh, r.wue) {
                (Some(v), Some(s)) => Some(Band { value: v, low: (v + k * s.p10).max(0.0), high: (v + k * s.p90).max(0.0) }),
                _ => None,
            };
            let (g, basis) = carbon_at(inp.carbon, t, inp.configured_g_per_kwh);
            // The grid's own forecast error is not known here; the interval is the PUE's.
            let co2 = Band { value: pue.value * g, low: pue.low * g, high: pue.high * g };
            hours.push(ForecastHour {
                t_s: t,
                t: rfc3339(t),
                lead_h: lead,
                dry_bulb_c: air.dry_bulb_c,
                wet_bulb_c: air.wet_bulb_c,
                it_kw: inp.it_kw,
                pue,
                facility_kwh_per_it_kwh: pue,
                wue_l_per_kwh: wue,
                litres_per_it_kwh: wue,
                grid_g_per_kwh: g,
                carbon_basis: basis,
                co2_g_per_it_kwh: co2,
            });
        }
        // Three quarters of the horizon at least, else the advice would rank a partial window.
        if inp.weather.is_some() && hours.len() < HORIZON_H * 3 / 4 && reasons.is_empty() {
            reasons.push(format!("the weather forecast covers {} of the next {HORIZON_H} hours", hours.len()));
        }
    }
    Forecast {
        site: inp.site.to_string(),
        issued_s: inp.now_s,
        issued: rfc3339(inp.now_s),
        stale: (!reasons.is_empty()).then_some(Staleness { reasons }),
        model: model.clone(),
        weather_provider: inp.weather.map(|w| w.provider.clone()),
        weather_issued: inp.weather.map(|w| rfc3339(w.issued_s)),
        carbon_provider: inp.carbon.map(|c| c.provider.clone()),
        carbon_issued: inp.carbon.map(|c| rfc3339(c.issued_s)),
        carbon_series_basis: SeriesBasis::of(inp.carbon.map(|c| c.provider.as_str())),
        hours,
        score: None,
    }
}

/// One kept forecast hour, as read back from `forecast_issued`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IssuedHour {
    /// Start of the hour it was for, Unix s.
    pub target_s: i64,
    pub lead_h: i64,
    pub pue: f64,
    pub pue_low: Option<f64>,
    pub pue_high: Option<f64>,
    pub wue: Option<f64>,
}

/// How the kept forecasts did against the ledger of the hours they were for.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Score {
    /// Forecast hours whose hour has a ledger entry by now.
    pub hours: usize,
    pub pue_mae: Option<f64>,
    pub wue_mae: Option<f64>,
    /// Share of hours whose actual PUE fell inside the forecast's 10–90 % interval (about 0.8
    /// when the intervals are calibrated).
    pub pue_interval_hit: Option<f64>,
    /// PUE MAE by lead: 0–11 h, 12–23 h, 24–35 h, 36–47 h.
    pub pue_mae_by_lead: [Option<f64>; 4],
}

/// Scores kept forecast hours against the ledger (`actual`, any order).
pub fn score(issued: &[IssuedHour], actual: &[crate::model::HourRecord]) -> Score {
    let by_t: std::collections::HashMap<i64, &crate::model::HourRecord> = actual.iter().filter(|r| r.it_kwh > 0.0).map(|r| (r.t, r)).collect();
    let (mut n, mut pe, mut wn, mut we, mut inn, mut hit) = (0usize, 0.0, 0usize, 0.0, 0usize, 0usize);
    let mut lead = [(0.0, 0usize); 4];
    for h in issued {
        let Some(r) = by_t.get(&h.target_s) else { continue };
        let e = (r.facility_kwh / r.it_kwh - h.pue).abs();
        n += 1;
        pe += e;
        let b = &mut lead[(h.lead_h.clamp(0, 47) / 12) as usize];
        b.0 += e;
        b.1 += 1;
        if let (Some(lo), Some(hi)) = (h.pue_low, h.pue_high) {
            inn += 1;
            hit += usize::from((lo..=hi).contains(&(r.facility_kwh / r.it_kwh)));
        }
        if let (Some(w), Some(a)) = (h.wue, r.water_l) {
            wn += 1;
            we += (a / r.it_kwh - w).abs();
        }
    }
    let mean = |s: f64, k: usize| (k > 0).then(|| s / k as f64);
    Score { hours: n, pue_mae: mean(pe, n), wue_mae: mean(we, wn), pue_interval_hit: mean(hit as f64, inn), pue_mae_by_lead: lead.map(|(s, k)| mean(s, k)) }
}
