//! The glue between the store and the alert engine (kilowatch-alerts): a background task that
//! every `eval_interval_s` turns the store's newest values, plus derived ones (dew point,
//! daily PUE, daily water against its baseline, water flow with the media off), into samples
//! for the engine, commits the resulting state and notifications to `alerts.db`, and delivers
//! the outbox. `routes()` serves `/api/v1/alerts`, `/api/v1/silences` and `/api/v1/rules`
//! from that same database, so the API shows exactly what survived the last commit.

use crate::adapters::{StoreRead, store_error};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use kilowatch_alerts::config::Routing;
use kilowatch_alerts::deliver::Deliverer;
use kilowatch_alerts::dispatch::{DispatchState, Silence};
use kilowatch_alerts::engine::{EngineState, Sample};
use kilowatch_alerts::rule::{Matcher, Rule};
use kilowatch_alerts::{AlertsConfig, Clock, Outbox, OutboxError, Pipeline};
use kilowatch_model::psychro::{dew_point_c, wet_bulb_c};
use kilowatch_model::time::NANOS_PER_SEC;
use kilowatch_model::{Labels, TimeRange, Timestamp};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::api::{AppState, error};
use crate::auth::{Auth, Grant};
use kilowatch_accounting::kpi;
use kilowatch_store::{Store, StoreError};

mod catch_up;
pub use catch_up::CatchUp;
use catch_up::newest;

const DAY_NS: i64 = 86_400 * NANOS_PER_SEC;
const XID_LIVE_NS: i64 = 15 * 60 * NANOS_PER_SEC;

#[derive(Debug, thiserror::Error)]
pub enum AlertingError {
    #[error(transparent)]
    Config(#[from] kilowatch_alerts::ConfigError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("alert evaluation task failed: {0}")]
    Task(String),
}

/// 2 °C wet-bulb bands: "10-12".
fn band(wb: f64) -> String {
    let lo = (wb / 2.0).floor() as i64 * 2;
    format!("{lo}-{}", lo + 2)
}

fn sample(metric: &str, labels: Labels, value: f64, ts: Timestamp) -> Sample {
    Sample { metric: metric.into(), labels, value, ts }
}

/// The newest value of every series a rule looks at, plus the derived values.
pub fn live_samples(store: &Store, rules: &[Rule], now: Timestamp) -> Result<Vec<Sample>, StoreError> {
    let mut wanted: Vec<&str> = rules.iter().map(|r| r.metric.as_str()).filter(|m| !m.starts_with("derived.")).collect();
    wanted.extend(["cooling.supply_temp_c", "cooling.supply_rh_pct", "cooling.pump_power_w"]);
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = Vec::new();
    for m in wanted {
        let Some((meas, field)) = m.split_once('.') else { continue };
        let series = store.find_series(meas, field, &[])?;
        let ids: Vec<_> = series.iter().map(|s| s.id).collect();
        for (meta, last) in series.iter().zip(store.latest(&ids)?) {
            if let Some((ts, v)) = last
                && let Some(v) = v.as_f64()
            {
                out.push(sample(m, meta.tags.to_labels(), v, Timestamp(ts)));
            }
        }
    }
    derive(store, now, &mut out)?;
    Ok(out)
}

fn derive(store: &Store, now: Timestamp, out: &mut Vec<Sample>) -> Result<(), StoreError> {
    // Dew point of each unit's supply air.
    let rh: BTreeMap<Labels, f64> = out.iter().filter(|s| s.metric == "cooling.supply_rh_pct").map(|s| (s.labels.clone(), s.value)).collect();
    let dew: Vec<Sample> = out
        .iter()
        .filter(|s| s.metric == "cooling.supply_temp_c")
        .filter_map(|s| rh.get(&s.labels).and_then(|h| dew_point_c(s.value, *h)).map(|dp| sample("derived.supply_dew_point_c", s.labels.clone(), dp, s.ts)))
        .collect();
    out.extend(dew);
    // XIDs arrive as events (`gpu_event` points with an `xid` field), so the newest one stays
    // the series' latest value forever: only one from the last 15 minutes is live, else 0.
    for meta in store.find_series("gpu_event", "xid", &[])? {
        if let Some(Some((ts, v))) = store.latest(&[meta.id])?.into_iter().next() {
            let live = if ts >= now.0 - XID_LIVE_NS { v.as_f64().unwrap_or(0.0) } else { 0.0 };
            out.push(sample("derived.gpu_xid_recent", meta.tags.to_labels(), live, now));
        }
    }
    let site: Labels = out.iter().find_map(|s| s.labels.get("site").cloned()).map(|s| Labels::from([("site".to_owned(), s)])).unwrap_or_default();

    // Daily PUE, an operational indicator over the last 24 h.
    let k = day_kpi(store, now)?;
    if k.it_energy_kwh > 0.0 && k.data_quality.coverage_pct >= 50.0 {
        let raw = k.facility_energy_kwh / k.it_energy_kwh;
        out.push(sample("derived.daily_pue_raw", site.clone(), raw, now));
        if let Some(p) = k.pue {
            out.push(sample("derived.daily_pue", site.clone(), p, now));
        }
    }

    // Water flowing with every media pump off: a leak or a stuck valve.
    let pumps: Vec<f64> = out.iter().filter(|s| s.metric == "cooling.pump_power_w").map(|s| s.value).collect();
    if !pumps.is_empty() && pumps.iter().all(|p| *p < 1.0) {
        let mut litres = 0.0;
        for m in store.find_series("water", "volume_m3", &[])? {
            litres += water_delta(store, m.id, Timestamp(now.0 - 15 * 60 * NANOS_PER_SEC), now)? * 1000.0;
        }
        out.push(sample("derived.water_flow_media_off_l_min", site.clone(), litres / 15.0, now));
    }

    // Daily water against the median of the previous 30 days in the same wet-bulb band.
    let days = daily_history(store, now)?;
    if let Some((today, Some(wb))) = days.first().copied() {
        let b = band(wb);
        let mut same: Vec<f64> = days[1..].iter().filter(|(_, w)| w.map(band).as_deref() == Some(b.as_str())).map(|(v, _)| *v).collect();
        let mut labels = site;
        labels.insert("wet_bulb_band".into(), b);
        out.push(sample("derived.daily_water_m3", labels.clone(), today, now));
        // A baseline needs a week of comparable days; before that the rule stays quiet.
        if same.len() >= 7 {
            same.sort_by(f64::total_cmp);
            let n = same.len();
            let median = if n % 2 == 1 { same[n / 2] } else { 0.5 * (same[n / 2 - 1] + same[n / 2]) };
            out.push(sample("derived.daily_water_baseline_m3", labels, median, now));
        }
    }
    Ok(())
}

/// The last 24 h's KPIs, computed once a minute of data time at most: evaluations run every
/// few seconds, a daily PUE does not move within a minute, and each computation reads a day of
/// every meter's ledger (hour buckets, then the raw samples of the hour not yet rolled up).
static DAY_KPI: std::sync::Mutex<BTreeMap<PathBuf, (i64, kpi::Kpi)>> = std::sync::Mutex::new(BTreeMap::new());

fn day_kpi(store: &Store, now: Timestamp) -> Result<kpi::Kpi, StoreError> {
    let minute = now.0.div_euclid(60 * NANOS_PER_SEC);
    let key = store.path().to_owned();
    if let Some(k) = DAY_KPI.lock().ok().and_then(|m| m.get(&key).filter(|(at, _)| *at == minute).map(|(_, k)| k.clone())) {
        return Ok(k);
    }
    let k = kpi::compute(&StoreRead(store), TimeRange::new(Timestamp(now.0 - DAY_NS), now), "last 24 h").map_err(store_error)?;
    if let Ok(mut m) = DAY_KPI.lock() {
        m.insert(key, (minute, k.clone()));
    }
    Ok(k)
}

/// The 30 previous days change once an hour at most, and reading them means a month of the
/// cooling series: keep them per store for the hour (evaluations run every few seconds).
type History = Vec<(f64, Option<f64>)>;
static HISTORY: std::sync::Mutex<BTreeMap<PathBuf, (i64, History)>> = std::sync::Mutex::new(BTreeMap::new());

/// Today (the last 24 h) then the 30 days before it: (water m³, mean outside wet bulb).
fn daily_history(store: &Store, now: Timestamp) -> Result<History, StoreError> {
    let hour = now.0.div_euclid(3600 * NANOS_PER_SEC);
    let key = store.path().to_owned();
    let cached = HISTORY.lock().ok().and_then(|m| m.get(&key).filter(|(h, _)| *h == hour).map(|(_, v)| v.clone()));
    let previous = match cached {
        Some(v) => v,
        None => {
            let v: History = (1..31).map(|k| daily_water_and_wet_bulb(store, Timestamp(now.0 - k * DAY_NS))).collect::<Result<_, _>>()?;
            if let Ok(mut m) = HISTORY.lock() {
                m.insert(key, (hour, v.clone()));
            }
            v
        }
    };
    let mut out = vec![daily_water_and_wet_bulb(store, now)?];
    out.extend(previous);
    Ok(out)
}

fn water_delta(store: &Store, id: kilowatch_store::SeriesId, from: Timestamp, to: Timestamp) -> Result<f64, StoreError> {
    Ok(store.ledger(id, kilowatch_store::rollup::EnergyKind::Counter, &[from.0, to.0])?.total())
}

/// Water over the 24 h ending at `end`, and the mean outside wet bulb then (first unit).
fn daily_water_and_wet_bulb(store: &Store, end: Timestamp) -> Result<(f64, Option<f64>), StoreError> {
    let from = Timestamp(end.0 - DAY_NS);
    let mut water = 0.0;
    for m in store.find_series("water", "volume_m3", &[])? {
        water += water_delta(store, m.id, from, end)?;
    }
    let mean = |field: &str| -> Result<Option<f64>, StoreError> {
        let Some(m) = store.find_series("cooling", field, &[])?.into_iter().next() else { return Ok(None) };
        let v: Vec<f64> = store.read_with_neighbours(m.id, from.0, end.0)?.into_iter().filter(|(t, _)| *t >= from.0 && *t <= end.0).filter_map(|(_, v)| v.as_f64()).collect();
        Ok((!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64))
    };
    let wb = match (mean("outside_temp_c")?, mean("outside_rh_pct")?) {
        (Some(t), Some(rh)) => Some(wet_bulb_c(t, rh)),
        _ => None,
    };
    Ok((water, wb))
}

/// The newest time the store holds (the wall clock when empty): the demo's simulated site runs
/// ahead of the wall clock, and its alerts should follow its time.
pub struct DataClock(pub Arc<Store>);

impl Clock for DataClock {
    fn now(&self) -> Timestamp {
        self.0.live_now().map(Timestamp).unwrap_or_else(|_| Timestamp::now())
    }
}

/// Where the alert database lives: beside the sample store.
pub fn data_dir(store: &Store) -> PathBuf {
    store.path().parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."))
}

/// Opens the pipeline with the configured rules and routing, restoring saved state.
pub fn open_pipeline(store: &Store, cfg: &AlertsConfig, clock: Arc<dyn Clock>) -> Result<(Pipeline, Deliverer), AlertingError> {
    let external = cfg.external_url.clone().unwrap_or_else(|| "http://127.0.0.1:8086".into());
    open_pipeline_with(store, cfg.load_rules()?.rules, cfg.load_routing()?, external, clock)
}

pub fn open_pipeline_with(store: &Store, rules: Vec<Rule>, routing: Routing, external_url: String, clock: Arc<dyn Clock>) -> Result<(Pipeline, Deliverer), AlertingError> {
    let outbox = Arc::new(Outbox::open(&data_dir(store))?);
    let deliverer = Deliverer::new(outbox.clone(), routing.clone(), clock.clone(), external_url);
    Ok((Pipeline::open(rules, routing, outbox, clock)?, deliverer))
}

/// The example routing's inhibition and topology without its receivers: what the demo runs,
/// so its API shows what would be muted without sending anything anywhere.
pub fn demo_routing() -> Routing {
    let mut r = Routing::parse(include_str!("../../../deploy/alerts/routing.toml")).unwrap_or_default();
    r.receivers.clear();
    r.route = kilowatch_alerts::config::Route::default();
    r
}

/// One evaluation: samples from the store, the pipeline step, one delivery round.
pub async fn step(store: &Arc<Store>, pipeline: &mut Pipeline, deliverer: &Deliverer) -> Result<usize, AlertingError> {
    let now = pipeline.clock.now();
    let rules = pipeline.engine.rules.clone();
    let s = store.clone();
    let samples = tokio::task::spawn_blocking(move || live_samples(&s, &rules, now)).await.map_err(|e| AlertingError::Task(e.to_string()))??;
    let notes = pipeline.tick(&samples)?;
    deliverer.round().await?;
    Ok(notes.len())
}

/// The background task: evaluate every `eval_interval_s`, deliver (retries included) every
/// second, until shutdown.
pub fn spawn(
    store: Arc<Store>,
    cfg: AlertsConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AlertingError> {
    let (pipeline, deliverer) = open_pipeline(&store, &cfg, clock)?;
    let every = Duration::from_secs(cfg.eval_interval_s.max(1));
    let catch_up = CatchUp::new(every, Duration::from_secs(cfg.catch_up_max_s)).with_gauge(metrics.alerts_catching_up.clone());
    Ok(run(store, pipeline, deliverer, every, catch_up, shutdown))
}

pub fn run(store: Arc<Store>, mut pipeline: Pipeline, deliverer: Deliverer, every: Duration, mut catch_up: CatchUp, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // On the wall clock's grid of `every` (10:00:00, 10:00:15, …), late ticks skipped: the two
        // members of an active-active pair then evaluate at the same instants, so an alert
        // starts at the same second on both and their notifications carry the same id.
        let mut eval = tokio::time::interval_at(on_grid(every), every);
        eval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        // The delivery log is kept 62 days (`/api/v1/alerts/notifications`), then pruned: it is
        // the alert history of the monthly report, due up to the 28th of the next month.
        let mut prune = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = eval.tick() => {
                    if catch_up.holding(pipeline.clock.now(), || newest(&store)) {
                        continue;
                    }
                    match step(&store, &mut pipeline, &deliverer).await {
                        Ok(n) => tracing::debug!(notifications = n, "alerts evaluated"),
                        Err(e) => tracing::error!(error = %e, "alert evaluation failed; state kept, next round retries"),
                    }
                },
                // What the outbox held at the stop waits too: it was decided on the old data.
                _ = retry.tick() => if !catch_up.holding(pipeline.clock.now(), || newest(&store))
                    && let Err(e) = deliverer.round().await
                {
                    tracing::error!(error = %e, "alert delivery round failed");
                },
                _ = prune.tick() => {
                    let before = Timestamp(pipeline.clock.now().0 - 62 * DAY_NS);
                    match pipeline.outbox.prune(before) {
                        Ok(n) => tracing::debug!(pruned = n, "delivery log pruned"),
                        Err(e) => tracing::warn!(error = %e, "cannot prune the delivery log"),
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    })
}

/// The next multiple of `every` on the wall clock (Unix time), as a tokio instant.
fn on_grid(every: Duration) -> tokio::time::Instant {
    let step = every.as_nanos().max(1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let wait = (step - now % step) % step;
    tokio::time::Instant::now() + Duration::from_nanos(u64::try_from(wait).unwrap_or(0))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/notifications", get(list_notifications))
        .route("/api/v1/rules", get(list_rules))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
}

/// Keys of the alerts API's answers that hold a time. The state behind them keeps integer
/// nanoseconds (what `alerts.db` stores); the API shows RFC 3339, as docs/api.md promises.
const TIME_KEYS: &[&str] = &["active_since", "fired_at", "resolved_at", "last_eval", "at", "startsAt", "endsAt", "created_at", "delivered_at", "next_flush", "last_sent", "ts", "next_at"];

/// `v` with every integer under a [`TIME_KEYS`] key written as RFC 3339.
fn rfc3339_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if let Some(ns) = x.as_i64().filter(|_| TIME_KEYS.contains(&k.as_str())) {
                    *x = json!(Timestamp(ns).to_rfc3339());
                } else {
                    rfc3339_times(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(rfc3339_times),
        _ => {}
    }
}

fn times_answer(mut v: serde_json::Value) -> Response {
    rfc3339_times(&mut v);
    Json(v).into_response()
}

#[derive(Deserialize)]
struct AlertQuery {
    state: Option<String>,
    fingerprint: Option<String>,
    token: Option<String>,
}

fn guard(st: &AppState, headers: &HeaderMap, token: Option<&str>, write: bool) -> Result<Arc<Outbox>, Box<Response>> {
    let presented = Auth::presented(headers, token);
    let grant = st.auth.grant(presented);
    let ok = if write { grant == Grant::Write } else { st.auth.may_read(presented) };
    // A silence mutes alerts site-wide: a write token narrowed to nodes or owners (a node's
    // collector, a tenant's) must not hide another tenant's alerts, or the site's.
    if ok && write && st.auth.write_scope(presented).is_some() && st.auth.admin(presented).is_err() {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this write token is narrowed to nodes or owners ([[auth.tokens]] nodes, owners): silences mute alerts site-wide and need a write token that is not narrowed, or the admin scope",
        )));
    }
    if !ok {
        // As on every write route: a read token is known but not allowed (403).
        if write && grant == Grant::Read {
            return Err(Box::new(error(StatusCode::FORBIDDEN, "forbidden", "this token may read but not write")));
        }
        let need = if write { "write" } else { "read" };
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "unauthorized", format!("a valid {need} token is required"))));
    }
    Outbox::open(&data_dir(&st.store)).map(Arc::new).map_err(|e| Box::new(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())))
}

fn internal(e: OutboxError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string())
}

async fn list_alerts(State(st): State<AppState>, Query(q): Query<AlertQuery>, headers: HeaderMap) -> Response {
    let ob = match guard(&st, &headers, q.token.as_deref(), false) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let (es, ds): (EngineState, DispatchState) = match (ob.load("engine"), ob.load("dispatch")) {
        (Ok(e), Ok(d)) => (e.unwrap_or_default(), d.unwrap_or_default()),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    let alerts: Vec<_> = es
        .alerts
        .values()
        .filter(|a| q.state.as_deref().is_none_or(|s| serde_json::to_value(a.status).ok().and_then(|v| v.as_str().map(|x| x == s)).unwrap_or(false)))
        .filter(|a| q.fingerprint.as_deref().is_none_or(|f| f == a.fingerprint))
        .map(|a| json!({ "alert": a, "muted": ds.muted.get(&a.fingerprint) }))
        .collect();
    times_answer(json!({ "alerts": alerts }))
}

async fn list_notifications(State(st): State<AppState>, Query(q): Query<AlertQuery>, headers: HeaderMap) -> Response {
    match guard(&st, &headers, q.token.as_deref(), false) {
        Ok(ob) => match ob.log(500) {
            Ok(l) => times_answer(json!({ "notifications": l })),
            Err(e) => internal(e),
        },
        Err(r) => *r,
    }
}

async fn list_rules(State(st): State<AppState>, Query(q): Query<AlertQuery>, headers: HeaderMap) -> Response {
    let ob = match guard(&st, &headers, q.token.as_deref(), false) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let rules: Vec<Rule> = match ob.load("rules") {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => return internal(e),
    };
    let es: EngineState = ob.load("engine").ok().flatten().unwrap_or_default();
    let out: Vec<_> = rules.iter().map(|r| json!({ "rule": r, "status": es.rules.get(&format!("{}/{}/{}", r.name, r.severity, r.metric)) })).collect();
    times_answer(json!({ "rules": out }))
}

async fn list_silences(State(st): State<AppState>, Query(q): Query<AlertQuery>, headers: HeaderMap) -> Response {
    match guard(&st, &headers, q.token.as_deref(), false) {
        Ok(ob) => match ob.silences() {
            Ok(s) => {
                let now = Timestamp::now();
                let v: Vec<_> = s.iter().map(|s| json!({ "silence": s, "active": s.active(now) })).collect();
                times_answer(json!({ "silences": v }))
            }
            Err(e) => internal(e),
        },
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
struct NewSilence {
    matchers: Vec<Matcher>,
    #[serde(rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    ends_at: Option<String>,
    /// Alternative to endsAt: "2h".
    duration: Option<String>,
    #[serde(default, rename = "createdBy")]
    created_by: String,
    #[serde(default)]
    comment: String,
}

async fn create_silence(State(st): State<AppState>, headers: HeaderMap, Json(n): Json<NewSilence>) -> Response {
    let ob = match guard(&st, &headers, None, true) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if n.matchers.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid", "a silence needs at least one matcher");
    }
    let now = Timestamp::now();
    let parse = |name: &str, s: &Option<String>| s.as_deref().map(|v| crate::api::parse_time(name, v)).transpose();
    let (starts, ends) = match (parse("startsAt", &n.starts_at), parse("endsAt", &n.ends_at)) {
        (Ok(s), Ok(e)) => (s.unwrap_or(now), e),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, "invalid", e),
    };
    let ends = match (ends, n.duration.as_deref().and_then(kilowatch_alerts::parse_duration_s)) {
        (Some(e), _) => e,
        (None, Some(d)) => starts.saturating_add_ns(d.saturating_mul(NANOS_PER_SEC)),
        (None, None) => return error(StatusCode::BAD_REQUEST, "invalid", "give endsAt or duration (e.g. \"2h\")"),
    };
    if ends <= starts {
        return error(StatusCode::BAD_REQUEST, "invalid", "endsAt must be after startsAt");
    }
    let id = format!("{:x}-{:04x}", now.0, std::process::id() & 0xffff);
    let s = Silence { id: id.clone(), matchers: n.matchers, starts_at: starts, ends_at: ends, created_by: n.created_by, comment: n.comment };
    match ob.put_silence(&s) {
        Ok(()) => {
            tracing::info!(silence = %id, matchers = ?s.matchers.iter().map(ToString::to_string).collect::<Vec<_>>(), ends = %ends.to_rfc3339(), "silence created");
            (StatusCode::CREATED, times_answer(json!({ "silenceID": id, "silence": s }))).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn expire_silence(State(st): State<AppState>, UrlPath(id): UrlPath<String>, headers: HeaderMap) -> Response {
    let ob = match guard(&st, &headers, None, true) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    match ob.expire_silence(&id, Timestamp::now()) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "not found", format!("no silence {id}")),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xid_is_live_for_fifteen_minutes() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let now = Timestamp::from_secs(1_800_000_000);
        let xid = |node: &str, secs_ago: i64| {
            kilowatch_model::Point::new("gpu_event", Timestamp(now.0 - secs_ago * NANOS_PER_SEC)).tag("node", node).tag("gpu", "3").field("kind", "xid").field("xid", 79i64)
        };
        store.write(&[xid("dgx-001", 60), xid("dgx-002", 3600)]).expect("write");
        let got: BTreeMap<String, f64> =
            live_samples(&store, &[], now).expect("samples").into_iter().filter(|s| s.metric == "derived.gpu_xid_recent").filter_map(|s| Some((s.labels.get("node")?.clone(), s.value))).collect();
        assert_eq!(got.get("dgx-001"), Some(&79.0));
        assert_eq!(got.get("dgx-002"), Some(&0.0));
    }

    #[test]
    fn api_times_are_rfc3339() {
        let mut v = json!({ "alerts": [{ "alert": { "fired_at": 1_800_000_000_000_000_000i64, "resolved_at": null, "value": 3, "history": [{ "at": 0 }] } }] });
        rfc3339_times(&mut v);
        assert_eq!(v["alerts"][0]["alert"]["fired_at"], "2027-01-15T08:00:00Z");
        assert_eq!(v["alerts"][0]["alert"]["history"][0]["at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["alerts"][0]["alert"]["value"], 3, "other numbers stay");
        assert!(v["alerts"][0]["alert"]["resolved_at"].is_null());
    }

    #[test]
    fn psychrometrics_and_bands() {
        // Magnus: 25 °C at 60 % RH has a dew point of about 16.7 °C; saturated air's is itself.
        let dp = |t, rh| dew_point_c(t, rh).expect("dew point");
        assert!((dp(25.0, 60.0) - 16.7).abs() < 0.1, "{}", dp(25.0, 60.0));
        assert!((dp(18.0, 100.0) - 18.0).abs() < 1e-9);
        // Stull (2011)'s own check value: 20 °C, 50 % → 13.7 °C.
        assert!((wet_bulb_c(20.0, 50.0) - 13.7).abs() < 0.1, "{}", wet_bulb_c(20.0, 50.0));
        assert_eq!(band(13.7), "12-14");
        assert_eq!(band(-0.5), "-2-0");
    }
}
