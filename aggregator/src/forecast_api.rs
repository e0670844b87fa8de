//! The forecast over the store: the site's hourly history for the model (the accounting's
//! ledgers and the cooling units' outside air), the stored `forecast` inputs, the provider
//! poller, and `GET /api/v1/forecast` and `GET /api/v1/advice`. The model itself, the adapters
//! and the advice are in `kilowatch-forecast`.

use crate::adapters::{StoreRead, store_error};
use kilowatch_accounting::read::{HourMeans, SeriesRead};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kilowatch_forecast::advice::{Request, Weight};
use kilowatch_forecast::forecast::{Forecast, Inputs, IssuedHour};
use kilowatch_forecast::lines::{MEASUREMENT, StoredValue};
use kilowatch_forecast::model::{CoolingMode, FitOptions, HourRecord, ModelState};
use kilowatch_model::metric::COOLING;
use kilowatch_model::{Precision, Timestamp, parse_batch};
use kilowatch_store::{Store, StoreError};
use serde::Deserialize;
use tokio::sync::watch;

use crate::api::{AppState, error};
use crate::config::Config;

const NS: i64 = 1_000_000_000;
const HOUR_NS: i64 = 3600 * NS;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/forecast", get(get_forecast)).route("/api/v1/advice", get(get_advice))
}

/// Hourly means of every series of `measurement.field` averaged together, over `[from, to)`
/// in whole hours: hour roll-ups where the store has them, raw readings after.
fn hourly_means(store: &Store, measurement: &str, field: &str, from: i64, to: i64) -> Result<Vec<Option<f64>>, StoreError> {
    let n = ((to - from) / HOUR_NS).max(0) as usize;
    let mut sum = vec![0.0; n];
    let mut cnt = vec![0u32; n];
    for m in store.find_series(measurement, field, &[])? {
        let per = hour_sums(&StoreRead(store).hour_means(m.id, from, to).map_err(store_error)?, from, to, n);
        for (i, (s, c)) in per.into_iter().enumerate() {
            if c > 0 {
                sum[i] += s / f64::from(c);
                cnt[i] += 1;
            }
        }
    }
    Ok(sum.into_iter().zip(cnt).map(|(s, c)| (c > 0).then(|| s / f64::from(c))).collect())
}

/// A series' sum and count of readings per hour of `[from, to)` (`n` hours), from its hour
/// roll-ups and the raw readings after them.
fn hour_sums(means: &HourMeans, from: i64, to: i64, n: usize) -> Vec<(f64, u32)> {
    let rolled = means.rolled_to;
    let mut per = vec![(0.0, 0u32); n];
    for &(t, mean, count) in &means.hours {
        let i = ((t - from) / HOUR_NS) as usize;
        if i < n {
            per[i] = (mean * f64::from(count), count);
        }
    }
    if rolled < to {
        for &(t, v) in &means.raw {
            if t >= rolled && t < to {
                let i = ((t - from) / HOUR_NS) as usize;
                per[i].0 += v;
                per[i].1 += 1;
            }
        }
    }
    per
}

/// The mode the cooling units reported most in each hour of `[from, to)` (the `cooling` series'
/// `mode` field; every unit's readings counted together), where any reported one. Readings
/// older than the raw retention are gone: those hours have none, and the model falls back to
/// the constants where too few hours are left (docs/forecast.md).
fn hourly_modes(store: &Store, from: i64, to: i64) -> Result<Vec<Option<CoolingMode>>, StoreError> {
    let n = ((to - from) / HOUR_NS).max(0) as usize;
    let mut counts: Vec<[u32; 4]> = vec![[0; 4]; n];
    const ORDER: [CoolingMode; 4] = [CoolingMode::Mix, CoolingMode::Humidify, CoolingMode::Free, CoolingMode::Evaporative];
    for m in store.find_series(COOLING, "mode", &[])? {
        for (t, v) in store.read_with_neighbours(m.id, from, to)? {
            let Some(mode) = v.as_text().and_then(CoolingMode::parse) else { continue };
            if t >= from && t < to {
                let i = ((t - from) / HOUR_NS) as usize;
                if let (Some(c), Some(k)) = (counts.get_mut(i), ORDER.iter().position(|o| *o == mode)) {
                    c[k] += 1;
                }
            }
        }
    }
    Ok(counts.into_iter().map(|c| (0..4).filter(|&k| c[k] > 0).max_by_key(|&k| c[k]).map(|k| ORDER[k])).collect())
}

/// The site's hourly ledger with the outside air of each hour, over `[from, to)` (whole hours).
pub fn site_history(store: &Store, from: i64, to: i64) -> Result<Vec<HourRecord>, StoreError> {
    let bounds: Vec<i64> = (0..=((to - from) / HOUR_NS)).map(|k| from + k * HOUR_NS).collect();
    let l = kilowatch_accounting::ledger::site_ledgers(&StoreRead(store), &bounds).map_err(store_error)?;
    let temp = hourly_means(store, COOLING, "outside_temp_c", from, to)?;
    let rh = hourly_means(store, COOLING, "outside_rh_pct", from, to)?;
    let modes = hourly_modes(store, from, to)?;
    let mut out = Vec::new();
    for (i, hour) in bounds.windows(2).enumerate() {
        let (Some(t), Some(rh)) = (temp.get(i).copied().flatten(), rh.get(i).copied().flatten()) else { continue };
        let air = kilowatch_forecast::inputs::Air::from_rh(t, rh);
        out.push(HourRecord {
            t: hour[0] / NS,
            it_kwh: l.it_kwh[i],
            facility_kwh: l.facility_kwh[i],
            water_l: l.water_metered.then(|| l.water_m3[i] * 1000.0),
            dry_bulb_c: air.dry_bulb_c,
            wet_bulb_c: air.wet_bulb_c,
            mode: modes.get(i).copied().flatten(),
        });
    }
    Ok(out)
}

/// The newest value of every `forecast` series.
pub fn stored_inputs(store: &Store) -> Result<Vec<StoredValue>, StoreError> {
    let mut metas = Vec::new();
    for field in ["dry_bulb_c", "wet_bulb_c", "rh_pct", "intensity_g_per_kwh", "issued_s"] {
        metas.extend(store.find_series(MEASUREMENT, field, &[])?);
    }
    let ids: Vec<_> = metas.iter().map(|m| m.id).collect();
    let latest = store.latest(&ids)?;
    Ok(metas
        .iter()
        .zip(latest)
        .filter_map(|(m, l)| {
            let (ts, v) = l?;
            Some(StoredValue {
                input: m.tag("input")?.to_owned(),
                provider: m.tag("provider").unwrap_or("ingest").to_owned(),
                lead_h: m.tag("lead_h")?.parse().ok()?,
                stamp_s: ts.div_euclid(NS),
                field: m.field.to_string(),
                value: v.as_f64()?,
            })
        })
        .collect())
}

type ModelKey = (PathBuf, i64);

/// Models fitted today, per store: the model refits once a day (and, while history is too
/// short, once an hour), not on every request.
fn model_cache() -> &'static Mutex<HashMap<ModelKey, ModelState>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<ModelKey, ModelState>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn model_for(store: &Store, cfg: &Config, now_s: i64, history: &[HourRecord]) -> ModelState {
    let day = now_s.div_euclid(86_400);
    let key = (store.path().to_owned(), day);
    if let Ok(c) = model_cache().lock()
        && let Some(m) = c.get(&key)
    {
        return m.clone();
    }
    let f = &cfg.forecast;
    let opts = FitOptions { min_hours: f.min_history_h as usize, holdout_days: f.holdout_days as usize, ..FitOptions::default() };
    let m = kilowatch_forecast::fit(history, &opts);
    tracing::info!(hours = history.len(), ready = matches!(m, ModelState::Ready(_)), "forecast: site model fitted");
    if matches!(m, ModelState::Ready(_))
        && let Ok(mut c) = model_cache().lock()
    {
        c.retain(|k, _| k.0 != key.0);
        c.insert(key, m.clone());
    }
    m
}

/// The forecast as of `now_s`, from the store.
pub fn compute(store: &Store, cfg: &Config, now_s: i64) -> Result<Forecast, StoreError> {
    let to = now_s.div_euclid(3600) * HOUR_NS;
    let from = to - cfg.forecast.history_days as i64 * 24 * HOUR_NS;
    let history = site_history(store, from, to)?;
    let model = model_for(store, cfg, now_s, &history);
    let last_day: Vec<&HourRecord> = history.iter().rev().take(24).collect();
    let it_kw = last_day.iter().map(|r| r.it_kwh).sum::<f64>() / last_day.len().max(1) as f64;
    let (weather, carbon) = kilowatch_forecast::lines::series_from_stored(&stored_inputs(store)?, now_s);
    let score = kilowatch_forecast::forecast::score(&issued_hours(store, from, to)?, &history);
    let mut f = kilowatch_forecast::build(
        &model,
        &Inputs {
            site: &cfg.site.name,
            now_s,
            weather: weather.as_ref(),
            carbon: carbon.as_ref(),
            configured_g_per_kwh: cfg.carbon.factor_kg_per_kwh * 1000.0,
            it_kw,
            stale_after_h: cfg.forecast.stale_after_h,
        },
    );
    f.score = Some(score);
    Ok(f)
}

/// The kept forecasts issued in `[from, to)` (ns), one entry per forecast hour.
fn issued_hours(store: &Store, from: i64, to: i64) -> Result<Vec<IssuedHour>, StoreError> {
    use kilowatch_forecast::lines::ISSUED_MEASUREMENT as M;
    let mut out = Vec::new();
    for pue in store.find_series(M, "pue", &[])? {
        let Some(lead_h) = pue.tag("lead_h").and_then(|l| l.parse::<i64>().ok()) else { continue };
        let tags: Vec<(&str, &str)> = pue.tags.iter().collect();
        let other = |field: &str| -> Result<std::collections::HashMap<i64, f64>, StoreError> {
            let Some(m) = store.find_series(M, field, &tags)?.into_iter().find(|m| m.tags == pue.tags) else { return Ok(Default::default()) };
            Ok(kilowatch_accounting::ledger::read_f64(&StoreRead(store), m.id, from, to).map_err(store_error)?.into_iter().collect())
        };
        let (lo, hi, wue) = (other("pue_low")?, other("pue_high")?, other("wue_l_per_kwh")?);
        for (t, v) in kilowatch_accounting::ledger::read_f64(&StoreRead(store), pue.id, from, to).map_err(store_error)? {
            if t < from || t >= to {
                continue;
            }
            out.push(IssuedHour { target_s: t.div_euclid(HOUR_NS) * 3600 + lead_h * 3600, lead_h, pue: v, pue_low: lo.get(&t).copied(), pue_high: hi.get(&t).copied(), wue: wue.get(&t).copied() });
        }
    }
    Ok(out)
}

async fn compute_async(st: &AppState) -> Result<Forecast, Response> {
    let (store, cfg) = (st.store.clone(), st.config.clone());
    let now_s = Timestamp::now().0.div_euclid(NS);
    match tokio::task::spawn_blocking(move || compute(&store, &cfg, now_s)).await {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string())),
    }
}

async fn get_forecast(State(st): State<AppState>) -> Response {
    match compute_async(&st).await {
        Ok(f) => Json(f).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdviceParams {
    gpus: u32,
    hours: u32,
    /// `48h`, `2d` or a number of hours (default 48h).
    #[serde(default)]
    within: Option<String>,
    #[serde(default)]
    weight: Option<String>,
}

/// `48h`, `2d`, `36` (hours) → hours.
pub fn parse_within(s: &str) -> Result<u32, String> {
    if let Ok(h) = s.parse::<u32>() {
        return Ok(h);
    }
    humantime::parse_duration(s).map(|d| (d.as_secs() / 3600) as u32).map_err(|e| format!("within {s:?}: {e}"))
}

async fn get_advice(State(st): State<AppState>, Query(q): Query<AdviceParams>) -> Response {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "invalid", m);
    let within_h = match q.within.as_deref().map(parse_within).transpose() {
        Ok(w) => w.unwrap_or(48),
        Err(e) => return bad(e),
    };
    let weight = match q.weight.as_deref().map(Weight::from_str).transpose() {
        Ok(w) => w.unwrap_or_default(),
        Err(e) => return bad(e),
    };
    if q.gpus == 0 || q.gpus > 100_000 || q.hours == 0 || q.hours > 48 {
        return bad("gpus must be 1..100000 and hours 1..48".into());
    }
    let f = match compute_async(&st).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let tz = chrono_tz::Tz::from_str(&st.config.site.timezone).unwrap_or(chrono_tz::UTC);
    let req = Request { gpus: q.gpus, hours: q.hours, within_h, weight, kw_per_gpu: st.config.forecast.kw_per_gpu };
    Json(kilowatch_forecast::advise(&f, &req, tz)).into_response()
}

/// Writes line protocol straight into the store (the poller and the demo are in-process).
pub fn write_lines(store: &Store, text: &str) -> Result<usize, String> {
    if text.is_empty() {
        return Ok(0);
    }
    let lines = parse_batch(text, Precision::Ns, Timestamp::now()).map_err(|e| e.to_string())?;
    let s = store.write_lines(&lines).map_err(|e| e.to_string())?;
    Ok(s.samples)
}

/// Computes the forecast now and keeps it (`forecast_issued`), so it can be scored later.
pub fn issue(store: &Store, cfg: &Config, now_s: i64) -> Result<Forecast, String> {
    let f = compute(store, cfg, now_s).map_err(|e| e.to_string())?;
    if f.stale.is_none() {
        write_lines(store, &kilowatch_forecast::lines::issued_lines(&f))?;
    }
    Ok(f)
}

/// Polls the configured providers every `poll_interval_s`, stores their answers as `forecast`
/// points, then issues and keeps a forecast. Errors are logged and counted; the loop goes on.
pub fn spawn_poller(store: Arc<Store>, cfg: Arc<Config>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let providers = cfg.forecast.providers(|var| std::env::var(var).ok());
        let timeout = cfg.forecast.weather.iter().chain(cfg.forecast.carbon.iter()).map(|p| p.timeout_s).fold(1.0, f64::max);
        let client = match reqwest::Client::builder().timeout(Duration::from_secs_f64(timeout)).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "forecast: no HTTP client, not polling");
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(cfg.forecast.poll_interval_s));
        let mut errors = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            for p in &providers {
                let now_s = Timestamp::now().0.div_euclid(NS);
                let req = p.request(now_s);
                let mut rb = client.get(&req.url);
                for (k, v) in &req.headers {
                    rb = rb.header(k, v);
                }
                let answer = match rb.send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        r.text().await.map(|b| (status, b)).map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                let stored = answer.and_then(|(status, body)| p.parse(status, &body, now_s).map_err(|e| e.to_string())).and_then(|parsed| {
                    let text = kilowatch_forecast::lines::input_lines(&cfg.site.name, &parsed, now_s);
                    write_lines(&store, &text)
                });
                match stored {
                    Ok(n) => tracing::info!(provider = p.name(), samples = n, "forecast: provider polled"),
                    Err(e) => {
                        errors += 1;
                        tracing::warn!(provider = p.name(), error = %e, errors, "forecast: provider poll failed");
                    }
                }
            }
            let (s, c) = (store.clone(), cfg.clone());
            let now_s = Timestamp::now().0.div_euclid(NS);
            match tokio::task::spawn_blocking(move || issue(&s, &c, now_s)).await {
                Ok(Ok(f)) => tracing::info!(hours = f.hours.len(), stale = f.stale.is_some(), "forecast: issued"),
                Ok(Err(e)) => tracing::warn!(error = %e, "forecast: not issued"),
                Err(e) => tracing::warn!(error = %e, "forecast: task failed"),
            }
        }
    })
}

/// The advice as a few lines of text, for `kilowatch advise`.
pub fn advice_text(a: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let num = |v: &serde_json::Value, k: &str| v.pointer(k).and_then(serde_json::Value::as_f64);
    let _ = writeln!(s, "{} GPUs for {} h ({:.0} kWh of IT energy), weight {}:", a["gpus"], a["hours"], num(a, "/it_kwh").unwrap_or(0.0), a["weight"].as_str().unwrap_or(""));
    if let Some(r) = a["refused"].as_str() {
        let _ = writeln!(s, "  no advice: {r}");
        return s;
    }
    let line = |o: &serde_json::Value| {
        format!(
            "{} ({} local): facility {:.0} kWh, water {}, CO2 {:.1} kg",
            o["start"].as_str().unwrap_or(""),
            o["start_local"].as_str().unwrap_or(""),
            num(o, "/expected/facility_kwh").unwrap_or(0.0),
            num(o, "/expected/water_l").map_or("not metered".to_string(), |w| format!("{w:.0} L")),
            num(o, "/expected/co2_kg").unwrap_or(0.0)
        )
    };
    let _ = writeln!(s, "  now:    {}", line(&a["now"]));
    for (i, o) in a["best"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            s,
            "  best {}: {}\n          saves {:.0} kWh, {} water, {:.1} kg CO2 ({:.0} % / {} / {:.0} %)\n          {}",
            i + 1,
            line(o),
            num(o, "/saves/facility_kwh").unwrap_or(0.0),
            num(o, "/saves/water_l").map_or("-".to_string(), |w| format!("{w:.0} L")),
            num(o, "/saves/co2_kg").unwrap_or(0.0),
            num(o, "/saves/facility_pct").unwrap_or(0.0),
            num(o, "/saves/water_pct").map_or("-".to_string(), |w| format!("{w:.0} %")),
            num(o, "/saves/co2_pct").unwrap_or(0.0),
            o["sbatch"].as_str().unwrap_or("")
        );
    }
    s
}
