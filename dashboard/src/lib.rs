//! The dashboard: pages and the JSON they poll. It owns the read-only [`SiteView`] trait it
//! needs; the aggregator implements it. Every asset is compiled into the binary: sites run
//! without internet access.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ViewError(pub String);

/// The live state of the site, as the overview page shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    pub site: String,
    /// Time of the newest data (RFC 3339). Runs ahead of the clock in a fast demo.
    pub data_time: Option<String>,
    pub pue: Option<f64>,
    pub pue_category: Option<u8>,
    /// The window a live ratio covers, e.g. "live, last 5 min".
    pub window: String,
    pub wue_l_per_kwh: Option<f64>,
    pub facility_power_w: Option<f64>,
    pub it_power_w: Option<f64>,
    pub cooling_power_w: Option<f64>,
    pub outside_temp_c: Option<f64>,
    pub outside_rh_pct: Option<f64>,
    pub supply_temp_c: Option<f64>,
    pub cooling_mode: Option<String>,
    pub gpu_count: usize,
    pub gpu_power_w: f64,
    /// Data faults that withhold or qualify a figure.
    pub faults: Vec<String>,
}

/// What the dashboard needs from whoever holds the data. Calls may block (storage reads):
/// the dashboard runs them off the async runtime.
pub trait SiteView: Send + Sync + 'static {
    fn overview(&self) -> Result<Overview, ViewError>;
}

pub type SharedView = Arc<dyn SiteView>;

/// Routes: `/` (overview page) and `/dashboard/overview.json`.
pub fn router(view: SharedView) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/overview.json", get(overview_json))
        .with_state(view)
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        Html(include_str!("../assets/overview.html")),
    )
        .into_response()
}

async fn overview_json(State(view): State<SharedView>) -> Response {
    match tokio::task::spawn_blocking(move || view.overview()).await {
        Ok(Ok(o)) => Json(o).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "overview failed");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"code": "internal error", "message": e.0}))).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "overview task panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    struct Empty;
    impl SiteView for Empty {
        fn overview(&self) -> Result<Overview, ViewError> {
            Ok(Overview { site: "dc5".into(), window: "live, last 5 min".into(), ..Default::default() })
        }
    }

    #[tokio::test]
    async fn page_and_json_answer_with_no_data() {
        let app = router(Arc::new(Empty));
        let r = app.clone().oneshot(Request::get("/").body(Body::empty()).expect("req")).await.expect("resp");
        assert_eq!(r.status(), StatusCode::OK);
        let r = app.oneshot(Request::get("/dashboard/overview.json").body(Body::empty()).expect("req")).await.expect("resp");
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["site"], "dc5");
        assert!(v["pue"].is_null());
    }
}
