//! The monthly sustainability report. It only presents what the KPI, attribution and EU
//! functions compute (`kpi::compute_with`, `attribution::attribute`, `eu::indicators`), called
//! over the same windows and with the same labels as the API, so every figure in it equals the
//! API's for that month. Months, days and years are local to `site.timezone`.
//!
//! Outputs: JSON (the `MonthlyReport` itself), CSV (every number of the JSON, one per line),
//! HTML (printable, A4) and PDF (A4, made in process). HTML and PDF show the same blocks
//! (`doc`) and the same `plotters` charts. Same data and version give the same bytes in every
//! format: the only varying field is `generated_at`, which callers pin with `--generated-at`
//! or `SOURCE_DATE_EPOCH`.

mod climate;

use std::collections::BTreeMap;

use chrono_tz::Tz;
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::attribution::{self, JobEnergy, Rollup};
use crate::eu;
use crate::gpu_efficiency::{self, GpuEfficiency};
use crate::kpi::{self, Kpi};
use crate::periods::{self, PeriodError};
use crate::read::{JobsRead, ReadError, SeriesRead};
use crate::settings::Settings;

pub use climate::{AshraeUnit, Climate};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Eu(#[from] eu::EuError),
    #[error("bad site.timezone {0:?}")]
    TimeZone(String),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("unknown format {0:?}: use html, pdf, csv or json")]
    Format(String),
    #[error("cannot draw a chart: {0}")]
    Chart(String),
    #[error("cannot make the PDF: {0}")]
    Pdf(String),
    #[error("cannot serialise the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// How many jobs, owners and projects the "top" tables list.
pub const TOP_N: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub site: String,
    pub month: String,
    pub timezone: String,
    /// e.g. "calendar month 2026-10 (Europe/Paris)", the KPI API's label for the same window.
    pub period: String,
    pub from: String,
    pub to: String,
    pub hours: f64,
    pub kilowatch_version: &'static str,
}

/// A headline figure with its value last month and in the same month last year.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub value: Option<f64>,
    pub previous_month: Option<f64>,
    pub change_vs_previous_month_pct: Option<f64>,
    pub same_month_last_year: Option<f64>,
    pub change_vs_last_year_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub pue_label: String,
    pub pue_category: Option<u8>,
    pub headlines: Vec<Headline>,
}

/// One row of the KPI table: the same figure over the month, the year to date (to the end of
/// the month) and the rolling 12 months ending with it.
#[derive(Debug, Clone, Serialize)]
pub struct KpiRow {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub month: Option<f64>,
    pub ytd: Option<f64>,
    pub rolling12: Option<f64>,
}

/// The KPI API's answer for each window the report uses, whole.
#[derive(Debug, Clone, Serialize)]
pub struct Windows {
    pub month: Kpi,
    pub ytd: Kpi,
    pub rolling12: Kpi,
    pub previous_month: Kpi,
    pub same_month_last_year: Kpi,
}

/// One local day: the KPI function over that day (operational indicators, not official PUE).
#[derive(Debug, Clone, Serialize)]
pub struct Day {
    pub date: String,
    pub hours: f64,
    pub facility_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub cooling_kwh: f64,
    pub power_losses_kwh: f64,
    /// E_DC − IT − cooling − power losses: whatever the sub-meters do not name, so that the
    /// stacked chart adds up to E_DC.
    pub other_kwh: f64,
    pub pue: Option<f64>,
    /// Null where no water meter covers the day.
    pub water_m3: Option<f64>,
    pub wue_l_per_kwh: Option<f64>,
    pub co2_location_kg: f64,
    pub coverage_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Jobs {
    /// Metered E_IT = jobs + idle + unattributed (the attribution's conservation rule).
    pub it_energy_kwh: f64,
    pub jobs_it_energy_kwh: f64,
    pub idle_kwh: f64,
    pub unattributed_kwh: f64,
    pub jobs_share_pct: Option<f64>,
    pub idle_share_pct: Option<f64>,
    pub unattributed_share_pct: Option<f64>,
    pub job_count: usize,
    pub top_jobs: Vec<JobEnergy>,
    pub top_owners: Vec<(String, Rollup)>,
    pub top_projects: Vec<(String, Rollup)>,
    pub low_confidence_jobs: usize,
    /// Why this section is empty, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The GPU-aware IT-efficiency indicators (voluntary: no standard covers accelerator servers)
/// over the month and the year to date.
#[derive(Debug, Clone, Serialize)]
pub struct GpuEfficiencySection {
    pub month: Option<GpuEfficiency>,
    pub year_to_date: Option<GpuEfficiency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    /// Alerts that fired during the month, by their `severity` label.
    pub fired_by_severity: BTreeMap<String, usize>,
    pub total: usize,
    /// Where the counts come from.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Methodology {
    pub formulas: Vec<&'static str>,
    pub pue_category: Option<u8>,
    pub measurement_points: Vec<String>,
    pub carbon_factor: String,
    pub timezone: String,
    pub psychrometrics: &'static str,
    pub daily_figures: &'static str,
    /// `accounting.official_min_coverage_pct`: the year to date and rolling 12 months are
    /// labelled with their metered share below it.
    pub official_min_coverage_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthlyReport {
    pub meta: Meta,
    pub summary: Summary,
    pub kpi_table: Vec<KpiRow>,
    pub daily: Vec<Day>,
    pub climate: Climate,
    pub jobs: Jobs,
    pub gpu_efficiency: GpuEfficiencySection,
    /// Energy, water and CO2 per token of the models served, and per step of the training jobs
    /// that reported progress (docs/inference.md); empty where none did.
    pub tokens: crate::tokens::TokensSection,
    pub alerts: Alerts,
    pub eu: eu::EuReport,
    pub data_quality: kpi::DataQuality,
    pub windows: Windows,
    pub methodology: Methodology,
    /// The only field that changes between two runs over the same data.
    pub generated_at: String,
}

fn month_window(tz: Tz, month: &str, cfg: &impl Settings, store: &(impl SeriesRead + ?Sized)) -> Result<Kpi, ReportError> {
    let p = periods::resolve("month", None, Some(month), None, tz, Timestamp::from_secs(0))?;
    Ok(kpi::compute_with(store, p.range, &p.label, cfg)?)
}

fn shift_month(month: &str, by: i32) -> Result<String, ReportError> {
    let bad = || PeriodError::Param { name: "month", value: month.to_owned(), why: "expected YYYY-MM" };
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, i32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let idx = y * 12 + (m - 1) + by;
    Ok(format!("{:04}-{:02}", idx.div_euclid(12), idx.rem_euclid(12) + 1))
}

fn pct_change(now: Option<f64>, then: Option<f64>) -> Option<f64> {
    match (now, then) {
        (Some(a), Some(b)) if b != 0.0 => Some((a - b) / b * 100.0),
        _ => None,
    }
}

/// Below this coverage a month is not compared with (the summary's change columns stay empty).
pub const MIN_COMPARE_COVERAGE_PCT: f64 = 90.0;

fn comparable(k: &Kpi) -> bool {
    k.pue_category.is_some() && k.data_quality.coverage_pct >= MIN_COMPARE_COVERAGE_PCT
}

fn headlines(w: &Windows) -> Vec<Headline> {
    type Get = fn(&Kpi) -> Option<f64>;
    let items: [(&'static str, &'static str, &'static str, Get); 6] = [
        ("pue", "PUE (monthly operational indicator)", "", |k| k.pue),
        ("wue_l_per_kwh", "WUE", "L/kWh", |k| k.wue_l_per_kwh),
        ("facility_energy_kwh", "Energy E_DC", "kWh", |k| Some(k.facility_energy_kwh)),
        ("it_energy_kwh", "IT energy E_IT", "kWh", |k| k.pue_category.map(|_| k.it_energy_kwh)),
        ("water_m3", "Water WIN", "m3", |k| k.water_m3),
        ("co2_location_kg", "CO2 (location-based)", "kg", |k| Some(k.co2_location_kg)),
    ];
    items
        .into_iter()
        .map(|(key, label, unit, get)| {
            let (v, p, y) = (get(&w.month), get(&w.previous_month), get(&w.same_month_last_year));
            // A month with no IT data, or barely covered, is "no data", not a 100 % drop or a
            // 90,000 % rise: comparisons need the other month ≥ MIN_COMPARE_COVERAGE_PCT covered.
            let p = p.filter(|_| comparable(&w.previous_month));
            let y = y.filter(|_| comparable(&w.same_month_last_year));
            Headline { key, label, unit, value: v, previous_month: p, change_vs_previous_month_pct: pct_change(v, p), same_month_last_year: y, change_vs_last_year_pct: pct_change(v, y) }
        })
        .collect()
}

fn kpi_table(w: &Windows) -> Vec<KpiRow> {
    let cols = [&w.month, &w.ytd, &w.rolling12];
    let row = |key: &str, label: &str, unit: &'static str, get: &dyn Fn(&Kpi) -> Option<f64>| KpiRow {
        key: key.to_owned(),
        label: label.to_owned(),
        unit,
        month: get(cols[0]),
        ytd: get(cols[1]),
        rolling12: get(cols[2]),
    };
    let mut rows = vec![
        row("edc_kwh", "EDC total energy", "kWh", &|k| Some(k.facility_energy_kwh)),
        row("edc_grid_kwh", "EDC grid", "kWh", &|k| Some(k.grid_energy_kwh)),
        row("edc_bg_kwh", "EDC-BG generator", "kWh", &|k| Some(k.generator_energy_kwh)),
        row("eit_kwh", "EIT IT energy", "kWh", &|k| k.pue_category.map(|_| k.it_energy_kwh)),
        row("pue", "PUE", "", &|k| k.pue),
        row("pue_category", "PUE category", "", &|k| k.pue_category.map(f64::from)),
    ];
    let mut subs: Vec<&String> = cols.iter().copied().flat_map(|k| k.subsystems.keys()).collect();
    subs.sort();
    subs.dedup();
    for s in subs {
        rows.push(row(&format!("ppue_{s}"), &format!("pPUE {s}"), "", &|k| k.subsystems.get(s).and_then(|x| x.ppue)));
    }
    rows.extend([
        row("win_m3", "WIN water input", "m3", &|k| k.water_m3),
        row("win_pot_m3", "WIN-POT potable water", "m3", &|k| k.water_potable_m3),
        row("wue", "WUE", "L/kWh", &|k| k.wue_l_per_kwh),
        row("co2_location_kg", "CO2 location-based", "kg", &|k| Some(k.co2_location_kg)),
        row("co2_market_kg", "CO2 market-based", "kg", &|k| k.co2_market_kg),
        row("cue", "CUE", "kg/kWh", &|k| k.cue_kg_per_kwh),
        row("erf", "ERF", "", &|k| k.erf),
        row("ref", "REF", "", &|k| k.ref_),
    ]);
    rows
}

fn daily(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, tz: Tz, from: Timestamp, to: Timestamp) -> Result<Vec<Day>, ReportError> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let p = periods::resolve("day", Some(t), None, None, tz, t)?;
        let k = kpi::compute_with(store, p.range, &p.label, cfg)?;
        let sub = |s: &str| k.subsystems.get(s).map(|x| x.energy_kwh).unwrap_or(0.0);
        let it = if k.pue_category.is_some() { k.it_energy_kwh } else { 0.0 };
        let (cooling, losses) = (sub("cooling"), sub("power_losses"));
        out.push(Day {
            date: p.range.from.to_datetime().with_timezone(&tz).format("%Y-%m-%d").to_string(),
            hours: k.hours,
            facility_energy_kwh: k.facility_energy_kwh,
            it_energy_kwh: it,
            cooling_kwh: cooling,
            power_losses_kwh: losses,
            other_kwh: (k.facility_energy_kwh - it - cooling - losses).max(0.0),
            pue: k.pue,
            water_m3: k.water_m3,
            wue_l_per_kwh: k.wue_l_per_kwh,
            co2_location_kg: k.co2_location_kg,
            coverage_pct: k.data_quality.coverage_pct,
        });
        t = p.range.to;
    }
    Ok(out)
}

/// `part` as a percentage of `whole`; none when there is no whole.
pub fn share(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole * 100.0)
}

fn top(map: std::collections::BTreeMap<String, Rollup>) -> Vec<(String, Rollup)> {
    let mut v: Vec<(String, Rollup)> = map.into_iter().collect();
    // Ties broken by name so the order, and so the bytes, never depend on anything else.
    v.sort_by(|a, b| b.1.it_energy_kwh.total_cmp(&a.1.it_energy_kwh).then_with(|| a.0.cmp(&b.0)));
    v.truncate(TOP_N);
    v
}

/// The indicators over `range`, attributing it afresh (the year to date).
pub(crate) fn gpu_efficiency_over(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, js: &(impl JobsRead + ?Sized), range: TimeRange, label: &str) -> Result<GpuEfficiency, ReportError> {
    let allocs = attribution::allocations(store, js, range)?;
    let att = attribution::attribute(store, &allocs, range, None, cfg.carbon())?;
    Ok(gpu_efficiency::compute(store, &allocs, &att, range, label)?)
}

/// The jobs section and the month's GPU efficiency, from one attribution.
fn jobs_section(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, range: kilowatch_model::TimeRange, label: &str) -> Result<(Jobs, Option<GpuEfficiency>), ReportError> {
    let empty = |why: String| Jobs {
        it_energy_kwh: 0.0,
        jobs_it_energy_kwh: 0.0,
        idle_kwh: 0.0,
        unattributed_kwh: 0.0,
        jobs_share_pct: None,
        idle_share_pct: None,
        unattributed_share_pct: None,
        job_count: 0,
        top_jobs: Vec::new(),
        top_owners: Vec::new(),
        top_projects: Vec::new(),
        low_confidence_jobs: 0,
        unavailable: Some(why),
    };
    let js = match store.jobs() {
        Ok(j) => j,
        Err(e) => return Ok((empty(format!("job ledger unavailable: {e}")), None)),
    };
    let allocs = attribution::allocations(store, &js, range)?;
    // One-hour steps, as `GET /api/v1/jobs` uses: overhead follows each hour's own PUE.
    let att = attribution::attribute(store, &allocs, range, None, cfg.carbon())?;
    let efficiency = gpu_efficiency::compute(store, &allocs, &att, range, label)?;
    let mut jobs = att.jobs;
    jobs.sort_by(|a, b| b.it_energy_kwh.total_cmp(&a.it_energy_kwh).then_with(|| a.job.cmp(&b.job)));
    let job_count = jobs.len();
    jobs.truncate(TOP_N);
    let it = att.it_energy_kwh;
    let jobs = Jobs {
        it_energy_kwh: it,
        jobs_it_energy_kwh: att.jobs_it_energy_kwh,
        idle_kwh: att.idle_kwh,
        unattributed_kwh: att.unattributed_kwh,
        jobs_share_pct: share(att.jobs_it_energy_kwh, it),
        idle_share_pct: share(att.idle_kwh, it),
        unattributed_share_pct: share(att.unattributed_kwh, it),
        job_count,
        top_jobs: jobs,
        top_owners: top(att.by_owner),
        top_projects: top(att.by_project),
        low_confidence_jobs: att.data_quality.low_confidence_jobs,
        unavailable: None,
    };
    Ok((jobs, Some(efficiency)))
}

fn methodology(cfg: &impl Settings, m: &Kpi) -> Methodology {
    let f = &m.carbon_factor;
    Methodology {
        formulas: vec![
            "PUE = E_DC / E_IT (ISO/IEC 30134-2), energies over the same period; never an average of ratios",
            "pPUE_x = (E_IT + E_x) / E_IT for the cooling, power_losses and other sub-meters",
            "WUE = WIN / E_IT in L/kWh (ISO/IEC 30134-9); WIN-POT counts potable water only",
            "CUE = CO2 of E_DC / E_IT in kg/kWh",
            "ERF = E_REUSE / E_DC; REF = E_RES / E_DC, capped at 1",
            "Job IT energy = its GPUs' energy + its share of node non-GPU energy; overhead, water and CO2 follow each hour's PUE, WUE and factor",
        ],
        pue_category: m.pue_category,
        measurement_points: m
            .data_quality
            .meters
            .iter()
            .map(|q| {
                // Water meters carry no energy role: name what they measure instead.
                let what = if q.role.is_empty() { format!("in {}", q.unit) } else { format!("role {}", q.role) };
                format!("{} ({what}{})", q.meter, q.category.map(|c| format!(", category {c}")).unwrap_or_default())
            })
            .collect(),
        carbon_factor: format!("{}: {} {} ({} kg/kWh configured)", f.kind, f.source, f.year.map(|y| y.to_string()).unwrap_or_default(), f.configured_kg_per_kwh),
        timezone: cfg.timezone().to_owned(),
        psychrometrics: "dew point by the Magnus formula (Alduchov & Eskridge 1996); wet bulb by Stull (2011)",
        daily_figures: "daily PUE and WUE are operational indicators; the official figure is the calendar year or rolling 12 months",
        official_min_coverage_pct: cfg.accounting().official_min_coverage_pct,
    }
}

/// The generation time to print: `generated_at` if given, else `SOURCE_DATE_EPOCH`, else now.
pub fn generation_time(generated_at: Option<&str>) -> String {
    if let Some(g) = generated_at {
        return g.to_owned();
    }
    if let Some(s) = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<i64>().ok()) {
        return Timestamp::from_secs(s).to_rfc3339();
    }
    Timestamp::now().to_rfc3339()
}

/// Assembles the report for `month` (YYYY-MM, local to `site.timezone`). `alerts` counts the
/// alerts that fired over the month's range: the alert history is the caller's, not accounting's.
pub fn build(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, month: &str, generated_at: Option<&str>, alerts: impl FnOnce(TimeRange) -> Alerts) -> Result<MonthlyReport, ReportError> {
    let tz: Tz = cfg.timezone().parse().map_err(|_| ReportError::TimeZone(cfg.timezone().to_owned()))?;
    let p = periods::resolve("month", None, Some(month), None, tz, Timestamp::from_secs(0))?;
    let month_kpi = kpi::compute_with(store, p.range, &p.label, cfg)?;
    let year: i32 = month.get(..4).and_then(|y| y.parse().ok()).ok_or(PeriodError::Param { name: "month", value: month.to_owned(), why: "expected YYYY-MM" })?;
    // Year to date = 1 January to the end of the month, whatever day it is generated on.
    let ytd_p = periods::resolve("ytd", Some(p.range.to), None, Some(&year.to_string()), tz, p.range.to)?;
    let r12_p = periods::resolve("rolling12", None, Some(month), None, tz, p.range.to)?;
    let windows = Windows {
        ytd: kpi::compute_with(store, ytd_p.range, &ytd_p.label, cfg)?,
        rolling12: kpi::compute_with(store, r12_p.range, &r12_p.label, cfg)?,
        previous_month: month_window(tz, &shift_month(month, -1)?, cfg, store)?,
        same_month_last_year: month_window(tz, &shift_month(month, -12)?, cfg, store)?,
        month: month_kpi,
    };
    let (jobs, month_efficiency) = jobs_section(store, cfg, p.range, &p.label)?;
    let gpu_efficiency = match store.jobs() {
        Ok(js) => GpuEfficiencySection { month: month_efficiency, year_to_date: Some(gpu_efficiency_over(store, cfg, &js, ytd_p.range, &ytd_p.label)?), unavailable: None },
        Err(e) => GpuEfficiencySection { month: None, year_to_date: None, unavailable: Some(format!("job ledger unavailable: {e}")) },
    };
    let summary = Summary { pue_label: windows.month.pue_label.clone(), pue_category: windows.month.pue_category, headlines: headlines(&windows) };
    Ok(MonthlyReport {
        meta: Meta {
            site: cfg.site_name().to_owned(),
            month: month.to_owned(),
            timezone: cfg.timezone().to_owned(),
            period: p.label.clone(),
            from: p.range.from.to_rfc3339(),
            to: p.range.to.to_rfc3339(),
            hours: p.range.duration_secs() / 3600.0,
            kilowatch_version: env!("CARGO_PKG_VERSION"),
        },
        summary,
        kpi_table: kpi_table(&windows),
        daily: daily(store, cfg, tz, p.range.from, p.range.to)?,
        climate: climate::build(store, tz, p.range)?,
        jobs,
        gpu_efficiency,
        tokens: match store.jobs() {
            Ok(js) => crate::tokens::TokensSection::of(crate::tokens::models(store, &js, p.range, cfg.carbon(), cfg.accounting().into())?, |_| true, 10),
            Err(_) => crate::tokens::TokensSection::default(),
        },
        alerts: alerts(p.range),
        eu: eu::indicators_to_month(store, cfg, month)?,
        data_quality: windows.month.data_quality.clone(),
        methodology: methodology(cfg, &windows.month),
        windows,
        generated_at: generation_time(generated_at),
    })
}

/// One CSV field as RFC 4180 writes it: quoted, inner quotes doubled, when it holds a comma, a
/// quote or a line break (the report's, the filing's and the evidence bundle's CSVs share it).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_shift_across_years() {
        assert_eq!(shift_month("2026-01", -1).expect("m"), "2025-12");
        assert_eq!(shift_month("2026-10", -12).expect("m"), "2025-10");
        assert_eq!(shift_month("2026-12", 1).expect("m"), "2027-01");
    }
}
