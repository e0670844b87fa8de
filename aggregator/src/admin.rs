//! The admin API, for an operator holding a token of scope `admin`: `POST /api/v1/admin/delete`
//! deletes a series' samples in a time range (a sample from a clock a year ahead, a meter wired
//! wrong for an afternoon). Every deletion is logged at warn level with who asked, what and how
//! much went. `GET /api/v1/admin/snapshot/{store.db,jobs.db}` streams a consistent copy of a
//! database, for a new member of a pair to start from its twin's (`kilowatch restore`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::api::{AppState, error, parse_time};
use crate::auth::{Auth, Grant};
use kilowatch_store::Selector;

/// Snapshots made or sent at once: each holds a whole copy of its database on disk, and a
/// disk's worth of reads and writes while it is made.
const SNAPSHOTS_AT_ONCE: usize = 1;

/// Seconds a snapshot request refused for another one in progress is told to wait.
const SNAPSHOT_RETRY_S: &str = "30";

/// The admin routes over `state`'s store; the snapshots a crash left in its data directory
/// are removed first.
pub fn routes(state: &AppState) -> Router<AppState> {
    if let Some(dir) = state.store.path().parent() {
        match kilowatch_store::snapshot::remove_leftovers(dir) {
            Ok(removed) => removed.iter().for_each(|p| tracing::warn!(file = %p.display(), "a database snapshot left by a crash is removed")),
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "leftover database snapshots could not be looked for"),
        }
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(SNAPSHOTS_AT_ONCE));
    Router::new().route("/api/v1/admin/delete", post(delete)).route("/api/v1/admin/snapshot/{file}", get(snapshot).layer(axum::Extension(slots)))
}

/// A snapshot being sent, holding its slot until the last byte is read or the client goes.
struct Sending {
    file: tokio::fs::File,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for Sending {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

/// The admin's name, or the answer for a caller who is not one.
fn admin(st: &AppState, headers: &HeaderMap) -> Result<String, Box<Response>> {
    match st.auth.admin(Auth::presented(headers, None)) {
        Ok(name) => Ok(name.to_owned()),
        Err(Grant::None) => Err(Box::new(error(StatusCode::UNAUTHORIZED, "unauthorized", "an admin token is required: Authorization: Token <token>"))),
        Err(_) => Err(Box::new(error(StatusCode::FORBIDDEN, "forbidden", "this token has no admin scope ([[auth.tokens]] scope = \"admin\")"))),
    }
}

/// The databases a snapshot may copy.
pub const SNAPSHOT_FILES: [&str; 2] = ["store.db", "jobs.db"];

/// A consistent copy of store.db (every acknowledged write in it) or jobs.db, streamed. It is
/// written beside the database first (`VACUUM INTO`, compacted: as much free disk as the
/// database holds data), then unlinked while it is sent.
async fn snapshot(
    State(st): State<AppState>,
    axum::Extension(slots): axum::Extension<Arc<tokio::sync::Semaphore>>,
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match admin(&st, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if !SNAPSHOT_FILES.contains(&file.as_str()) {
        return error(StatusCode::NOT_FOUND, "not found", format!("no snapshot of {file:?}: store.db or jobs.db"));
    }
    let Ok(slot) = slots.try_acquire_owned() else {
        tracing::warn!(admin = %who, file = %file, "snapshot refused: another one is in progress");
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("another database snapshot is being made or sent ({SNAPSHOTS_AT_ONCE} at a time): retry in {SNAPSHOT_RETRY_S} s"));
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(SNAPSHOT_RETRY_S));
        return r;
    };
    let dir = st.store.path().parent().map(std::path::Path::to_owned).unwrap_or_default();
    let tmp = kilowatch_store::snapshot::temp_path(&dir, &file);
    let store = st.store.clone();
    let (f2, t2) = (file.clone(), tmp.clone());
    let t0 = std::time::Instant::now();
    let made = tokio::task::spawn_blocking(move || -> Result<(), String> {
        if f2 == "store.db" {
            store.snapshot_into(&t2).map_err(|e| e.to_string())
        } else {
            kilowatch_store::jobs::JobStore::beside(&store).and_then(|j| j.snapshot_into(&t2)).map_err(|e| e.to_string())
        }
    })
    .await;
    let opened = match made {
        Ok(Ok(())) => tokio::fs::File::open(&tmp).await,
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::error!(admin = %who, file = %file, error = %e, "snapshot failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("no snapshot of {file}: {e}"));
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    };
    // Unlinked at once: the open file is sent, and nothing is left behind if the client goes.
    let _ = std::fs::remove_file(&tmp);
    let file_handle = match opened {
        Ok(f) => f,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", format!("cannot open the snapshot: {e}")),
    };
    let bytes = file_handle.metadata().await.map(|m| m.len()).unwrap_or(0);
    tracing::warn!(admin = %who, file = %file, bytes, took_ms = t0.elapsed().as_millis() as u64, "database snapshot sent through the admin API");
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(Sending { file: file_handle, _slot: slot }));
    ([(axum::http::header::CONTENT_TYPE, "application/vnd.sqlite3".to_owned()), (axum::http::header::CONTENT_LENGTH, bytes.to_string())], body).into_response()
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
    let who = match admin(&st, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
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
