//! `GET /api/v1/reports/{YYYY-MM}.{html,pdf,csv,json}` (read token, the operator's) and
//! `GET /api/v1/statements/{owner}/{YYYY-MM|YYYY}.{pdf,csv,json,html}` (a read token, or a
//! tenant's token for its own owners).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::render::{Format, render};
use crate::api::{AppState, error};
use crate::auth::Auth;
use crate::tenant::Tenant;

#[derive(Deserialize, Default)]
pub struct ReportParams {
    pub token: Option<String>,
    /// Pins the generation time shown (RFC 3339), for byte-identical downloads.
    pub generated_at: Option<String>,
}

pub async fn get_report(State(st): State<AppState>, Path(file): Path<String>, Query(q): Query<ReportParams>, headers: HeaderMap) -> Response {
    if !st.auth.may_read(Auth::presented(&headers, q.token.as_deref())) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required: Authorization: Token <token>");
    }
    let Some((month, ext)) = file.rsplit_once('.') else {
        return error(StatusCode::BAD_REQUEST, "invalid", "expected /api/v1/reports/YYYY-MM.{html,pdf,csv,json}");
    };
    let format = match Format::parse(ext) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let (store, cfg, month) = (st.store.clone(), st.config.clone(), month.to_owned());
    let res = tokio::task::spawn_blocking(move || super::build(&store, &cfg, &month, q.generated_at.as_deref()).and_then(|r| render(&r, format))).await;
    match res {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Ok(Err(e @ super::ReportError::Period(_))) => error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    }
}

/// A customer's statement. A tenant-scoped token gets only statements of owners its patterns
/// cover (the owner itself or its projects, `owner/…`) and whose every job is its own; any
/// other owner is 404, as an owner with no data would be, so names do not leak.
pub async fn get_statement(
    State(st): State<AppState>,
    tenant: Option<axum::Extension<Tenant>>,
    Path((owner, file)): Path<(String, String)>,
    Query(q): Query<ReportParams>,
    headers: HeaderMap,
) -> Response {
    if !st.auth.may_read(Auth::presented(&headers, q.token.as_deref())) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required: Authorization: Token <token>");
    }
    let Some((period, ext)) = file.rsplit_once('.') else {
        return error(StatusCode::BAD_REQUEST, "invalid", "expected /api/v1/statements/{owner}/{YYYY-MM or YYYY}.{pdf,csv,json,html}");
    };
    let format = match Format::parse(ext) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let scope = tenant.map(|axum::Extension(Tenant(s))| s);
    let not_found = || error(StatusCode::NOT_FOUND, "not found", "no statement for this owner");
    if scope.as_ref().is_some_and(|s| !s.allows(&owner) && !s.allows(&format!("{owner}/"))) {
        return not_found();
    }
    let (store, cfg, period) = (st.store.clone(), st.config.clone(), period.to_owned());
    let name = super::statement_file(&cfg, &owner, &period, format);
    let res = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, super::ReportError> {
        let s = super::statement(&store, &cfg, &owner, &period, q.generated_at.as_deref())?;
        if scope.is_some_and(|sc| !s.jobs.iter().all(|j| sc.allows(&j.job.owner))) {
            return Ok(None);
        }
        render(&s, format).map(Some)
    })
    .await;
    match res {
        Ok(Ok(Some(body))) => ([(header::CONTENT_TYPE, format.content_type().to_owned()), (header::CONTENT_DISPOSITION, format!("inline; filename=\"{name}\""))], body).into_response(),
        Ok(Ok(None)) => not_found(),
        Ok(Err(e @ super::ReportError::Period(_))) => error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    }
}
