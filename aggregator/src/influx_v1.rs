//! What InfluxDB 1.x clients expect besides `/api/v2/write`: `GET|HEAD /ping` (load balancers,
//! Telegraf and client libraries probe it, without credentials) and the v1 `POST /write`
//! route with its credentials in `u`/`p` query parameters. The write itself is the same
//! handler as `/api/v2/write` (`api::write`; `db`, `rp` and `consistency` are ignored).

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The v1 write route.
pub const WRITE_PATH: &str = "/write";

/// The InfluxDB release whose HTTP API Kilowatch's ingest answers as.
pub const COMPATIBLE_VERSION: &str = "1.8.10";

/// `GET|HEAD /ping`: 204, as InfluxDB answers it.
pub async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("x-influxdb-version", COMPATIBLE_VERSION), ("x-influxdb-build", "OSS"), ("x-kilowatch-version", env!("CARGO_PKG_VERSION"))]).into_response()
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
    #[derive(serde::Deserialize)]
    struct P {
        p: Option<String>,
    }
    axum::extract::Query::<P>::try_from_uri(uri).ok().and_then(|q| q.0.p).filter(|p| !p.is_empty())
}
