//! Typed internal events, in the spirit of vector's: each thing worth knowing about the hub is
//! one type whose [`InternalEvent::emit`] both logs it (with `tracing`, inside the request's
//! span when there is one) and moves its figures in [`Metrics`], so that the log and
//! `/metrics` cannot disagree and no call site counts by hand.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use kilowatch_model::SkippedLines;
use kilowatch_store::{MaintenanceReport, Refusal, WriteSummary};

use crate::metrics::Metrics;

pub trait InternalEvent {
    fn emit(self, m: &Metrics);
}

/// Logs the 1st, 2nd, 4th, 8th… occurrence: a flood stays visible without flooding the log.
fn worth_logging(previous: u64) -> bool {
    (previous + 1).is_power_of_two()
}

/// The `[store]` key that refused a line, read from the reason the store wrote (every policy
/// refusal names its key), so that the label has a handful of values.
fn refusal_reason(r: &Refusal) -> &'static str {
    const KEYS: [&str; 6] = ["max_future_skew_s", "out_of_order_window_s", "max_series", "max_name_bytes", "max_new_series_per_minute_per_token", "max_new_series_per_minute"];
    KEYS.into_iter().find(|k| r.reason.contains(&format!("[store] {k})"))).unwrap_or("other")
}

/// A write whose lines were stored, all or some (a partial write: the others were refused by
/// the store or could not be parsed), or none because no line could be parsed.
pub struct WriteStored<'a> {
    pub bytes: usize,
    pub summary: &'a WriteSummary,
    pub skipped: &'a SkippedLines,
    pub writer: &'a str,
}

impl InternalEvent for WriteStored<'_> {
    fn emit(self, m: &Metrics) {
        let s = self.summary;
        m.ingest_bytes.inc_by(self.bytes as u64);
        m.ingest_lines_accepted.inc_by(s.points as u64);
        m.ingest_values_accepted.inc_by(s.samples as u64);
        m.ingest_new_series.inc_by(s.new_series as u64);
        for r in &s.refused {
            m.ingest_lines_refused.get_or_create(&[("reason", refusal_reason(r).to_owned())]).inc();
        }
        if self.skipped.count > 0 {
            m.ingest_lines_refused.get_or_create(&[("reason", "unparsable".to_owned())]).inc_by(self.skipped.count as u64);
        }
        // Once a request, the first line at fault by its number and reason: never the line
        // itself, which a hostile sender can make megabytes long.
        let first_store = s.refused.first().map(|r| (r.line, crate::api::clip(&r.reason)));
        let first_parse = self.skipped.first.first().map(|e| (e.line, crate::api::clip(&e.reason)));
        let refused = s.refused.len() + self.skipped.count;
        match first_store.into_iter().chain(first_parse).min_by_key(|(line, _)| *line) {
            Some((line, reason)) => tracing::info!(line, refused, unparsable = self.skipped.count, accepted = s.points, writer = %self.writer, reason = %reason, "write partly refused"),
            None => tracing::trace!(lines = s.points, values = s.samples, new_series = s.new_series, bytes = self.bytes, writer = %self.writer, "write stored"),
        }
    }
}

/// What the samples of one remote-write request became (stored ones are counted by
/// [`WriteStored`] as lines and values).
pub struct RemoteWriteMapped<'a>(pub &'a crate::http::remote_write::map::Counts);

impl InternalEvent for RemoteWriteMapped<'_> {
    fn emit(self, m: &Metrics) {
        let c = self.0;
        for (outcome, n) in [("mapped", c.mapped), ("unmapped", c.unmapped), ("refused", c.refused), ("stale", c.stale), ("shadowed", c.shadowed)] {
            if n > 0 {
                m.remote_write_samples.get_or_create(&[("outcome", outcome.to_owned())]).inc_by(n);
            }
        }
        if c.refused > 0 {
            tracing::info!(refused = c.refused, mapped = c.mapped, "remote write: samples refused");
        }
    }
}

/// A write refused whole because its body is not valid line protocol (400).
pub struct WriteInvalid<'a> {
    pub bytes: usize,
    pub line: Option<usize>,
    pub reason: &'a dyn Display,
    pub writer: &'a str,
}

impl InternalEvent for WriteInvalid<'_> {
    fn emit(self, m: &Metrics) {
        m.ingest_bytes.inc_by(self.bytes as u64);
        tracing::debug!(line = ?self.line, reason = %self.reason, writer = %self.writer, "rejected write");
    }
}

/// A write refused whole because the store's memory budget is spent (503 with `Retry-After`:
/// the sender's spool keeps it). Logged at the 1st, 2nd, 4th… refusal: an overload is visible
/// without flooding the log.
pub struct WriteOverBudget<'a> {
    pub error: &'a dyn Display,
    pub writer: &'a str,
}

impl InternalEvent for WriteOverBudget<'_> {
    fn emit(self, m: &Metrics) {
        let previous = m.writes_over_budget.inc();
        if worth_logging(previous) {
            tracing::warn!(error = %self.error, writer = %self.writer, refused = previous + 1, "write refused: memory budget spent");
        }
    }
}

/// A write the store could not take (503: the sender retries).
pub struct WriteNotStored<'a> {
    pub bytes: usize,
    pub error: &'a dyn Display,
    pub writer: &'a str,
}

impl InternalEvent for WriteNotStored<'_> {
    fn emit(self, m: &Metrics) {
        m.ingest_bytes.inc_by(self.bytes as u64);
        tracing::error!(error = %self.error, writer = %self.writer, "write not stored");
    }
}

/// The answer to a write request, whoever gave it: the handler, admission (401, 403, 503,
/// 408) or the body limit (413).
pub struct IngestAnswered(pub StatusCode);

impl InternalEvent for IngestAnswered {
    fn emit(self, m: &Metrics) {
        stored_at(m, "line_protocol", self.0);
        m.ingest_requests.get_or_create(&[("outcome", ingest_outcome(self.0).to_owned())]).inc();
    }
}

/// The answer to a remote-write request (`POST /api/v1/write`), whoever gave it.
pub struct RemoteWriteAnswered(pub StatusCode);

impl InternalEvent for RemoteWriteAnswered {
    fn emit(self, m: &Metrics) {
        stored_at(m, "remote_write", self.0);
        m.remote_write_requests.get_or_create(&[("outcome", ingest_outcome(self.0).to_owned())]).inc();
    }
}

/// Notes the time of a stored write of `source` (an answer of 2xx).
fn stored_at(m: &Metrics, source: &str, status: StatusCode) {
    if status.is_success() {
        m.last_write.get_or_create(&[("source", source.to_owned())]).set(kilowatch_model::Timestamp::now().0 / 1_000_000_000);
    }
}

fn ingest_outcome(status: StatusCode) -> &'static str {
    match status {
        s if s.is_success() => "stored",
        StatusCode::UNPROCESSABLE_ENTITY => "partial",
        StatusCode::TOO_MANY_REQUESTS => "throttled",
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "error",
    }
}

/// One request answered (its headers sent on their way).
pub struct RequestDone<'a> {
    /// The matched route's pattern (`/api/v1/jobs/{id}`), `unmatched` for a 404 of the router.
    pub route: &'a str,
    pub method: &'a axum::http::Method,
    pub status: StatusCode,
    pub elapsed: Duration,
}

impl InternalEvent for RequestDone<'_> {
    fn emit(self, m: &Metrics) {
        use axum::http::Method;
        // Only the methods the routes know, so that a client cannot invent label values.
        let method = match *self.method {
            Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE | Method::PATCH | Method::OPTIONS => self.method.as_str(),
            _ => "other",
        };
        let class = format!("{}xx", self.status.as_u16() / 100);
        m.request_duration.get_or_create(&[("route", self.route.to_owned()), ("method", method.to_owned()), ("status_class", class)]).observe(self.elapsed.as_secs_f64());
    }
}

/// Why admission refused a request.
#[derive(Debug, Clone, Copy)]
pub enum Admission {
    MaxConcurrentRequests,
    MaxInflightBytes,
    BodyTimeout,
}

impl Admission {
    fn key(self) -> &'static str {
        match self {
            Admission::MaxConcurrentRequests => "max_concurrent_requests",
            Admission::MaxInflightBytes => "max_inflight_bytes",
            Admission::BodyTimeout => "body_timeout",
        }
    }
}

pub struct RequestRefused<'a> {
    pub reason: Admission,
    pub path: &'a str,
}

impl InternalEvent for RequestRefused<'_> {
    fn emit(self, m: &Metrics) {
        let key = self.reason.key();
        let before = m.requests_refused.get_or_create(&[("reason", key.to_owned())]).inc();
        if worth_logging(before) {
            tracing::warn!(path = %self.path, refused = before + 1, "request refused: server.{key} reached");
        }
    }
}

/// A connection closed at once: `server.max_connections` were open.
pub struct ConnectionRefused {
    pub peer: SocketAddr,
    pub max: usize,
}

impl InternalEvent for ConnectionRefused {
    fn emit(self, m: &Metrics) {
        let before = m.connections_refused.inc();
        if worth_logging(before) {
            tracing::warn!(peer = %self.peer, refused = before + 1, max = self.max, "connection refused: server.max_connections reached");
        }
    }
}

pub struct CheckpointDone {
    pub samples: usize,
    pub elapsed: Duration,
}

impl InternalEvent for CheckpointDone {
    fn emit(self, m: &Metrics) {
        m.checkpoint_duration.observe(self.elapsed.as_secs_f64());
        m.checkpoint_samples.inc_by(self.samples as u64);
        tracing::debug!(samples = self.samples, seconds = self.elapsed.as_secs_f64(), "checkpoint");
    }
}

pub struct CheckpointFailed<'a> {
    pub error: &'a dyn Display,
    pub elapsed: Duration,
}

impl InternalEvent for CheckpointFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.checkpoint_duration.observe(self.elapsed.as_secs_f64());
        m.checkpoint_failures.inc();
        tracing::error!(error = %self.error, "checkpoint failed; the request log keeps the data");
    }
}

pub struct MaintenanceDone<'a> {
    pub report: &'a MaintenanceReport,
    pub elapsed: Duration,
}

impl InternalEvent for MaintenanceDone<'_> {
    fn emit(self, m: &Metrics) {
        m.maintenance_duration.observe(self.elapsed.as_secs_f64());
        let r = self.report;
        if *r == MaintenanceReport::default() {
            return;
        }
        tracing::info!(
            hours_rolled_up = r.hours_rolled_up,
            hours_rolled_up_again = r.hours_rolled_up_again,
            late_hours_ignored = r.late_hours_ignored,
            rollup_rows = r.rollup_rows_written,
            chunks_compacted = r.chunks_compacted,
            blocks = r.blocks_written,
            raw_rows_deleted = r.raw_rows_deleted,
            rollup_rows_deleted = r.rollup_rows_deleted,
            stopped = r.stopped,
            seconds = format!("{:.1}", self.elapsed.as_secs_f64()),
            "store maintenance"
        );
    }
}

pub struct MaintenanceFailed<'a> {
    pub error: &'a dyn Display,
    pub elapsed: Duration,
}

impl InternalEvent for MaintenanceFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.maintenance_duration.observe(self.elapsed.as_secs_f64());
        m.maintenance_failures.inc();
        tracing::error!(error = %self.error, "store maintenance failed; retrying at the next tick");
    }
}

/// What the cache of API answers held for a request; not logged (one per request).
#[derive(Debug, Clone, Copy)]
pub enum CacheLookup {
    Hit,
    Stale,
    Miss,
}

impl InternalEvent for CacheLookup {
    fn emit(self, m: &Metrics) {
        let result = match self {
            CacheLookup::Hit => "hit",
            CacheLookup::Stale => "stale",
            CacheLookup::Miss => "miss",
        };
        m.cache_lookups.get_or_create(&[("result", result.to_owned())]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_labelled_by_the_key_that_refused_them() {
        let r = |reason: &str| Refusal { line: 1, reason: reason.into(), retry_after_s: None };
        assert_eq!(refusal_reason(&r("gpu at … is 700 s ahead … ([store] max_future_skew_s): check the sender's clock")), "max_future_skew_s");
        assert_eq!(refusal_reason(&r("… beyond the limit of 10 series ([store] max_series); the store holds 10")), "max_series");
        assert_eq!(
            refusal_reason(&r("… but token \"w\" has created its 5 new series for this minute ([store] max_new_series_per_minute_per_token); retry in 1 s")),
            "max_new_series_per_minute_per_token"
        );
        assert_eq!(refusal_reason(&r("… for this minute, all tokens together ([store] max_new_series_per_minute); retry")), "max_new_series_per_minute");
        assert_eq!(refusal_reason(&r("something new")), "other");
    }

    #[test]
    fn floods_log_at_powers_of_two() {
        let logged: Vec<u64> = (0..20).filter(|n| worth_logging(*n)).map(|n| n + 1).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
    }
}
