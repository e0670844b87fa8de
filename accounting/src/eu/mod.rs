//! EU Delegated Regulation 2024/1364 indicators for a calendar year in the site's time zone:
//! Annex II key indicators and Annex III KPIs the meters provide, the rest as declared in
//! `[eu]` or listed "missing". The complete yearly filing (Annexes I–III, thresholds, the
//! evidence bundle) is [`filing`].

pub mod config;
pub mod evidence;
pub mod filing;
pub mod fill;
pub mod thresholds;

pub use config::EuConfig;

use std::collections::BTreeMap;

use chrono_tz::Tz;
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::settings::Settings;
use crate::kpi;
use crate::ledger::read_f64;
use crate::periods::{self, PeriodError};
use kilowatch_store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EuError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Period(#[from] PeriodError),
}

#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    pub key: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub value: Option<serde_json::Value>,
    /// "metered", "declared" (from `[eu]`) or "missing".
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

/// Indicators no meter gives: (key in `[eu]`, name, unit, value).
fn declared_items(eu: &EuConfig) -> Vec<(&'static str, &'static str, &'static str, Option<f64>)> {
    vec![
        ("pdit_kw", "PDIT installed IT power", "kW", eu.pdit_kw),
        ("sdc_m2", "SDC total floor area", "m2", eu.sdc_m2),
        ("scr_m2", "SCR computer room floor area", "m2", eu.scr_m2),
        ("twh_c", "TWH average waste-heat temperature", "°C", eu.twh_c),
        ("tin_c", "TIN intake air set point", "°C", eu.tin_c),
        ("eres_goo_kwh", "ERES-GOO guarantees of origin", "kWh", eu.eres_goo_kwh),
        ("eres_ppa_kwh", "ERES-PPA power purchase agreements", "kWh", eu.eres_ppa_kwh),
        ("eres_os_kwh", "ERES-OS on-site renewables", "kWh", eu.eres_os_kwh),
        ("traffic_incoming_exabytes", "incoming traffic", "EB", eu.traffic_incoming_exabytes),
        ("traffic_outgoing_exabytes", "outgoing traffic", "EB", eu.traffic_outgoing_exabytes),
        ("bandwidth_incoming_gb_per_s", "BIN incoming traffic bandwidth", "GB/s", eu.bandwidth_incoming_gb_per_s),
        ("bandwidth_outgoing_gb_per_s", "BOUT outgoing traffic bandwidth", "GB/s", eu.bandwidth_outgoing_gb_per_s),
    ]
}

fn metered(key: &'static str, name: &'static str, unit: &'static str, v: Option<f64>) -> Indicator {
    Indicator { key, name, unit, value: v.map(serde_json::Value::from), status: if v.is_some() { "metered" } else { "missing" } }
}

/// Daily mean outside temperature per local day of `r`, from the first cooling unit's
/// `outside_temp_c` (the mean of the day's readings); a day without readings is `None`. None
/// without that series.
pub fn daily_means(store: &Store, r: TimeRange, tz: Tz) -> Result<Option<Vec<(chrono::NaiveDate, Option<f64>)>>, StoreError> {
    let Some(m) = store.find_series("cooling", "outside_temp_c", &[])?.into_iter().next() else { return Ok(None) };
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
pub fn cdd(store: &Store, r: TimeRange, tz: Tz) -> Result<Option<(f64, usize)>, StoreError> {
    Ok(daily_means(store, r, tz)?.and_then(|d| jrc_cdd(&d).ok().map(|c| (c, d.len()))))
}

/// The calendar year `year` (the yearly filing).
pub fn indicators(store: &Store, cfg: &impl Settings, year: i32) -> Result<EuReport, EuError> {
    let tz: Tz = cfg.timezone().parse().unwrap_or(chrono_tz::Europe::Paris);
    let p = periods::resolve("year", None, None, Some(&year.to_string()), tz, Timestamp::now())?;
    over(store, cfg, year, tz, p, true)
}

/// Year to date: 1 January to the end of the local month `month` (YYYY-MM), whatever day it is
/// asked on (the monthly report's EU section).
pub fn indicators_to_month(store: &Store, cfg: &impl Settings, month: &str) -> Result<EuReport, EuError> {
    use chrono::Datelike;
    let tz: Tz = cfg.timezone().parse().unwrap_or(chrono_tz::Europe::Paris);
    let m = periods::resolve("month", None, Some(month), None, tz, Timestamp::from_secs(0))?;
    let year = m.range.from.to_datetime().with_timezone(&tz).year();
    let p = periods::resolve("ytd", Some(m.range.to), None, Some(&year.to_string()), tz, m.range.to)?;
    over(store, cfg, year, tz, p, false)
}

/// Renewable energy declared in `[eu]` for the year (guarantees of origin, PPAs, on-site), kWh.
pub fn declared_renewables_kwh(cfg: &impl Settings) -> Option<f64> {
    cfg.eu().declared_renewables_kwh()
}

/// `full_year`: the declared renewables, yearly figures, apply (not to a year to date).
fn over(store: &Store, cfg: &impl Settings, year: i32, tz: Tz, p: periods::Period, full_year: bool) -> Result<EuReport, EuError> {
    let declared = if full_year { declared_renewables_kwh(cfg) } else { None };
    let k = kpi::compute_declared(store, p.range, &p.label, cfg, declared)?;
    let has_it = k.pue_category.is_some();
    let has_role = |roles: &[&str]| k.data_quality.meters.iter().any(|m| roles.contains(&m.role.as_str()) && m.coverage_pct > 0.0);
    let mut annex_ii = vec![
        metered("edc_kwh", "EDC total energy consumption", "kWh", has_role(&["facility", "generator"]).then_some(k.facility_energy_kwh)),
        metered("edc_bg_kwh", "EDC-BG back-up generator energy", "kWh", k.data_quality.meters.iter().any(|m| m.role == "generator").then_some(k.generator_energy_kwh)),
        metered("eit_kwh", "EIT IT energy (Cat 1 when UPS outputs are metered)", "kWh", has_it.then_some(k.it_energy_kwh)),
        metered("win_m3", "WIN total water input", "m3", k.water_m3),
        metered("win_pot_m3", "WIN-POT potable water input", "m3", k.water_potable_m3),
        metered("ereuse_kwh", "EREUSE reused waste heat", "kWh", k.reuse_energy_kwh),
        metered("eres_tot_kwh", "ERES-TOT renewable energy (metered and declared)", "kWh", k.renewable_energy_kwh),
        metered("cdd", "CDD cooling degree days (Eurostat/JRC: base 21 °C, days ≥ 24 °C)", "°C·d", cdd(store, p.range, tz)?.map(|c| c.0)),
    ];
    for (key, name, unit, v) in declared_items(cfg.eu()) {
        annex_ii.push(Indicator { key, name, unit, value: v.map(serde_json::Value::from), status: if v.is_some() { "declared" } else { "missing" } });
    }
    let annex_iii = vec![
        metered("pue", "PUE power usage effectiveness", "", k.pue),
        metered("wue", "WUE water usage effectiveness", "L/kWh", k.wue_l_per_kwh),
        metered("erf", "ERF energy reuse factor", "", k.erf),
        metered("ref", "REF renewable energy factor (capped at 1)", "", k.ref_),
    ];
    Ok(EuReport { year, period: p.label, annex_ii, annex_iii, pue_category: k.pue_category, data_quality: k.data_quality })
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
