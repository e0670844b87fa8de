//! The collector's TOML configuration. Unknown keys are errors: a mistyped key must stop
//! startup with its name, not be silently ignored.

use std::path::{Path, PathBuf};

use kilowatch_model::config::{from_toml, within, within_u64};

/// `[nvml]`, defined beside the source it configures.
pub use crate::nvml::NvmlSourceConfig;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Seconds between two samples of every source (default 1).
    #[serde(default = "default_interval")]
    pub interval_s: f64,
    /// Where to send the samples: one `[aggregator]` table, or several `[[aggregator]]` (an
    /// active-active pair), each endpoint with its own spool and cursor.
    #[serde(deserialize_with = "one_or_many")]
    pub aggregator: Vec<AggregatorConfig>,
    /// The simulated site as a source (demo, tests, load runs). Absent: no simulation.
    #[serde(default)]
    pub sim: Option<SimSourceConfig>,
    /// The site's name, the `site` tag of every point this collector makes from real hardware;
    /// must match the aggregator's `[site] name` (default "dc5", as there).
    #[serde(default = "default_site")]
    pub site: String,
    /// This node's name, the `node` tag (default: the hostname).
    #[serde(default)]
    pub node: Option<String>,
    /// The GPUs of this node through NVML. Absent: no GPU source.
    #[serde(default)]
    pub nvml: Option<NvmlSourceConfig>,
    /// Prometheus `/metrics` of this collector. Absent: no listener.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// The on-disk queue of batches not yet acknowledged by the aggregator.
    #[serde(default)]
    pub spool: kilowatch_ship::SpoolConfig,
    /// Facility devices: Modbus meters and cooling units, SNMP UPSs and PDUs, Redfish BMCs.
    #[serde(default)]
    pub facility: Option<crate::facility::FacilityConfig>,
    /// Inference servers on this node whose token counters are scraped (`[[inference]]`).
    #[serde(default)]
    pub inference: Vec<crate::inference::InferenceServerConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the `/metrics` listener (default `127.0.0.1:9400`, dcgm-exporter's port:
    /// run one or the other on a node, not both).
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// The endpoint's name in logs, metrics (`endpoint` label) and its spool's folder
    /// (`spool.dir/NAME`) when there are several. Default: the URL's `host_port`.
    #[serde(default)]
    pub name: Option<String>,
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
    /// PEM file of the CA that signed the aggregator's certificate, for an `https://` URL
    /// whose certificate is not from a CA the system trusts. Trusted besides the system's CAs.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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
fn default_metrics_listen() -> String {
    "127.0.0.1:9400".into()
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: CollectorConfig = from_toml(text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?;
        let invalid = |key: &str, message: String| ConfigError::Invalid { path: path.to_owned(), key: key.to_owned(), message };
        if !(0.05..=3600.0).contains(&cfg.interval_s) {
            return Err(invalid("interval_s", format!("{} is outside 0.05..3600 seconds", cfg.interval_s)));
        }
        check_aggregators(&cfg.aggregator).map_err(|(k, m)| invalid(&k, m))?;
        if cfg.spool.segment_bytes < 4096 || cfg.spool.segment_bytes > 1 << 30 || cfg.spool.segment_bytes.saturating_mul(2) > cfg.spool.max_bytes {
            return Err(invalid("spool.segment_bytes", format!("{} must be from 4096 to 1 GiB and at most half of spool.max_bytes ({})", cfg.spool.segment_bytes, cfg.spool.max_bytes)));
        }
        if let Some(sim) = &cfg.sim {
            if !(1..=MAX_SIM_NODES).contains(&sim.nodes) {
                return Err(invalid("sim.nodes", format!("{} is outside 1..{MAX_SIM_NODES}", sim.nodes)));
            }
            if !(1..=MAX_SIM_NODES).contains(&sim.first_node) {
                return Err(invalid("sim.first_node", format!("{} is outside 1..{MAX_SIM_NODES}", sim.first_node)));
            }
        }
        if let Some(f) = &cfg.facility {
            check_facility(f).map_err(|(k, m)| invalid(k, m))?;
        }
        for (i, srv) in cfg.inference.iter().enumerate() {
            crate::inference::check(srv).map_err(|(k, m)| invalid(k, m))?;
            if cfg.inference[..i].iter().any(|o| o.name == srv.name) {
                return Err(invalid("inference.name", format!("{:?} is used by two servers", srv.name)));
            }
        }
        if let Some(m) = &cfg.metrics
            && m.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid("metrics.listen", format!("{:?} is not an address:port such as 127.0.0.1:9400", m.listen)));
        }
        if cfg.site.is_empty() || cfg.node.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("site", "site and node names must not be empty".into()));
        }
        Ok(cfg)
    }

    /// The `node` tag: the configured name, else this machine's hostname.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(hostname)
    }

    /// The endpoints with their names (see [`AggregatorConfig::name`]) and spool folders: with
    /// one endpoint its spool is `spool.dir` itself, as before `[[aggregator]]` existed.
    pub fn endpoints(&self) -> Vec<(String, &AggregatorConfig, kilowatch_ship::SpoolConfig)> {
        let many = self.aggregator.len() > 1;
        self.aggregator
            .iter()
            .map(|a| {
                let name = a.endpoint_name();
                let mut spool = self.spool.clone();
                if many {
                    spool.dir = spool.dir.join(&name);
                }
                (name, a, spool)
            })
            .collect()
    }
}

impl AggregatorConfig {
    /// The configured name, else the URL's `host_port` (`kilowatch-a_8086`).
    pub fn endpoint_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        authority.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
    }

    /// The write token: `KILOWATCH_TOKEN` (for every endpoint), else `token_file`, else
    /// `token`. `key` is this endpoint's key in messages (`aggregator[1]`).
    pub fn token(&self, path: &Path, key: &str) -> Result<String, ConfigError> {
        if let Ok(t) = std::env::var("KILOWATCH_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_owned());
        }
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f).map_err(|source| ConfigError::Read { path: f.clone(), source })?;
            return Ok(t.trim().to_owned());
        }
        self.token.clone().ok_or_else(|| ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("{key}.token_file"),
            message: format!("no write token: set {key}.token_file, {key}.token or KILOWATCH_TOKEN"),
        })
    }
}

/// `aggregator` as one table (`[aggregator]`) or an array of tables (`[[aggregator]]`). Each
/// form is deserialized by its own type so that a bad key keeps its path in the message
/// (`aggregator[1].timeout_s: …`), which an untagged enum would lose.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<AggregatorConfig>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<AggregatorConfig>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an [aggregator] table or [[aggregator]] tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            AggregatorConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|a| vec![a])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::<AggregatorConfig>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(V)
}

/// Each endpoint's URL and timeout, and names unique and usable as a folder, keyed
/// `aggregator.url` for the single-table form and `aggregator[i].url` for a list.
fn check_aggregators(list: &[AggregatorConfig]) -> Result<(), (String, String)> {
    if list.is_empty() {
        return Err(("aggregator".into(), "at least one [[aggregator]] endpoint is required".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in list.iter().enumerate() {
        let key = if list.len() == 1 { "aggregator".to_owned() } else { format!("aggregator[{i}]") };
        if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
            return Err((format!("{key}.url"), format!("{:?} must start with http:// or https://", a.url)));
        }
        within("timeout_s", a.timeout_s, 0.001, 3600.0).map_err(|(_, m)| (format!("{key}.timeout_s"), m))?;
        let name = a.endpoint_name();
        if name.is_empty() || name.starts_with('.') || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err((format!("{key}.name"), format!("{name:?} must be letters, digits, '-', '_' or '.' (it names the endpoint's spool folder)")));
        }
        if !seen.insert(name.clone()) {
            return Err((format!("{key}.name"), format!("{name:?} names two endpoints; give each [[aggregator]] its own name")));
        }
    }
    Ok(())
}

/// Most nodes one collector may simulate (and highest first node): far above a real site,
/// far below what exhausts memory.
pub const MAX_SIM_NODES: usize = 10_000;

fn check_facility(f: &crate::facility::FacilityConfig) -> Result<(), (&'static str, String)> {
    for d in &f.modbus {
        within_u64("facility.modbus.timeout_ms", d.timeout_ms, 1, 600_000)?;
        if let Some(p) = d.poll_s {
            within("facility.modbus.poll_s", p, 0.05, 86_400.0)?;
        }
        within("facility.modbus.frozen_after_s", d.frozen_after_s, 0.0, 31_536_000.0)?;
        crate::facility::validate::check_bounds(&d.bounds).map_err(|m| ("facility.modbus.bounds", m))?;
    }
    for d in &f.snmp {
        within_u64("facility.snmp.timeout_ms", d.timeout_ms, 1, 600_000)?;
        crate::facility::validate::check_bounds(&d.bounds).map_err(|m| ("facility.snmp.bounds", m))?;
    }
    for d in &f.redfish {
        within_u64("facility.redfish.timeout_ms", d.timeout_ms, 1, 600_000)?;
    }
    Ok(())
}

/// The kernel's hostname (what `hostname` prints), or "localhost" where it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into())
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

    /// `[[aggregator]]` as a list: each endpoint named, with its own spool folder; a bad
    /// value or key in one is named with its index; the single table keeps `spool.dir`.
    #[test]
    fn several_aggregators() {
        let two = "[[aggregator]]\nurl = \"http://kw-a:8086\"\ntoken = \"t\"\n[[aggregator]]\nname = \"b\"\nurl = \"https://kw-b:8086/\"\ntoken = \"t\"\n[spool]\ndir = \"/s\"\n";
        let cfg = CollectorConfig::parse(two, Path::new("c.toml")).expect("two");
        let eps: Vec<(String, PathBuf)> = cfg.endpoints().into_iter().map(|(n, _, s)| (n, s.dir)).collect();
        assert_eq!(eps, vec![("kw-a_8086".into(), PathBuf::from("/s/kw-a_8086")), ("b".into(), PathBuf::from("/s/b"))]);
        let one = CollectorConfig::parse("[aggregator]\nurl = \"http://x\"\n[spool]\ndir = \"/s\"\n", Path::new("c.toml")).expect("one");
        assert_eq!(one.endpoints()[0].2.dir, PathBuf::from("/s"));
        for (text, key) in [
            (two.replace("https://kw-b", "ftp://kw-b"), "aggregator[1].url"),
            (two.replace("name = \"b\"", "name = \"b\"\ntimeout_s = nan"), "aggregator[1].timeout_s"),
            (two.replace("name = \"b\"", "nmae = \"b\""), "aggregator[1]"),
            (two.replace("name = \"b\"", "name = \"kw-a_8086\""), "aggregator[1].name"),
            (two.replace("name = \"b\"", "name = \"../b\""), "aggregator[1].name"),
            ("[spool]\ndir = \"/s\"\n".to_owned(), "aggregator"),
            ("aggregator = 3\n".to_owned(), "aggregator"),
        ] {
            let e = CollectorConfig::parse(&text, Path::new("c.toml")).expect_err(key).to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
        let e = CollectorConfig::parse(&two.replace("name = \"b\"", "nmae = \"b\""), Path::new("c.toml")).expect_err("typo").to_string();
        assert!(e.contains("nmae"), "{e}");
    }

    #[test]
    fn nvml_metrics_and_fast_interval() {
        let text = "interval_s = 0.1\nnode = \"dgx-001\"\n[aggregator]\nurl = \"http://x\"\n[nvml]\noptional = true\n[metrics]\n";
        let cfg = CollectorConfig::parse(text, Path::new("c.toml")).expect("parse");
        assert_eq!(cfg.interval_s, 0.1);
        assert_eq!(cfg.site, "dc5");
        assert_eq!(cfg.node_name(), "dgx-001");
        let nvml = cfg.nvml.expect("nvml");
        assert!(nvml.optional && nvml.lib_path.is_none());
        assert_eq!(nvml.proc_root, PathBuf::from("/proc"));
        assert_eq!(cfg.metrics.expect("metrics").listen, "127.0.0.1:9400");
        let e = CollectorConfig::parse("[aggregator]\nurl = \"http://x\"\n[metrics]\nlisten = \"9400\"\n", Path::new("c.toml")).expect_err("bad listen");
        assert!(e.to_string().contains("metrics.listen"), "{e}");
        let e = CollectorConfig::parse("[aggregator]\nurl = \"http://x\"\n[nvml]\nlib = \"/x\"\n", Path::new("c.toml")).expect_err("typo");
        assert!(e.to_string().contains("lib"), "{e}");
    }

    /// Every number a bad hand can type: each refused with the key named, none panics.
    #[test]
    fn absurd_numbers_are_refused_with_their_key() {
        const BAD: &[&str] = &["nan", "inf", "-inf", "1e300", "-1", "0", "-0.5", "18446744073709551615", "1e19"];
        // (section, key, the name expected in the message, a good value, whether 0 is allowed)
        let keys: &[(&str, &str, &str, &str, bool)] = &[
            ("", "interval_s", "interval_s", "1.0", false),
            ("aggregator", "timeout_s", "aggregator.timeout_s", "10.0", false),
            ("sim", "nodes", "sim.nodes", "4", false),
            ("sim", "first_node", "sim.first_node", "1", false),
            ("spool", "segment_bytes", "spool.segment_bytes", "65536", false),
            ("modbus", "timeout_ms", "facility.modbus.timeout_ms", "1000", false),
            ("modbus", "poll_s", "facility.modbus.poll_s", "5.0", false),
            ("modbus", "frozen_after_s", "facility.modbus.frozen_after_s", "900.0", true),
            ("snmp", "timeout_ms", "facility.snmp.timeout_ms", "1000", false),
            ("redfish", "timeout_ms", "facility.redfish.timeout_ms", "1000", false),
        ];
        let config = |section: &str, line: &str| {
            let mut text = String::new();
            if section.is_empty() {
                text.push_str(line);
            }
            text.push_str("[aggregator]\nurl = \"http://x\"\n");
            match section {
                "aggregator" => text.push_str(line),
                "sim" | "spool" => text.push_str(&format!("[{section}]\n{line}")),
                "modbus" => text.push_str(&format!("[[facility.modbus]]\nname = \"m\"\nhost = \"127.0.0.1\"\n{line}")),
                "snmp" => text.push_str(&format!("[[facility.snmp]]\nname = \"u\"\nhost = \"127.0.0.1\"\n{line}")),
                "redfish" => text.push_str(&format!("[[facility.redfish]]\nname = \"b\"\nurl = \"https://127.0.0.1\"\nnode = \"dgx-001\"\n{line}")),
                _ => {}
            }
            text
        };
        for &(section, key, name, good, zero_ok) in keys {
            let text = config(section, &format!("{key} = {good}\n"));
            if let Err(e) = CollectorConfig::parse(&text, Path::new("c.toml")) {
                panic!("{key} = {good} refused: {e}\n{text}");
            }
            for &bad in BAD {
                if zero_ok && bad == "0" {
                    continue;
                }
                let text = config(section, &format!("{key} = {bad}\n"));
                let e = match CollectorConfig::parse(&text, Path::new("c.toml")) {
                    Ok(_) => panic!("{key} = {bad} accepted:\n{text}"),
                    Err(e) => e.to_string(),
                };
                assert!(e.replace("[0]", "").contains(name), "{key} = {bad}: the message does not name {name}: {e}");
            }
        }
    }

    #[test]
    fn facility_bounds_are_checked_with_their_key() {
        for (kind, key) in [("modbus", "facility.modbus.bounds"), ("snmp", "facility.snmp.bounds")] {
            for bad in ["{ w = { max = nan } }", "{ w = { min = 10.0, max = 1.0 } }", "{ furlongs = { max = 1.0 } }"] {
                let text = format!("[aggregator]\nurl = \"http://x\"\n[[facility.{kind}]]\nname = \"d\"\nhost = \"127.0.0.1\"\nbounds = {bad}\n");
                let e = CollectorConfig::parse(&text, Path::new("c.toml")).expect_err(bad).to_string();
                assert!(e.contains(key), "{kind} {bad}: {e}");
            }
        }
    }

    fn parse_inference(extra: &str) -> Result<CollectorConfig, String> {
        let text = format!("[aggregator]\nurl = \"http://x\"\n[[inference]]\nname = \"a\"\nengine = \"vllm\"\nurl = \"http://127.0.0.1:8000/metrics\"\n{extra}");
        CollectorConfig::parse(&text, Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_inference_entries_are_refused_with_their_key() {
        assert!(parse_inference("").is_ok());
        for (extra, key) in [
            ("colour = 1\n", "colour"),
            ("engine2 = \"x\"\n", "engine2"),
            ("timeout_ms = 0\n", "inference.timeout_ms"),
            ("gpus = []\n", "inference.gpus"),
            ("pid = 1\npidfile = \"/run/x\"\n", "inference.pid"),
            ("[[inference]]\nname = \"a\"\nengine = \"sglang\"\nurl = \"http://127.0.0.1:1/metrics\"\n", "inference.name"),
            ("[[inference]]\nname = \"b\"\nengine = \"tgi\"\nurl = \"http://127.0.0.1:1/metrics\"\n", "inference.model"),
            ("[[inference]]\nname = \"c\"\nengine = \"ollama\"\nurl = \"http://127.0.0.1:1/metrics\"\n", "engine"),
            ("[[inference]]\nname = \"d\"\nengine = \"vllm\"\nurl = \"127.0.0.1:1\"\n", "inference.url"),
        ] {
            let e = parse_inference(extra).expect_err(extra);
            assert!(e.replace("[1]", "").replace("[0]", "").contains(key), "{extra}: {e}");
        }
    }
}
