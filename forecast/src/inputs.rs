//! Forecast inputs: hourly outside air and grid carbon intensity, each from a provider behind
//! one trait. An adapter only builds its request and parses the answer (status and body); the
//! aggregator does the HTTP, so this crate has no network and its tests run on recorded
//! answers.

use chrono::{DateTime, NaiveDateTime};
use serde::Serialize;
use serde_json::Value;

/// The outside air forecast for one hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Air {
    pub dry_bulb_c: f64,
    pub wet_bulb_c: f64,
}

impl Air {
    /// From dry bulb and relative humidity (the wet bulb that holds the same moisture,
    /// [`crate::model::wet_bulb_from_rh`]).
    pub fn from_rh(dry_bulb_c: f64, rh_pct: f64) -> Air {
        Air { dry_bulb_c, wet_bulb_c: crate::model::wet_bulb_from_rh(dry_bulb_c, rh_pct) }
    }
}

/// Hourly values from one provider's answer, oldest first, each at the start of its hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series<T> {
    pub provider: String,
    /// When the provider made it (its own stamp when it gives one, else the fetch time), Unix s.
    pub issued_s: i64,
    /// Whether the values ahead of now are a forecast (`true`) or only recent observations that
    /// the forecast repeats as a daily profile (`false`: éCO2mix and ENTSO-E actuals).
    pub ahead: bool,
    pub hours: Vec<(i64, T)>,
}

impl<T: Copy> Series<T> {
    /// The value for the hour starting at `t`, if the series has it.
    pub fn at(&self, t: i64) -> Option<T> {
        self.hours.binary_search_by_key(&t, |h| h.0).ok().map(|i| self.hours[i].1)
    }
}

/// What an adapter parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Parsed {
    Weather(Series<Air>),
    /// g CO2eq per kWh.
    Carbon(Series<f64>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an error (its status and its own message).
    #[error("{provider} answered {status}: {message}")]
    Refused { provider: &'static str, status: u16, message: String },
    #[error("{provider}: unexpected answer: {message}")]
    Format { provider: &'static str, message: String },
    #[error("{provider}: the answer holds no hourly value")]
    Empty { provider: &'static str },
}

/// One HTTP GET.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A forecast provider: how to ask, and how to read the answer.
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    /// The request for data around `now_s` (Unix s).
    fn request(&self, now_s: i64) -> Request;
    /// Reads an answer fetched at `fetched_s`.
    fn parse(&self, status: u16, body: &str, fetched_s: i64) -> Result<Parsed, ProviderError>;
}

fn format_err(provider: &'static str, message: impl Into<String>) -> ProviderError {
    ProviderError::Format { provider, message: message.into() }
}

fn json(provider: &'static str, body: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(body).map_err(|e| format_err(provider, format!("not JSON: {e}")))
}

/// The provider's own message from an error body, whatever key it uses.
fn error_message(v: &Value) -> Option<String> {
    ["reason", "message", "error", "detail"].iter().find_map(|k| match v.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    })
}

fn refused(provider: &'static str, status: u16, body: &str) -> ProviderError {
    let message = serde_json::from_str::<Value>(body).ok().as_ref().and_then(error_message).unwrap_or_else(|| body.chars().take(200).collect());
    ProviderError::Refused { provider, status, message }
}

/// Parses ISO 8601 with or without an offset ("2024-07-01T10:00", "…Z", "…+02:00", with or
/// without seconds and fractions); a time without offset is `offset_s` ahead of UTC.
pub fn parse_time(s: &str, offset_s: i64) -> Option<i64> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp());
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%MZ"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return Some(n.and_utc().timestamp() - offset_s);
        }
    }
    None
}

/// Averages (time, value) pairs into hours (sub-hourly data such as éCO2mix's quarter hours).
fn hourly<T>(points: Vec<(i64, f64)>, f: impl Fn(f64) -> T) -> Vec<(i64, T)> {
    let mut m: std::collections::BTreeMap<i64, (f64, u32)> = Default::default();
    for (t, v) in points.into_iter().filter(|p| p.1.is_finite()) {
        let e = m.entry(t.div_euclid(3600) * 3600).or_default();
        e.0 += v;
        e.1 += 1;
    }
    m.into_iter().map(|(t, (s, n))| (t, f(s / f64::from(n)))).collect()
}

/// Open-Meteo's forecast API (`/v1/forecast`, JSON): `hourly.time` with `temperature_2m` and
/// `relative_humidity_2m` (or `wet_bulb_temperature_2m`), times in the answer's time zone
/// (`utc_offset_seconds`). Errors are `{"error": true, "reason": "…"}` with status 400.
/// Commercial use goes through the customer host (`customer-api.open-meteo.com`) with `apikey`.
#[derive(Debug, Clone)]
pub struct OpenMeteo {
    pub url: String,
    pub latitude: f64,
    pub longitude: f64,
    /// The customer API key, sent as `apikey` (the free host takes none).
    pub api_key: Option<String>,
}

/// Open-Meteo's host for API-key (commercial) customers; the free host refuses their keys.
pub const OPEN_METEO_CUSTOMER_URL: &str = "https://customer-api.open-meteo.com/v1/forecast";
/// Open-Meteo's free host.
pub const OPEN_METEO_URL: &str = "https://api.open-meteo.com/v1/forecast";

impl Provider for OpenMeteo {
    fn name(&self) -> &'static str {
        "open-meteo"
    }
    fn request(&self, _now_s: i64) -> Request {
        let mut url = format!("{}?latitude={}&longitude={}&hourly=temperature_2m,relative_humidity_2m,wet_bulb_temperature_2m&forecast_days=3&timezone=GMT", self.url, self.latitude, self.longitude);
        if let Some(k) = &self.api_key {
            url.push_str(&format!("&apikey={k}"));
        }
        Request { url, headers: Vec::new() }
    }
    fn parse(&self, status: u16, body: &str, fetched_s: i64) -> Result<Parsed, ProviderError> {
        let p = self.name();
        if status != 200 {
            return Err(refused(p, status, body));
        }
        let v = json(p, body)?;
        if v.get("error").and_then(Value::as_bool) == Some(true) {
            return Err(ProviderError::Refused { provider: p, status, message: error_message(&v).unwrap_or_default() });
        }
        let offset = v.get("utc_offset_seconds").and_then(Value::as_i64).unwrap_or(0);
        let h = v.get("hourly").ok_or_else(|| format_err(p, "no `hourly` object"))?;
        let col = |k: &str| h.get(k).and_then(Value::as_array);
        let times = col("time").ok_or_else(|| format_err(p, "no `hourly.time`"))?;
        let temps = col("temperature_2m").ok_or_else(|| format_err(p, "no `hourly.temperature_2m`"))?;
        let (rh, wb) = (col("relative_humidity_2m"), col("wet_bulb_temperature_2m"));
        if rh.is_none() && wb.is_none() {
            return Err(format_err(p, "neither `relative_humidity_2m` nor `wet_bulb_temperature_2m`"));
        }
        let mut hours = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let t = match t {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => parse_time(s, offset),
                _ => None,
            }
            .ok_or_else(|| format_err(p, format!("bad time at {i}")))?;
            let Some(temp) = temps.get(i).and_then(Value::as_f64) else { continue };
            // Relative humidity first: the model was fitted on wet bulbs computed from RH by
            // `wet_bulb_from_rh`, and a provider's own wet bulb (another formula) would shift it.
            let air = match (rh.and_then(|r| r.get(i)).and_then(Value::as_f64), wb.and_then(|w| w.get(i)).and_then(Value::as_f64)) {
                (Some(r), _) => Air::from_rh(temp, r),
                (None, Some(w)) => Air { dry_bulb_c: temp, wet_bulb_c: w.min(temp) },
                (None, None) => continue,
            };
            hours.push((t.div_euclid(3600) * 3600, air));
        }
        if hours.is_empty() {
            return Err(ProviderError::Empty { provider: p });
        }
        Ok(Parsed::Weather(Series { provider: p.into(), issued_s: fetched_s, ahead: true, hours }))
    }
}

/// Météo-France's point forecast as its public apps read it (`/forecast?lat=&lon=`, JSON):
/// `updated_on` (Unix s) and `forecast[]` with `dt` (Unix s), `T.value` (°C) and `humidity`
/// (%). Its errors carry `{"code": …, "message": "…"}`.
#[derive(Debug, Clone)]
pub struct MeteoFrance {
    pub url: String,
    pub latitude: f64,
    pub longitude: f64,
    pub token: Option<String>,
}

impl Provider for MeteoFrance {
    fn name(&self) -> &'static str {
        "meteo-france"
    }
    fn request(&self, _now_s: i64) -> Request {
        let mut url = format!("{}?lat={}&lon={}&lang=en", self.url, self.latitude, self.longitude);
        if let Some(t) = &self.token {
            url.push_str(&format!("&token={t}"));
        }
        Request { url, headers: Vec::new() }
    }
    fn parse(&self, status: u16, body: &str, fetched_s: i64) -> Result<Parsed, ProviderError> {
        let p = self.name();
        if status != 200 {
            return Err(refused(p, status, body));
        }
        let v = json(p, body)?;
        let list = v.get("forecast").and_then(Value::as_array).ok_or_else(|| format_err(p, "no `forecast` list"))?;
        let mut pts = Vec::new();
        for f in list {
            let (Some(dt), Some(t), Some(rh)) = (f.get("dt").and_then(Value::as_i64), f.pointer("/T/value").and_then(Value::as_f64), f.get("humidity").and_then(Value::as_f64)) else { continue };
            pts.push((dt, Air::from_rh(t, rh)));
        }
        let hours: Vec<(i64, Air)> = pts.into_iter().map(|(t, a)| (t.div_euclid(3600) * 3600, a)).collect();
        if hours.is_empty() {
            return Err(ProviderError::Empty { provider: p });
        }
        let issued_s = v.get("updated_on").and_then(Value::as_i64).unwrap_or(fetched_s);
        Ok(Parsed::Weather(Series { provider: p.into(), issued_s, ahead: true, hours }))
    }
}

/// Electricity Maps' carbon-intensity forecast (`/v3/carbon-intensity/forecast?zone=`, header
/// `auth-token`): `forecast[]` of `{carbonIntensity, datetime}` and `updatedAt`.
/// Hours of forecast asked of Electricity Maps (`horizonHours`; the API's largest horizon).
pub const ELECTRICITY_MAPS_HORIZON_H: u32 = 72;

#[derive(Debug, Clone)]
pub struct ElectricityMaps {
    pub url: String,
    pub zone: String,
    pub token: Option<String>,
}

impl Provider for ElectricityMaps {
    fn name(&self) -> &'static str {
        "electricity-maps"
    }
    fn request(&self, _now_s: i64) -> Request {
        // The whole horizon the advice can use (a job starting within 48 h): the API's default
        // is 24 hours, which left the second day to repeated-profile filling.
        Request { url: format!("{}?zone={}&horizonHours={ELECTRICITY_MAPS_HORIZON_H}", self.url, self.zone), headers: self.token.iter().map(|t| ("auth-token".to_string(), t.clone())).collect() }
    }
    fn parse(&self, status: u16, body: &str, fetched_s: i64) -> Result<Parsed, ProviderError> {
        let p = self.name();
        if status != 200 {
            return Err(refused(p, status, body));
        }
        let v = json(p, body)?;
        if v.get("status").and_then(Value::as_str) == Some("error") {
            return Err(ProviderError::Refused { provider: p, status, message: error_message(&v).unwrap_or_default() });
        }
        let list = v.get("forecast").and_then(Value::as_array).ok_or_else(|| format_err(p, "no `forecast` list"))?;
        let pts = list.iter().filter_map(|f| Some((parse_time(f.get("datetime")?.as_str()?, 0)?, f.get("carbonIntensity")?.as_f64()?))).collect();
        let hours = hourly(pts, |x| x);
        if hours.is_empty() {
            return Err(ProviderError::Empty { provider: p });
        }
        let issued_s = v.get("updatedAt").and_then(Value::as_str).and_then(|s| parse_time(s, 0)).unwrap_or(fetched_s);
        Ok(Parsed::Carbon(Series { provider: p.into(), issued_s, ahead: true, hours }))
    }
}

/// RTE's éCO2mix real-time national data through the ODRÉ open-data API
/// (`eco2mix-national-tr/records`): `results[]` of `{date_heure, taux_co2}` every 15 minutes,
/// recent observations only (no CO2 forecast is published), so the forecast repeats their
/// daily profile. Errors: `{"error_code": "…", "message": "…"}`.
#[derive(Debug, Clone)]
pub struct RteEco2mix {
    pub url: String,
}

impl Provider for RteEco2mix {
    fn name(&self) -> &'static str {
        "rte-eco2mix"
    }
    fn request(&self, _now_s: i64) -> Request {
        Request { url: format!("{}?select=date_heure,taux_co2&where=taux_co2%20is%20not%20null&order_by=date_heure%20desc&limit=100", self.url), headers: Vec::new() }
    }
    fn parse(&self, status: u16, body: &str, _fetched_s: i64) -> Result<Parsed, ProviderError> {
        let p = self.name();
        if status != 200 {
            return Err(refused(p, status, body));
        }
        let v = json(p, body)?;
        let list = v.get("results").and_then(Value::as_array).ok_or_else(|| format_err(p, "no `results` list"))?;
        let pts = list.iter().filter_map(|r| Some((parse_time(r.get("date_heure")?.as_str()?, 0)?, r.get("taux_co2")?.as_f64()?))).collect();
        let hours = hourly(pts, |x| x);
        let Some(&(newest, _)) = hours.last() else { return Err(ProviderError::Empty { provider: p }) };
        Ok(Parsed::Carbon(Series { provider: p.into(), issued_s: newest + 3600, ahead: false, hours }))
    }
}

/// ENTSO-E's Transparency Platform: actual generation per production type (document A75,
/// `GL_MarketDocument`), turned into an intensity with life-cycle factors per `psrType`.
/// Observations only, like éCO2mix. Errors come as an `Acknowledgement_MarketDocument` whose
/// `Reason/text` says why (e.g. "No matching data found").
#[derive(Debug, Clone)]
pub struct Entsoe {
    pub url: String,
    /// Bidding zone EIC code, e.g. `10YFR-RTE------C`.
    pub zone: String,
    pub token: Option<String>,
}

/// Life-cycle emission factors, g CO2eq/kWh: IPCC AR5 (2014) WG3 Annex III medians where it
/// gives one (coal 820, gas 490, biomass 230, geothermal 38, hydro 24, nuclear 12, solar 45
/// utility, wind 11 onshore / 12 offshore); lignite 1050, oil 650, peat 1100, waste 330 and
/// "other" 700 are assumed (stated in docs/forecast.md).
pub fn psr_factor(psr: &str) -> f64 {
    match psr {
        "B01" => 230.0,
        "B02" => 1050.0,
        "B03" | "B05" => 820.0,
        "B04" => 490.0,
        "B06" | "B07" => 650.0,
        "B08" => 1100.0,
        "B09" => 38.0,
        "B10" | "B11" | "B12" | "B13" => 24.0,
        "B14" => 12.0,
        "B15" => 30.0,
        "B16" => 45.0,
        "B17" => 330.0,
        "B18" => 12.0,
        "B19" => 11.0,
        _ => 700.0,
    }
}

fn iso_minutes(resolution: &str) -> Option<i64> {
    match resolution {
        "PT15M" => Some(15),
        "PT30M" => Some(30),
        "PT60M" | "PT1H" => Some(60),
        _ => None,
    }
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.tag_name().name() == name)
}

fn text(n: Option<roxmltree::Node<'_, '_>>) -> String {
    n.and_then(|n| n.text()).map(str::trim).unwrap_or("").to_string()
}

impl Provider for Entsoe {
    fn name(&self) -> &'static str {
        "entsoe"
    }
    fn request(&self, now_s: i64) -> Request {
        let fmt = |s: i64| DateTime::from_timestamp(s, 0).map(|d| d.format("%Y%m%d%H00").to_string()).unwrap_or_default();
        let token = self.token.as_deref().unwrap_or("");
        Request {
            url: format!("{}?securityToken={token}&documentType=A75&processType=A16&in_Domain={}&periodStart={}&periodEnd={}", self.url, self.zone, fmt(now_s - 2 * 86_400), fmt(now_s)),
            headers: Vec::new(),
        }
    }
    fn parse(&self, status: u16, body: &str, _fetched_s: i64) -> Result<Parsed, ProviderError> {
        let p = self.name();
        let doc = roxmltree::Document::parse(body).map_err(|e| format_err(p, format!("not XML: {e}")))?;
        let root = doc.root_element();
        if root.tag_name().name() == "Acknowledgement_MarketDocument" {
            let reason = root.descendants().find(|n| n.tag_name().name() == "Reason");
            return Err(ProviderError::Refused { provider: p, status, message: text(reason.and_then(|r| child(r, "text"))) });
        }
        if status != 200 {
            return Err(refused(p, status, body));
        }
        // Per hour: Σ MW and Σ MW × factor over production types.
        let mut mix: std::collections::BTreeMap<i64, (f64, f64)> = Default::default();
        for ts in root.children().filter(|n| n.tag_name().name() == "TimeSeries") {
            // A series with an out-domain is consumption (pumping), not generation.
            if child(ts, "outBiddingZone_Domain.mRID").is_some() {
                continue;
            }
            let psr = text(ts.descendants().find(|n| n.tag_name().name() == "psrType"));
            let factor = psr_factor(&psr);
            for period in ts.children().filter(|n| n.tag_name().name() == "Period") {
                let start = text(period.descendants().find(|n| n.tag_name().name() == "start"));
                let start = parse_time(&start, 0).ok_or_else(|| format_err(p, format!("bad period start {start:?}")))?;
                let res = text(child(period, "resolution"));
                let step = iso_minutes(&res).ok_or_else(|| format_err(p, format!("resolution {res:?}")))? * 60;
                for pt in period.children().filter(|n| n.tag_name().name() == "Point") {
                    let pos: i64 = text(child(pt, "position")).parse().map_err(|_| format_err(p, "bad position"))?;
                    let q: f64 = text(child(pt, "quantity")).parse().map_err(|_| format_err(p, "bad quantity"))?;
                    let t = start + (pos - 1) * step;
                    let e = mix.entry(t.div_euclid(3600) * 3600).or_default();
                    e.0 += q;
                    e.1 += q * factor;
                }
            }
        }
        let hours: Vec<(i64, f64)> = mix.into_iter().filter(|(_, (mw, _))| *mw > 0.0).map(|(t, (mw, g))| (t, g / mw)).collect();
        let Some(&(newest, _)) = hours.last() else { return Err(ProviderError::Empty { provider: p }) };
        Ok(Parsed::Carbon(Series { provider: p.into(), issued_s: newest + 3600, ahead: false, hours }))
    }
}
