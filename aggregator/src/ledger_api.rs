//! `GET /api/v1/ledger/hours?from=&to=`: the site's exact hourly ledger, what a fleet
//! aggregator ([`crate::fleet`]) reads from each site. Every figure of a clock hour is additive:
//! a window of whole hours is the sum of its hours, so a fleet's totals are exact sums of its
//! sites' and a closed hour, once fetched, never needs fetching again.
//!
//! Per hour: E_DC (grid and generator), E_IT at the window's best category, water, idle
//! energy, and each job's GPU, IT and facility energy, water and CO2 in that hour (the
//! hour's own PUE, WUE and carbon factor, as `GET /api/v1/jobs` computes them).

use crate::adapters::{StoreJobs, StoreRead};
use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use kilowatch_accounting::{attribution, ledger};
use kilowatch_model::energy::hour_bounds;
use kilowatch_model::{TimeRange, Timestamp};
use serde::{Deserialize, Serialize};

use crate::acct_api::Acct;
use crate::api::{AppState, error, parse_range};

pub const HOUR_NS: i64 = 3_600_000_000_000;

/// Most hours one request may ask for: a long month. A fleet fetches in weeks.
pub const MAX_HOURS: i64 = 31 * 24;

/// One job's share of one clock hour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobHour {
    pub job: String,
    pub owner: String,
    pub project: String,
    pub gpu_kwh: f64,
    pub it_kwh: f64,
    pub facility_kwh: f64,
    /// Null where no water meter covers the window.
    pub water_l: Option<f64>,
    pub co2_kg: f64,
}

/// One clock hour of a site.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hour {
    /// The hour's start, ns since the epoch (UTC; hours are whole hours in every zone this
    /// fleet supports).
    pub t: i64,
    pub facility_kwh: f64,
    pub generator_kwh: f64,
    pub it_kwh: f64,
    /// The ISO/IEC 30134-2 category E_IT was metered at (the best present in the request).
    pub it_category: Option<u8>,
    /// Null where no water meter covers the request's window ("not metered"), never 0.
    pub water_m3: Option<f64>,
    /// E_IT of GPUs no job held (with their nodes' share), as in the jobs list.
    pub idle_kwh: f64,
    /// Seconds of the hour both E_DC and E_IT were metered: 0 is an hour with no readings
    /// (before the site existed, an outage of every meter), whose zeros are not energy.
    #[serde(default)]
    pub metered_s: f64,
    pub jobs: Vec<JobHour>,
}

/// What a site's ledger was built from, marked before an answer was computed. A reader that
/// keeps closed hours passes it back to `GET /api/v1/ledger/changed` and fetches again the
/// hours that changed since (a collector's spool replayed late, a job posted afterwards).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revision {
    /// When this process first answered (ns): the store counts writes since it started, so
    /// after a restart a reader fetches everything again.
    pub epoch: i64,
    pub write_seq: u64,
    /// The wall clock at the mark (ns): job ledger rows changed at or after it count.
    pub jobs_at: i64,
}

static EPOCH: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

/// The mark now.
fn revision(store: &kilowatch_store::Store) -> Result<Revision, String> {
    Ok(Revision { epoch: *EPOCH.get_or_init(|| Timestamp::now().0), write_seq: store.write_seq().map_err(|e| e.to_string())?, jobs_at: Timestamp::now().0 })
}

/// The hours of `[from, to)` changed since `since`: `all` when it is from another life of the
/// site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed {
    pub revision: Revision,
    pub all: bool,
    /// Hour starts, ns, sorted.
    pub hours: Vec<i64>,
}

#[derive(Deserialize)]
pub struct ChangedParams {
    pub epoch: i64,
    pub write_seq: u64,
    pub jobs_at: i64,
    #[serde(flatten)]
    pub window: HoursParams,
}

/// The caller may read, and asks for whole hours: the window, or the answer that says why not.
fn checked_window(st: &AppState, headers: &HeaderMap, q: &HoursParams) -> Result<TimeRange, Box<Response>> {
    if let Some(r) = crate::acct_api::read_ok(st, headers, q.token.as_deref()) {
        return Err(Box::new(r));
    }
    parse_range(q.from.as_deref(), q.to.as_deref()).and_then(whole_hours).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, "invalid", e)))
}

/// `GET /api/v1/ledger/changed?epoch=&write_seq=&jobs_at=&from=&to=`: which hours of the
/// window to fetch again since a [`Revision`]. Samples written since (into whichever hour they
/// fall), and every hour from the earliest start of a job allocation that changed since (its
/// end moved, a late post): a job's hours may be attributed differently.
pub async fn changed(State(st): State<AppState>, acct: Acct, Query(q): Query<ChangedParams>, headers: HeaderMap) -> Response {
    let range = match checked_window(&st, &headers, &q.window) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let store = st.store.clone();
    crate::acct_api::blocking(move || -> Result<Changed, String> {
        let revision = revision(&store)?;
        if q.epoch != revision.epoch {
            return Ok(Changed { revision, all: true, hours: Vec::new() });
        }
        let (from, to) = (range.from.0, range.to.0);
        let mut hours = store.hours_written_since(from, to, q.write_seq).map_err(|e| e.to_string())?;
        if let Ok(js) = &acct.jobs
            && let Some(start) = js.changed_since(q.jobs_at).map_err(|e| e.to_string())?
        {
            let first = start.div_euclid(HOUR_NS).saturating_mul(HOUR_NS).max(from);
            hours.extend((0..).map(|i| first + i * HOUR_NS).take_while(|h| *h < to));
            hours.sort_unstable();
            hours.dedup();
        }
        Ok(Changed { revision, all: false, hours })
    })
    .await
}

/// The answer: the hours of `[from, to)` in order, and the site's clock, by which a reader
/// decides which hours are closed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoursAnswer {
    pub site: String,
    pub timezone: String,
    /// The site's clock when it answered, ns.
    pub now: i64,
    pub hours: Vec<Hour>,
    /// Why jobs are absent (the job ledger could not be opened), if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs_unavailable: Option<String>,
    /// Marked before the hours were computed (absent from sites of an older version).
    #[serde(default)]
    pub revision: Option<Revision>,
}

#[derive(Deserialize)]
pub struct HoursParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub token: Option<String>,
}

pub async fn hours(State(st): State<AppState>, acct: Acct, Query(q): Query<HoursParams>, headers: HeaderMap) -> Response {
    let range = match checked_window(&st, &headers, &q) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let store = st.store.clone();
    let cfg = st.config.clone();
    crate::acct_api::blocking(move || -> Result<HoursAnswer, String> {
        let revision = revision(&store)?;
        let bounds = hour_bounds(range.from.0, range.to.0);
        let site = ledger::site_ledgers(&StoreRead(&store), &bounds).map_err(|e| e.to_string())?;
        let n = bounds.len().saturating_sub(1);
        let mut hours: Vec<Hour> = (0..n)
            .map(|i| Hour {
                t: bounds[i],
                facility_kwh: site.facility_kwh[i],
                generator_kwh: site.generator_kwh[i],
                it_kwh: site.it_kwh[i],
                it_category: site.it_category,
                water_m3: site.water_metered.then_some(site.water_m3[i]),
                idle_kwh: 0.0,
                metered_s: site.facility_covered_s[i].min(site.it_covered_s[i]),
                jobs: Vec::new(),
            })
            .collect();
        let jobs_unavailable = match &acct.jobs {
            Ok(js) => {
                let allocs = attribution::allocations(&StoreRead(&store), &StoreJobs::new(&store, js), range).map_err(|e| e.to_string())?;
                let att = attribution::attribute(&StoreRead(&store), &allocs, range, Some(HOUR_NS), &cfg.carbon).map_err(|e| e.to_string())?;
                spread_jobs(&mut hours, &att);
                None
            }
            Err(e) => Some(e.clone()),
        };
        Ok(HoursAnswer { site: cfg.site.name.clone(), timezone: cfg.site.timezone.clone(), now: Timestamp::now().0, hours, jobs_unavailable, revision: Some(revision) })
    })
    .await
}

/// A window of whole clock hours, at most [`MAX_HOURS`] long.
fn whole_hours(r: TimeRange) -> Result<TimeRange, String> {
    if r.from.0.rem_euclid(HOUR_NS) != 0 || r.to.0.rem_euclid(HOUR_NS) != 0 {
        return Err("from and to must be whole hours (minutes and seconds zero)".into());
    }
    if (r.to.0 - r.from.0) / HOUR_NS > MAX_HOURS {
        return Err(format!("at most {MAX_HOURS} hours a request; ask for several"));
    }
    Ok(r)
}

/// Puts each job's per-hour series, and the idle energy per hour, into `hours`: facility
/// energy, water and CO2 follow from each hour's own factors, as in the jobs list.
fn spread_jobs(hours: &mut [Hour], att: &attribution::Attribution) {
    let index: BTreeMap<i64, usize> = hours.iter().enumerate().map(|(i, h)| (h.t, i)).collect();
    for (h, idle) in hours.iter_mut().zip(&att.idle_series_kwh) {
        h.idle_kwh = *idle;
    }
    for j in &att.jobs {
        for p in &j.series {
            let Some(&i) = Timestamp::parse_rfc3339(&p.t).ok().and_then(|t| index.get(&t.0)) else { continue };
            let Some(f) = att.steps.get(i) else { continue };
            let facility_kwh = p.it_energy_kwh * f.pue;
            hours[i].jobs.push(JobHour {
                job: j.job.clone(),
                owner: j.owner.clone(),
                project: j.project.clone(),
                gpu_kwh: p.gpu_energy_kwh,
                it_kwh: p.it_energy_kwh,
                facility_kwh,
                water_l: f.wue_l_per_kwh.map(|w| p.it_energy_kwh * w),
                co2_kg: facility_kwh * f.carbon_factor_kg_per_kwh,
            });
        }
    }
}
