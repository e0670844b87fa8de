//! The fleet's API, under `/api/v1/fleet/`: KPIs per site and summed, jobs and owners, the
//! fleet's monthly report, and each site's EU filing side by side. Everything but the EU
//! filings is answered from the hourly cache, never by waiting on a site.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono_tz::Tz;
use kilowatch_accounting::periods;
use kilowatch_model::Timestamp;
use serde_json::{Value, json};

use super::figures::{self, JobTotal, Totals};
use super::{Fleet, Site};
use crate::acct_api::{WindowParams, read_ok};
use crate::api::{AppState, error, parse_range};

type F = Extension<Arc<Fleet>>;

pub fn routes(fleet: Arc<Fleet>) -> Router<AppState> {
    Router::new()
        .route("/api/v1/fleet/kpi", get(kpi))
        .route("/api/v1/fleet/jobs", get(jobs))
        .route("/api/v1/fleet/hours", get(hours))
        .route("/api/v1/fleet/reports/{file}", get(report))
        .route("/api/v1/fleet/eu-indicators", get(eu))
        .layer(Extension(fleet))
}

/// A window from `period=` (in the fleet's zone) or `from`/`to`: `[from, to)` in ns, its label.
fn window(fleet: &Fleet, q: &WindowParams) -> Result<(i64, i64, String), String> {
    let Some(period) = q.period.as_deref() else {
        let r = parse_range(q.from.as_deref(), q.to.as_deref())?;
        return Ok((r.from.0, r.to.0, "custom range".into()));
    };
    if period == "live" {
        return Err("period=live is not kept by a fleet: its ledgers are hourly (use hour, day, month, ytd, rolling12 or year)".into());
    }
    let tz: Tz = fleet.config.timezone.parse().map_err(|_| "bad fleet.timezone".to_owned())?;
    let at = q.at.as_deref().map(|a| crate::api::parse_time("at", a)).transpose()?;
    let p = periods::resolve(period, at, q.month.as_deref(), q.year.as_deref(), tz, Timestamp::now()).map_err(|e| e.to_string())?;
    Ok((p.range.from.0, p.range.to.0, p.label))
}

/// How a site stands: its freshness and what it last said went wrong.
fn status(fleet: &Fleet, site: &Site, c: &super::SiteCache, now: Timestamp) -> Value {
    let (age, stale) = fleet.freshness(c, now);
    json!({
        "name": site.cfg.name,
        "timezone": site.cfg.timezone,
        "dashboard_url": site.cfg.dashboard(),
        "stale": stale,
        "age_s": age,
        "last_ok": c.last_ok.map(|t| t.to_rfc3339()),
        "last_error": c.last_error,
        "degraded": c.degraded,
        "errors": c.errors,
        "hours_cached": c.hours.len(),
        "jobs_unavailable": c.jobs_unavailable,
    })
}

/// Appends `b`'s fields to the object `a`.
fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Every site's figures over `[from, to)` and the fleet's sum. A stale site keeps the hours it
/// gave: its figures are its last known ones, flagged, and the fleet lists it as stale.
fn kpi_over(fleet: &Fleet, from: i64, to: i64) -> Value {
    let now = Timestamp::now();
    let mut total = Totals::default();
    let mut sites = Vec::new();
    let mut stale_sites = Vec::new();
    for s in &fleet.sites {
        let c = s.cache();
        let t = Totals::over(&c.hours, from, to, now.0);
        total.add(&t);
        let st = status(fleet, s, &c, now);
        if st["stale"] == true {
            stale_sites.push(s.cfg.name.clone());
        }
        sites.push(merged(st, t.kpi()));
    }
    let complete = stale_sites.is_empty() && total.hours_covered >= total.hours_expected;
    json!({ "sites": sites, "fleet": merged(total.kpi(), json!({ "stale_sites": stale_sites, "complete": complete })) })
}

async fn kpi(State(st): State<AppState>, fleet: F, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    if let Some(r) = read_ok(&st, &headers, q.token.as_deref()) {
        return r;
    }
    match window(&fleet, &q) {
        Ok((from, to, label)) => {
            Json(merged(json!({ "from": Timestamp(from).to_rfc3339(), "to": Timestamp(to).to_rfc3339(), "window": label, "timezone": fleet.config.timezone }), kpi_over(&fleet, from, to)))
                .into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid", e),
    }
}

/// Jobs per site and over the fleet, with per-owner roll-ups (an owner present at several
/// sites is summed across them) and each site's idle and unattributed energy.
fn jobs_over(fleet: &Fleet, from: i64, to: i64) -> Value {
    let now = Timestamp::now();
    let mut all: Vec<JobTotal> = Vec::new();
    let mut sites = Vec::new();
    let (mut it, mut idle, mut jobs_it) = (0.0, 0.0, 0.0);
    for s in &fleet.sites {
        let c = s.cache();
        let (jobs, site_idle) = figures::jobs_over(&s.cfg.name, &c.hours, from, to);
        let site_it = Totals::over(&c.hours, from, to, now.0).it_energy_kwh;
        let site_jobs_it: f64 = jobs.iter().map(|j| j.it_energy_kwh).sum();
        sites.push(merged(
            status(fleet, s, &c, now),
            json!({
                "it_energy_kwh": site_it,
                "jobs": jobs.len(),
                "jobs_it_energy_kwh": site_jobs_it,
                "idle_kwh": site_idle,
                "unattributed_kwh": site_it - site_jobs_it - site_idle,
                "by_owner": figures::by_owner(&jobs),
            }),
        ));
        it += site_it;
        idle += site_idle;
        jobs_it += site_jobs_it;
        all.extend(jobs);
    }
    json!({
        "it_energy_kwh": it,
        "jobs_it_energy_kwh": jobs_it,
        "idle_kwh": idle,
        "unattributed_kwh": it - jobs_it - idle,
        "by_owner": figures::by_owner(&all),
        "sites": sites,
        "jobs": all,
    })
}

async fn jobs(State(st): State<AppState>, fleet: F, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    if let Some(r) = read_ok(&st, &headers, q.token.as_deref()) {
        return r;
    }
    match window(&fleet, &q) {
        Ok((from, to, label)) => Json(merged(json!({ "from": Timestamp(from).to_rfc3339(), "to": Timestamp(to).to_rfc3339(), "window": label }), jobs_over(&fleet, from, to))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid", e),
    }
}

/// Each site's hours over the window as chart series (`{name, unit, points: [[t_ms, v]]}`):
/// E_IT per hour and PUE per hour. A stale site's series ends where its last fetch did.
async fn hours(State(st): State<AppState>, fleet: F, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    if let Some(r) = read_ok(&st, &headers, q.token.as_deref()) {
        return r;
    }
    let (from, to, label) = match window(&fleet, &q) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    let (mut it, mut pue) = (Vec::new(), Vec::new());
    for s in &fleet.sites {
        let c = s.cache();
        // Hours that have ended, with readings: an hour without any is a gap, not a zero, and
        // the hour in progress is not drawn as a drop.
        let ended = super::floor_hour(Timestamp::now().0);
        let hs: Vec<_> = c.hours.range(from..to.min(ended)).map(|(_, h)| h).filter(|h| h.metered_s > 0.0).collect();
        let ms = |t: i64| t / 1_000_000;
        it.push(json!({ "name": s.cfg.name, "unit": "kWh", "points": hs.iter().map(|h| json!([ms(h.t), h.it_kwh])).collect::<Vec<_>>() }));
        pue.push(json!({ "name": s.cfg.name, "unit": "", "points": hs.iter().map(|h| json!([ms(h.t), (h.it_kwh > 0.0 && h.facility_kwh >= h.it_kwh).then(|| h.facility_kwh / h.it_kwh)])).collect::<Vec<_>>() }));
    }
    Json(json!({ "from": Timestamp(from).to_rfc3339(), "to": Timestamp(to).to_rfc3339(), "window": label, "it_kwh": it, "pue": pue })).into_response()
}

/// `GET /api/v1/fleet/reports/{YYYY-MM}.json`: the fleet's month in `fleet.timezone` (every
/// site over that same span, and their sum) beside each site's own local month.
async fn report(State(st): State<AppState>, fleet: F, Path(file): Path<String>, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    if let Some(r) = read_ok(&st, &headers, q.token.as_deref()) {
        return r;
    }
    let Some(month) = file.strip_suffix(".json") else {
        return error(StatusCode::NOT_FOUND, "not found", "the fleet report is served as YYYY-MM.json");
    };
    let month_in = |zone: &str| -> Result<(i64, i64, String), String> {
        let tz: Tz = zone.parse().map_err(|_| format!("bad time zone {zone:?}"))?;
        let p = periods::resolve("month", None, Some(month), None, tz, Timestamp::now()).map_err(|e| e.to_string())?;
        Ok((p.range.from.0, p.range.to.0, p.label))
    };
    let (from, to, label) = match month_in(&fleet.config.timezone) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    let now = Timestamp::now();
    let mut own = Vec::new();
    for s in &fleet.sites {
        let Ok((sf, stt, sl)) = month_in(&s.cfg.timezone) else { continue };
        let c = s.cache();
        let (jobs, idle) = figures::jobs_over(&s.cfg.name, &c.hours, sf, stt);
        let kpi = Totals::over(&c.hours, sf, stt, now.0).kpi();
        own.push(merged(
            status(&fleet, s, &c, now),
            json!({ "from": Timestamp(sf).to_rfc3339(), "to": Timestamp(stt).to_rfc3339(), "window": sl, "kpi": kpi, "jobs": jobs.len(), "idle_kwh": idle, "by_owner": figures::by_owner(&jobs) }),
        ));
    }
    Json(json!({
        "month": month,
        "timezone": fleet.config.timezone,
        "fleet_month": merged(json!({ "from": Timestamp(from).to_rfc3339(), "to": Timestamp(to).to_rfc3339(), "window": label }), kpi_over(&fleet, from, to)),
        "fleet_jobs": jobs_over(&fleet, from, to),
        "site_months": own,
    }))
    .into_response()
}

/// Each site's EU filing (`GET /api/v1/eu-indicators` of the site, asked now with its token),
/// side by side: sites file separately, so nothing is summed. A site that does not answer is
/// listed with its error.
async fn eu(State(st): State<AppState>, fleet: F, Query(q): Query<WindowParams>, headers: HeaderMap) -> Response {
    if let Some(r) = read_ok(&st, &headers, q.token.as_deref()) {
        return r;
    }
    let query = match (&q.year, &q.month) {
        (Some(y), _) if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()) => format!("year={y}"),
        (None, Some(m)) if m.len() == 7 && m.bytes().enumerate().all(|(i, b)| if i == 4 { b == b'-' } else { b.is_ascii_digit() }) => format!("month={m}"),
        _ => return error(StatusCode::BAD_REQUEST, "invalid", "year=YYYY (or month=YYYY-MM for the year to date) is required"),
    };
    let path = format!("/api/v1/eu-indicators?{query}");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..fleet.sites.len() {
        let (f, path) = (fleet.0.clone(), path.clone());
        set.spawn(async move {
            let s = &f.sites[i];
            let filing = f.get_json::<Value>(s, &path).await.map_err(|e| e.to_string());
            let link = format!("{}{path}", s.cfg.url.trim_end_matches('/'));
            (
                i,
                match filing {
                    Ok(v) => json!({ "name": s.cfg.name, "timezone": s.cfg.timezone, "link": link, "filing": v }),
                    Err(e) => {
                        tracing::warn!(site = %s.cfg.name, error = %e, "fleet: a site's EU filing could not be read");
                        json!({ "name": s.cfg.name, "timezone": s.cfg.timezone, "link": link, "filing": null, "error": e })
                    }
                },
            )
        });
    }
    let mut sites: Vec<(usize, Value)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            sites.push(x);
        }
    }
    sites.sort_by_key(|(i, _)| *i);
    Json(json!({ "query": query, "sites": sites.into_iter().map(|(_, v)| v).collect::<Vec<_>>() })).into_response()
}
