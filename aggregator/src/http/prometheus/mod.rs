//! The Prometheus HTTP query API under `/prometheus/api/v1/`, so that Grafana's Prometheus
//! data source, `promtool` and any Prometheus client read Kilowatch: `query`, `query_range`,
//! `series`, `labels`, `label/{name}/values`, `metadata`, `status/buildinfo`, by GET or by
//! form-encoded POST, in Prometheus' JSON shapes and error types.
//!
//! Reads need a read token (`Authorization: Bearer …`); a tenant-scoped token sees only the
//! series of its owners ([`store_source::StoreSource`]): the rest is absent, never an error
//! that names it. Evaluation runs on the blocking pool, within [`kilowatch_query::Limits`].

pub mod export;
pub mod ledger_series;
pub mod site_source;
pub mod store_source;

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use kilowatch_query::{Engine, Labels, Limits, Matcher, QueryError, SeriesSource, parse_duration_ms, parse_time_ms};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::auth::{Auth, ReadAccess};
use crate::tenant::Tenant;
use ledger_series::LedgerSeries;
use site_source::SiteSource;
use store_source::StoreSource;

/// Where the API lives: a Grafana data source points at `http://host:8086/prometheus`.
pub const PREFIX: &str = "/prometheus/api/v1";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{PREFIX}/query"), get(query).post(query))
        .route(&format!("{PREFIX}/query_range"), get(query_range).post(query_range))
        .route(&format!("{PREFIX}/series"), get(series).post(series))
        .route(&format!("{PREFIX}/labels"), get(labels).post(labels))
        .route(&format!("{PREFIX}/label/{{name}}/values"), get(label_values))
        .route(&format!("{PREFIX}/metadata"), get(metadata))
        .route(&format!("{PREFIX}/status/buildinfo"), get(buildinfo))
        .route("/api/v1/export", get(export::export))
}

/// Whether a POST to `path` is a read (a query sent as a form), which a read token may send.
pub fn is_read_post(path: &str) -> bool {
    path.strip_prefix(PREFIX).is_some_and(|p| matches!(p, "/query" | "/query_range" | "/series" | "/labels"))
}

/// An answer in Prometheus' error shape.
pub(crate) fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "status": "error", "errorType": kind, "error": message.into() }))).into_response()
}

fn query_error(e: &QueryError) -> Response {
    let status = match e {
        QueryError::Execution(_) | QueryError::TooMuch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        QueryError::Source(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "PromQL query failed reading the store");
    }
    error(status, e.kind(), e.to_string())
}

fn success(data: Value, warnings: &[String]) -> Response {
    let mut body = json!({ "status": "success", "data": data });
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Json(body).into_response()
}

/// The request's parameters: its query string, then its form body (a POST).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    fn read(method: &Method, headers: &HeaderMap, query: Option<String>, body: &Bytes) -> Result<Params, Response> {
        let bad = |e: serde_urlencoded::de::Error| error(StatusCode::BAD_REQUEST, "bad_data", format!("invalid parameters: {e}"));
        let mut all: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(bad)?;
        if method == Method::POST && !body.is_empty() {
            let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
            if !form {
                return Err(error(StatusCode::BAD_REQUEST, "bad_data", "a POST carries its parameters as application/x-www-form-urlencoded"));
            }
            all.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(bad)?);
        }
        Ok(Params(all))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    fn time(&self, name: &str, default: i64) -> Result<i64, Response> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(s) => parse_time_ms(s).map_err(|_| error(StatusCode::BAD_REQUEST, "bad_data", format!("invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp"))),
        }
    }
}

/// The caller's view of the store, or the answer that refuses it.
pub(crate) fn source_for(st: &AppState, headers: &HeaderMap, query: Option<&str>, tenant: Option<Extension<Tenant>>) -> Result<SiteSource, Response> {
    let token = query.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok()).and_then(|p| p.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v));
    let scope = match st.auth.read_access(Auth::presented(headers, token.as_deref())) {
        ReadAccess::Denied => return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required: Authorization: Bearer <token>")),
        ReadAccess::All => None,
        ReadAccess::Owners(o) => Some(o),
    };
    // The site's ledger series are the site-level KPIs a tenant's figures rest on, which
    // `GET /api/v1/kpi` shows it too.
    let scope = scope.or(tenant.map(|t| t.0.0.clone()));
    let mut ledger = LedgerSeries::new(st.store.clone(), st.config.clone());
    ledger.scope = scope.clone();
    Ok(SiteSource { raw: StoreSource { store: st.store.clone(), scope }, ledger })
}

/// The caller's view of the store and the request's parameters, or the answer that refuses them.
fn prepare(st: &AppState, tenant: Option<Extension<Tenant>>, method: &Method, headers: &HeaderMap, q: Option<String>, body: &Bytes) -> Result<(SiteSource, Params), Response> {
    let source = source_for(st, headers, q.as_deref(), tenant)?;
    Ok((source, Params::read(method, headers, q, body)?))
}

/// The answer to an evaluation that ran on the blocking pool.
fn respond<T>(done: Result<Result<T, QueryError>, Response>, ok: impl FnOnce(T) -> Response) -> Response {
    match done {
        Ok(Ok(x)) => ok(x),
        Ok(Err(e)) => query_error(&e),
        Err(r) => r,
    }
}

fn now_ms() -> i64 {
    kilowatch_model::Timestamp::now().0.div_euclid(1_000_000)
}

/// Runs `work` on the blocking pool: evaluation reads the store and may take a while.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "PromQL evaluation task failed");
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the evaluation failed")
    })
}

fn limits() -> Limits {
    Limits::default()
}

async fn query(State(st): State<AppState>, tenant: Option<Extension<Tenant>>, method: Method, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let (source, p) = match prepare(&st, tenant, &method, &headers, q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(expr) = p.get("query").map(str::to_owned) else { return error(StatusCode::BAD_REQUEST, "bad_data", "invalid parameter \"query\": no query given") };
    let t = match p.time("time", now_ms()) {
        Ok(t) => t,
        Err(r) => return r,
    };
    respond(blocking(move || Engine::new(&source, limits()).instant(&expr, t)).await, |r| success(r.value.to_json(t), &r.warnings))
}

async fn query_range(State(st): State<AppState>, tenant: Option<Extension<Tenant>>, method: Method, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let (source, p) = match prepare(&st, tenant, &method, &headers, q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(expr) = p.get("query").map(str::to_owned) else { return error(StatusCode::BAD_REQUEST, "bad_data", "invalid parameter \"query\": no query given") };
    let (start, end) = match (p.get("start"), p.get("end")) {
        (Some(a), Some(b)) => match (parse_time_ms(a), parse_time_ms(b)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return error(StatusCode::BAD_REQUEST, "bad_data", "invalid parameter \"start\" or \"end\": not a timestamp"),
        },
        _ => return error(StatusCode::BAD_REQUEST, "bad_data", "invalid parameter \"start\" and \"end\": both are required"),
    };
    let Some(step) = p.get("step").and_then(|s| parse_duration_ms(s).ok()) else {
        return error(StatusCode::BAD_REQUEST, "bad_data", "invalid parameter \"step\": cannot parse it to a valid duration");
    };
    respond(blocking(move || Engine::new(&source, limits()).range(&expr, start, end, step)).await, |r| success(r.value.to_json(end), &r.warnings))
}

/// The matchers of each `match[]` selector (none: every series).
pub(crate) fn selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, Response> {
    p.all("match[]")
        .into_iter()
        .map(|s| match promql_selector(s) {
            Some(m) => Ok(m),
            None => Err(error(StatusCode::BAD_REQUEST, "bad_data", format!("invalid parameter \"match[]\": {s:?} is not a series selector"))),
        })
        .collect()
}

/// [`selectors`], of which there must be one at least.
pub(crate) fn required_selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, Response> {
    match selectors(p)? {
        s if s.is_empty() => Err(error(StatusCode::BAD_REQUEST, "bad_data", "no match[] parameter provided")),
        s => Ok(s),
    }
}

fn promql_selector(s: &str) -> Option<Vec<Matcher>> {
    kilowatch_query::parse_selector(s).ok()
}

/// The labels of the series the selectors match (all series without selectors); with a
/// window, only those with a sample in it, and the warnings of that listing.
fn matched(source: &SiteSource, sels: &[Vec<Matcher>], window: Option<(i64, i64)>) -> Result<(Vec<Labels>, Vec<String>), QueryError> {
    let mut warnings = Vec::new();
    let mut each = |m: &[Matcher]| match window {
        Some((from, to)) => source.series_between(m, from, to, &mut warnings),
        None => source.series(m),
    };
    let mut seen = BTreeSet::new();
    if sels.is_empty() {
        seen.extend(each(&[])?);
    }
    for m in sels {
        seen.extend(each(m)?);
    }
    warnings.sort();
    warnings.dedup();
    Ok((seen.into_iter().collect(), warnings))
}

/// The listings' `start` and `end` (ms), when either is given: Prometheus lists only the series
/// with samples between them, from the beginning of time or up to its end where one is missing.
fn listing_window(p: &Params) -> Result<Option<(i64, i64)>, Response> {
    if p.get("start").is_none_or(str::is_empty) && p.get("end").is_none_or(str::is_empty) {
        return Ok(None);
    }
    Ok(Some((p.time("start", i64::MIN / 2)?, p.time("end", i64::MAX / 2)?)))
}

/// The selectors and window of a listing.
fn listing(p: &Params, required: bool) -> Result<(Vec<Vec<Matcher>>, Option<(i64, i64)>), Response> {
    let sels = if required { required_selectors(p)? } else { selectors(p)? };
    Ok((sels, listing_window(p)?))
}

async fn series(State(st): State<AppState>, tenant: Option<Extension<Tenant>>, method: Method, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let (source, p) = match prepare(&st, tenant, &method, &headers, q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (sels, window) = match listing(&p, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    respond(blocking(move || matched(&source, &sels, window)).await, |(l, w)| success(json!(l), &w))
}

async fn labels(State(st): State<AppState>, tenant: Option<Extension<Tenant>>, method: Method, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let (source, p) = match prepare(&st, tenant, &method, &headers, q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (sels, window) = match listing(&p, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    respond(blocking(move || matched(&source, &sels, window)).await, |(l, w)| success(json!(l.iter().flat_map(|x| x.keys()).collect::<BTreeSet<_>>()), &w))
}

async fn label_values(State(st): State<AppState>, tenant: Option<Extension<Tenant>>, Path(name): Path<String>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (source, p) = match prepare(&st, tenant, &Method::GET, &headers, q, &Bytes::new()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (sels, window) = match listing(&p, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    respond(blocking(move || matched(&source, &sels, window)).await, |(l, w)| success(json!(l.iter().filter_map(|x| x.get(&name)).collect::<BTreeSet<_>>()), &w))
}

/// Kilowatch keeps no metric metadata (types, help): an empty answer, which Grafana accepts.
async fn metadata(State(st): State<AppState>, tenant: Option<Extension<Tenant>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    match source_for(&st, &headers, q.as_deref(), tenant) {
        Ok(_) => success(json!({}), &[]),
        Err(r) => r,
    }
}

/// What Grafana reads to decide which Prometheus features to use.
async fn buildinfo(State(st): State<AppState>, tenant: Option<Extension<Tenant>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    match source_for(&st, &headers, q.as_deref(), tenant) {
        Ok(_) => success(
            json!({ "version": "2.42.0", "revision": concat!("kilowatch-", env!("CARGO_PKG_VERSION")), "branch": "kilowatch", "buildUser": "kilowatch", "buildDate": "", "goVersion": "none (Kilowatch's PromQL engine)" }),
            &[],
        ),
        Err(r) => r,
    }
}
