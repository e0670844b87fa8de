//! A customer's statement for a month or a year: its jobs' GPU, IT and facility energy, water
//! and CO2 (location- and market-based), per job, per project and per hour with the hour's PUE,
//! WUE and carbon factor, the site's PUE and WUE for the period with their category, the
//! methodology and data-quality notes. For a customer's CSRD scope-3 reporting, and for the
//! German Energy Efficiency Act's duty to tell each customer the energy attributable to it.
//!
//! It only presents `attribution::attribute` over the period's allocations
//! (`attribution::allocations`), exactly as `GET /api/v1/jobs` and the monthly report compute
//! them, so every job's figures equal the API's; and `kpi::compute_with` for the site's. The
//! statement of owner `X` holds the jobs whose owner is `X` or starts with `X/` (an account
//! and its projects); each job has one owner, so the statements of every account, the idle
//! GPUs and the unattributed energy add up to metered E_IT.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use kilowatch_model::Timestamp;
use serde::Serialize;

use crate::attribution::{self, JobEnergy, Rollup};
use crate::kpi::{self, Kpi};
use crate::periods::{self, PeriodError};
use crate::read::SeriesRead;
use crate::report::{ReportError, generation_time, share};
use crate::settings::Settings;

const HOUR_NS: i64 = 3_600_000_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct StatementMeta {
    pub site: String,
    /// The account or owner the statement is for.
    pub owner: String,
    /// `2026-10` or `2026`, as asked.
    pub period_key: String,
    /// The KPI API's label for the same window, e.g. "calendar month 2026-10 (Europe/Paris)".
    pub period: String,
    pub timezone: String,
    pub from: String,
    pub to: String,
    pub hours: f64,
    pub kilowatch_version: &'static str,
}

/// One job as `GET /api/v1/jobs` gives it, plus its market-based CO2.
#[derive(Debug, Clone, Serialize)]
pub struct StatementJob {
    #[serde(flatten)]
    pub job: JobEnergy,
    /// Facility energy × the period's market-based factor; none where the site has no
    /// market-based figure (no renewable energy metered or declared).
    pub co2_market_kg: Option<f64>,
}

/// Totals over a set of jobs (all of the owner's, or one project's).
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    #[serde(flatten)]
    pub rollup: Rollup,
    pub co2_market_kg: Option<f64>,
    /// Of the site's metered E_IT over the period.
    pub share_of_site_it_pct: Option<f64>,
}

/// The owner's energy in one clock hour and what it was multiplied by.
#[derive(Debug, Clone, Serialize)]
pub struct Hour {
    pub t: String,
    pub gpu_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub pue: f64,
    pub facility_energy_kwh: f64,
    pub wue_l_per_kwh: Option<f64>,
    pub water_l: Option<f64>,
    pub carbon_factor_kg_per_kwh: f64,
    pub co2_location_kg: f64,
    /// The hour had no valid PUE of its own: the period's was used.
    pub window_pue: bool,
}

/// The owner's energy over one local day (a month's statement) or month (a year's), from the
/// hourly table; `pue` and `wue_l_per_kwh` are its facility energy and water over its IT energy,
/// so they weigh each hour's factor by the owner's energy in it.
#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    pub label: String,
    pub gpu_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub facility_energy_kwh: f64,
    pub water_l: Option<f64>,
    pub co2_location_kg: f64,
    pub pue: Option<f64>,
    pub wue_l_per_kwh: Option<f64>,
}

/// The site-level figures the owner's rest on.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub pue: Option<f64>,
    pub pue_category: Option<u8>,
    pub pue_label: String,
    /// Whether the period is an official one for PUE (a calendar year); a month is an
    /// operational indicator.
    pub official: bool,
    pub wue_l_per_kwh: Option<f64>,
    pub it_energy_kwh: f64,
    pub facility_energy_kwh: f64,
    pub water_m3: Option<f64>,
    pub carbon_factor: crate::carbon::FactorSource,
    /// co2_market_kg / E_DC of the site over the period.
    pub market_factor_kg_per_kwh: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    /// The lowest coverage among the site's key meters over the period.
    pub coverage_pct: f64,
    pub missing_meters: Vec<String>,
    pub estimated_meters: usize,
    pub counter_resets: u32,
    pub it_category: Option<u8>,
    pub low_confidence_jobs: usize,
    pub estimated_jobs: usize,
    /// Hours with energy of this owner's that took the period's PUE (no valid PUE of their own).
    pub hours_with_window_pue: usize,
    /// The site's data faults over the period, and notes on this statement's figures.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Methodology {
    pub formulas: Vec<&'static str>,
    pub carbon_factor: String,
    pub market_based: String,
    pub timezone: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub meta: StatementMeta,
    pub totals: Totals,
    pub jobs: Vec<StatementJob>,
    pub projects: Vec<(String, Totals)>,
    pub hourly: Vec<Hour>,
    /// "day" (a month's statement) or "month" (a year's): what `breakdown`'s rows are.
    pub breakdown_unit: &'static str,
    pub breakdown: Vec<Slice>,
    /// The models served for this owner (dedicated deployments whose tenant it is) and its
    /// training jobs that reported progress, per token and per step.
    pub tokens: crate::tokens::TokensSection,
    pub site: Site,
    pub data_quality: Quality,
    pub methodology: Methodology,
    /// The only field that changes between two runs over the same data.
    pub generated_at: String,
}

/// Whether a job of `job_owner` is in the statement of `owner`: the owner itself or one of its
/// projects (`owner/…`).
pub fn owns(owner: &str, job_owner: &str) -> bool {
    job_owner == owner || job_owner.strip_prefix(owner).is_some_and(|rest| rest.starts_with('/'))
}

/// `2026-10` (a month) or `2026` (a year), local to the site's time zone.
pub fn period(key: &str, tz: Tz) -> Result<periods::Period, PeriodError> {
    let now = Timestamp::from_secs(0);
    if key.len() == 4 {
        periods::resolve("year", None, None, Some(key), tz, now)
    } else if key.len() == 7 {
        periods::resolve("month", None, Some(key), None, tz, now)
    } else {
        Err(PeriodError::Param { name: "period", value: key.to_owned(), why: "expected YYYY-MM (a month) or YYYY (a year)" })
    }
}

fn sum_up(jobs: &[&StatementJob], market: Option<f64>, site_it: f64) -> Totals {
    let mut r = Rollup::default();
    for j in jobs {
        attribution::add_to_rollup(&mut r, &j.job);
    }
    let co2_market_kg = market.map(|f| r.facility_energy_kwh * f);
    let share_of_site_it_pct = share(r.it_energy_kwh, site_it);
    Totals { rollup: r, co2_market_kg, share_of_site_it_pct }
}

fn site(k: &Kpi, official: bool) -> Site {
    Site {
        pue: k.pue,
        pue_category: k.pue_category,
        pue_label: k.pue_label.clone(),
        official,
        wue_l_per_kwh: k.wue_l_per_kwh,
        it_energy_kwh: k.it_energy_kwh,
        facility_energy_kwh: k.facility_energy_kwh,
        water_m3: k.water_m3,
        carbon_factor: k.carbon_factor.clone(),
        market_factor_kg_per_kwh: k.co2_market_kg.and_then(|c| (k.facility_energy_kwh > 0.0).then(|| c / k.facility_energy_kwh)),
    }
}

/// The owner's hours: its jobs' one-hour series summed, each with the hour's factors.
fn hourly(jobs: &[StatementJob], steps: &[attribution::StepFactors]) -> Vec<Hour> {
    let mut by_t: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for j in jobs {
        for p in &j.job.series {
            let e = by_t.entry(p.t.as_str()).or_default();
            e.0 += p.gpu_energy_kwh;
            e.1 += p.it_energy_kwh;
        }
    }
    steps
        .iter()
        .filter_map(|f| {
            // A running job holds its GPUs past the newest data: hours with nothing used are not
            // hours "with energy of yours".
            let &(gpu, it) = by_t.get(f.t.as_str()).filter(|(g, i)| *g > 0.0 || *i > 0.0)?;
            let fac = it * f.pue;
            Some(Hour {
                t: f.t.clone(),
                gpu_energy_kwh: gpu,
                it_energy_kwh: it,
                pue: f.pue,
                facility_energy_kwh: fac,
                wue_l_per_kwh: f.wue_l_per_kwh,
                water_l: f.wue_l_per_kwh.map(|w| it * w),
                carbon_factor_kg_per_kwh: f.carbon_factor_kg_per_kwh,
                co2_location_kg: fac * f.carbon_factor_kg_per_kwh,
                window_pue: f.window_pue,
            })
        })
        .collect()
}

/// The hourly table summed per local day or month; every day or month of the period has a row.
fn breakdown(hourly: &[Hour], steps: &[attribution::StepFactors], tz: Tz, fmt: &str) -> Vec<Slice> {
    let label = |t: &str| Timestamp::parse_rfc3339(t).map(|t| t.to_datetime().with_timezone(&tz).format(fmt).to_string()).unwrap_or_default();
    let mut out: Vec<Slice> = Vec::new();
    let mut hours = hourly.iter().peekable();
    for f in steps {
        let l = label(&f.t);
        if out.last().is_none_or(|s| s.label != l) {
            out.push(Slice { label: l, gpu_energy_kwh: 0.0, it_energy_kwh: 0.0, facility_energy_kwh: 0.0, water_l: None, co2_location_kg: 0.0, pue: None, wue_l_per_kwh: None });
        }
        if let (Some(h), Some(s)) = (hours.next_if(|h| h.t == f.t), out.last_mut()) {
            s.gpu_energy_kwh += h.gpu_energy_kwh;
            s.it_energy_kwh += h.it_energy_kwh;
            s.facility_energy_kwh += h.facility_energy_kwh;
            if let Some(w) = h.water_l {
                *s.water_l.get_or_insert(0.0) += w;
            }
            s.co2_location_kg += h.co2_location_kg;
        }
    }
    for s in &mut out {
        if s.it_energy_kwh > 0.0 {
            s.pue = Some(s.facility_energy_kwh / s.it_energy_kwh);
            s.wue_l_per_kwh = s.water_l.map(|w| w / s.it_energy_kwh);
        }
    }
    out
}

/// Assembles `owner`'s statement for `period_key` (`YYYY-MM` or `YYYY`).
pub fn build(store: &(impl SeriesRead + ?Sized), cfg: &impl Settings, owner: &str, period_key: &str, generated_at: Option<&str>) -> Result<Statement, ReportError> {
    let tz: Tz = cfg.timezone().parse().map_err(|_| ReportError::TimeZone(cfg.timezone().to_owned()))?;
    if owner.is_empty() {
        return Err(PeriodError::Param { name: "owner", value: String::new(), why: "an owner or account is required" }.into());
    }
    let p = period(period_key, tz)?;
    let k = kpi::compute_with(store, p.range, &p.label, cfg)?;
    let js = store.jobs()?;
    let allocs: Vec<_> = attribution::allocations(store, &js, p.range)?;
    // One-hour series steps: the same segments as the jobs list (its steps are hours), so the
    // figures are the API's, with each hour's energy kept for the hourly table.
    let att = attribution::attribute(store, &allocs, p.range, Some(HOUR_NS), cfg.carbon())?;
    let tokens = crate::tokens::TokensSection::of(crate::tokens::models_from(store, &js, p.range, &allocs, &att, cfg.accounting().into())?, |o| owns(owner, o), usize::MAX);
    // A calendar year is the official period for PUE; a month is an operational indicator.
    let official = p.official;
    let site = site(&k, official);
    let market = site.market_factor_kg_per_kwh;
    let mut jobs: Vec<StatementJob> = att.jobs.into_iter().filter(|j| owns(owner, &j.owner)).map(|job| StatementJob { co2_market_kg: market.map(|f| job.facility_energy_kwh * f), job }).collect();
    jobs.sort_by(|a, b| a.job.start.cmp(&b.job.start).then_with(|| a.job.job.cmp(&b.job.job)));
    let hourly = hourly(&jobs, &att.steps);
    let (breakdown_unit, fmt) = if official { ("month", "%Y-%m") } else { ("day", "%Y-%m-%d") };
    let breakdown = breakdown(&hourly, &att.steps, tz, fmt);
    // The per-hour series are in `hourly` now; the jobs read as in the jobs list.
    jobs.iter_mut().for_each(|j| j.job.series.clear());
    let all: Vec<&StatementJob> = jobs.iter().collect();
    let totals = sum_up(&all, market, k.it_energy_kwh);
    let mut by_project: BTreeMap<String, Vec<&StatementJob>> = BTreeMap::new();
    for j in &jobs {
        let key = if j.job.project.is_empty() { j.job.owner.clone() } else { j.job.project.clone() };
        by_project.entry(key).or_default().push(j);
    }
    let projects = by_project.into_iter().map(|(name, js)| (name, sum_up(&js, market, k.it_energy_kwh))).collect();

    let q = &k.data_quality;
    let mut notes: Vec<String> = q.faults.clone();
    let window_hours = hourly.iter().filter(|h| h.window_pue).count();
    if window_hours > 0 {
        notes.push(format!("{window_hours} hour(s) with energy of yours had no valid PUE of their own: the period's PUE was applied to them"));
    }
    let low = jobs.iter().filter(|j| j.job.confidence == "low").count();
    if low > 0 {
        notes.push(format!("{low} job(s) of low confidence: shorter than the GPU counters' update period, or integrated from power"));
    }
    if att.data_quality.it_estimated {
        notes.push("metered E_IT is partly integrated from power readings (estimated)".into());
    }
    if site.water_m3.is_none() {
        notes.push("no water meter covers the period: water is \"not metered\", not zero".into());
    }
    if market.is_none() {
        notes.push("no renewable energy is metered or declared for the period: there is no market-based CO2 figure".into());
    }
    let data_quality = Quality {
        coverage_pct: q.coverage_pct,
        missing_meters: q.missing_meters.clone(),
        estimated_meters: q.estimated_meters,
        counter_resets: q.counter_resets,
        it_category: k.pue_category,
        low_confidence_jobs: low,
        estimated_jobs: jobs.iter().filter(|j| j.job.estimated).count(),
        hours_with_window_pue: window_hours,
        notes,
    };
    let f = &k.carbon_factor;
    let residual = cfg.carbon().residual_factor_kg_per_kwh.unwrap_or(cfg.carbon().factor_kg_per_kwh);
    let methodology = Methodology {
        formulas: vec![
            "Job IT energy = the energy of its GPUs (NVML counters) during its allocation + an equal share per GPU of its nodes' non-GPU energy, where node power is metered",
            "Job facility energy = Σ over clock hours of its IT energy × that hour's PUE (E_DC / E_IT of the hour, ISO/IEC 30134-2); an hour without a valid PUE takes the period's",
            "Job water = Σ over hours of its IT energy × that hour's WUE (WIN / E_IT, L/kWh, ISO/IEC 30134-9)",
            "Job CO2, location-based = Σ over hours of its facility energy × that hour's factor (grid factor, generator energy at its own factor)",
            "Job CO2, market-based = its facility energy × the site's market-based CO2 / E_DC over the period (grid energy not covered by renewables × the residual-mix factor, plus generator energy at its own factor, which certificates never offset)",
            "Site: metered E_IT = Σ every customer's jobs + idle GPUs + unattributed (IT energy no GPU or node reading explains); this statement lists yours",
        ],
        carbon_factor: format!("{}: {} {} ({} kg/kWh configured)", f.kind, f.source, f.year.map(|y| y.to_string()).unwrap_or_default(), f.configured_kg_per_kwh),
        market_based: format!("residual-mix factor {residual} kg/kWh on grid energy not covered by guarantees of origin, PPAs or on-site generation; generator energy keeps its own factor"),
        timezone: cfg.timezone().to_owned(),
    };
    Ok(Statement {
        meta: StatementMeta {
            site: cfg.site_name().to_owned(),
            owner: owner.to_owned(),
            period_key: period_key.to_owned(),
            period: p.label.clone(),
            timezone: cfg.timezone().to_owned(),
            from: p.range.from.to_rfc3339(),
            to: p.range.to.to_rfc3339(),
            hours: p.range.duration_secs() / 3600.0,
            kilowatch_version: env!("CARGO_PKG_VERSION"),
        },
        totals,
        jobs,
        projects,
        hourly,
        breakdown_unit,
        breakdown,
        tokens,
        site,
        data_quality,
        methodology,
        generated_at: generation_time(generated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_owns_its_projects_only() {
        assert!(owns("mistral-ai", "mistral-ai"));
        assert!(owns("mistral-ai", "mistral-ai/pretrain"));
        assert!(!owns("mistral-ai", "mistral-ai-evil/x"));
        assert!(!owns("mistral-ai/pretrain", "mistral-ai/finetune"));
        assert!(owns("mistral-ai/pretrain", "mistral-ai/pretrain"));
    }

    #[test]
    fn periods_are_months_or_years() {
        let tz = chrono_tz::Europe::Paris;
        assert_eq!(period("2024-10", tz).expect("month").range.duration_secs(), 745.0 * 3600.0);
        assert_eq!(period("2024", tz).expect("year").range.duration_secs(), 8784.0 * 3600.0);
        assert!(period("24", tz).is_err());
        assert!(period("2024-13", tz).is_err());
    }
}
