//! The accounting API: KPIs over calendar periods, jobs in (`POST /api/v1/jobs`) and out
//! (`GET /api/v1/jobs`, `/api/v1/jobs/{id}`), and the EU indicators.

use crate::adapters::{StoreJobs, StoreRead, allocation, job_error};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono_tz::Tz;
use kilowatch_model::{TimeRange, Timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::api::{AppState, error, parse_range};
use crate::auth::{Auth, Grant};
use crate::tenant::Tenant;
use kilowatch_accounting::attribution::{self, Attribution};
use kilowatch_accounting::periods;
use kilowatch_accounting::{eu, kpi};
use kilowatch_store::Store;
use kilowatch_store::jobs::{JobError, JobStore};

/// The job ledger, opened beside the store when the router is built. If it cannot be opened
/// the rest of the API still serves, and the job endpoints answer 503 with the reason.
pub struct Accounting {
    pub jobs: Result<JobStore, String>,
    /// Answers of `GET /api/v1/kpi` over calendar periods and `GET /api/v1/jobs`.
    pub cache: crate::cache::ResponseCache,
}

pub type Acct = Extension<Arc<Accounting>>;

impl Accounting {
    pub fn open(store: &Store, metrics: Arc<crate::metrics::Metrics>) -> Accounting {
        let jobs = JobStore::beside(store).map_err(|e| {
            tracing::error!(error = %e, "job ledger unavailable");
            e.to_string()
        });
        Accounting { jobs, cache: crate::cache::ResponseCache::default().counted_in(metrics) }
    }
}

#[derive(Deserialize, Default)]
pub struct WindowParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub period: Option<String>,
    pub at: Option<String>,
    pub month: Option<String>,
    pub year: Option<String>,
    pub token: Option<String>,
}

impl WindowParams {
    /// What identifies the answer: every parameter but the token.
    pub(crate) fn cache_key(&self, endpoint: &str) -> String {
        format!("{endpoint}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}", self.from, self.to, self.period, self.at, self.month, self.year)
    }
}

/// Answers from the cache under `key`, or computes over `range`, caches and answers. A live
/// answer past its time is answered at once and computed again in the background.
async fn cached<E: std::fmt::Display + Send + 'static>(
    st: &AppState,
    acct: &Arc<Accounting>,
    key: String,
    range: TimeRange,
    f: impl FnOnce() -> Result<serde_json::Value, E> + Send + 'static,
) -> Response {
    match cached_value(st, acct, key, range, f).await {
        Ok(v) => Json(v.as_ref()).into_response(),
        Err(r) => r,
    }
}

/// [`cached`], the value itself, or the error's answer.
pub(crate) async fn cached_value<E: std::fmt::Display + Send + 'static>(
    st: &AppState,
    acct: &Arc<Accounting>,
    key: String,
    range: TimeRange,
    f: impl FnOnce() -> Result<serde_json::Value, E> + Send + 'static,
) -> Result<Arc<serde_json::Value>, Response> {
    let store = st.store.clone();
    let a = acct.clone();
    let compute = move |store: Arc<kilowatch_store::Store>, a: Arc<Accounting>, key: String| -> Result<Arc<serde_json::Value>, E> {
        let mark = a.cache.mark(&store, range.from.0, range.to.0);
        match f() {
            Ok(v) => {
                let v = Arc::new(v);
                a.cache.put(key, mark, v.clone());
                Ok(v)
            }
            Err(e) => {
                a.cache.refresh_failed(&key);
                Err(e)
            }
        }
    };
    let res = tokio::task::spawn_blocking(move || -> Result<Arc<serde_json::Value>, E> {
        match a.cache.lookup(&store, &key) {
            crate::cache::Lookup::Fresh(v) => Ok(v),
            crate::cache::Lookup::Stale { value, refresh } => {
                if refresh {
                    // Detached: the answer is the stale one, the next request gets the new one.
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = compute(store, a, key) {
                            tracing::warn!(error = %e, "background refresh of a cached answer failed");
                        }
                    });
                }
                Ok(value)
            }
            crate::cache::Lookup::Miss => compute(store, a, key),
        }
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string())),
    }
}

/// A window from `period=` (with `at`, `month`, `year`) or `from`/`to`, with its label.
pub fn window(st: &AppState, q: &WindowParams) -> Result<(TimeRange, String, bool), String> {
    let Some(period) = q.period.as_deref() else {
        return parse_range(q.from.as_deref(), q.to.as_deref()).map(|r| (r, "custom range (operational indicator unless a calendar year)".to_owned(), false));
    };
    let tz: Tz = st.config.site.timezone.parse().map_err(|_| format!("bad site.timezone {:?}", st.config.site.timezone))?;
    let at = q.at.as_deref().map(|a| crate::api::parse_time("at", a)).transpose()?;
    // "Now" for live data is the newest sample (it runs ahead of the clock in a fast demo), but
    // never later than the clock plus the allowed skew.
    let now = if period == "live" { st.store.live_now().map(Timestamp).unwrap_or_else(|_| Timestamp::now()) } else { Timestamp::now() };
    let p = periods::resolve(period, at, q.month.as_deref(), q.year.as_deref(), tz, now).map_err(|e| e.to_string())?;
    Ok((p.range, p.label, p.official))
}

/// The window refused when longer than `api.max_query_days`: a jobs or KPI query is read and
/// computed over every hour of it, and a century of hours costs gigabytes.
pub(crate) fn bounded(st: &AppState, w: Result<(TimeRange, String, bool), String>) -> Result<(TimeRange, String, bool), String> {
    let w = w?;
    let max_days = st.config.api.max_query_days;
    let days = w.0.to.0.saturating_sub(w.0.from.0) / 86_400_000_000_000;
    if u64::try_from(days).unwrap_or(u64::MAX) >= max_days {
        return Err(format!("the window is {days} days long; the longest a query may ask for is {max_days} days (api.max_query_days): ask for shorter windows and add them up"));
    }
    Ok(w)
}

/// A read request's window: the caller may read, and the window parses and is not too long;
/// else the answer that says why (401, 400).
pub(crate) fn read_window(st: &AppState, headers: &HeaderMap, q: &WindowParams) -> Result<(TimeRange, String, bool), Box<Response>> {
    if let Some(r) = read_ok(st, headers, q.token.as_deref()) {
        return Err(Box::new(r));
    }
    bounded(st, window(st, q)).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, "invalid", e)))
}

/// The answer for a request without a write token (`None`: it has one).
pub(crate) fn write_denied(st: &AppState, headers: &HeaderMap) -> Option<Response> {
    match st.auth.grant(Auth::presented(headers, None)) {
        Grant::Write => None,
        Grant::Read => Some(error(StatusCode::FORBIDDEN, "forbidden", "this token may read but not write")),
        Grant::None => Some(error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid write token is required: Authorization: Token <token>")),
    }
}

pub(crate) fn read_ok(st: &AppState, headers: &HeaderMap, token: Option<&str>) -> Option<Response> {
    (!st.auth.may_read(Auth::presented(headers, token))).then(|| error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required: Authorization: Token <token>"))
}

/// Runs `f` off the async workers: its value as JSON, its error as a 500.
pub(crate) async fn blocking<T: serde::Serialize + Send + 'static, E: std::fmt::Display + Send + 'static>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    }
}

pub async fn kpi(State(st): State<AppState>, acct: Acct, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    let (range, label, official) = match read_window(&st, &headers, &q) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let store = st.store.clone();
    let cfg = st.config.clone();
    let compute = move || {
        kpi::compute_with(&StoreRead(&store), range, &label, &*cfg).map(|k| {
            let mut v = serde_json::to_value(&k).unwrap_or_default();
            // A year or rolling 12 months is the official figure only when metered throughout
            // (accounting.official_min_coverage_pct).
            let min = cfg.accounting.official_min_coverage_pct;
            v["official"] = json!(official && k.official(&cfg.accounting));
            v["official_min_coverage_pct"] = json!(min);
            v
        })
    };
    // Live KPIs are cheap and must move every second; calendar periods are cached.
    if q.period.as_deref() == Some("live") {
        return blocking(compute).await;
    }
    let key = q.cache_key("kpi");
    cached(&st, &acct.0, key, range, compute).await
}

/// A body of one object or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(v) => v,
        }
    }
}

pub async fn post_jobs(State(st): State<AppState>, acct: Acct, headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    if let Some(r) = write_denied(&st, &headers) {
        return r;
    }
    // A Kubernetes job's `namespace` gives its owner (`[kubernetes] namespace_owners`).
    let posts = match crate::config::kubernetes::job_posts(body, &st.config.kubernetes) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
    };
    let a2 = acct.0.clone();
    let store = st.store.clone();
    let (scope, admin) = (st.auth.write_scope_of(&headers), st.auth.is_admin(&headers));
    let res = tokio::task::spawn_blocking(move || -> Result<usize, JobError> {
        let js = a2.jobs.as_ref().map_err(|e| JobError::Invalid(format!("job ledger unavailable: {e}")))?;
        // A bad string anywhere refuses the request before any of its posts is applied.
        posts.iter().try_for_each(kilowatch_store::jobs::check_strings)?;
        let rows = posts.iter().try_fold(0, |n, p| js.post_if(p, |known| crate::tenant::job_post_allowed(p, known, scope.as_deref(), admin)).map(|k| n + k))?;
        // A start or end posted for an hour already rolled up: that hour is rolled up again
        // while its raw samples are kept, so the energy at the job's edge is recorded.
        for t in posts.iter().flat_map(|p| [p.start.as_deref(), p.end.as_deref()]).flatten() {
            if let Ok(t) = Timestamp::parse_rfc3339(t) {
                store.mark_dirty(t.0)?;
            }
        }
        Ok(rows)
    })
    .await;
    // A new or ended job changes the attribution at once, not in 15 s.
    acct.cache.clear();
    rows_answer(res, "job post not stored")
}

/// The answer of a post to the job ledger: the rows stored, or why not (`400` for a bad post).
pub(crate) fn rows_answer(res: Result<Result<usize, JobError>, tokio::task::JoinError>, failed: &'static str) -> Response {
    match res {
        Ok(Ok(rows)) => Json(json!({ "rows": rows })).into_response(),
        Ok(Err(JobError::Invalid(m))) => error(StatusCode::BAD_REQUEST, "invalid", m),
        Ok(Err(JobError::Forbidden(m))) => error(StatusCode::FORBIDDEN, "forbidden", m),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{failed}");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    }
}

pub async fn list_jobs(State(st): State<AppState>, acct: Acct, tenant: Option<Extension<Tenant>>, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    let (range, label, _) = match read_window(&st, &headers, &q) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let store = st.store.clone();
    let carbon = st.config.carbon.clone();
    let key = q.cache_key("jobs");
    let a2 = acct.0.clone();
    // Dropped with this future when the client goes: the computation then stops.
    let cancel = attribution::Cancel::default();
    let on_drop = cancel.on_drop();
    let resp = cached_value(&st, &acct.0, key, range, move || -> Result<serde_json::Value, JobError> {
        let acct = a2;
        let js = acct.jobs.as_ref().map_err(|e| JobError::Invalid(e.clone()))?;
        let a = attribution::allocations(&StoreRead(&store), &StoreJobs::new(&store, js), range).map_err(job_error)?;
        let Some(att): Option<Attribution> = attribution::attribute_until(&StoreRead(&store), &a, range, None, &carbon, &cancel).map_err(job_error)? else {
            tracing::info!(from = %range.from.to_rfc3339(), to = %range.to.to_rfc3339(), "jobs query stopped: the client went away");
            return Err(JobError::Invalid("cancelled: the client went away".into()));
        };
        let mut v = serde_json::to_value(&att).unwrap_or_default();
        v["window"] = json!(label);
        Ok(v)
    })
    .await;
    on_drop.disarm();
    // The whole answer is computed and cached once for everyone; a tenant gets its part of it.
    match resp {
        Ok(v) => match tenant {
            Some(Extension(Tenant(scope))) => Json(crate::tenant::jobs_answer(&v, &scope)).into_response(),
            None => Json(v.as_ref()).into_response(),
        },
        Err(r) => r,
    }
}

pub async fn get_job(State(st): State<AppState>, acct: Acct, tenant: Option<Extension<Tenant>>, Path(id): Path<String>, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    if let Some(r) = read_ok(&st, &headers, q.token.as_deref()) {
        return r;
    }
    let store = st.store.clone();
    let carbon = st.config.carbon.clone();
    let max_window_ns = i64::try_from(st.config.api.max_query_days).unwrap_or(i64::MAX).saturating_mul(86_400_000_000_000);
    // Dropped with this future when the client goes: the computation then stops.
    let cancel = attribution::Cancel::default();
    let on_drop = cancel.on_drop();
    let res = tokio::task::spawn_blocking(move || -> Result<Option<serde_json::Value>, JobError> {
        let js = acct.jobs.as_ref().map_err(|e| JobError::Invalid(e.clone()))?;
        let mut a: Vec<_> = js.job(&id)?.into_iter().map(allocation).collect();
        // Another tenant's job is "no such job": a 403 would tell that the id exists.
        if a.is_empty() || tenant.as_ref().is_some_and(|Extension(Tenant(s))| !a.iter().filter(|x| x.job == id).all(|x| s.allows(&x.owner))) {
            return Ok(None);
        }
        let newest = store.live_now()?;
        let start = a.iter().map(|x| x.start).min().unwrap_or(0);
        let to = a.iter().map(|x| x.end.unwrap_or(newest)).max().unwrap_or(start).max(start.saturating_add(1));
        // A job open for longer than `api.max_query_days` (one posted as started in 1677 cost
        // 142 s of CPU) is shown over its last that many days, and the answer says so.
        let from = start.max(to.saturating_sub(max_window_ns));
        let capped = from > start;
        // About 200 points or fewer, on round steps, so short jobs get a usable series.
        let span = to.saturating_sub(from);
        let step = [1i64, 10, 60, 300, 900, 3600, 86_400].iter().map(|s| s * 1_000_000_000).find(|s| span / s <= 200).unwrap_or(86_400_000_000_000);
        a.retain(|x| x.job == id);
        let Some(att) = attribution::attribute_until(&StoreRead(&store), &a, TimeRange::new(Timestamp(from), Timestamp(to)), Some(step), &carbon, &cancel).map_err(job_error)? else {
            tracing::info!(job = %id, "job page stopped: the client went away");
            return Err(JobError::Invalid("cancelled: the client went away".into()));
        };
        let Some(job) = att.jobs.into_iter().next() else { return Ok(None) };
        let window = json!({ "from": Timestamp(from).to_rfc3339(), "to": Timestamp(to).to_rfc3339(), "capped": capped });
        Ok(Some(json!({ "job": job, "allocations": a, "pue": att.pue, "carbon_factor": att.carbon_factor, "step_s": att.step_s, "window": window })))
    })
    .await;
    on_drop.disarm();
    match res {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "not found", "no such job in the ledger"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    }
}

pub async fn eu_indicators(State(st): State<AppState>, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    if let Some(r) = read_ok(&st, &headers, q.token.as_deref()) {
        return r;
    }
    let store = st.store.clone();
    let cfg = st.config.clone();
    // month=YYYY-MM: the year to date at that month's end, as the monthly report shows it.
    if let Some(month) = q.month.clone() {
        return blocking(move || eu::indicators_to_month(&StoreRead(&store), &*cfg, &month)).await;
    }
    let Some(year) = q.year.as_deref().and_then(|y| y.parse::<i32>().ok()) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "year=YYYY (or month=YYYY-MM for the year to date) is required");
    };
    blocking(move || eu::indicators(&StoreRead(&store), &*cfg, year)).await
}
