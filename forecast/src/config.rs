//! The `[forecast]` section of `kilowatch.toml` (documented in docs/forecast.md).

use serde::Deserialize;

use crate::inputs::{ElectricityMaps, Entsoe, MeteoFrance, OpenMeteo, Provider, RteEco2mix};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForecastConfig {
    /// Poll the providers below from `kilowatch serve` (default off). The forecast and advice
    /// are served either way, from whatever `forecast` points the store holds.
    #[serde(default)]
    pub poll: bool,
    /// Seconds between polls (default 3600: the providers refresh hourly at best).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_s: u64,
    /// A weather forecast older than this many hours is stale: the forecast says so and advice
    /// refuses to guess (default 12).
    #[serde(default = "default_stale_after")]
    pub stale_after_h: f64,
    /// Days of the hourly ledger the site model learns from (default 28).
    #[serde(default = "default_history_days")]
    pub history_days: u64,
    /// The most recent days held back to measure the model's error (default 3).
    #[serde(default = "default_holdout_days")]
    pub holdout_days: u64,
    /// Fewer usable hours than this: "too little history", no forecast (default 168, a week).
    #[serde(default = "default_min_history_h")]
    pub min_history_h: u64,
    /// IT power one GPU of a flexible job brings with it, kW, node share included (default
    /// 1.275: a DGX H100 at its 10.2 kW maximum over 8 GPUs).
    #[serde(default = "default_kw_per_gpu")]
    pub kw_per_gpu: f64,
    /// Where outside-air forecasts come from; absent: only `forecast` points written through
    /// the ingest API.
    #[serde(default)]
    pub weather: Option<ProviderConfig>,
    /// Where grid carbon-intensity forecasts come from; absent: ingested `forecast` points,
    /// else the `[carbon]` factor, flat.
    #[serde(default)]
    pub carbon: Option<ProviderConfig>,
}

/// One provider. `kind` picks the adapter; the other keys are those it needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `open-meteo` or `meteo-france` (weather); `electricity-maps`, `rte-eco2mix` or `entsoe`
    /// (carbon).
    pub kind: String,
    /// The endpoint; each kind has its public default.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    /// Grid zone: Electricity Maps zone (`FR`) or ENTSO-E EIC code (`10YFR-RTE------C`).
    #[serde(default)]
    pub zone: Option<String>,
    /// Name of the environment variable holding the API token (never the token itself).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Seconds before a request is given up (default 20).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn default_poll_interval() -> u64 {
    3600
}
fn default_stale_after() -> f64 {
    12.0
}
fn default_history_days() -> u64 {
    28
}
fn default_holdout_days() -> u64 {
    3
}
fn default_min_history_h() -> u64 {
    168
}
fn default_kw_per_gpu() -> f64 {
    1.275
}
fn default_timeout() -> f64 {
    20.0
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            poll: false,
            poll_interval_s: default_poll_interval(),
            stale_after_h: default_stale_after(),
            history_days: default_history_days(),
            holdout_days: default_holdout_days(),
            min_history_h: default_min_history_h(),
            kw_per_gpu: default_kw_per_gpu(),
            weather: None,
            carbon: None,
        }
    }
}

/// A bad value, with the key it is under.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

fn bad(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { key, message: message.into() }
}

impl ForecastConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=86_400).contains(&self.poll_interval_s) {
            return Err(bad("forecast.poll_interval_s", format!("{} is outside 1..86400", self.poll_interval_s)));
        }
        if !(self.stale_after_h.is_finite() && self.stale_after_h > 0.0 && self.stale_after_h <= 168.0) {
            return Err(bad("forecast.stale_after_h", "must be a number of hours in (0, 168]"));
        }
        if !(2..=3660).contains(&self.history_days) {
            return Err(bad("forecast.history_days", format!("{} is outside 2..3660", self.history_days)));
        }
        if self.holdout_days < 1 || self.holdout_days >= self.history_days {
            return Err(bad("forecast.holdout_days", "must be at least 1 and less than forecast.history_days"));
        }
        if !(48..=self.history_days * 24).contains(&self.min_history_h) {
            return Err(bad("forecast.min_history_h", "must be at least 48 and fit within forecast.history_days"));
        }
        if !(self.kw_per_gpu.is_finite() && self.kw_per_gpu > 0.0 && self.kw_per_gpu <= 20.0) {
            return Err(bad("forecast.kw_per_gpu", "must be a power in kW in (0, 20]"));
        }
        if let Some(w) = &self.weather {
            w.validate("forecast.weather", true)?;
        }
        if let Some(c) = &self.carbon {
            c.validate("forecast.carbon", false)?;
        }
        Ok(())
    }

    /// The configured adapters, weather first; `token` reads an environment variable.
    pub fn providers(&self, token: impl Fn(&str) -> Option<String>) -> Vec<Box<dyn Provider>> {
        let mut v = Vec::new();
        for p in [&self.weather, &self.carbon].into_iter().flatten() {
            if let Some(a) = p.adapter(&token) {
                v.push(a);
            }
        }
        v
    }
}

impl ProviderConfig {
    fn validate(&self, section: &'static str, weather: bool) -> Result<(), ConfigError> {
        let kinds: &[&str] = if weather { &["open-meteo", "meteo-france"] } else { &["electricity-maps", "rte-eco2mix", "entsoe"] };
        let key = |k: &'static str| -> &'static str {
            match (section, k) {
                ("forecast.weather", "kind") => "forecast.weather.kind",
                ("forecast.weather", "latitude") => "forecast.weather.latitude",
                ("forecast.weather", "longitude") => "forecast.weather.longitude",
                ("forecast.weather", "timeout_s") => "forecast.weather.timeout_s",
                ("forecast.carbon", "kind") => "forecast.carbon.kind",
                ("forecast.carbon", "zone") => "forecast.carbon.zone",
                ("forecast.carbon", "timeout_s") => "forecast.carbon.timeout_s",
                _ => section,
            }
        };
        if !kinds.contains(&self.kind.as_str()) {
            return Err(bad(key("kind"), format!("{:?} is not one of {}", self.kind, kinds.join(", "))));
        }
        if weather {
            match (self.latitude, self.longitude) {
                (Some(la), Some(lo)) if (-90.0..=90.0).contains(&la) && (-180.0..=180.0).contains(&lo) => {}
                (Some(_), Some(_)) => return Err(bad(key("latitude"), "latitude must be in [-90, 90] and longitude in [-180, 180]")),
                _ => return Err(bad(key(if self.latitude.is_none() { "latitude" } else { "longitude" }), "a weather provider needs latitude and longitude")),
            }
        } else if matches!(self.kind.as_str(), "electricity-maps" | "entsoe") && self.zone.as_deref().is_none_or(str::is_empty) {
            return Err(bad(key("zone"), format!("{} needs a zone", self.kind)));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s <= 300.0) {
            return Err(bad(key("timeout_s"), "must be seconds in (0, 300]"));
        }
        Ok(())
    }

    fn adapter(&self, token: &impl Fn(&str) -> Option<String>) -> Option<Box<dyn Provider>> {
        let url = |d: &str| self.url.clone().unwrap_or_else(|| d.to_string());
        let tok = self.token_env.as_deref().and_then(token);
        let (lat, lon) = (self.latitude.unwrap_or(0.0), self.longitude.unwrap_or(0.0));
        let zone = self.zone.clone().unwrap_or_default();
        Some(match self.kind.as_str() {
            // A key means a customer: their host, unless `url` names another.
            "open-meteo" => {
                Box::new(OpenMeteo { url: url(if tok.is_some() { crate::inputs::OPEN_METEO_CUSTOMER_URL } else { crate::inputs::OPEN_METEO_URL }), latitude: lat, longitude: lon, api_key: tok })
            }
            "meteo-france" => Box::new(MeteoFrance { url: url("https://webservice.meteofrance.com/forecast"), latitude: lat, longitude: lon, token: tok }),
            "electricity-maps" => Box::new(ElectricityMaps { url: url("https://api.electricitymaps.com/v3/carbon-intensity/forecast"), zone, token: tok }),
            "rte-eco2mix" => Box::new(RteEco2mix { url: url("https://odre.opendatasoft.com/api/explore/v2.1/catalog/datasets/eco2mix-national-tr/records") }),
            "entsoe" => Box::new(Entsoe { url: url("https://web-api.tp.entsoe.eu/api"), zone, token: tok }),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ForecastConfig, String> {
        let c: ForecastConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("poll_interval_s = 0", "forecast.poll_interval_s"),
            ("stale_after_h = nan", "forecast.stale_after_h"),
            ("history_days = 1", "forecast.history_days"),
            ("holdout_days = 28", "forecast.holdout_days"),
            ("min_history_h = 10", "forecast.min_history_h"),
            ("kw_per_gpu = -1", "forecast.kw_per_gpu"),
            ("[weather]\nkind = \"darksky\"\nlatitude = 1\nlongitude = 2", "forecast.weather.kind"),
            ("[weather]\nkind = \"open-meteo\"\nlatitude = 48.7", "forecast.weather.longitude"),
            ("[weather]\nkind = \"open-meteo\"\nlatitude = 148.7\nlongitude = 2", "forecast.weather.latitude"),
            ("[carbon]\nkind = \"entsoe\"", "forecast.carbon.zone"),
            ("[carbon]\nkind = \"rte-eco2mix\"\ntimeout_s = 0", "forecast.carbon.timeout_s"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.starts_with(key), "{text}: {e}");
        }
        assert!(parse("[weather]\nkind = \"open-meteo\"\nlatitude = 1\nlongitude = 2\nlatitud = 3").is_err_and(|e| e.contains("latitud")));
        let ok = parse("poll = true\n[weather]\nkind = \"open-meteo\"\nlatitude = 48.7\nlongitude = 2.2\n[carbon]\nkind = \"rte-eco2mix\"\n").expect("sane");
        assert_eq!(ok.providers(|_| None).iter().map(|p| p.name()).collect::<Vec<_>>(), ["open-meteo", "rte-eco2mix"]);
    }
}
