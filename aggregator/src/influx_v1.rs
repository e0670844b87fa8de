//! What InfluxDB 1.x clients expect besides `/api/v2/write`: `GET|HEAD /ping` (load balancers,
//! Telegraf and client libraries probe it, without credentials) and the v1 `POST /write`
//! route with its credentials in `u`/`p` query parameters. The write itself is the same
//! handler as `/api/v2/write` (`api::write`; `db`, `rp` and `consistency` are ignored).

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The v1 write route.
pub const WRITE_PATH: &str = "/write";

/// The InfluxDB release whose HTTP API Kilowatch's ingest answers as.
pub const COMPATIBLE_VERSION: &str = "1.8.10";

/// `GET|HEAD /ping`: 204, as InfluxDB answers it; with `verbose` (any value but empty, `0` or
/// `false`, as InfluxDB 1.x reads it) 200 and `{"version": …}`.
pub async fn ping(uri: axum::http::Uri) -> Response {
    let headers = [("x-influxdb-version", COMPATIBLE_VERSION), ("x-influxdb-build", "OSS"), ("x-kilowatch-version", env!("CARGO_PKG_VERSION"))];
    if query_param(&uri, "verbose").is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false")) {
        return (StatusCode::OK, headers, axum::Json(json!({ "version": COMPATIBLE_VERSION }))).into_response();
    }
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// The errors of the v1 write route in InfluxDB 1.x's shape: `{"error": "…"}` (what its
/// clients read), with Kilowatch's partial-write detail kept beside it (`line`, `refused`,
/// `accepted`, `errors`), the message also in `X-Influxdb-Error`, and a partial write answered
/// 400 as InfluxDB 1.x answers it (the v2 route's 422 is InfluxDB 2's).
pub async fn v1_answers(req: Request, next: Next) -> Response {
    let v1 = req.uri().path() == WRITE_PATH;
    let resp = next.run(req).await;
    if !v1 || !(resp.status().is_client_error() || resp.status().is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let v1 = v1_error(parts.status, &bytes);
    if parts.status == StatusCode::UNPROCESSABLE_ENTITY {
        parts.status = StatusCode::BAD_REQUEST;
    }
    if let Some(e) = v1["error"].as_str() {
        // A header holds one line of visible ASCII: the message, cut short, made so.
        let line: String = e.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(512).collect();
        if let Ok(h) = HeaderValue::from_str(&line) {
            parts.headers.insert("x-influxdb-error", h);
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(v1.to_string()))
}

/// An error body (Kilowatch's `{"code", "message", …}`, or text) as InfluxDB 1.x's.
fn v1_error(status: StatusCode, body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut m)) => {
            let message = m.remove("message").or_else(|| m.remove("error")).and_then(|v| v.as_str().map(str::to_owned));
            m.remove("code");
            let mut out = serde_json::Map::new();
            out.insert("error".into(), json!(message.unwrap_or_else(|| reason(status))));
            out.extend(m);
            Value::Object(out)
        }
        _ => {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            json!({ "error": if text.is_empty() { reason(status) } else { text } })
        }
    }
}

fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("error").to_lowercase()
}

fn query_param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri).ok().and_then(|q| q.0.get(name).cloned())
}

/// A v1 write's `p=` query parameter (InfluxDB 1.x clients' password; the user name `u` is
/// free) is read as `Authorization: Token <p>` when the request carries no `Authorization`
/// header, so the token check before the body is read accepts it.
pub async fn query_credentials(mut req: Request, next: Next) -> Response {
    if req.uri().path() == WRITE_PATH
        && !req.headers().contains_key(header::AUTHORIZATION)
        && let Some(p) = password(req.uri())
        && let Ok(v) = HeaderValue::from_str(&format!("Token {p}"))
    {
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    next.run(req).await
}

fn password(uri: &axum::http::Uri) -> Option<String> {
    query_param(uri, "p").filter(|p| !p.is_empty())
}
