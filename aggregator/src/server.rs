//! Puts the API, the dashboard and the background work together, and runs them until asked
//! to stop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::watch;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use crate::acct_api;
use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::conn::ConnLimits;
use crate::events::{CheckpointDone, CheckpointFailed, IngestAnswered, InternalEvent, MaintenanceDone, MaintenanceFailed, RemoteWriteAnswered, RequestDone};
use crate::guard::{self, Limits};
use crate::influx_v1;
use crate::metrics::Metrics;
use crate::view::StoreView;
use kilowatch_store::Store;

pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes (the fleet's) behind the same limits, auth and tracing.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let view: kilowatch_dashboard::SharedView = Arc::new(StoreView::new(state.store.clone(), state.config.site.name.clone(), state.config.site.timezone.parse().unwrap_or(chrono_tz::UTC)));
    // Pages and assets hold no data and are open; the JSON they fetch needs a read token.
    // `route_layer`: on the routes only; a layer would also wrap the router's fallback, which
    // the merge makes everyone's, and answer 401 for a route that does not exist.
    let dashboard = kilowatch_dashboard::pages_router().merge(kilowatch_dashboard::data_router(view).route_layer(middleware::from_fn_with_state(state.clone(), require_read)));
    let metrics = state.metrics.clone();
    let m = metrics.clone();
    state.store.observe_lock_wait(Box::new(move |waited| m.lock_wait.observe(waited.as_secs_f64())));
    let limits = Arc::new(Limits::new(&state.config.server, state.auth.clone(), metrics.clone()).with_store(state.store.clone()));
    let max_body = state.config.server.max_body_bytes;
    let ingest = Router::new()
        .route(guard::INGEST_PATH, post(api::write))
        .route(influx_v1::WRITE_PATH, post(api::write))
        // Counted where gzip is already inflated: the size that takes memory.
        .layer(middleware::from_fn_with_state(limits.clone(), guard::budget))
        // Telegraf and InfluxDB clients gzip their bodies; the limit applies after inflating.
        .layer(RequestDecompressionLayer::new())
        .layer(DefaultBodyLimit::max(max_body));
    // Remote write: snappy is inflated by the handler (within max_body_bytes), so no
    // decompression layer here (tower-http's would refuse `Content-Encoding: snappy` with 415);
    // its compressed bytes are counted by `admit`.
    let remote_write = Router::new()
        .route(crate::http::remote_write::PATH, post(crate::http::remote_write::write))
        .layer(axum::Extension(Arc::new(crate::http::remote_write::Receiver::new(&state))))
        .layer(DefaultBodyLimit::max(max_body));
    let acct = Arc::new(acct_api::Accounting::open(&state.store, metrics.clone()));
    let auth = state.auth.clone();
    Router::new()
        .route("/api/v1/kpi", get(acct_api::kpi))
        .route("/api/v1/jobs", get(acct_api::list_jobs).post(acct_api::post_jobs))
        .route("/api/v1/jobs/{id}", get(acct_api::get_job))
        .route("/api/v1/eu-indicators", get(acct_api::eu_indicators))
        .route("/api/v1/ledger/hours", get(crate::ledger_api::hours))
        .route("/api/v1/ledger/changed", get(crate::ledger_api::changed))
        .route("/api/v1/models", get(crate::tokens_api::get_models))
        .route("/api/v1/progress", axum::routing::post(crate::tokens_api::post_progress))
        .route("/api/v1/reports/{file}", get(crate::report::web::get_report))
        .route("/api/v1/statements/{owner}/{file}", get(crate::report::web::get_statement))
        .layer(axum::Extension(acct))
        .route("/api/v1/health", get(api::health))
        .route("/health", get(api::health))
        .route("/ping", get(influx_v1::ping))
        .route("/metrics", get(crate::metrics::metrics))
        .merge(ingest)
        .merge(remote_write)
        .merge(crate::alerting::routes())
        .merge(crate::admin::routes(&state))
        .merge(crate::filing_api::routes())
        .merge(crate::forecast_api::routes().route_layer(middleware::from_fn_with_state(state.clone(), require_read)))
        // Checks its own read tokens, to answer refusals in Prometheus' error shape.
        .merge(crate::http::prometheus::routes())
        .merge(extra)
        .with_state(state)
        .merge(dashboard)
        // The token of a request with a body is checked before any of it is read.
        .layer(middleware::from_fn_with_state(limits, guard::admit))
        // Tenant-scoped tokens reach only the routes that filter by their scope; inside
        // `basic_auth`, so a browser's credentials are scoped too.
        .layer(middleware::from_fn_with_state(auth, crate::tenant::gate))
        .layer(middleware::from_fn(basic_auth))
        .layer(middleware::from_fn(influx_v1::query_credentials))
        .layer(middleware::from_fn(guard::respond))
        .layer(middleware::from_fn(influx_v1::v1_answers))
        .layer(middleware::from_fn_with_state(metrics, observe))
        // Outermost: every request gets an `x-request-id` (the client's, or a new UUID), which
        // names its span, so the lines one request logs can be found together, and which its
        // answer carries back.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // Handlers log their own failures; a flood of 503s must not become one ERROR line each.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The span of one request: its id, method and path (never the query: it may hold a token).
fn request_span(req: &Request) -> tracing::Span {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

/// Times every request by route and counts the answers to writes, whoever gave them (the
/// handler, admission, the body limit).
async fn observe(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let t0 = std::time::Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    RequestDone { route: &route, method: &method, status: resp.status(), elapsed: t0.elapsed() }.emit(&m);
    if method == Method::POST && guard::is_ingest(&route) {
        IngestAnswered(resp.status()).emit(&m);
    } else if method == Method::POST && route == crate::http::remote_write::PATH {
        RemoteWriteAnswered(resp.status()).emit(&m);
    }
    resp
}

/// HTTP basic auth for browsers: `Authorization: Basic base64(user:token)` is read as
/// `Token <token>` (the user name is free), so everything that checks tokens accepts it. A
/// read refused without credentials asks for them (`WWW-Authenticate: Basic`), which makes a
/// browser show its own login prompt and then send them with every request.
async fn basic_auth(mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::trim);
    let had_credentials = header.is_some() || query_token(req.uri()).is_some();
    if let Some(token) = header.and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic "))).and_then(basic_password)
        && let Ok(v) = HeaderValue::from_str(&format!("Token {token}"))
    {
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    let is_read = req.method() == Method::GET && (req.uri().path().starts_with("/dashboard/") || req.uri().path().starts_with("/api/v1/"));
    let mut resp = next.run(req).await;
    if is_read && !had_credentials && resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Kilowatch\", charset=\"UTF-8\""));
    }
    resp
}

/// The password of a basic-auth credential (standard base64 of `user:password`, padding
/// optional).
fn basic_password(b64: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64.trim().trim_end_matches('=')).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.split_once(':').map(|(_, p)| p.to_owned()).filter(|p| !p.is_empty())
}

/// Everything the dashboard's pages fetch needs a read token unless reads are open (demo on
/// loopback).
async fn require_read(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let query_token = query_token(req.uri());
    if st.auth.may_read(Auth::presented(req.headers(), query_token.as_deref())) { next.run(req).await } else { api::error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required") }
}

/// The `token` query parameter, percent-decoded (`%2B`, `+`, …) as every other parameter is.
pub fn query_token(uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct T {
        token: Option<String>,
    }
    axum::extract::Query::<T>::try_from_uri(uri).ok().and_then(|q| q.0.token)
}

/// Checkpoints the store every `every`, and once more on shutdown so that a clean stop leaves
/// no log to replay.
pub fn spawn_checkpointer(store: Arc<Store>, every: Duration, head_max_bytes: usize, metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The heads are looked at every second: a burst (a site starting, collectors replaying
        // their spools) is checkpointed when it reaches `head_max_bytes`, not when the interval
        // is up, so memory follows the series, not the write rate.
        let mut look = tokio::time::interval(Duration::from_secs(1).min(every));
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            let stop = tokio::select! {
                _ = look.tick() => false,
                _ = shutdown.changed() => true,
            };
            // Past the memory budget writes are refused until a checkpoint frees the heads:
            // one starts at the next look, not at the interval.
            let full = store.memory_use().is_ok_and(|m| m.head_bytes >= head_max_bytes) || store.over_budget().is_ok_and(|e| e.is_some());
            if !stop && !full && last.elapsed() < every {
                continue;
            }
            last = tokio::time::Instant::now();
            let s = store.clone();
            let t0 = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || s.checkpoint()).await {
                Ok(Ok(samples)) => CheckpointDone { samples, elapsed: t0.elapsed() }.emit(&metrics),
                Ok(Err(e)) => CheckpointFailed { error: &e, elapsed: t0.elapsed() }.emit(&metrics),
                Err(e) => CheckpointFailed { error: &e, elapsed: t0.elapsed() }.emit(&metrics),
            }
            if stop {
                break;
            }
        }
    })
}

/// Runs the store's maintenance (roll-ups, compaction, retention) every `every`. A failed pass
/// is logged and retried at the next tick: nothing is deleted before it is rolled up. On
/// shutdown a pass in progress is stopped ([`Store::stop_maintenance`]), so that the process
/// ends within `server.shutdown_grace_s` plus a unit of maintenance work.
pub fn spawn_maintenance(store: Arc<Store>, keep: kilowatch_store::Retention, every: Duration, metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    // Job runs seen in `gpu_job` points are recorded as each hour is rolled up, while its raw
    // points are still there: they must outlive the points' retention.
    let jobs = match kilowatch_store::jobs::JobStore::beside(&store) {
        Ok(j) => Some(Arc::new(j)),
        Err(e) => {
            tracing::error!(error = %e, "jobs ledger unavailable: job runs from gpu_job points will not be recorded");
            None
        }
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let s = store.clone();
            let j = jobs.clone();
            let t0 = std::time::Instant::now();
            let pass = move || s.maintain_with(&keep, kilowatch_model::Timestamp::now().0, &mut kilowatch_store::jobs::recorder(j.as_deref()));
            let mut running = tokio::task::spawn_blocking(pass);
            // A stop asked during a pass (a catch-up roll-up of weeks runs for many minutes) stops
            // it at its next unit of work; the next start resumes where it stopped.
            let (done, stopping) = tokio::select! {
                r = &mut running => (r, false),
                _ = shutdown.changed() => {
                    store.stop_maintenance();
                    (running.await, true)
                }
            };
            match done {
                Ok(Ok(report)) => MaintenanceDone { report: &report, elapsed: t0.elapsed() }.emit(&metrics),
                Ok(Err(e)) => MaintenanceFailed { error: &e, elapsed: t0.elapsed() }.emit(&metrics),
                Err(e) => MaintenanceFailed { error: &e, elapsed: t0.elapsed() }.emit(&metrics),
            }
            if stopping {
                break;
            }
        }
    })
}

/// Serves `app` on `listener` until `shutdown` turns true, with the default limits of
/// `[server]` (tests; `kilowatch serve` uses [`serve_with`]). Its connections are counted in a
/// `Metrics` of their own, not the one `app` shows.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    serve_with(listener, None, app, shutdown, ConnLimits::from_config(&ServerConfig::default()), Arc::default()).await
}

/// [`serve`] over TLS (see [`crate::tls`]).
pub async fn serve_tls(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor, app: Router, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    serve_with(listener, Some(acceptor), app, shutdown, ConnLimits::from_config(&ServerConfig::default()), Arc::default()).await
}

/// Serves `app`, over TLS with `tls`, within `limits` (see [`crate::conn`]), counting its
/// connections in `metrics` (the `AppState`'s, so that `/metrics` shows them).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: watch::Receiver<bool>,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    crate::conn::serve(listener, tls, app, shutdown, limits, metrics).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_credentials_decode_to_their_password() {
        // base64("ops:read-token-0123456789")
        assert_eq!(super::basic_password("b3BzOnJlYWQtdG9rZW4tMDEyMzQ1Njc4OQ==").as_deref(), Some("read-token-0123456789"));
        assert_eq!(super::basic_password("Zm9v"), None, "no colon");
        assert_eq!(super::basic_password("!!"), None);
    }
}
