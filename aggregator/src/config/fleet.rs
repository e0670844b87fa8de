//! `[fleet]`: the sites (or halls) whose hourly ledgers this aggregator reads and adds up into
//! a fleet view (docs/fleet.md, example deploy/kilowatch-fleet.toml).

use std::path::PathBuf;
use std::str::FromStr;

use kilowatch_model::config::within_u64;
use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// IANA zone the fleet's months are stated in (each site's own months stay in its zone).
    pub timezone: String,
    /// Seconds between refreshes of every site's open hours (default 60).
    #[serde(default = "default_refresh")]
    pub refresh_interval_s: u64,
    /// Days of hourly ledgers kept per site (default 62: this month and the last, whatever the
    /// zone). Older hours are dropped from the cache.
    #[serde(default = "default_history")]
    pub history_days: u64,
    /// Hours after its end that an hour is taken as closed, by the site's clock (default 6):
    /// a closed hour is fetched once and kept; later hours are fetched again at each refresh.
    /// Data a collector replays later than this (after a longer outage) reaches the fleet
    /// when it restarts.
    #[serde(default = "default_settle")]
    pub settle_h: u64,
    /// Seconds one request to a site may take (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// A site whose last successful refresh is older than this many seconds is shown as
    /// stale even if no refresh failed yet (default: three refresh intervals).
    #[serde(default)]
    pub stale_after_s: Option<u64>,
    /// Most bytes one answer of a site may hold (default 64 MiB: a week of a DC5-sized site's
    /// hours is a few MB). A site that answers more is marked degraded and that answer is not
    /// kept.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
    /// Most rows (hours plus their jobs' rows) one answer of a site may hold (default
    /// 1,000,000: a week of hours with 5,000 jobs running in each). Past it, as for bytes.
    #[serde(default = "default_max_answer_rows")]
    pub max_answer_rows: u64,
    #[serde(default)]
    pub sites: Vec<FleetSite>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSite {
    /// The name the fleet shows; unique in the fleet.
    pub name: String,
    /// The site aggregator's base URL (`https://paris.example:8086`).
    pub url: String,
    /// A read token of that site (never a tenant-scoped one). Or `token_file`.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the read token (its first line).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The site's IANA time zone: its months are its own local months.
    pub timezone: String,
    /// Where the site's own dashboard is, for the fleet page's links (default `url`).
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

fn default_refresh() -> u64 {
    60
}
fn default_history() -> u64 {
    62
}
fn default_settle() -> u64 {
    6
}
fn default_timeout() -> u64 {
    30
}
fn default_max_answer_bytes() -> u64 {
    64 << 20
}
fn default_max_answer_rows() -> u64 {
    1_000_000
}

impl FleetConfig {
    /// Seconds without a successful refresh after which a site is stale.
    pub fn stale_after_s(&self) -> u64 {
        self.stale_after_s.unwrap_or(self.refresh_interval_s.saturating_mul(3))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
        whole_hours(&self.timezone).map_err(|m| invalid("fleet.timezone", m))?;
        for (key, v, min, max) in [
            ("fleet.refresh_interval_s", self.refresh_interval_s, 1, 86_400),
            ("fleet.history_days", self.history_days, 1, 3660),
            ("fleet.settle_h", self.settle_h, 0, 24 * 31),
            ("fleet.timeout_s", self.timeout_s, 1, 3600),
            ("fleet.stale_after_s", self.stale_after_s.unwrap_or(1), 1, 86_400 * 31),
            ("fleet.max_answer_bytes", self.max_answer_bytes, 1024, 1 << 32),
            ("fleet.max_answer_rows", self.max_answer_rows, 1, 100_000_000),
        ] {
            within_u64(key, v, min, max).map_err(|(k, m)| invalid(k, m))?;
        }
        if self.sites.is_empty() {
            return Err(invalid("fleet.sites", "a fleet needs at least one [[fleet.sites]]".into()));
        }
        for (i, s) in self.sites.iter().enumerate() {
            let at = |m: String| format!("entry {} ({:?}): {m}", i + 1, s.name);
            if s.name.trim().is_empty() || self.sites[..i].iter().any(|o| o.name == s.name) {
                return Err(invalid("fleet.sites.name", at("names must be non-empty and unique".into())));
            }
            for (key, u) in [("fleet.sites.url", Some(&s.url)), ("fleet.sites.dashboard_url", s.dashboard_url.as_ref())] {
                if let Some(u) = u
                    && reqwest::Url::parse(u).map_or(true, |p| !matches!(p.scheme(), "http" | "https"))
                {
                    return Err(invalid(key, at(format!("{u:?} is not an http(s) URL"))));
                }
            }
            whole_hours(&s.timezone).map_err(|m| invalid("fleet.sites.timezone", at(m)))?;
            match (&s.token, &s.token_file) {
                (Some(_), Some(_)) => return Err(invalid("fleet.sites.token", at("give token or token_file, not both".into()))),
                (None, None) => return Err(invalid("fleet.sites.token", at("a read token (token or token_file) is required".into()))),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A zone whose months start on whole UTC hours: the fleet keeps hours, so a zone offset by a
/// half or quarter hour (Asia/Kolkata, Australia/Adelaide) could not be cut into its months.
fn whole_hours(zone: &str) -> Result<(), String> {
    use chrono::{Offset, TimeZone};
    let tz = chrono_tz::Tz::from_str(zone).map_err(|_| format!("unknown time zone {zone:?} (use an IANA name such as Europe/Paris)"))?;
    // Winter and summer, this decade and the next.
    for secs in [1_767_225_600i64, 1_782_864_000, 2_082_758_400, 2_098_396_800] {
        let off = chrono::DateTime::from_timestamp(secs, 0).map(|t| tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc());
        if off.is_some_and(|o| o % 3600 != 0) {
            return Err(format!("{zone} is not a whole number of hours from UTC: a fleet keeps hourly ledgers and cannot cut its months"));
        }
    }
    Ok(())
}

impl FleetSite {
    /// The read token, from the file when one is named.
    pub fn read_token(&self) -> Result<String, ConfigError> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(t.trim().to_owned()),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map(|t| t.lines().next().unwrap_or("").trim().to_owned())
                .map_err(|e| ConfigError::Invalid { key: "fleet.sites.token_file", message: format!("{:?}: cannot read {}: {e}", self.name, p.display()) }),
            (None, None) => Err(ConfigError::Invalid { key: "fleet.sites.token", message: format!("{:?}: no read token", self.name) }),
        }
    }

    pub fn dashboard(&self) -> &str {
        self.dashboard_url.as_deref().unwrap_or(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    #[test]
    fn bad_fleet_entries_are_refused_with_their_key() {
        let site = "[[fleet.sites]]\nname = \"paris\"\nurl = \"http://127.0.0.1:1\"\ntoken = \"read-token-0123456789\"\ntimezone = \"Europe/Paris\"\n";
        let ok = format!("[fleet]\ntimezone = \"Europe/Paris\"\n{site}");
        Config::parse(&ok, Path::new("f.toml")).expect("sane fleet");
        for (text, key) in [
            (format!("[fleet]\ntimezone = \"Mars/Olympus\"\n{site}"), "fleet.timezone"),
            ("[fleet]\ntimezone = \"UTC\"\n".to_owned(), "fleet.sites"),
            (format!("{ok}{site}"), "fleet.sites.name"),
            (ok.replace("http://127.0.0.1:1", "ftp://x"), "fleet.sites.url"),
            (ok.replace("token = ", "token_file = \"/x\"\ntoken = "), "fleet.sites.token"),
            (ok.replace("timezone = \"Europe/Paris\"\n[[", "timezone = \"UTC\"\nrefresh_interval_s = 0\n[["), "fleet.refresh_interval_s"),
            (ok.replace("name = ", "colour = \"red\"\nname = "), "colour"),
            (ok.replace("timezone = \"Europe/Paris\"\n[[", "timezone = \"Asia/Kolkata\"\n[["), "fleet.timezone"),
        ] {
            let e = Config::parse(&text, Path::new("f.toml")).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(key), "{key}: {e:?}\n{text}");
        }
    }
}
