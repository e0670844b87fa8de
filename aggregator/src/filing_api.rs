//! The yearly EU filing (docs/filing.md): `GET /api/v1/eu-filing/{YYYY}.{json,csv,pdf,html}` and
//! its evidence bundle, whole (`GET /api/v1/eu-filing/{YYYY}/evidence.tar`) or file by file
//! (`GET /api/v1/eu-filing/{YYYY}/evidence/{file}`, names in `manifest.sha256`), for the operator's read tokens (tenant-scoped tokens
//! are refused by `tenant::gate`). `kilowatch eu-filing --year YYYY --out DIR` writes the same
//! files. Built by `kilowatch_accounting::eu::filing`, rendered by the report's renderers.

use crate::adapters::StoreRead;
use std::path::{Path as FsPath, PathBuf};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kilowatch_accounting::eu::{evidence, filing::Filing};
use kilowatch_store::Store;

use crate::api::{AppState, error};
use crate::auth::Auth;
use crate::config::Config;
use crate::report::ReportError;
use crate::report::render::{Format, Renderer, render};
use crate::report::web::ReportParams;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/eu-filing/{file}", get(get_filing))
        .route("/api/v1/eu-filing/{year}/evidence.tar", get(get_evidence_tar))
        .route("/api/v1/eu-filing/{year}/evidence/{file}", get(get_evidence))
}

fn parse_year(y: &str) -> Result<i32, ReportError> {
    y.parse::<i32>()
        .ok()
        .filter(|y| (1970..=9999).contains(y))
        .ok_or_else(|| ReportError::Period(kilowatch_accounting::periods::PeriodError::Param { name: "year", value: y.to_owned(), why: "expected YYYY" }))
}

/// The filing for `year`.
pub fn filing(store: &Store, cfg: &Config, year: i32, generated_at: Option<&str>) -> Result<Filing, ReportError> {
    Ok(kilowatch_accounting::eu::filing::build(&StoreRead(store), cfg, year, generated_at)?.0)
}

/// The evidence bundle of a built filing: its files, the manifest last.
fn bundle(f: &Filing, inv: &evidence::Inventory) -> Result<Vec<(&'static str, Vec<u8>)>, ReportError> {
    let mut r = Renderer::new(f);
    Ok(evidence::bundle(inv, r.render(Format::Json)?, r.render(Format::Csv)?))
}

/// The evidence bundle's files for `year`, the manifest last.
pub fn evidence_files(store: &Store, cfg: &Config, year: i32, generated_at: Option<&str>) -> Result<Vec<(&'static str, Vec<u8>)>, ReportError> {
    let (f, inv) = kilowatch_accounting::eu::filing::build(&StoreRead(store), cfg, year, generated_at)?;
    bundle(&f, &inv)
}

/// The file name of the filing in `format`.
pub fn file_name(cfg: &Config, year: i32, f: Format) -> String {
    format!("{}-eu-filing-{year}.{}", cfg.site.name, f.ext())
}

/// `kilowatch eu-filing`: the filing in each format into `dir`, and the evidence bundle into
/// `dir/evidence` unless `with_evidence` is false. Returns the paths written.
pub fn write_files(store: &Store, cfg: &Config, year: i32, formats: &[Format], dir: &FsPath, with_evidence: bool, generated_at: Option<&str>) -> Result<Vec<PathBuf>, ReportError> {
    let io = |path: &FsPath, source| ReportError::Io { path: path.display().to_string(), source };
    let (f, inv) = kilowatch_accounting::eu::filing::build(&StoreRead(store), cfg, year, generated_at)?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut out = Vec::new();
    let mut r = Renderer::new(&f);
    for fmt in formats {
        let path = dir.join(file_name(cfg, year, *fmt));
        std::fs::write(&path, r.render(*fmt)?).map_err(|e| io(&path, e))?;
        out.push(path);
    }
    if with_evidence {
        let ev = dir.join("evidence");
        std::fs::create_dir_all(&ev).map_err(|e| io(&ev, e))?;
        for (name, bytes) in bundle(&f, &inv)? {
            let path = ev.join(name);
            std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
            out.push(path);
        }
    }
    Ok(out)
}

fn answer(res: Result<Result<Response, ReportError>, tokio::task::JoinError>) -> Response {
    match res {
        Ok(Ok(r)) => r,
        Ok(Err(e @ ReportError::Period(_))) => error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string()),
    }
}

async fn get_filing(State(st): State<AppState>, Path(file): Path<String>, Query(q): Query<ReportParams>, headers: HeaderMap) -> Response {
    if !st.auth.may_read(Auth::presented(&headers, q.token.as_deref())) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required: Authorization: Token <token>");
    }
    let Some((year, ext)) = file.rsplit_once('.') else {
        return error(StatusCode::BAD_REQUEST, "invalid", "expected /api/v1/eu-filing/YYYY.{json,csv,pdf,html}");
    };
    let format = match Format::parse(ext) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    let (store, cfg, year) = (st.store.clone(), st.config.clone(), year.to_owned());
    answer(
        tokio::task::spawn_blocking(move || {
            let y = parse_year(&year)?;
            let body = render(&filing(&store, &cfg, y, q.generated_at.as_deref())?, format)?;
            let name = file_name(&cfg, y, format);
            Ok(([(header::CONTENT_TYPE, format.content_type().to_owned()), (header::CONTENT_DISPOSITION, format!("inline; filename=\"{name}\""))], body).into_response())
        })
        .await,
    )
}

async fn get_evidence(State(st): State<AppState>, Path((year, file)): Path<(String, String)>, Query(q): Query<ReportParams>, headers: HeaderMap) -> Response {
    if !st.auth.may_read(Auth::presented(&headers, q.token.as_deref())) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required: Authorization: Token <token>");
    }
    if !evidence::FILES.contains(&file.as_str()) {
        return error(StatusCode::NOT_FOUND, "not found", format!("the evidence bundle holds {}", evidence::FILES.join(", ")));
    }
    let (store, cfg) = (st.store.clone(), st.config.clone());
    answer(
        tokio::task::spawn_blocking(move || {
            let y = parse_year(&year)?;
            let files = evidence_files(&store, &cfg, y, q.generated_at.as_deref())?;
            let Some((name, bytes)) = files.into_iter().find(|(n, _)| *n == file) else {
                return Ok(error(StatusCode::NOT_FOUND, "not found", "no such evidence file"));
            };
            let ct = match name.rsplit_once('.').map(|x| x.1) {
                Some("json") => "application/json",
                Some("csv") => "text/csv; charset=utf-8",
                _ => "text/plain; charset=utf-8",
            };
            Ok(([(header::CONTENT_TYPE, ct.to_owned()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\""))], bytes).into_response())
        })
        .await,
    )
}

async fn get_evidence_tar(State(st): State<AppState>, Path(year): Path<String>, Query(q): Query<ReportParams>, headers: HeaderMap) -> Response {
    if !st.auth.may_read(Auth::presented(&headers, q.token.as_deref())) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required: Authorization: Token <token>");
    }
    let (store, cfg) = (st.store.clone(), st.config.clone());
    answer(
        tokio::task::spawn_blocking(move || {
            let y = parse_year(&year)?;
            let (f, inv) = kilowatch_accounting::eu::filing::build(&StoreRead(&store), &*cfg, y, q.generated_at.as_deref())?;
            let files = bundle(&f, &inv)?;
            let dir = format!("{}-eu-filing-{y}-evidence", cfg.site.name);
            let mtime = kilowatch_model::Timestamp::parse_rfc3339(&f.meta.to).map(|t| t.0 / 1_000_000_000).unwrap_or(0);
            let body = evidence::tar(&dir, &files, mtime);
            Ok(([(header::CONTENT_TYPE, "application/x-tar".to_owned()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{dir}.tar\""))], body).into_response())
        })
        .await,
    )
}
