//! `GET /api/v1/export`: the raw samples of the series some selectors match, over a window, as
//! line protocol with nanosecond timestamps, for an audit or a move to another database. What
//! the store holds comes out: every numeric and text reading at its own timestamp, one field a
//! line. Numbers are stored as 64-bit floats, so an integer field (`42i`) comes back as `42`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kilowatch_model::point::Point;
use kilowatch_model::{Precision, Timestamp, encode_points};
use kilowatch_query::parse_time_ms;
use kilowatch_store::Value as StoreValue;

use super::{Params, error, required_selectors, source_for};
use crate::api::AppState;

/// The most samples one export answers: a larger one is asked for in shorter windows.
const MAX_SAMPLES: usize = 20_000_000;

pub async fn export(State(st): State<AppState>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let source = match source_for(&st, &headers, q.as_deref(), None) {
        Ok(s) => s.raw,
        Err(r) => return r,
    };
    let p = match Params::read(&Method::GET, &headers, q, &Bytes::new()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let sels = match required_selectors(&p) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ns = |name: &str, default: i64| match p.get(name) {
        None | Some("") => Ok(default),
        Some(s) => parse_time_ms(s).map(|ms| ms.saturating_mul(1_000_000)).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_data", format!("invalid parameter \"{name}\": {e}"))),
    };
    let (from, to) = match (ns("start", i64::MIN), ns("end", i64::MAX)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let work = move || -> Result<(String, Option<i64>), String> {
        let mut metas = Vec::new();
        for m in &sels {
            metas.extend(source.matching(m).map_err(|e| e.to_string())?.into_iter().map(|(meta, _)| meta));
        }
        metas.sort_by_key(|m| m.id);
        metas.dedup_by_key(|m| m.id);
        let raw_from = source.store.horizons().map_err(|e| e.to_string())?.raw_from;
        let mut out = String::new();
        let mut n = 0usize;
        for m in metas {
            let points: Vec<Point> = source
                .store
                .read_with_neighbours(m.id, from.max(raw_from), to)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|(t, _)| (from..=to).contains(t))
                .map(|(t, v)| {
                    let p = m.tags.iter().fold(Point::new(m.measurement.to_string(), Timestamp(t)), |p, (k, v)| p.tag(k, v));
                    match v {
                        StoreValue::Num(x) => p.field(m.field.to_string(), x),
                        StoreValue::Text(s) => p.field(m.field.to_string(), s),
                    }
                })
                .collect();
            n += points.len();
            if n > MAX_SAMPLES {
                return Err(format!("the export holds more than {MAX_SAMPLES} samples: ask for shorter windows"));
            }
            out.push_str(&encode_points(&points, Precision::Ns));
        }
        Ok((out, (from < raw_from).then_some(raw_from)))
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok((body, rolled))) => {
            let mut r = ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
            // Before the raw retention only roll-ups remain, which are not samples: say so.
            if let Some(t) = rolled
                && let Ok(v) = HeaderValue::from_str(&format!("299 kilowatch \"raw samples before {} were rolled up and deleted; they are not in this export\"", Timestamp(t).to_rfc3339()))
            {
                r.headers_mut().insert(header::WARNING, v);
            }
            r
        }
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
