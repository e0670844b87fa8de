//! `GET /api/v1/reports/{YYYY-MM}.{html,pdf,csv,json}` (read token).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::render::{Format, render};
use crate::api::{AppState, error};
use crate::auth::Auth;

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
