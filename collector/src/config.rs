//! The collector's TOML configuration. Unknown keys are errors: a mistyped key must stop
//! startup with its name, not be silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Seconds between two samples of every source (default 1).
    #[serde(default = "default_interval")]
    pub interval_s: f64,
    /// Where to send the samples.
    pub aggregator: AggregatorConfig,
    /// The simulated site as a source (demo, tests, load runs). Absent: no simulation.
    #[serde(default)]
    pub sim: Option<SimSourceConfig>,
    /// Facility devices: Modbus meters and cooling units, SNMP UPSs and PDUs, Redfish BMCs.
    #[serde(default)]
    pub facility: Option<crate::facility::FacilityConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Base URL of the aggregator (or any InfluxDB v2 write endpoint), e.g. `http://kilowatch:8086`.
    pub url: String,
    /// A file holding the write token (preferred: keeps it out of the config). The environment
    /// variable `KILOWATCH_TOKEN` overrides both this and `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The write token inline, for tests and demos.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    /// Seconds before a write request is abandoned (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Bytes of unsent batches kept while the aggregator is unreachable (default 64 MiB).
    #[serde(default = "default_pending")]
    pub max_pending_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSourceConfig {
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_site")]
    pub site: String,
    /// How many DGX nodes this collector simulates (default 127, the whole site).
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    /// Number of the first node, so that several collectors can share a site (default 1).
    #[serde(default = "default_first")]
    pub first_node: usize,
    #[serde(default = "yes")]
    pub gpus: bool,
    #[serde(default = "yes")]
    pub node_power: bool,
    /// Meters, water and cooling units. Give them to one collector only.
    #[serde(default = "yes")]
    pub facility: bool,
}

fn default_interval() -> f64 {
    1.0
}
fn default_timeout() -> f64 {
    10.0
}
fn default_pending() -> usize {
    64 << 20
}
fn default_seed() -> u64 {
    5
}
fn default_site() -> String {
    "dc5".into()
}
fn default_nodes() -> usize {
    127
}
fn default_first() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: CollectorConfig = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let invalid = |key, message: String| ConfigError::Invalid { path: path.to_owned(), key, message };
        if !(0.05..=3600.0).contains(&cfg.interval_s) {
            return Err(invalid("interval_s", format!("{} is outside 0.05..3600 seconds", cfg.interval_s)));
        }
        if !(cfg.aggregator.url.starts_with("http://") || cfg.aggregator.url.starts_with("https://")) {
            return Err(invalid("aggregator.url", format!("{:?} must start with http:// or https://", cfg.aggregator.url)));
        }
        if cfg.aggregator.timeout_s <= 0.0 {
            return Err(invalid("aggregator.timeout_s", "must be positive".into()));
        }
        if let Some(sim) = &cfg.sim
            && (sim.nodes == 0 || sim.first_node == 0)
        {
            return Err(invalid("sim.nodes", "nodes and first_node start at 1".into()));
        }
        Ok(cfg)
    }

    /// The write token: `KILOWATCH_TOKEN`, else `token_file`, else `token`.
    pub fn token(&self, path: &Path) -> Result<String, ConfigError> {
        if let Ok(t) = std::env::var("KILOWATCH_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_owned());
        }
        if let Some(f) = &self.aggregator.token_file {
            let t = std::fs::read_to_string(f).map_err(|source| ConfigError::Read { path: f.clone(), source })?;
            return Ok(t.trim().to_owned());
        }
        self.aggregator.token.clone().ok_or_else(|| ConfigError::Invalid {
            path: path.to_owned(),
            key: "aggregator.token_file",
            message: "no write token: set aggregator.token_file, aggregator.token or KILOWATCH_TOKEN".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistyped_key_is_named() {
        let e = CollectorConfig::parse("intervl_s = 1\n[aggregator]\nurl = \"http://x\"\n", Path::new("c.toml")).expect_err("unknown key");
        assert!(e.to_string().contains("intervl_s"), "{e}");
        let e = CollectorConfig::parse("[aggregator]\nurl = \"ftp://x\"\n", Path::new("c.toml")).expect_err("bad url");
        assert!(e.to_string().contains("aggregator.url"), "{e}");
    }
}
