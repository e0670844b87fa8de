//! `POST /api/v1/write`: Prometheus remote write 1.0 (a snappy-compressed protobuf
//! `prometheus.WriteRequest`), from Prometheus, vmagent, Grafana Alloy or an OpenTelemetry
//! Collector. Series are mapped into the wire schema by `[prometheus]` ([`map`]) and written
//! as the store's lines, built directly (no line-protocol text to format and parse again; the
//! log keeps them as names and values), through the same policy, per-token caps, memory budget
//! and InfluxDB forwarding as line protocol, so the ledger, the KPIs, the jobs and the pages
//! read them as they read the collector's.
//!
//! Answers, as remote-write senders act on them: `204` stored; `400` for what will never be
//! accepted (a corrupt body, or series refused: the message names them and why, and the rest
//! of the request is stored; the sender drops the request); `413` past `server.max_body_bytes`
//! once inflated; `429`/`503` with `Retry-After` for load (the sender retries the whole request,
//! and what was stored already is stored again idempotently).

mod batch;
mod buffers;
mod cache;
pub mod kepler;
mod key;
pub mod map;
pub mod owners;
pub mod proto;
mod rules;
mod xid;

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kilowatch_model::{Lines, LinesBuffers};
use kilowatch_store::{Store, StoreError, WriteSummary};
use serde_json::json;

use crate::api::{AppState, error, over_budget, retry_later};
use crate::events::{InternalEvent, RemoteWriteMapped, WriteInvalid, WriteNotStored, WriteStored};
use crate::guard::Caller;
use crate::sink::InfluxSink;
use crate::tenant::WriteScope;
use map::{Batch, Mapper, SeriesCache};
use owners::{CollectorNodes, JobOwners};

/// The route.
pub const PATH: &str = "/api/v1/write";

/// Refusals named in a `400`'s message, at most: Prometheus logs the first kilobyte or so.
const MAX_NAMED: usize = 5;

/// What the handler keeps between requests: the compiled rules and who reports which GPUs.
pub struct Receiver {
    mapper: Mapper,
    series: SeriesCache,
    owners: CollectorNodes,
    job_owners: JobOwners,
    buffers: buffers::Pool,
    max_body_bytes: usize,
}

impl Receiver {
    pub fn new(state: &AppState) -> Receiver {
        let c = &state.config;
        let mapper = Mapper::new(&c.prometheus, &c.site.name, c.store.max_name_bytes).with_namespace_owners(&c.kubernetes);
        Receiver {
            mapper,
            series: SeriesCache::default(),
            owners: CollectorNodes::new(state.store.clone()),
            job_owners: JobOwners::new(&state.store),
            buffers: buffers::Pool::default(),
            max_body_bytes: c.server.max_body_bytes,
        }
    }
}

/// Why a request was not stored at all.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the body is not snappy block-compressed (Content-Encoding: snappy): {0}")]
    Snappy(snap::Error),
    #[error("the body inflates to {0} bytes, more than server.max_body_bytes ({1})")]
    TooLarge(usize, usize),
    #[error("the body is not a prometheus.WriteRequest (remote write 1.0 protobuf): {0}")]
    Protobuf(proto::DecodeError),
    #[error(transparent)]
    Store(StoreError),
}

/// What was stored, and which series were refused with why (request order).
struct Outcome {
    summary: WriteSummary,
    refused: Vec<String>,
    bytes: usize,
}

pub async fn write(State(st): State<AppState>, Extension(rx): Extension<Arc<Receiver>>, Extension(Caller(who)): Extension<Caller>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let store = st.store.clone();
    let scope = st.auth.write_scope_of(&headers);
    let writer = who.clone();
    let metrics = st.metrics.clone();
    let sink = st.sink.clone();
    let bytes = body.len();
    let done = tokio::task::spawn_blocking(move || {
        if let Some(e) = store.over_budget().map_err(Refused::Store)? {
            return Err(Refused::Store(e));
        }
        let mut bufs = rx.buffers.take();
        let len = inflate(&body, rx.max_body_bytes, &mut bufs.raw)?;
        let req = proto::Request::decode_into(&bufs.raw[..len], std::mem::take(&mut bufs.request)).map_err(Refused::Protobuf)?;
        let mut owners = rx.owners.sources();
        let batch = map::build_into(&req, &rx.mapper, &rx.series, &mut owners, std::mem::take(&mut bufs.batch));
        RemoteWriteMapped(&batch.counts).emit(&metrics);
        rx.job_owners.record(&batch.label_jobs);
        let out = store_batch(&store, sink.as_deref(), &batch, &writer, scope.as_deref(), bytes, &mut bufs.lines).map_err(Refused::Store);
        bufs.request = req.into_buffers();
        bufs.batch = batch.recycle();
        rx.buffers.give(bufs);
        out
    });
    let m = &st.metrics;
    match done.await {
        Ok(Ok(out)) => {
            WriteStored { bytes: out.bytes, summary: &out.summary, skipped: &kilowatch_model::SkippedLines::default(), writer: &who }.emit(m);
            answer(&out)
        }
        Ok(Err(Refused::Store(e @ StoreError::OverBudget { .. }))) => over_budget(&e, &who, &st.store, m),
        Ok(Err(Refused::Store(e))) => {
            WriteNotStored { bytes: 0, error: &e, writer: &who }.emit(m);
            retry_later(&e)
        }
        Ok(Err(e @ Refused::TooLarge(..))) => {
            WriteInvalid { bytes: 0, line: None, reason: &e, writer: &who }.emit(m);
            error(StatusCode::PAYLOAD_TOO_LARGE, "too large", e.to_string())
        }
        Ok(Err(e)) => {
            WriteInvalid { bytes: 0, line: None, reason: &e, writer: &who }.emit(m);
            error(StatusCode::BAD_REQUEST, "invalid", e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "remote write task failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", "write task failed")
        }
    }
}

/// Inflates (snappy block format, as remote write 1.0 specifies) within `max` bytes into the
/// first bytes of `into` (grown if needed, never shrunk); returns how many.
fn inflate(body: &[u8], max: usize, into: &mut Vec<u8>) -> Result<usize, Refused> {
    let len = snap::raw::decompress_len(body).map_err(Refused::Snappy)?;
    if len > max {
        return Err(Refused::TooLarge(len, max));
    }
    if into.len() < len {
        into.resize(len, 0);
    }
    snap::raw::Decoder::new().decompress(body, &mut into[..len]).map_err(Refused::Snappy)
}

/// The batch's lines through the store's write path (the policy, the writer's caps, the log as
/// names and values, not as text), then to the InfluxDB sink as stored; refusals by the store,
/// and by a narrowed write token (series of other nodes or tenants, docs/security.md), are
/// named by the series of their line.
/// `lines` is the memory the store's lines are built in, given back for the next request.
fn store_batch(store: &Store, sink: Option<&InfluxSink>, batch: &Batch, writer: &str, scope: Option<&WriteScope>, bytes: usize, lines: &mut LinesBuffers) -> Result<Outcome, StoreError> {
    let mut refused: Vec<String> = batch.refused.iter().map(|(_, why)| why.clone()).collect();
    if batch.lines.is_empty() {
        return Ok(Outcome { summary: WriteSummary::default(), refused, bytes });
    }
    let mut built = batch.store_lines_into(std::mem::take(lines));
    let stored = write_in_scope(store, sink, batch, writer, scope, &mut built, &mut refused);
    *lines = built.into_buffers();
    let summary = stored?;
    for r in &summary.refused {
        refused.push(format!("{}: {}", describe_line(batch, r.line), r.reason));
    }
    Ok(Outcome { summary, refused, bytes })
}

/// The lines within the token's scope through the store, then to the sink; refusals of the
/// scope added to `refused`.
fn write_in_scope(
    store: &Store,
    sink: Option<&InfluxSink>,
    batch: &Batch,
    writer: &str,
    scope: Option<&WriteScope>,
    lines: &mut Lines<'_>,
    refused: &mut Vec<String>,
) -> Result<WriteSummary, StoreError> {
    let out_of_scope = scope.map(|s| s.retain_lines(lines)).unwrap_or_default();
    refused.extend(out_of_scope.iter().map(|(line, why)| format!("{}: {why}", describe_line(batch, *line))));
    if lines.is_empty() {
        return Ok(WriteSummary::default());
    }
    let summary = store.write_lines_by(lines, writer)?;
    if let Some(sink) = sink {
        let skip: std::collections::HashSet<usize> = summary.refused.iter().map(|r| r.line).collect();
        sink.enqueue(&lines.to_points().into_iter().zip(lines.iter()).filter(|(_, l)| !skip.contains(&l.number())).map(|(p, _)| p).collect::<Vec<_>>());
    }
    Ok(summary)
}

/// The series key of line `line` (from 1) of the batch, cut short.
fn describe_line(batch: &Batch, line: usize) -> String {
    batch.lines.get(line.wrapping_sub(1)).map_or_else(
        || format!("line {line}"),
        |l| {
            let mut s = l.key.text().to_owned();
            if s.len() > 200 {
                let mut cut = 200;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            s
        },
    )
}

/// `204`, or `429` + `Retry-After` when the store asks for a later retry, or `400` naming the
/// refused series (the rest is stored).
fn answer(out: &Outcome) -> Response {
    let retry = out.summary.refused.iter().filter_map(|r| r.retry_after_s).max();
    if out.refused.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let named: Vec<&str> = out.refused.iter().take(MAX_NAMED).map(String::as_str).collect();
    let message = format!("{} series refused, {} samples stored; {}", out.refused.len(), out.summary.samples, named.join("; "));
    let (status, code) = if retry.is_some() { (StatusCode::TOO_MANY_REQUESTS, "too many requests") } else { (StatusCode::BAD_REQUEST, "invalid") };
    let mut r = (status, axum::Json(json!({ "code": code, "message": message, "refused": out.refused.len(), "stored_samples": out.summary.samples }))).into_response();
    if let Some(s) = retry
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}
