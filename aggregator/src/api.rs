//! The HTTP API: ingest (`/api/v2/write`, InfluxDB v2-compatible), KPIs, health.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kilowatch_model::{LinesBuffers, Precision, SkippedLines, TimeRange, Timestamp, parse_batch_lenient_into};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Auth;
use crate::config::Config;
use crate::events::{InternalEvent, WriteInvalid, WriteNotStored, WriteOverBudget, WriteStored};
use crate::guard::Caller;
use kilowatch_store::{Store, StoreError, WriteSummary};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
    pub config: Arc<Config>,
    /// Forwarding to InfluxDB, when configured.
    pub sink: Option<Arc<crate::sink::InfluxSink>>,
    /// What `GET /metrics` shows; moved by [`crate::events`].
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// An error in InfluxDB v2's shape (`code`, `message`), which its clients print as is.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "code": code, "message": message.into() }))).into_response()
}

#[derive(Deserialize)]
pub struct WriteParams {
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub precision: Option<String>,
}

/// The write token was checked by [`crate::guard::admit`] before the body was read; `Caller`
/// names its holder.
pub async fn write(State(st): State<AppState>, Query(q): Query<WriteParams>, Extension(Caller(who)): Extension<Caller>, headers: HeaderMap, body: Bytes) -> Response {
    let precision = match q.precision.as_deref().map(str::parse::<Precision>).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    let bytes = body.len();
    let store = st.store.clone();
    let writer = who.clone();
    let sink = st.sink.clone();
    let scope = st.auth.write_scope_of(&headers);
    // Parsing a large body is CPU work too: off the async workers, with the store write.
    let stored = tokio::task::spawn_blocking(move || -> Result<(WriteSummary, SkippedLines), Refused> {
        // Past the memory budget, refused before parsing: a flood of replays must not cost a
        // parse each on top of the memory it is refused for.
        if let Some(e) = store.over_budget().map_err(Refused::Store)? {
            return Err(Refused::Store(e));
        }
        let text = std::str::from_utf8(&body).map_err(|_| Refused::NotUtf8)?;
        let body = kilowatch_store::Body { text, precision, default_ts: Timestamp::now() };
        // One bad line costs that line only: the others are stored (InfluxDB's partial write).
        let (mut lines, skipped) = parse_batch_lenient_into(body.text, body.precision, body.default_ts, ParseBuffers::take());
        // A narrowed token's lines for other nodes or tenants are refused, named; the rest stored.
        let out_of_scope = scope.map(|s| s.retain_lines(&mut lines)).unwrap_or_default();
        let stored = match (lines.is_empty(), skipped.count + out_of_scope.len()) {
            (true, _) => Ok(WriteSummary::default()),
            // The log keeps the body only when the body is exactly what was stored.
            (false, 0) => store.write_body(&body, &lines, &writer).map_err(Refused::Store),
            (false, _) => store.write_lines_by(&lines, &writer).map_err(Refused::Store),
        };
        let stored = stored.map(|mut s| {
            s.refused.extend(out_of_scope.into_iter().map(|(line, reason)| kilowatch_store::Refusal { line, reason, retry_after_s: None }));
            s.refused.sort_by_key(|r| r.line);
            s
        });
        if let (Ok(summary), Some(sink)) = (&stored, sink) {
            let refused: std::collections::HashSet<usize> = summary.refused.iter().map(|r| r.line).collect();
            sink.enqueue(&lines.to_points().into_iter().zip(lines.iter()).filter(|(_, l)| !refused.contains(&l.number())).map(|(p, _)| p).collect::<Vec<_>>());
        }
        ParseBuffers::give_back(lines.into_buffers());
        stored.map(|s| (s, skipped))
    });
    let m = &st.metrics;
    match stored.await {
        Ok(Ok((summary, skipped))) => {
            WriteStored { bytes, summary: &summary, skipped: &skipped, writer: &who }.emit(m);
            if summary.refused.is_empty() && skipped.count == 0 { StatusCode::NO_CONTENT.into_response() } else { partial_write(&summary, &skipped) }
        }
        Ok(Err(Refused::Store(e @ kilowatch_store::StoreError::OverBudget { .. }))) => over_budget(&e, &who, &st.store, m),
        Ok(Err(Refused::NotUtf8)) => {
            WriteInvalid { bytes, line: None, reason: &"the body is not UTF-8 text", writer: &who }.emit(m);
            error(StatusCode::BAD_REQUEST, "invalid", "the body is not UTF-8 text")
        }
        Ok(Err(Refused::Store(e))) => {
            WriteNotStored { bytes, error: &e, writer: &who }.emit(m);
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("not stored, retry later: {e}"))
        }
        Err(e) => {
            tracing::error!(error = %e, "write task failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", "write task failed")
        }
    }
}

/// The memory of earlier writes' parsed lines, reused by the next ones (see [`LinesBuffers`]).
struct ParseBuffers;

impl ParseBuffers {
    /// Buffers kept: one per write parsing at the same time, up to this many.
    const KEPT: usize = 4;
    /// A buffer larger than this (a one-off huge body) is freed rather than kept resident.
    const MAX_BYTES: usize = 64 << 20;

    fn pool() -> &'static std::sync::Mutex<Vec<LinesBuffers>> {
        static POOL: std::sync::Mutex<Vec<LinesBuffers>> = std::sync::Mutex::new(Vec::new());
        &POOL
    }

    fn take() -> LinesBuffers {
        Self::pool().lock().ok().and_then(|mut p| p.pop()).unwrap_or_default()
    }

    fn give_back(b: LinesBuffers) {
        if b.capacity_bytes() <= Self::MAX_BYTES
            && let Ok(mut p) = Self::pool().lock()
            && p.len() < Self::KEPT
        {
            p.push(b);
        }
    }
}

/// Refused lines listed in a partial write's answer, at most: the answer stays small when a
/// whole batch of a node with a wrong clock is refused.
const MAX_LISTED_REFUSALS: usize = 20;

/// Seconds a writer refused by the store (over its memory budget, or failing) is told to wait: a
/// checkpoint takes seconds.
const STORE_RETRY_S: &str = "5";

/// The answer to a write the store refused for now (`e`): 503 with `Retry-After`.
pub(crate) fn retry_later(e: &StoreError) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("not stored, retry later: {e}"));
    r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(STORE_RETRY_S));
    r
}

/// The answer to a write while the store is over its memory budget (`e`): 503 with
/// `Retry-After` saying when the next checkpoint will have freed the heads, from how long
/// recent checkpoints took ([`Store::retry_after_s`], 1 to 60 s), counted and logged.
pub(crate) fn over_budget(e: &StoreError, who: &str, store: &Store, m: &crate::metrics::Metrics) -> Response {
    WriteOverBudget { error: e, writer: who }.emit(m);
    let wait = store.retry_after_s().unwrap_or(kilowatch_store::RETRY_MAX_S);
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("not stored, retry in {wait} s: {e}"));
    r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(wait));
    r
}

/// The answer to a write of which some lines were refused, unparsable (`skipped`) or refused
/// by the store, and the others stored. One shape for all (`refused`, `accepted`, `line`,
/// `errors`): 422, as InfluxDB v2 answers a partial write, when retrying cannot help (the good
/// lines are in); 400 when no line of the body could be parsed at all; 429 with `Retry-After`
/// when a line met a new-series rate cap, so that the client sends the batch again later (the
/// lines stored meanwhile are stored again, idempotently).
fn partial_write(summary: &WriteSummary, skipped: &SkippedLines) -> Response {
    let retry = summary.refused.iter().filter_map(|r| r.retry_after_s).max();
    let unparsable = skipped.first.iter().map(|e| (e.line, clip(&format!("unable to parse: {}", e.reason)), None));
    let mut listed: Vec<(usize, String, Option<u64>)> = summary.refused.iter().map(|r| (r.line, clip(&r.reason), r.retry_after_s)).chain(unparsable).collect();
    listed.sort_by_key(|(line, _, _)| *line);
    let refused = summary.refused.len() + skipped.count;
    let first = listed.iter().find(|r| r.2.is_some() == retry.is_some()).or(listed.first());
    let (first_line, first_reason) = first.map_or((0, ""), |(l, r, _)| (*l, r.as_str()));
    let message = format!("partial write: {refused} line(s) refused, {} stored; first refused: line {first_line}: {first_reason}", summary.points);
    let errors: Vec<_> = listed.iter().take(MAX_LISTED_REFUSALS).map(|(line, reason, _)| json!({ "line": line, "message": reason })).collect();
    let (status, code) = match (retry, summary.points) {
        (Some(_), _) => (StatusCode::TOO_MANY_REQUESTS, "too many requests"),
        (None, 0) if summary.refused.is_empty() => (StatusCode::BAD_REQUEST, "invalid"),
        (None, _) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable entity"),
    };
    let mut r = (status, Json(json!({ "code": code, "message": message, "line": first_line, "refused": refused, "accepted": summary.points, "errors": errors }))).into_response();
    if let Some(s) = retry
        && let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

/// A refusal's reason as answered and logged: a reason may quote the name at fault, and a
/// hostile sender's name can be megabytes.
pub(crate) fn clip(reason: &str) -> String {
    const MAX: usize = 1024;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// Why a write was not stored.
enum Refused {
    NotUtf8,
    Store(StoreError),
}

#[derive(Deserialize)]
pub struct RangeParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub token: Option<String>,
}

pub fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, String> {
    let parse = |name: &str, v: Option<&str>| -> Result<Timestamp, String> {
        let v = v.ok_or_else(|| format!("{name} is required (RFC 3339, e.g. 2026-10-01T00:00:00+02:00)"))?;
        parse_time(name, v)
    };
    let r = TimeRange::new(parse("from", from)?, parse("to", to)?);
    if r.to <= r.from {
        return Err("to must be after from".into());
    }
    Ok(r)
}

/// A query parameter's RFC 3339 time; the message names the parameter and, for a date beyond
/// what the store's timestamps hold, the supported range.
pub fn parse_time(name: &str, v: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(v).map_err(|e| match e {
        kilowatch_model::TimeError::Parse(e) => format!("{name}={v:?} is not an RFC 3339 time: {e}"),
        e @ kilowatch_model::TimeError::OutOfRange(_) => format!("{name}: {e}"),
    })
}

// `GET /api/v1/kpi` lives in `acct_api` (ranges and calendar periods).

/// Open: without a read token only the status, so that an anonymous probe learns neither the
/// version nor the store's figures nor where points are forwarded.
pub async fn health(State(st): State<AppState>, tenant: Option<Extension<crate::tenant::Tenant>>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let token = crate::server::query_token(&uri);
    // The store's figures and the forwarding are the operator's: a tenant gets the status.
    let reader = tenant.is_none() && st.auth.may_read(Auth::presented(&headers, token.as_deref()));
    let store = st.store.clone();
    let metrics = st.metrics.clone();
    let details = move || store.stats().map(|stats| (stats, reader.then(|| crate::http::sources::feeds(&store, &metrics, Timestamp::now().0))));
    match tokio::task::spawn_blocking(details).await {
        Ok(Ok(_)) if !reader => Json(json!({ "status": "pass", "name": "kilowatch" })).into_response(),
        Ok(Ok((stats, sources))) => Json(json!({
            "status": "pass",
            "name": "kilowatch",
            "version": env!("CARGO_PKG_VERSION"),
            "site": st.config.site.name,
            "store": stats,
            "sources": sources,
            "influxdb": st.sink.as_ref().map(|s| s.health()),
        }))
        .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "fail", "name": "kilowatch"}))).into_response(),
    }
}
