//! The ledger's exact figures as read-only series: `kilowatch_pue{window="1d",…}` and its
//! siblings, computed by accounting's own code (the functions `GET /api/v1/kpi`,
//! `GET /api/v1/jobs` and `GET /api/v1/models` answer with, over the same windows), never by
//! PromQL over raw counters. Each closed window (an hour, a day, a calendar month in the site's
//! time zone) gives one sample, stamped at the window's end. Every series of a window carries
//! the window's `category` (the PUE category of the E_IT its figure rests on) and `coverage`
//! (`metered`, `partial` or `estimated`, as the dashboard and the report qualify it).

use crate::adapters::{StoreJobs, StoreRead};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use kilowatch_accounting::attribution;
use kilowatch_accounting::kpi::{self, DataQuality, Kpi};
use kilowatch_accounting::periods;
use kilowatch_accounting::tokens;
use kilowatch_model::{TimeRange, Timestamp};
use kilowatch_query::{Labels, Matcher, NAME_LABEL, SourceError, SourceSeries};
use kilowatch_store::Store;
use kilowatch_store::jobs::JobStore;

use crate::config::Config;
use crate::tenant::OwnerScope;

const NS_PER_MS: i64 = 1_000_000;

/// The windows, by their `window` label and the period `periods::resolve` knows them by.
const WINDOWS: [(&str, &str); 3] = [("1h", "hour"), ("1d", "day"), ("month", "month")];

/// At most this many windows are computed for one query (a month of hours is 744).
const MAX_WINDOWS: usize = 2_000;

/// The site's figures (`GET /api/v1/kpi`), the jobs' and owners' (`GET /api/v1/jobs`) and the
/// models' (`GET /api/v1/models`).
pub const NAMES: [&str; 6] = ["kilowatch_pue", "kilowatch_it_energy_kwh", "kilowatch_facility_energy_kwh", "kilowatch_water_m3", "kilowatch_wue_litres_per_kwh", "kilowatch_co2_kg"];
pub const JOB_NAMES: [&str; 2] = ["kilowatch_job_energy_kwh", "kilowatch_owner_energy_kwh"];
pub const MODEL_NAMES: [&str; 1] = ["kilowatch_model_energy_joules_per_token"];

/// At most this many windows of a kind are computed for a listing (two days of hours).
const LISTED_WINDOWS: usize = 48;

/// Which kinds of a window's series a query may select.
#[derive(Clone, Copy)]
struct Wanted {
    site: bool,
    jobs: bool,
    models: bool,
}

/// The labels a window's computation adds to every series of the window.
const WINDOW_LABELS: [&str; 2] = ["category", "coverage"];

/// One figure of a window: its series name, its labels beyond the window's, its value.
type Row = (&'static str, Vec<(&'static str, String)>, f64);

/// A window's site figures (none where nothing is metered) and the labels all its series carry.
#[derive(Clone)]
struct Window {
    figures: Vec<Row>,
    labels: Labels,
}

fn site_rows(k: &Kpi) -> Vec<Row> {
    let figures = [
        ("kilowatch_pue", k.pue),
        ("kilowatch_it_energy_kwh", Some(k.it_energy_kwh)),
        ("kilowatch_facility_energy_kwh", Some(k.facility_energy_kwh)),
        ("kilowatch_water_m3", k.water_m3),
        ("kilowatch_wue_litres_per_kwh", k.wue_l_per_kwh),
        ("kilowatch_co2_kg", Some(k.co2_location_kg)),
    ];
    figures.into_iter().filter_map(|(name, v)| v.map(|v| (name, Vec::new(), v))).collect()
}

/// How far a window's figures are measured, in the words the dashboard and the report use: a
/// window not wholly metered is `partial` (the dashboard's "N % metered"); a wholly covered one
/// whose meters include one integrated from power (no counter) is `estimated`; else `metered`.
pub fn coverage(q: &DataQuality) -> &'static str {
    if q.coverage_pct < 100.0 {
        "partial"
    } else if q.estimated_meters > 0 {
        "estimated"
    } else {
        "metered"
    }
}

/// The extra labels a series of `name` has beyond the window's.
fn own_labels(name: &str) -> &'static [&'static str] {
    match name {
        "kilowatch_job_energy_kwh" => &["job", "owner", "project"],
        "kilowatch_owner_energy_kwh" => &["owner"],
        "kilowatch_model_energy_joules_per_token" => &["model", "tenant", "basis", "tokens"],
        _ => &[],
    }
}

pub struct LedgerSeries {
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    /// Each window's figures and labels, computed once per query.
    computed: Mutex<HashMap<(&'static str, i64), Window>>,
    /// A tenant's token reads only its owners' jobs and roll-ups, and its own models.
    pub scope: Option<Arc<OwnerScope>>,
}

impl LedgerSeries {
    pub fn new(store: Arc<Store>, config: Arc<Config>) -> Self {
        LedgerSeries { store, config, computed: Mutex::new(HashMap::new()), scope: None }
    }

    fn tz(&self) -> Tz {
        self.config.site.timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The labels every series of a window carries, before its figures are computed.
    fn base_labels(&self, window: &str) -> Labels {
        let mut l = Labels::new();
        l.insert("window".into(), window.into());
        l.insert("site".into(), self.config.site.name.clone());
        l
    }

    /// Whether a series of `name` and `window` may pass the matchers: its name, window and site
    /// are known; a matcher on a label the series cannot have must accept "".
    fn may_match(&self, name: &str, window: &str, matchers: &[Matcher]) -> bool {
        let mut l = self.base_labels(window);
        l.insert(NAME_LABEL.into(), name.into());
        matchers.iter().all(|m| match l.get(&m.name) {
            Some(v) => m.is_match(v),
            None => own_labels(name).contains(&m.name.as_str()) || WINDOW_LABELS.contains(&m.name.as_str()) || m.is_match(""),
        })
    }

    /// The closed windows of `period` that end in `[from, to]` (ns), at most `max + 1` of them
    /// (more than `max`: the caller decides what that means).
    fn windows(&self, period: &str, from: i64, to: i64, max: usize) -> Result<Vec<TimeRange>, SourceError> {
        let now = Timestamp::now();
        let mut out = Vec::new();
        let mut at = Timestamp(from.max(0).saturating_sub(1));
        loop {
            let p = periods::resolve(period, Some(at), None, None, self.tz(), now).map_err(|e| SourceError(e.to_string()))?;
            let end = p.range.to.0;
            if end > to || end > now.0 || out.len() > max {
                break;
            }
            if end >= from {
                out.push(p.range);
            }
            at = p.range.to;
        }
        Ok(out)
    }

    /// Which of a window's kinds of series the matchers may select: the site's, the jobs', the
    /// models'.
    fn wanted(&self, window: &str, matchers: &[Matcher]) -> Option<Wanted> {
        let any = |names: &[&str]| names.iter().any(|n| self.may_match(n, window, matchers));
        let w = Wanted { site: any(&NAMES), jobs: any(&JOB_NAMES), models: any(&MODEL_NAMES) };
        (w.site || w.jobs || w.models).then_some(w)
    }

    /// A window's site figures and the labels of all its series (`category`, `coverage`), by
    /// the KPI function `GET /api/v1/kpi` answers with.
    fn compute(&self, window: &'static str, r: TimeRange) -> Result<Window, SourceError> {
        let key = (window, r.from.0);
        if let Some(done) = self.computed.lock().map_err(|_| SourceError("ledger cache poisoned".into()))?.get(&key) {
            return Ok(done.clone());
        }
        let k = kpi::compute_with(&StoreRead(&self.store), r, window, &*self.config).map_err(|e| SourceError(e.to_string()))?;
        let mut labels = self.base_labels(window);
        if let Some(c) = k.pue_category {
            labels.insert("category".into(), c.to_string());
        }
        labels.insert("coverage".into(), coverage(&k.data_quality).into());
        let metered = k.data_quality.coverage_pct > 0.0 || k.it_energy_kwh > 0.0 || k.facility_energy_kwh > 0.0;
        let done = Window { figures: if metered { site_rows(&k) } else { Vec::new() }, labels };
        self.computed.lock().map_err(|_| SourceError("ledger cache poisoned".into()))?.insert(key, done.clone());
        Ok(done)
    }

    /// A window's per-job and per-owner IT energy, as `GET /api/v1/jobs` attributes it (a
    /// tenant: its own jobs and owners only, as that route shows them).
    fn jobs(&self, r: TimeRange) -> Result<Vec<Row>, SourceError> {
        let err = |e: &dyn std::fmt::Display| SourceError(e.to_string());
        let js = JobStore::beside(&self.store).map_err(|e| err(&e))?;
        let a = attribution::allocations(&StoreRead(&self.store), &StoreJobs::new(&self.store, &js), r).map_err(|e| err(&e))?;
        let Some(att) = attribution::attribute_until(&StoreRead(&self.store), &a, r, None, &self.config.carbon, &attribution::Cancel::default()).map_err(|e| err(&e))? else {
            return Ok(Vec::new());
        };
        let mut v = serde_json::to_value(&att).map_err(|e| err(&e))?;
        if let Some(scope) = &self.scope {
            v = crate::tenant::jobs_answer(&v, scope);
        }
        let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
        let mut out: Vec<Row> = Vec::new();
        for j in v["jobs"].as_array().into_iter().flatten() {
            if let Some(kwh) = j["it_energy_kwh"].as_f64() {
                out.push(("kilowatch_job_energy_kwh", vec![("job", text(&j["job"])), ("owner", text(&j["owner"])), ("project", text(&j["project"]))], kwh));
            }
        }
        for (owner, roll) in v["by_owner"].as_object().into_iter().flatten() {
            if let Some(kwh) = roll["it_energy_kwh"].as_f64() {
                out.push(("kilowatch_owner_energy_kwh", vec![("owner", owner.clone())], kwh));
            }
        }
        Ok(out)
    }

    /// A window's energy per token of each model and tenant, by the function
    /// `GET /api/v1/models` answers with: over all tokens (`tokens="all"`) and over generated
    /// ones, at the GPU, IT and facility boundaries (`basis`), as the `/metrics` gauges of the
    /// same name. A figure the models answer leaves null (the facility's without a facility
    /// meter, any without tokens) is no series, never a 0. A tenant sees its own models only.
    fn models(&self, r: TimeRange) -> Result<Vec<Row>, SourceError> {
        let err = |e: &dyn std::fmt::Display| SourceError(e.to_string());
        let js = JobStore::beside(&self.store).map_err(|e| err(&e))?;
        let answer = tokens::models(&StoreRead(&self.store), &StoreJobs::new(&self.store, &js), r, &self.config.carbon, tokens::PromptWeights::from(&self.config.accounting)).map_err(|e| err(&e))?;
        let mut out: Vec<Row> = Vec::new();
        for m in answer.models.iter().filter(|m| self.scope.as_ref().is_none_or(|s| s.allows(&m.tenant))) {
            for (kind, e) in [("all", m.per_token.j_per_token), ("generated", m.per_token.j_per_generated_token)] {
                let Some(e) = e else { continue };
                for (basis, v) in [("gpu", Some(e.gpu)), ("it", Some(e.it)), ("facility", e.facility)] {
                    let Some(v) = v else { continue };
                    out.push((MODEL_NAMES[0], vec![("model", m.model.clone()), ("tenant", m.tenant.clone()), ("basis", basis.to_owned()), ("tokens", kind.to_owned())], v));
                }
            }
        }
        Ok(out)
    }

    /// The ledger's series that every matcher accepts, with their samples in `[from, to]` (ms).
    pub fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Result<Vec<SourceSeries>, SourceError> {
        let mut plan = Vec::new();
        for (window, period) in WINDOWS {
            let Some(wanted) = self.wanted(window, matchers) else { continue };
            let ranges = self.windows(period, from_ms.saturating_mul(NS_PER_MS), to_ms.saturating_mul(NS_PER_MS), MAX_WINDOWS)?;
            if ranges.len() > MAX_WINDOWS {
                return Err(SourceError(format!("the ledger's series over more than {MAX_WINDOWS} windows of {period}s: narrow the query")));
            }
            plan.push((window, wanted, ranges));
        }
        self.series_of(matchers, &plan)
    }

    /// The series of the planned windows that every matcher accepts.
    fn series_of(&self, matchers: &[Matcher], plan: &[(&'static str, Wanted, Vec<TimeRange>)]) -> Result<Vec<SourceSeries>, SourceError> {
        let mut by_labels: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
        for (window, wanted, ranges) in plan {
            for r in ranges {
                let w = self.compute(window, *r)?;
                let mut rows = if wanted.site { w.figures.clone() } else { Vec::new() };
                if wanted.jobs {
                    rows.extend(self.jobs(*r)?);
                }
                if wanted.models {
                    rows.extend(self.models(*r)?);
                }
                for (name, extra, value) in rows {
                    let mut l = w.labels.clone();
                    l.insert(NAME_LABEL.into(), name.into());
                    l.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
                    if matchers.iter().all(|m| m.is_match(l.get(&m.name).map_or("", String::as_str))) {
                        by_labels.entry(l).or_default().push((r.to.0.div_euclid(NS_PER_MS), value));
                    }
                }
            }
        }
        let mut out: Vec<SourceSeries> = by_labels.into_iter().map(|(labels, samples)| SourceSeries { labels, samples }).collect();
        // Windows of one series may come from different passes: samples in time order.
        out.iter_mut().for_each(|s| s.samples.sort_by_key(|(t, _)| *t));
        Ok(out)
    }

    /// The label sets of the series with a sample in `[from, to]` (ms), for the listings with
    /// `start` and `end`: computed, as a query sees them, where at most [`LISTED_WINDOWS`] of a
    /// kind end there; over more (a listing over months of hours would attribute every hour),
    /// the label sets known without computing, and a warning that says so.
    pub fn listed(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64, warnings: &mut Vec<String>) -> Result<Vec<Labels>, SourceError> {
        let mut plan = Vec::new();
        let mut out = Vec::new();
        for (window, period) in WINDOWS {
            let Some(wanted) = self.wanted(window, matchers) else { continue };
            let ranges = self.windows(period, from_ms.saturating_mul(NS_PER_MS), to_ms.saturating_mul(NS_PER_MS), LISTED_WINDOWS)?;
            if ranges.len() > LISTED_WINDOWS {
                out.extend(self.series(matchers).into_iter().filter(|l| l.get("window").is_some_and(|w| w == window)));
                warnings.push(format!("the ledger's series of window=\"{window}\" are listed without their computed labels (category, coverage, jobs', owners' and models'): over {LISTED_WINDOWS} of its windows end in the range; narrow start and end to list them in full"));
            } else if !ranges.is_empty() {
                plan.push((window, wanted, ranges));
            }
        }
        out.extend(self.series_of(matchers, &plan)?.into_iter().map(|s| s.labels));
        Ok(out)
    }

    /// The label sets the ledger's series may have, without computing any window (the
    /// listings without `start` or `end`): a window's `category` and `coverage`, and the jobs'
    /// and models' labels, are known only once it is computed.
    pub fn series(&self, matchers: &[Matcher]) -> Vec<Labels> {
        let mut out = Vec::new();
        for (window, _) in WINDOWS {
            for name in NAMES.iter().chain(&JOB_NAMES).chain(&MODEL_NAMES) {
                let mut l = self.base_labels(window);
                l.insert(NAME_LABEL.into(), (*name).into());
                if matchers.iter().all(|m| m.is_match(l.get(&m.name).map_or("", String::as_str))) {
                    out.push(l);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quality(coverage_pct: f64, estimated_meters: usize) -> DataQuality {
        DataQuality { coverage_pct, counter_resets: 0, estimated_meters, meters: Vec::new(), faults: Vec::new(), missing_meters: Vec::new() }
    }

    #[test]
    fn coverage_says_partial_before_estimated() {
        assert_eq!(coverage(&quality(100.0, 0)), "metered");
        assert_eq!(coverage(&quality(100.0, 1)), "estimated");
        assert_eq!(coverage(&quality(99.9, 1)), "partial");
        assert_eq!(coverage(&quality(0.0, 0)), "partial");
    }
}
