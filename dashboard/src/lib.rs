//! The dashboard: pages and the JSON they poll, and the monthly report's renderers
//! ([`report`]). It owns the read-only [`SiteView`] trait it needs; the aggregator implements it. Every asset is compiled into the binary: sites run
//! without internet access.
//!
//! Charts are drawn in the browser by uPlot (vendored from npm, `assets/vendor/uplot/`, checked
//! against its package's hashes) through `assets/js/chart.js`, from the JSON below: zoom, hover
//! values and live updates need no round trip and no re-render on the server.

mod pages;
pub mod report;
mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

pub use view::{Climate, CoolingUnit, GpuCell, GpuDetail, ModeSpan, Overview, Series, SiteView, ViewError, Water, Window};

pub type SharedView = Arc<dyn SiteView>;

/// The server's stop signal, put into each request's extensions by the server: the live stream
/// ends when it turns true, so that a graceful stop does not wait on open pages.
#[derive(Clone)]
pub struct LiveStop(pub tokio::sync::watch::Receiver<bool>);

/// The pages and their assets: they hold no data, so they are served without a token (the
/// data they fetch is not).
pub fn pages_router() -> Router {
    pages::router()
}

/// The JSON the pages poll, under `/dashboard/`: mount it behind the read check.
pub fn data_router(view: SharedView) -> Router {
    Router::new()
        .route("/dashboard/overview.json", get(overview_json))
        .route("/dashboard/live", get(live))
        .route("/dashboard/power.json", get(power_json))
        .route("/dashboard/climate.json", get(climate_json))
        .route("/dashboard/cooling.json", get(cooling_json))
        .route("/dashboard/water.json", get(water_json))
        .route("/dashboard/gpus.json", get(gpus_json))
        .route("/dashboard/gpus/{node}", get(node_json))
        .route("/dashboard/gpus/{node}/{gpu}", get(gpu_json))
        .with_state(view)
}

/// Pages and data together, with no access check (tests, embedding).
pub fn router(view: SharedView) -> Router {
    pages_router().merge(data_router(view))
}

#[derive(Deserialize, Default)]
struct RangeQuery {
    range: Option<String>,
}

impl RangeQuery {
    fn window(&self) -> Result<Window, String> {
        let r = self.range.as_deref().unwrap_or("24h");
        Window::parse(r).ok_or_else(|| format!("range={r:?}: use 1h, 6h, 24h, 7d or 30d"))
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({"code": "invalid", "message": message}))).into_response()
}

/// Runs a view call off the async runtime (it reads storage) and answers its JSON.
async fn answer<T: Serialize + Send + 'static>(f: impl FnOnce() -> Result<T, ViewError> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(ViewError::NotFound(m))) => (StatusCode::NOT_FOUND, Json(serde_json::json!({"code": "not found", "message": m}))).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "dashboard view failed");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"code": "internal error", "message": e.to_string()}))).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard view task panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn overview_json(State(view): State<SharedView>) -> Response {
    answer(move || view.overview()).await
}

/// How often the live stream sends the overview: the collectors sample every second, and a
/// wall screen needs no more than this.
const LIVE_EVERY: Duration = Duration::from_secs(2);

/// Server-Sent Events: an `overview` event now and every [`LIVE_EVERY`] (an `error` event when
/// the view fails; the stream goes on). EventSource cannot send headers, so the read token
/// comes as `?token=`. The stream ends when the server stops ([`LiveStop`]); the browser's
/// EventSource reconnects by itself.
async fn live(State(view): State<SharedView>, stop: Option<Extension<LiveStop>>) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((view, true), |(view, first)| async move {
        if !first {
            tokio::time::sleep(LIVE_EVERY).await;
        }
        let v = view.clone();
        let event = match tokio::task::spawn_blocking(move || v.overview()).await {
            Ok(Ok(o)) => Event::default().event("overview").json_data(&o).unwrap_or_else(|e| Event::default().event("error").data(e.to_string())),
            Ok(Err(e)) => Event::default().event("error").data(e.to_string()),
            Err(e) => Event::default().event("error").data(e.to_string()),
        };
        Some((Ok(event), (view, false)))
    });
    let stopped = async move {
        match stop {
            Some(Extension(LiveStop(mut rx))) => {
                let _ = rx.wait_for(|v| *v).await;
            }
            None => std::future::pending().await,
        }
    };
    Sse::new(futures_util::StreamExt::take_until(stream, stopped)).keep_alive(KeepAlive::default())
}

async fn power_json(State(view): State<SharedView>, Query(q): Query<RangeQuery>) -> Response {
    match q.window() {
        Ok(w) => answer(move || view.power(w)).await,
        Err(m) => bad_request(m),
    }
}

async fn climate_json(State(view): State<SharedView>, Query(q): Query<RangeQuery>) -> Response {
    match q.window() {
        Ok(w) => answer(move || view.climate(w)).await,
        Err(m) => bad_request(m),
    }
}

async fn cooling_json(State(view): State<SharedView>, Query(q): Query<RangeQuery>) -> Response {
    match q.window() {
        Ok(w) => answer(move || view.cooling(w)).await,
        Err(m) => bad_request(m),
    }
}

async fn water_json(State(view): State<SharedView>, Query(q): Query<RangeQuery>) -> Response {
    match q.window() {
        Ok(w) => answer(move || view.water(w)).await,
        Err(m) => bad_request(m),
    }
}

async fn gpus_json(State(view): State<SharedView>) -> Response {
    answer(move || view.gpus()).await
}

async fn node_json(State(view): State<SharedView>, Path(node): Path<String>, Query(q): Query<RangeQuery>) -> Response {
    match q.window() {
        Ok(w) => answer(move || view.gpu_detail(&node, None, w)).await,
        Err(m) => bad_request(m),
    }
}

async fn gpu_json(State(view): State<SharedView>, Path((node, gpu)): Path<(String, u32)>, Query(q): Query<RangeQuery>) -> Response {
    match q.window() {
        Ok(w) => answer(move || view.gpu_detail(&node, Some(gpu), w)).await,
        Err(m) => bad_request(m),
    }
}

#[cfg(test)]
mod tests;
