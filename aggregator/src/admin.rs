//! The admin API, for an operator holding a token of scope `admin`: `POST /api/v1/admin/delete`
//! deletes a series' samples in a time range (a sample from a clock a year ahead, a meter wired
//! wrong for an afternoon). Every deletion is logged at warn level with who asked, what and how
//! much went.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::api::{AppState, error, parse_time};
use crate::auth::{Auth, Grant};
use kilowatch_store::Selector;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/admin/delete", post(delete))
}

/// `{"measurement": "gpu", "tags": {"node": "dgx-001"}, "field": "temp_c", "from": "…", "to": "…"}`;
/// `field` and `to` are optional (absent `to`: no end).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteRequest {
    measurement: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    field: Option<String>,
    from: String,
    #[serde(default)]
    to: Option<String>,
}

async fn delete(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // The token first: nothing of the body is read for a caller who may not delete.
    let who = match st.auth.admin(Auth::presented(&headers, None)) {
        Ok(name) => name.to_owned(),
        Err(Grant::None) => return error(StatusCode::UNAUTHORIZED, "unauthorized", "an admin token is required: Authorization: Token <token>"),
        Err(_) => return error(StatusCode::FORBIDDEN, "forbidden", "this token has no admin scope ([[auth.tokens]] scope = \"admin\")"),
    };
    let req: DeleteRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", format!("expected {{\"measurement\", \"tags\", \"field\", \"from\", \"to\"}}: {e}")),
    };
    let from = match parse_time("from", &req.from) {
        Ok(t) => t.0,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    let to = match req.to.as_deref().map(|v| parse_time("to", v)).transpose() {
        Ok(t) => t.map(|t| t.0),
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    if to.is_some_and(|to| to <= from) {
        return error(StatusCode::BAD_REQUEST, "invalid", "to must be after from");
    }
    if req.measurement.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid", "measurement is required");
    }
    let sel = Selector { measurement: req.measurement, tags: req.tags.into_iter().collect(), field: req.field, from, to };
    let store = st.store.clone();
    let s2 = sel.clone();
    match tokio::task::spawn_blocking(move || store.delete(&s2)).await {
        Ok(Ok(d)) => {
            tracing::warn!(
                admin = %who,
                measurement = %sel.measurement,
                tags = ?sel.tags,
                field = ?sel.field,
                from = %kilowatch_model::Timestamp(sel.from).to_rfc3339(),
                to = %sel.to.map_or_else(|| "(no end)".to_owned(), |t| kilowatch_model::Timestamp(t).to_rfc3339()),
                series = d.series,
                samples = d.samples,
                rollup_buckets = d.rollup_buckets,
                "samples deleted through the admin API"
            );
            Json(json!({ "deleted": d })).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(admin = %who, error = %e, "admin delete failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("not deleted, retry later: {e}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    }
}
