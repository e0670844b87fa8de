//! What every request passes before a handler sees it: a token check before any body byte is
//! read, caps on requests and body bytes in progress, a deadline on request bodies; and what
//! every answer gets on its way out: security headers, and errors in the documented JSON shape.
//!
//! Order (outermost first): [`respond`] → basic auth (`server.rs`) → [`admit`] → routes; the
//! ingest route counts its bytes with [`budget`] after gzip is inflated, so a small compressed
//! body that inflates to a large one is counted at its real size.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use crate::api::error;
use crate::auth::{Auth, Grant};
use crate::config::ServerConfig;
use crate::events::{Admission, InternalEvent, RequestRefused};
use crate::metrics::Metrics;

/// The ingest route: its bytes are counted after decompression, by [`budget`] on the route.
pub const INGEST_PATH: &str = "/api/v2/write";

/// The ingest routes: InfluxDB 2's and InfluxDB 1.x's (`/write`), one handler.
pub fn is_ingest(path: &str) -> bool {
    path == INGEST_PATH || path == crate::influx_v1::WRITE_PATH
}

/// Never refused for load: a health check and a metrics scrape must answer while the server is
/// busy (that is when they matter), and the live stream lasts as long as its page is open (it
/// would hold a request slot for hours).
fn exempt(path: &str) -> bool {
    matches!(path, "/health" | "/api/v1/health" | "/ping" | "/metrics" | "/dashboard/live")
}

fn carries_body(m: &Method) -> bool {
    m == Method::POST || m == Method::PUT || m == Method::PATCH
}

/// Who wrote: the name of the token a body-carrying request was admitted with (what the logs
/// name, never the token).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// The shared counters of [`admit`] and [`budget`].
pub struct Limits {
    auth: Arc<Auth>,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    body_timeout: Duration,
    /// How much of a refused request's body is read and thrown away, so that the client reads
    /// its 401 instead of a connection reset.
    drain_bytes: usize,
    metrics: Arc<Metrics>,
    /// Asked, before an ingest body is read, whether it is over its memory budget: a refused
    /// write then costs no buffer for its body (a flood of spool replays would hold up to
    /// `server.max_inflight_bytes` of bodies only to refuse them).
    store: Option<Arc<kilowatch_store::Store>>,
}

impl Limits {
    pub fn new(cfg: &ServerConfig, auth: Arc<Auth>, metrics: Arc<Metrics>) -> Limits {
        Limits {
            auth,
            requests: Arc::new(Semaphore::new(cfg.max_concurrent_requests.clamp(1, Semaphore::MAX_PERMITS))),
            bytes: Arc::new(Semaphore::new(cfg.max_inflight_bytes.clamp(1, Semaphore::MAX_PERMITS))),
            body_timeout: Duration::from_secs(cfg.body_timeout_s),
            drain_bytes: cfg.max_body_bytes,
            metrics,
            store: None,
        }
    }

    /// Refuses ingest bodies unread while `store` is over its memory budget.
    pub fn with_store(mut self, store: Arc<kilowatch_store::Store>) -> Limits {
        self.store = Some(store);
        self
    }
}

/// How a body ended, when it did not end well: read by [`admit`] to answer 408 or 503 instead
/// of the extractor's generic 400.
#[derive(Default)]
struct Outcome {
    failed: AtomicU8,
    /// Byte permits taken from [`Limits::bytes`], given back when the request is answered.
    held: AtomicUsize,
}

const TIMED_OUT: u8 = 1;
const OVER_BUDGET: u8 = 2;

/// Gives the byte permits back however the request ends, the client leaving included.
struct Reservation {
    bytes: Arc<Semaphore>,
    outcome: Arc<Outcome>,
    metrics: Arc<Metrics>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let n = self.outcome.held.swap(0, Ordering::AcqRel);
        if n > 0 {
            self.bytes.add_permits(n);
            self.metrics.request_bytes_in_progress.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// A request slot, counted in `kilowatch_http_requests_in_progress` while it is held.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Slot {
        metrics.requests_in_progress.inc();
        Slot { _permit: permit, metrics }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.requests_in_progress.dec();
    }
}

/// An answer that says when to come back.
pub fn busy(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Checks the token of every request that carries a body before reading any of it, and caps
/// the requests and body bytes in progress.
pub async fn admit(State(lim): State<Arc<Limits>>, mut req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    // A PromQL query sent as a form is a read (its handler asks for a read token), with a small
    // body that axum's default limit bounds.
    let with_body = carries_body(req.method()) && !crate::http::prometheus::is_read_post(req.uri().path());
    let routed = req.extensions().get::<MatchedPath>().is_some();
    if with_body {
        let (grant, who) = lim.auth.identify(Auth::presented(req.headers(), None));
        let refusal = match grant {
            Grant::None => Some(error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid write token is required: Authorization: Token <token>")),
            Grant::Read => Some(error(StatusCode::FORBIDDEN, "forbidden", "this token may read but not write")),
            _ => None,
        };
        if let Some(r) = refusal {
            drain(req.into_body(), lim.drain_bytes, lim.body_timeout);
            // A route that does not exist is that, whoever asks (as InfluxDB answers it): a
            // client that posts to a wrong URL learns the URL is wrong, not its token.
            return if routed { r } else { error(StatusCode::NOT_FOUND, "not found", "no such route") };
        }
        let who = who.unwrap_or("").to_owned();
        if (is_ingest(req.uri().path()) || req.uri().path() == crate::http::remote_write::PATH)
            && let Some(store) = &lim.store
        {
            // An error here: the write itself asks again, and answers it.
            if let Ok(Some(e)) = store.over_budget() {
                drain(req.into_body(), lim.drain_bytes, lim.body_timeout);
                return crate::api::over_budget(&e, &who, store, &lim.metrics);
            }
        }
        req.extensions_mut().insert(Caller(who));
    }
    let Ok(permit) = lim.requests.clone().try_acquire_owned() else {
        RequestRefused { reason: Admission::MaxConcurrentRequests, path: req.uri().path() }.emit(&lim.metrics);
        if with_body {
            drain(req.into_body(), lim.drain_bytes, lim.body_timeout);
        }
        return busy("too many requests in progress (server.max_concurrent_requests); retry shortly");
    };
    let _slot = Slot::new(permit, lim.metrics.clone());
    if !with_body {
        return next.run(req).await;
    }
    let outcome = Arc::new(Outcome::default());
    let _reservation = Reservation { bytes: lim.bytes.clone(), outcome: outcome.clone(), metrics: lim.metrics.clone() };
    // The ingest route counts after inflating (its `budget` layer); the others have no
    // decompression, so their bytes are counted here.
    let count_here = !is_ingest(req.uri().path());
    let deadline = tokio::time::Instant::now() + lim.body_timeout;
    let bytes = count_here.then(|| lim.bytes.clone());
    req.extensions_mut().insert(BudgetSlot(outcome.clone()));
    let path = req.uri().path().to_owned();
    let metrics = lim.metrics.clone();
    let req = req.map(|b| Body::new(Guarded { inner: b, deadline: Some(Box::pin(tokio::time::sleep_until(deadline))), bytes, outcome: outcome.clone(), metrics }));
    let resp = next.run(req).await;
    let failed = outcome.failed.load(Ordering::Acquire);
    match failed {
        TIMED_OUT => RequestRefused { reason: Admission::BodyTimeout, path: &path }.emit(&lim.metrics),
        OVER_BUDGET => RequestRefused { reason: Admission::MaxInflightBytes, path: &path }.emit(&lim.metrics),
        _ => {}
    }
    match failed {
        TIMED_OUT => error(StatusCode::REQUEST_TIMEOUT, "request timeout", format!("the request body did not arrive within server.body_timeout_s ({} s)", lim.body_timeout.as_secs())),
        OVER_BUDGET => busy("too many request bytes in progress (server.max_inflight_bytes); retry shortly"),
        _ => resp,
    }
}

/// Where [`budget`] finds the request's [`Outcome`].
#[derive(Clone)]
struct BudgetSlot(Arc<Outcome>);

/// Counts a route's body bytes against `server.max_inflight_bytes` where they are inflated
/// (the ingest route, under its decompression layer).
pub async fn budget(State(lim): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let Some(BudgetSlot(outcome)) = req.extensions().get::<BudgetSlot>().cloned() else {
        return next.run(req).await;
    };
    let bytes = Some(lim.bytes.clone());
    let metrics = lim.metrics.clone();
    next.run(req.map(|b| Body::new(Guarded { inner: b, deadline: None, bytes, outcome, metrics }))).await
}

/// A request body with a deadline and a byte budget. Past either it ends in an error, which
/// the extractor turns into a rejection and [`admit`] into 408 or 503.
struct Guarded {
    inner: Body,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    bytes: Option<Arc<Semaphore>>,
    outcome: Arc<Outcome>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
enum GuardError {
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error("too many request bytes in progress")]
    OverBudget,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if let Some(d) = this.deadline.as_mut()
                    && d.as_mut().poll(cx).is_ready()
                {
                    this.outcome.failed.store(TIMED_OUT, Ordering::Release);
                    return Poll::Ready(Some(Err(GuardError::TimedOut.into())));
                }
                return Poll::Pending;
            }
        };
        if let (Some(Ok(f)), Some(sem)) = (&frame, &this.bytes)
            && let Some(data) = f.data_ref()
            && !data.is_empty()
        {
            let n = data.len();
            match u32::try_from(n).ok().and_then(|k| sem.try_acquire_many(k).ok()) {
                Some(p) => {
                    // Given back by the request's Reservation, once it is answered.
                    p.forget();
                    this.outcome.held.fetch_add(n, Ordering::AcqRel);
                    this.metrics.request_bytes_in_progress.inc_by(i64::try_from(n).unwrap_or(i64::MAX));
                }
                None => {
                    this.outcome.failed.store(OVER_BUDGET, Ordering::Release);
                    return Poll::Ready(Some(Err(GuardError::OverBudget.into())));
                }
            }
        }
        Poll::Ready(frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads and drops up to `max` bytes of a refused request's body, for at most `within`, so the
/// client gets to read the answer (closing on unread bytes resets the connection, and the
/// client's kernel throws the answer away). Nothing is kept: memory stays flat.
fn drain(mut body: Body, max: usize, within: Duration) {
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut n = 0usize;
        let _ = tokio::time::timeout(within, async {
            while let Some(Ok(f)) = body.frame().await {
                n = n.saturating_add(f.data_ref().map_or(0, Bytes::len));
                if n > max {
                    break;
                }
            }
        })
        .await;
    });
}

/// The Content-Security-Policy of every answer: the pages load their scripts and styles from
/// `/dashboard/assets/` only and fetch their JSON from the same origin; inline style
/// attributes (charts, the report's `<style>`) are allowed, inline scripts are not; no page
/// may be framed.
const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every answer, and any error answered in another shape than the
/// documented `{"code", "message"}` (axum's 413 and 415, a 405, the decompression layer's
/// 415) rewritten into it.
pub async fn respond(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/") || req.uri().path() == "/health";
    let mut resp = next.run(req).await;
    let st = resp.status();
    let is_json = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if api && (st.is_client_error() || st.is_server_error()) && !is_json {
        let (mut parts, body) = resp.into_parts();
        let text = axum::body::to_bytes(body, 64 << 10).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
        let message = if text.is_empty() { st.canonical_reason().unwrap_or("error").to_owned() } else { text };
        let code = error_code(st);
        let json = error(st, &code, message);
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp = Response::from_parts(parts, json.into_body());
    }
    let h = resp.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    resp
}

/// The `code` of an error answer: the names the handlers already use, else the status's
/// reason in lower case (InfluxDB's style).
fn error_code(st: StatusCode) -> String {
    match st {
        StatusCode::BAD_REQUEST => "invalid".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "request too large".into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type".into(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}
