//! Daily mean outside temperature from open data, for CDD (Annex II 1(n): "Open access sources
//! shall be used to determine the cooling degree days"): Open-Meteo's historical weather API
//! (`/v1/archive`, ERA5 reanalysis, CC BY 4.0) at the site's coordinates, `[eu.open_weather]`.
//! `kilowatch eu-cdd` asks it once for the reporting period and stores the days as a series
//! (`eu_open_weather,provider=open-meteo-archive temp_mean_c=…` at each local midnight); the
//! filing, the EU indicators and the report read that series like any other, so they agree.

use chrono::NaiveDate;
use chrono_tz::Tz;
use kilowatch_model::{Point, TimeRange, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MEASUREMENT: &str = "eu_open_weather";
pub const FIELD: &str = "temp_mean_c";
pub const PROVIDER: &str = "open-meteo-archive";
pub const SOURCE: &str = "Open-Meteo historical weather API (ERA5 reanalysis, CC BY 4.0), daily mean 2 m temperature at the site";

/// `[eu.open_weather]`: where to ask.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenWeatherConfig {
    /// The site's latitude, degrees north.
    pub latitude: f64,
    /// The site's longitude, degrees east.
    pub longitude: f64,
    /// The archive endpoint (default Open-Meteo's public one; a customer host or a mirror).
    #[serde(default = "default_url")]
    pub url: String,
}

fn default_url() -> String {
    "https://archive-api.open-meteo.com/v1/archive".into()
}

impl OpenWeatherConfig {
    /// The request for the local days `first..=last` in the site's zone.
    pub fn request_url(&self, first: NaiveDate, last: NaiveDate, tz: Tz) -> String {
        format!("{}?latitude={}&longitude={}&start_date={first}&end_date={last}&daily=temperature_2m_mean&timezone={}", self.url, self.latitude, self.longitude, tz.name())
    }

    pub fn check(&self) -> Result<(), String> {
        if !(self.latitude.is_finite() && (-90.0..=90.0).contains(&self.latitude)) {
            return Err(format!("latitude {} is not between -90 and 90", self.latitude));
        }
        if !(self.longitude.is_finite() && (-180.0..=180.0).contains(&self.longitude)) {
            return Err(format!("longitude {} is not between -180 and 180", self.longitude));
        }
        Ok(())
    }
}

/// The local days of a period, first and last.
pub fn days_of(r: TimeRange, tz: Tz) -> (NaiveDate, NaiveDate) {
    let local = |t: i64| Timestamp(t).to_datetime().with_timezone(&tz).date_naive();
    (local(r.from.0), local(r.to.0.saturating_sub(1)))
}

/// The answer's `daily.time` and `daily.temperature_2m_mean` (a null where the archive has no
/// value yet); errors are `{"error": true, "reason": "…"}`.
pub fn parse(body: &str) -> Result<Vec<(NaiveDate, Option<f64>)>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("error").and_then(Value::as_bool) == Some(true) {
        return Err(format!("refused: {}", v.get("reason").and_then(Value::as_str).unwrap_or("no reason given")));
    }
    let daily = v.get("daily").ok_or("no `daily` object")?;
    let times = daily.get("time").and_then(Value::as_array).ok_or("no `daily.time`")?;
    let temps = daily.get("temperature_2m_mean").and_then(Value::as_array).ok_or("no `daily.temperature_2m_mean`")?;
    times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let d = t.as_str().and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).ok_or_else(|| format!("bad date at {i}: {t}"))?;
            Ok((d, temps.get(i).and_then(Value::as_f64)))
        })
        .collect()
}

/// The days with a value as points at each local midnight (a day without a value is no point:
/// it stays missing).
pub fn points(site: &str, days: &[(NaiveDate, Option<f64>)], tz: Tz) -> Vec<Point> {
    days.iter()
        .filter_map(|(d, t)| {
            let t = (*t)?;
            let at = crate::periods::local_midnight(tz, *d).ok()?;
            Some(Point::new(MEASUREMENT, at).tag("site", site).tag("provider", PROVIDER).field(FIELD, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_answer_parses_with_its_gaps() {
        let body = r#"{"latitude":48.62,"longitude":2.44,"utc_offset_seconds":3600,"timezone":"Europe/Paris","daily_units":{"time":"iso8601","temperature_2m_mean":"°C"},"daily":{"time":["2025-07-01","2025-07-02"],"temperature_2m_mean":[27.4,null]}}"#;
        let d = parse(body).expect("parses");
        assert_eq!(d, vec![(NaiveDate::from_ymd_opt(2025, 7, 1).expect("date"), Some(27.4)), (NaiveDate::from_ymd_opt(2025, 7, 2).expect("date"), None)]);
        assert_eq!(points("dc5", &d, chrono_tz::Europe::Paris).len(), 1, "a day without a value is no point");
        assert!(parse(r#"{"error":true,"reason":"Parameter 'start_date' is out of allowed range"}"#).is_err_and(|e| e.contains("start_date")));
    }
}
