//! EU Delegated Regulation 2024/1364: the yearly filing ([`filing`]: Annexes I–III, thresholds,
//! the evidence bundle) and its summary for `GET /api/v1/eu-indicators`, the monthly report's
//! EU section and the fleet's side-by-side view, read off the same pack ([`filing::assemble`]),
//! so an item has the same figure and status (metered, estimated, partial, declared, missing)
//! everywhere.

pub mod config;
pub mod evidence;
pub mod filing;
pub mod fill;
pub mod open_weather;
pub mod thresholds;

pub use config::EuConfig;

use std::collections::BTreeMap;

use chrono_tz::Tz;
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::kpi;
use crate::ledger::read_f64;
use crate::periods::{self, PeriodError};
use crate::read::{ReadError, SeriesRead};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum EuError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Pack(Box<crate::report::ReportError>),
}

impl From<crate::report::ReportError> for EuError {
    fn from(e: crate::report::ReportError) -> Self {
        EuError::Pack(Box::new(e))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    pub key: &'static str,
    /// The filing's item code (docs/filing.md).
    pub code: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub value: Option<serde_json::Value>,
    /// The filing's status: "metered", "estimated", "partial", "declared" (from `[eu]`) or
    /// "missing".
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct EuReport {
    pub year: i32,
    pub period: String,
    pub annex_ii: Vec<Indicator>,
    pub annex_iii: Vec<Indicator>,
    pub pue_category: Option<u8>,
    pub data_quality: kpi::DataQuality,
}

/// Daily mean outside temperature per local day of `r`, from the first series of
/// `measurement`/`field` (the mean of the day's readings: the site's `cooling` `outside_temp_c`,
/// or the open-data days of [`open_weather`]); a day without readings is `None`. None without
/// that series.
pub fn daily_means(store: &(impl SeriesRead + ?Sized), r: TimeRange, tz: Tz, measurement: &str, field: &str) -> Result<Option<Vec<(chrono::NaiveDate, Option<f64>)>>, ReadError> {
    let Some(m) = store.find_series(measurement, field, &[])?.into_iter().next() else { return Ok(None) };
    let samples = read_f64(store, m.id, r.from.0, r.to.0)?;
    let local = |t: i64| Timestamp(t).to_datetime().with_timezone(&tz).date_naive();
    let mut days: BTreeMap<chrono::NaiveDate, (f64, usize)> = BTreeMap::new();
    for (t, v) in samples.into_iter().filter(|(t, _)| *t >= r.from.0 && *t < r.to.0) {
        let e = days.entry(local(t)).or_default();
        e.0 += v;
        e.1 += 1;
    }
    // Every local day of the period, read or not: the period ends just before `r.to`.
    let (first, last) = (local(r.from.0), local(r.to.0.saturating_sub(1)));
    Ok(Some(first.iter_days().take_while(|d| *d <= last).map(|d| (d, days.get(&d).map(|(s, n)| s / *n as f64))).collect()))
}

/// Cooling degree days by the Eurostat / JRC method (Annex II 1(n)): Σ over days of
/// (Tmean − 21 °C) for the days whose mean is at least 24 °C, 0 for the others. A day without
/// a mean makes the whole figure unknown (`Err` with the number of such days), never a 0.
pub fn jrc_cdd(days: &[(chrono::NaiveDate, Option<f64>)]) -> Result<f64, usize> {
    let missing = days.iter().filter(|d| d.1.is_none()).count();
    if missing > 0 {
        return Err(missing);
    }
    Ok(days.iter().filter_map(|d| d.1).filter(|t| *t >= CDD_THRESHOLD_C).map(|t| t - CDD_BASE_C).sum())
}

pub const CDD_BASE_C: f64 = 21.0;
pub const CDD_THRESHOLD_C: f64 = 24.0;

/// Cooling degree days over `r` by [`jrc_cdd`] from the site's outside temperature, with the
/// number of days; None without the series or with a day missing.
pub fn cdd(store: &(impl SeriesRead + ?Sized), r: TimeRange, tz: Tz) -> Result<Option<(f64, usize)>, ReadError> {
    Ok(daily_means(store, r, tz, "cooling", "outside_temp_c")?.and_then(|d| jrc_cdd(&d).ok().map(|c| (c, d.len()))))
}

/// The calendar year `year` (the yearly filing's reporting period, Art. 3).
pub fn indicators(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, year: i32) -> Result<EuReport, EuError> {
    let tz: Tz = cfg.timezone().parse().unwrap_or(chrono_tz::Europe::Paris);
    let p = filing::reporting_period(cfg.eu(), year, tz)?;
    summary(store, cfg, year, tz, p, filing::Scope::Filing)
}

/// Year to date: 1 January to the end of the local month `month` (YYYY-MM), whatever day it is
/// asked on (the monthly report's EU section).
pub fn indicators_to_month(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, month: &str) -> Result<EuReport, EuError> {
    use chrono::Datelike;
    let tz: Tz = cfg.timezone().parse().unwrap_or(chrono_tz::Europe::Paris);
    let m = periods::resolve("month", None, Some(month), None, tz, Timestamp::from_secs(0))?;
    let year = m.range.from.to_datetime().with_timezone(&tz).year();
    let p = periods::resolve("ytd", Some(m.range.to), None, Some(&year.to_string()), tz, m.range.to)?;
    summary(store, cfg, year, tz, p, filing::Scope::Summary)
}

/// Renewable energy declared in `[eu]` for the year (guarantees of origin, PPAs, on-site), kWh.
pub fn declared_renewables_kwh(cfg: &impl Settings) -> Option<f64> {
    cfg.eu().declared_renewables_kwh()
}

/// The key an item had in this summary before it was read off the filing (kept for the API's
/// readers), else the code in lower case.
fn key(code: &'static str) -> &'static str {
    match code {
        "PDIT" => "pdit_kw",
        "SDC" => "sdc_m2",
        "SCR" => "scr_m2",
        "EDC" => "edc_kwh",
        "EDC-BG" => "edc_bg_kwh",
        "EIT" => "eit_kwh",
        "WIN" => "win_m3",
        "WIN-POT" => "win_pot_m3",
        "EREUSE" => "ereuse_kwh",
        "TWH" => "twh_c",
        "TIN" => "tin_c",
        "CDD" => "cdd",
        "ERES-TOT" => "eres_tot_kwh",
        "ERES-GOO" => "eres_goo_kwh",
        "ERES-PPA" => "eres_ppa_kwh",
        "ERES-OS" => "eres_os_kwh",
        "TRAFFIC-IN" => "traffic_incoming_exabytes",
        "TRAFFIC-OUT" => "traffic_outgoing_exabytes",
        "BIN" => "bandwidth_incoming_gb_per_s",
        "BOUT" => "bandwidth_outgoing_gb_per_s",
        "PUE" => "pue",
        "WUE" => "wue",
        "ERF" => "erf",
        "REF" => "ref",
        other => other,
    }
}

fn indicator(i: &filing::Item) -> Indicator {
    Indicator { key: key(i.code), code: i.code, name: i.name, unit: i.unit, value: i.value.clone(), status: i.status.as_str() }
}

fn summary(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, year: i32, tz: Tz, p: periods::Period, scope: filing::Scope) -> Result<EuReport, EuError> {
    let (f, _) = filing::assemble(store, cfg, year, tz, p, scope, None)?;
    Ok(EuReport {
        year,
        period: f.meta.period.clone(),
        annex_ii: f.annex_ii.0.iter().map(indicator).collect(),
        annex_iii: f.annex_iii.0.iter().map(indicator).collect(),
        pue_category: f.meta.pue_category,
        data_quality: f.data_quality,
    })
}

#[cfg(test)]
mod tests {
    use super::jrc_cdd;
    use chrono::NaiveDate;

    #[test]
    fn cdd_counts_days_of_24_degrees_and_more_from_21() {
        let d = |n: u32, t: Option<f64>| (NaiveDate::from_ymd_opt(2025, 7, n).expect("date"), t);
        // 23.9 °C is below the 24 °C threshold: 0, not 2.9; 24 counts 3; 30.5 counts 9.5.
        assert_eq!(jrc_cdd(&[d(1, Some(23.9)), d(2, Some(24.0)), d(3, Some(30.5)), d(4, Some(10.0))]), Ok(12.5));
        assert_eq!(jrc_cdd(&[d(1, Some(30.0)), d(2, None), d(3, None)]), Err(2), "a missing day makes CDD missing, never a partial sum");
    }
}
