//! `kilowatch serve`'s TOML configuration (example: deploy/kilowatch.toml). Unknown keys stop
//! startup with their name.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use kilowatch_model::config::{from_toml, within, within_u64};
use serde::Deserialize;

pub use eu::EuConfig;
pub use fleet::{FleetConfig, FleetSite};
pub use kilowatch_accounting::settings::{AccountingConfig, CarbonConfig};
pub use kubernetes::KubernetesConfig;
pub use prometheus::PrometheusConfig;
pub use store::StoreConfig;

mod eu;
mod fleet;
pub mod kubernetes;
pub mod prometheus;
mod store;

/// Highest plausible grid emission factor, kg CO2eq per kWh (lignite is about 1.1).
const MAX_KG_PER_KWH: f64 = 5.0;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub site: SiteConfig,
    #[serde(default)]
    pub store: StoreConfig,
    /// Forward every accepted point to an InfluxDB v2 write API. Absent: no forwarding.
    #[serde(default)]
    pub influxdb: Option<crate::sink::InfluxConfig>,
    #[serde(default)]
    pub alerts: kilowatch_alerts::AlertsConfig,
    #[serde(default)]
    pub carbon: CarbonConfig,
    #[serde(default)]
    pub accounting: AccountingConfig,
    /// The EU filing's declarations (Delegated Regulation 2024/1364): the site's identity,
    /// installed power, floor areas, contracted renewables… and the thresholds to check
    /// (docs/filing.md). What is not declared is filed "missing".
    #[serde(default)]
    pub eu: EuConfig,
    #[serde(default)]
    pub slurm: SlurmConfig,
    /// Owners of Kubernetes namespaces' jobs (`namespace_owners`).
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// How series received by Prometheus remote write map to the wire schema (docs/prometheus.md).
    #[serde(default)]
    pub prometheus: PrometheusConfig,
    /// The monthly report: when to produce it on its own, where to keep it, whom to notify.
    #[serde(default)]
    pub report: crate::report::schedule::ReportConfig,
    /// Bounds on what one query may ask for.
    #[serde(default)]
    pub api: ApiConfig,
    /// The PUE/WUE/CO2 forecast and advice for flexible work (docs/forecast.md).
    #[serde(default)]
    pub forecast: kilowatch_forecast::ForecastConfig,
    /// A fleet view over other sites' ledger APIs (docs/fleet.md). Absent: none.
    #[serde(default)]
    pub fleet: Option<FleetConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Longest window, in days, of `GET /api/v1/jobs` and of `GET /api/v1/kpi?from=&to=`
    /// (default 400: a rolling 12 months or a leap year fit). Longer is answered 400 at once.
    #[serde(default = "default_max_query_days")]
    pub max_query_days: u64,
}

impl Config {
    fn validate_accounting(&self) -> Result<(), ConfigError> {
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        if !nonneg(self.carbon.generator.factor_kg_per_kwh) {
            return Err(ConfigError::Invalid { key: "carbon.generator.factor_kg_per_kwh", message: "must be a finite number >= 0".into() });
        }
        if !(self.accounting.retired_after_h.is_finite() && self.accounting.retired_after_h > 0.0) {
            return Err(ConfigError::Invalid { key: "accounting.retired_after_h", message: "must be a finite number of hours > 0".into() });
        }
        if !(nonneg(self.accounting.span_tolerance_pct) && self.accounting.span_tolerance_pct <= 100.0) {
            return Err(ConfigError::Invalid { key: "accounting.span_tolerance_pct", message: "must be a percentage between 0 and 100".into() });
        }
        if !(nonneg(self.accounting.official_min_coverage_pct) && self.accounting.official_min_coverage_pct <= 100.0) {
            return Err(ConfigError::Invalid { key: "accounting.official_min_coverage_pct", message: "must be a percentage between 0 and 100".into() });
        }
        let weight = |v: f64| (0.0..=1.0).contains(&v);
        if !weight(self.accounting.prompt_token_weight) {
            return Err(ConfigError::Invalid {
                key: "accounting.prompt_token_weight",
                message: "must be a number between 0 and 1 (a computed prompt token's energy relative to a generated one's)".into(),
            });
        }
        let [lo, hi] = self.accounting.prompt_weight_range;
        if !(weight(lo) && weight(hi) && lo < hi) {
            return Err(ConfigError::Invalid { key: "accounting.prompt_weight_range", message: format!("[{lo}, {hi}] must be two ascending weights between 0 and 1") });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// Poll `squeue --json` from `kilowatch serve` every `poll_interval_s` (default off; the
    /// prolog/epilog hooks or `kilowatch slurm-poll` can run instead).
    #[serde(default)]
    pub poll: bool,
    #[serde(default = "default_poll")]
    pub poll_interval_s: u64,
    /// Where squeue and scontrol are (default: found on PATH).
    #[serde(default = "default_squeue")]
    pub squeue: String,
    #[serde(default = "default_scontrol")]
    pub scontrol: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default 127.0.0.1:8086, InfluxDB's port, so clients need no change).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the embedded store lives (default /var/lib/kilowatch).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest accepted write body, in bytes, after decompression (default 32 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// PEM certificate chain to serve HTTPS with (rustls). With `tls_key`; both or neither.
    /// Absent: plain HTTP (e.g. behind a TLS-terminating proxy, or on loopback).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Request body bytes held in memory at once, over all requests, counted after gzip is
    /// inflated (default 256 MiB). A request that would go past it is answered 503 with
    /// Retry-After.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: usize,
    /// Requests in progress at once (default 256; health checks and the live stream are not
    /// counted). Past it: 503 with Retry-After, never a queue.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Open connections at once (default 4096, lowered to fit the open-files limit). Past it a
    /// new connection is closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may take to send a complete request head, counted from when it
    /// opens or its previous answer ends: also the keep-alive idle timeout (default 30).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_s: u64,
    /// Seconds a request body may take to arrive in full (default 60); past it: 408.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_s: u64,
    /// Seconds an answer may wait for its client to read before the connection is closed
    /// (default 60): a client that stops reading, a live stream's included.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_s: u64,
    /// Seconds a stop waits for requests in progress before dropping their connections
    /// (default 5). Live streams end at once.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_s: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Tokens allowed to write (`Authorization: Token …` on /api/v2/write). Also read from
    /// `KILOWATCH_WRITE_TOKEN`.
    #[serde(default)]
    pub write_tokens: Vec<String>,
    /// Tokens allowed to read the API and the dashboard. Also read from `KILOWATCH_READ_TOKEN`.
    #[serde(default)]
    pub read_tokens: Vec<String>,
    /// Named tokens stored as SHA-256 hashes (`kilowatch hash-token` prints one), so the file
    /// holds no secret: one per collector, dashboard or reader.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it, e.g. "collector dgx-001"; logged with writes, never the token.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub scope: TokenScope,
    /// The owners (Slurm accounts, the `owner` of posted jobs) this token is narrowed to, as
    /// globs (`*` any run of characters, `?` one; `"mistral-ai/*"`). Absent: every owner. On a
    /// read token: whose jobs and statements it may read, besides the site-level KPIs
    /// (docs/security.md "Tenant scopes"). On a write token: whose jobs, progress and
    /// `inference` lines (`tenant` tag) it may write ("Narrowed write tokens").
    #[serde(default)]
    pub owners: Option<Vec<String>>,
    /// Only with `scope = "write"`: the nodes (globs over the `node` tag and a job post's
    /// `node`) this token may write for, e.g. `["dgx-001"]` for that node's collector. Lines
    /// of other nodes, or naming none, are refused (the rest stored). Absent: every node.
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    Write,
    Read,
    /// Write, plus the admin API (`POST /api/v1/admin/delete`): for an operator, never a
    /// collector.
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The site's name, as in the `site` tag (default "dc5").
    #[serde(default = "default_site")]
    pub name: String,
    /// IANA time zone for days, months and years (default Europe/Paris).
    #[serde(default = "default_tz")]
    pub timezone: String,
}

fn default_listen() -> String {
    "127.0.0.1:8086".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/kilowatch")
}
fn default_max_body() -> usize {
    32 << 20
}
fn default_max_inflight_bytes() -> usize {
    256 << 20
}
fn default_max_concurrent_requests() -> usize {
    256
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> u64 {
    30
}
fn default_body_timeout() -> u64 {
    60
}
fn default_write_timeout() -> u64 {
    60
}
fn default_shutdown_grace() -> u64 {
    5
}
fn default_max_query_days() -> u64 {
    400
}
fn default_site() -> String {
    "dc5".into()
}
fn default_tz() -> String {
    "Europe/Paris".into()
}
fn default_poll() -> u64 {
    30
}
fn default_squeue() -> String {
    "squeue".into()
}
fn default_scontrol() -> String {
    "scontrol".into()
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig { poll: false, poll_interval_s: default_poll(), squeue: default_squeue(), scontrol: default_scontrol() }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            data_dir: default_data_dir(),
            max_body_bytes: default_max_body(),
            tls_cert: None,
            tls_key: None,
            max_inflight_bytes: default_max_inflight_bytes(),
            max_concurrent_requests: default_max_concurrent_requests(),
            max_connections: default_max_connections(),
            header_read_timeout_s: default_header_read_timeout(),
            body_timeout_s: default_body_timeout(),
            write_timeout_s: default_write_timeout(),
            shutdown_grace_s: default_shutdown_grace(),
        }
    }
}
impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { max_query_days: default_max_query_days() }
    }
}
impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig { name: default_site(), timezone: default_tz() }
    }
}
impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// What [`Config::load`] does with the file's text: parse, then validate.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = from_toml(text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        chrono_tz::Tz::from_str(&self.site.timezone)
            .map_err(|_| ConfigError::Invalid { key: "site.timezone", message: format!("unknown time zone {:?} (use an IANA name such as Europe/Paris)", self.site.timezone) })?;
        self.server.listen.parse::<std::net::SocketAddr>().map_err(|e| ConfigError::Invalid { key: "server.listen", message: format!("{:?}: {e}", self.server.listen) })?;
        self.validate_numbers().map_err(|(key, message)| ConfigError::Invalid { key, message })?;
        self.validate_accounting()?;
        eu::validate(&self.eu)?;
        self.kubernetes.validate()?;
        self.prometheus.validate()?;
        self.forecast.validate().map_err(|e| ConfigError::Invalid { key: e.key, message: e.message })?;
        if let Some(f) = &self.fleet {
            f.validate()?;
        }
        for (key, v) in [
            ("store.max_future_skew_s", self.store.max_future_skew_s),
            ("store.max_series", self.store.max_series as u64),
            ("store.max_name_bytes", self.store.max_name_bytes as u64),
            ("store.memory_budget_mb", self.store.memory_budget_mb),
            ("store.checkpoint_head_mb", self.store.checkpoint_head_mb),
            ("store.max_new_series_per_minute", self.store.max_new_series_per_minute),
            ("store.max_new_series_per_minute_per_token", self.store.max_new_series_per_minute_per_token),
            ("server.max_inflight_bytes", self.server.max_inflight_bytes as u64),
            ("server.max_concurrent_requests", self.server.max_concurrent_requests as u64),
            ("server.max_connections", self.server.max_connections as u64),
            ("server.header_read_timeout_s", self.server.header_read_timeout_s),
            ("server.body_timeout_s", self.server.body_timeout_s),
            ("server.write_timeout_s", self.server.write_timeout_s),
            ("api.max_query_days", self.api.max_query_days),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid { key, message: "must be at least 1".into() });
            }
        }
        if self.server.max_inflight_bytes < self.server.max_body_bytes {
            return Err(ConfigError::Invalid {
                key: "server.max_inflight_bytes",
                message: format!("{} is less than server.max_body_bytes ({}): the largest write could never be accepted", self.server.max_inflight_bytes, self.server.max_body_bytes),
            });
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => return Err(ConfigError::Invalid { key: "server.tls_key", message: "tls_cert is set, tls_key is missing".into() }),
            (None, Some(_)) => return Err(ConfigError::Invalid { key: "server.tls_cert", message: "tls_key is set, tls_cert is missing".into() }),
            _ => {}
        }
        for (key, list) in [("auth.write_tokens", &self.auth.write_tokens), ("auth.read_tokens", &self.auth.read_tokens)] {
            if list.iter().any(|t| t.len() < 16) {
                return Err(ConfigError::Invalid { key, message: "tokens must be at least 16 characters".into() });
            }
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid { key: "auth.tokens.sha256", message: format!("entry {} ({:?}): 64 hex digits expected (kilowatch hash-token prints them)", i + 1, t.name) });
            }
            if let Some(owners) = &t.owners
                && let Err(why) = crate::tenant::check_owners(t.scope, owners)
            {
                return Err(ConfigError::Invalid { key: "auth.tokens.owners", message: format!("entry {} ({:?}): {why}", i + 1, t.name) });
            }
            if let Some(nodes) = &t.nodes
                && let Err(why) = crate::tenant::check_nodes(t.scope, nodes)
            {
                return Err(ConfigError::Invalid { key: "auth.tokens.nodes", message: format!("entry {} ({:?}): {why}", i + 1, t.name) });
            }
        }
        Ok(())
    }

    /// Every number within a sane range: `nan`, `inf`, `1e300`, zero or negative intervals stop
    /// startup (and `check-config`) with the key named, instead of a panic later.
    fn validate_numbers(&self) -> Result<(), (&'static str, String)> {
        const DAY_S: u64 = 86_400;
        const CENTURY_D: u64 = 36_525;
        within("carbon.factor_kg_per_kwh", self.carbon.factor_kg_per_kwh, 0.0, MAX_KG_PER_KWH)?;
        if let Some(r) = self.carbon.residual_factor_kg_per_kwh {
            within("carbon.residual_factor_kg_per_kwh", r, 0.0, MAX_KG_PER_KWH)?;
        }
        within_u64("server.max_body_bytes", self.server.max_body_bytes as u64, 1, 1 << 32)?;
        within_u64("slurm.poll_interval_s", self.slurm.poll_interval_s, 1, DAY_S)?;
        within_u64("alerts.eval_interval_s", self.alerts.eval_interval_s, 1, DAY_S)?;
        within_u64("alerts.catch_up_max_s", self.alerts.catch_up_max_s, 0, DAY_S)?;
        within_u64("store.checkpoint_interval_s", self.store.checkpoint_interval_s, 1, DAY_S)?;
        within_u64("store.maintenance_interval_s", self.store.maintenance_interval_s, 1, DAY_S)?;
        within_u64("store.raw_retention_h", self.store.raw_retention_h, 1, CENTURY_D * 24)?;
        within_u64("store.minute_rollup_retention_d", self.store.minute_rollup_retention_d, 1, CENTURY_D)?;
        within_u64("store.hour_rollup_retention_d", self.store.hour_rollup_retention_d, 0, CENTURY_D)?;
        within_u64("store.out_of_order_window_s", self.store.out_of_order_window_s, 1, CENTURY_D * DAY_S)?;
        within_u64("report.day", u64::from(self.report.day), 1, 28)?;
        if let Some(i) = &self.influxdb {
            within("influxdb.timeout_s", i.timeout_s, 0.001, 3600.0)?;
            within_u64("influxdb.max_queue_bytes", i.max_queue_bytes, 2 << 20, 1 << 40)?;
        }
        Ok(())
    }

    /// Adds the tokens given in the environment to those of the file.
    pub fn with_env_tokens(mut self) -> Self {
        for (var, list) in [("KILOWATCH_WRITE_TOKEN", &mut self.auth.write_tokens), ("KILOWATCH_READ_TOKEN", &mut self.auth.read_tokens)] {
            if let Ok(t) = std::env::var(var)
                && !t.trim().is_empty()
            {
                list.push(t.trim().to_owned());
            }
        }
        self
    }
}

impl kilowatch_accounting::Settings for Config {
    fn site_name(&self) -> &str {
        &self.site.name
    }
    fn carbon(&self) -> &CarbonConfig {
        &self.carbon
    }
    fn accounting(&self) -> &AccountingConfig {
        &self.accounting
    }
    fn timezone(&self) -> &str {
        &self.site.timezone
    }
    fn eu(&self) -> &EuConfig {
        &self.eu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number a bad hand can type: each refused with the key named, none panics.
    #[test]
    fn absurd_numbers_are_refused_with_their_key() {
        const BAD: &[&str] = &["nan", "inf", "-inf", "1e300", "-1", "0", "-0.5", "18446744073709551615", "1e19"];
        // (section, key, whether 0 is a valid value)
        let keys: &[(&str, &str, bool)] = &[
            ("server", "max_body_bytes", false),
            ("carbon", "factor_kg_per_kwh", true),
            ("carbon", "residual_factor_kg_per_kwh", true),
            ("accounting", "official_min_coverage_pct", true),
            ("accounting", "prompt_token_weight", true),
            ("slurm", "poll_interval_s", false),
            ("alerts", "eval_interval_s", false),
            ("alerts", "catch_up_max_s", true),
            ("store", "checkpoint_interval_s", false),
            ("store", "maintenance_interval_s", false),
            ("store", "raw_retention_h", false),
            ("store", "minute_rollup_retention_d", false),
            ("store", "hour_rollup_retention_d", true),
            ("store", "out_of_order_window_s", false),
            ("report", "day", false),
            ("influxdb", "timeout_s", false),
            ("influxdb", "max_queue_bytes", false),
        ];
        for &(section, key, zero_ok) in keys {
            for &bad in BAD {
                if zero_ok && bad == "0" {
                    continue;
                }
                let extra = if section == "influxdb" { "url = \"http://127.0.0.1:8087\"\norg = \"o\"\nbucket = \"b\"\n" } else { "" };
                let text = format!("[{section}]\n{extra}{key} = {bad}\n");
                let e = match Config::parse(&text, Path::new("k.toml")) {
                    Ok(_) => panic!("{section}.{key} = {bad} accepted"),
                    Err(e) => e.to_string(),
                };
                assert!(e.contains(&format!("{section}.{key}")), "{section}.{key} = {bad}: the message does not name the key: {e}");
            }
        }
        // And the defaults and a sane file pass.
        Config::parse("[store]\nraw_retention_h = 72\n[carbon]\nfactor_kg_per_kwh = 0\n", Path::new("k.toml")).expect("sane");
    }
}
