//! Puts the API, the dashboard and the background work together, and runs them until asked
//! to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::http::StatusCode;
use tokio::sync::watch;
use tower_http::decompression::RequestDecompressionLayer;

use crate::acct_api;
use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::store::Store;
use crate::view::StoreView;

pub fn router(state: AppState) -> Router {
    let view: kilowatch_dashboard::SharedView = Arc::new(StoreView::new(state.store.clone(), state.config.site.name.clone()));
    // Pages and assets hold no data and are open; the JSON they fetch needs a read token.
    let dashboard = kilowatch_dashboard::pages_router().merge(kilowatch_dashboard::data_router(view).layer(middleware::from_fn_with_state(state.clone(), require_read)));
    let max_body = state.config.server.max_body_bytes;
    let ingest = Router::new()
        .route("/api/v2/write", post(api::write))
        // Telegraf and InfluxDB clients gzip their bodies; the limit applies after inflating.
        .layer(RequestDecompressionLayer::new())
        .layer(DefaultBodyLimit::max(max_body));
    let acct = Arc::new(acct_api::Accounting::open(&state.store));
    Router::new()
        .route("/api/v1/kpi", get(acct_api::kpi))
        .route("/api/v1/jobs", get(acct_api::list_jobs).post(acct_api::post_jobs))
        .route("/api/v1/jobs/{id}", get(acct_api::get_job))
        .route("/api/v1/eu-indicators", get(acct_api::eu_indicators))
        .layer(axum::Extension(acct))
        .route("/api/v1/health", get(api::health))
        .route("/health", get(api::health))
        .merge(ingest)
        .merge(crate::alerting::routes())
        .with_state(state)
        .merge(dashboard)
}

/// Everything the dashboard's pages fetch needs a read token unless reads are open (demo on
/// loopback).
async fn require_read(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let query_token = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    if st.auth.may_read(Auth::presented(req.headers(), query_token)) {
        next.run(req).await
    } else {
        api::error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required")
    }
}

/// Checkpoints the store every `every`, and once more on shutdown so that a clean stop leaves
/// no log to replay.
pub fn spawn_checkpointer(store: Arc<Store>, every: Duration, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.changed() => true,
            };
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.checkpoint()).await {
                Ok(Ok(n)) => tracing::debug!(samples = n, "checkpoint"),
                Ok(Err(e)) => tracing::error!(error = %e, "checkpoint failed; the request log keeps the data"),
                Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
            }
            if stop {
                break;
            }
        }
    })
}

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|v| *v).await;
        })
        .await
}
