//! The ledger's exact figures as read-only series: `kilowatch_pue{window="1d",…}` and its
//! siblings, computed by accounting's own code (the function `GET /api/v1/kpi` answers with,
//! over the same windows), never by PromQL over raw counters. Each closed window (an hour, a
//! day, a calendar month in the site's time zone) gives one sample, stamped at the window's
//! end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use kilowatch_accounting::attribution;
use kilowatch_accounting::kpi::{self, Kpi};
use kilowatch_accounting::periods;
use kilowatch_model::{TimeRange, Timestamp};
use kilowatch_query::{Labels, Matcher, NAME_LABEL, SourceError, SourceSeries};
use kilowatch_store::Store;

use crate::config::Config;
use crate::tenant::OwnerScope;

const NS_PER_MS: i64 = 1_000_000;

/// The windows, by their `window` label and the period `periods::resolve` knows them by.
const WINDOWS: [(&str, &str); 3] = [("1h", "hour"), ("1d", "day"), ("month", "month")];

/// At most this many windows are computed for one query (a month of hours is 744).
const MAX_WINDOWS: usize = 2_000;

/// The site's figures of one window, as series name → value (absent: not metered).
type Figures = Vec<(&'static str, Option<f64>)>;

fn figures(k: &Kpi) -> Figures {
    vec![
        ("kilowatch_pue", k.pue),
        ("kilowatch_it_energy_kwh", Some(k.it_energy_kwh)),
        ("kilowatch_facility_energy_kwh", Some(k.facility_energy_kwh)),
        ("kilowatch_water_m3", k.water_m3),
        ("kilowatch_wue_litres_per_kwh", k.wue_l_per_kwh),
        ("kilowatch_co2_kg", Some(k.co2_location_kg)),
    ]
}

/// The names this source answers: the site's figures, then the jobs'.
pub const NAMES: [&str; 6] = ["kilowatch_pue", "kilowatch_it_energy_kwh", "kilowatch_facility_energy_kwh", "kilowatch_water_m3", "kilowatch_wue_litres_per_kwh", "kilowatch_co2_kg"];
pub const JOB_NAMES: [&str; 2] = ["kilowatch_job_energy_kwh", "kilowatch_owner_energy_kwh"];

/// One window's per-job and per-owner IT energy: (name, labels beyond the window's, kWh).
type JobFigures = Vec<(&'static str, Vec<(&'static str, String)>, f64)>;

pub struct LedgerSeries {
    pub store: Arc<Store>,
    pub config: Arc<Config>,
    /// Each window's figures and labels, computed once per query.
    computed: Mutex<HashMap<(&'static str, i64), Option<(Figures, Labels)>>>,
    /// A tenant's token reads only its owners' jobs and roll-ups.
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
        let later: &[&str] = match name {
            "kilowatch_job_energy_kwh" => &["job", "owner", "project"],
            "kilowatch_owner_energy_kwh" => &["owner"],
            _ => &["category", "coverage"],
        };
        matchers.iter().all(|m| match l.get(&m.name) {
            Some(v) => m.is_match(v),
            None => later.contains(&m.name.as_str()) || m.is_match(""),
        })
    }

    /// The closed windows of `period` that end in `[from, to]` (ns).
    fn windows(&self, period: &str, from: i64, to: i64) -> Result<Vec<TimeRange>, SourceError> {
        let now = Timestamp::now();
        let mut out = Vec::new();
        let mut at = Timestamp(from.saturating_sub(1));
        loop {
            let p = periods::resolve(period, Some(at), None, None, self.tz(), now).map_err(|e| SourceError(e.to_string()))?;
            let end = p.range.to.0;
            if end > to || end > now.0 {
                break;
            }
            if end >= from {
                out.push(p.range);
                if out.len() > MAX_WINDOWS {
                    return Err(SourceError(format!("the ledger's series over more than {MAX_WINDOWS} windows of {period}s: narrow the query")));
                }
            }
            at = p.range.to;
        }
        Ok(out)
    }

    /// A window's figures and labels (`category`, `coverage`), or None where nothing is
    /// metered.
    fn compute(&self, window: &'static str, r: TimeRange) -> Result<Option<(Figures, Labels)>, SourceError> {
        let key = (window, r.from.0);
        if let Some(done) = self.computed.lock().map_err(|_| SourceError("ledger cache poisoned".into()))?.get(&key) {
            return Ok(done.clone());
        }
        let k = kpi::compute_with(&self.store, r, window, &*self.config).map_err(|e| SourceError(e.to_string()))?;
        let done = (k.data_quality.coverage_pct > 0.0 || k.it_energy_kwh > 0.0 || k.facility_energy_kwh > 0.0).then(|| {
            let mut l = self.base_labels(window);
            if let Some(c) = k.pue_category {
                l.insert("category".into(), c.to_string());
            }
            l.insert("coverage".into(), if k.data_quality.coverage_pct >= 100.0 { "full" } else { "partial" }.into());
            (figures(&k), l)
        });
        self.computed.lock().map_err(|_| SourceError("ledger cache poisoned".into()))?.insert(key, done.clone());
        Ok(done)
    }

    /// A window's per-job and per-owner IT energy, as `GET /api/v1/jobs` attributes it (a
    /// tenant: its own jobs and owners only, as that route shows them).
    fn jobs(&self, r: TimeRange) -> Result<JobFigures, SourceError> {
        let err = |e: &dyn std::fmt::Display| SourceError(e.to_string());
        let js = kilowatch_store::jobs::JobStore::beside(&self.store).map_err(|e| err(&e))?;
        let a = attribution::allocations(&self.store, &js, r).map_err(|e| err(&e))?;
        let Some(att) = attribution::attribute_until(&self.store, &a, r, None, &self.config.carbon, &attribution::Cancel::default()).map_err(|e| err(&e))? else {
            return Ok(Vec::new());
        };
        let mut v = serde_json::to_value(&att).map_err(|e| err(&e))?;
        if let Some(scope) = &self.scope {
            v = crate::tenant::jobs_answer(&v, scope);
        }
        let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
        let mut out: JobFigures = Vec::new();
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

    /// The ledger's series that every matcher accepts, with their samples in `[from, to]` (ms).
    pub fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Result<Vec<SourceSeries>, SourceError> {
        let mut by_labels: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
        for (window, period) in WINDOWS {
            if !JOB_NAMES.iter().any(|n| self.may_match(n, window, matchers)) {
                continue;
            }
            for r in self.windows(period, from_ms.saturating_mul(NS_PER_MS), to_ms.saturating_mul(NS_PER_MS))? {
                for (name, extra, kwh) in self.jobs(r)? {
                    let mut l = self.base_labels(window);
                    l.insert(NAME_LABEL.into(), name.into());
                    l.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
                    if matchers.iter().all(|m| m.is_match(l.get(&m.name).map_or("", String::as_str))) {
                        by_labels.entry(l).or_default().push((r.to.0.div_euclid(NS_PER_MS), kwh));
                    }
                }
            }
        }
        for (window, period) in WINDOWS {
            if !NAMES.iter().any(|n| self.may_match(n, window, matchers)) {
                continue;
            }
            for r in self.windows(period, from_ms.saturating_mul(NS_PER_MS), to_ms.saturating_mul(NS_PER_MS))? {
                let Some((figures, labels)) = self.compute(window, r)? else { continue };
                for (name, value) in figures {
                    let Some(v) = value else { continue };
                    let mut l = labels.clone();
                    l.insert(NAME_LABEL.into(), name.into());
                    if matchers.iter().all(|m| m.is_match(l.get(&m.name).map_or("", String::as_str))) {
                        by_labels.entry(l).or_default().push((r.to.0.div_euclid(NS_PER_MS), v));
                    }
                }
            }
        }
        Ok(by_labels.into_iter().map(|(labels, samples)| SourceSeries { labels, samples }).collect())
    }

    /// The label sets the ledger's series may have (for the listings), without computing.
    pub fn series(&self, matchers: &[Matcher]) -> Vec<Labels> {
        let mut out = Vec::new();
        for (window, _) in WINDOWS {
            for name in NAMES.iter().chain(&JOB_NAMES) {
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
