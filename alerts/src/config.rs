//! Routing, receivers, inhibition and the plant's topology (deploy/alerts/routing.toml), and
//! the `[alerts]` section of the aggregator's configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rule::{Matcher, RulePack};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// `[alerts]` in kilowatch.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds between evaluations (default 15).
    #[serde(default = "default_eval")]
    pub eval_interval_s: u64,
    /// A rule pack; the built-in default pack (deploy/alerts/rules.toml) when absent.
    #[serde(default)]
    pub rules_file: Option<PathBuf>,
    /// Routes, receivers, inhibition, topology; with none, alerts are evaluated and listed
    /// through the API but sent nowhere.
    #[serde(default)]
    pub routing_file: Option<PathBuf>,
    /// Link put in notifications (`externalURL`).
    #[serde(default)]
    pub external_url: Option<String>,
    /// After a start, while the newest data lags the clock (a member of a pair back from an
    /// outage, its collectors' spools still replaying), alerts are neither evaluated nor sent,
    /// for at most this many seconds (default 600; 0: never held). Evaluated on stale data, an
    /// alert that resolved during the outage would be pushed again as firing.
    #[serde(default = "default_catch_up")]
    pub catch_up_max_s: u64,
}

fn default_catch_up() -> u64 {
    600
}

fn yes() -> bool {
    true
}
fn default_eval() -> u64 {
    15
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig { enabled: true, eval_interval_s: default_eval(), rules_file: None, routing_file: None, external_url: None, catch_up_max_s: default_catch_up() }
    }
}

impl AlertsConfig {
    pub fn load_rules(&self) -> Result<RulePack, ConfigError> {
        match &self.rules_file {
            None => RulePack::parse(crate::rule::DEFAULT_PACK).map_err(ConfigError::Invalid),
            Some(p) => RulePack::parse(&read(p)?).map_err(|message| ConfigError::Parse { path: p.clone(), message }),
        }
    }
    pub fn load_routing(&self) -> Result<Routing, ConfigError> {
        match &self.routing_file {
            None => Ok(Routing::default()),
            Some(p) => Routing::load(p),
        }
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_owned(), source })
}

/// A node of the route tree. Unset timers and `group_by` inherit from the parent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default, rename = "match")]
    pub matchers: Vec<Matcher>,
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, with = "opt_dur")]
    pub group_wait: Option<i64>,
    #[serde(default, with = "opt_dur")]
    pub group_interval: Option<i64>,
    #[serde(default, with = "opt_dur")]
    pub repeat_interval: Option<i64>,
    /// Keep looking at the next sibling after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub routes: Vec<Route>,
}

mod opt_dur {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| crate::parse_duration_s(&s).ok_or_else(|| serde::de::Error::custom(format!("bad duration {s:?}")))).transpose()
    }
    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&format!("{v}s")),
            None => s.serialize_none(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// Alertmanager's webhook payload, version "4".
    #[default]
    Webhook,
    /// POST to a real Alertmanager's `/api/v2/alerts`.
    Alertmanager,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default)]
    pub kind: ReceiverKind,
    /// The webhook URL, or the Alertmanager base URL (`http://am:9093`).
    pub url: String,
    /// HMAC-SHA256 key for the `X-Kilowatch-Signature` header; prefer `hmac_secret_env`.
    #[serde(default)]
    pub hmac_secret: Option<String>,
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
    /// Receiver that gets a notification once this one failed `max_attempts` times.
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt up to `max_backoff`.
    #[serde(default = "default_backoff", with = "crate::dur")]
    pub backoff: i64,
    #[serde(default = "default_max_backoff", with = "crate::dur")]
    pub max_backoff: i64,
    #[serde(default = "default_timeout", with = "crate::dur")]
    pub timeout: i64,
}

fn default_attempts() -> u32 {
    6
}
fn default_backoff() -> i64 {
    5
}
fn default_max_backoff() -> i64 {
    600
}
fn default_timeout() -> i64 {
    10
}

impl Receiver {
    pub fn secret(&self) -> Option<String> {
        self.hmac_secret_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|s| !s.is_empty()).or_else(|| self.hmac_secret.clone())
    }
}

/// Mute `target` alerts while a `source` alert fires with the same values of `equal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_match: Vec<Matcher>,
    pub target_match: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    #[serde(default)]
    pub route: Route,
    #[serde(default, rename = "receiver")]
    pub receivers: Vec<Receiver>,
    #[serde(default, rename = "inhibit")]
    pub inhibit_rules: Vec<InhibitRule>,
    /// Cooling unit → the nodes it cools (`"dgx-001..dgx-016"` ranges allowed). Alerts with a
    /// `node` get a `cooling_unit` label from it, so an inhibit rule with
    /// `equal = ["cooling_unit"]` mutes the GPUs a failed unit cools.
    #[serde(default)]
    pub topology: BTreeMap<String, Vec<String>>,
}

impl Routing {
    pub fn load(p: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read(p)?).map_err(|message| ConfigError::Parse { path: p.to_owned(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let r: Routing = toml::from_str(text).map_err(|e| e.to_string())?;
        let names: Vec<&str> = r.receivers.iter().map(|x| x.name.as_str()).collect();
        let mut check = vec![&r.route];
        while let Some(rt) = check.pop() {
            if let Some(n) = &rt.receiver
                && !names.contains(&n.as_str())
            {
                return Err(format!("route receiver {n:?} is not defined under [[receiver]]"));
            }
            check.extend(rt.routes.iter());
        }
        for x in &r.receivers {
            if let Some(f) = &x.fallback
                && (!names.contains(&f.as_str()) || f == &x.name)
            {
                return Err(format!("receiver {}: fallback {f:?} is not another defined receiver", x.name));
            }
        }
        Ok(r)
    }

    /// node → cooling unit, with ranges expanded.
    pub fn node_units(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (unit, nodes) in &self.topology {
            for n in nodes {
                for node in expand(n) {
                    out.insert(node, unit.clone());
                }
            }
        }
        out
    }

    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

/// `dgx-001..dgx-016` → dgx-001, dgx-002, …, keeping the zero padding.
fn expand(s: &str) -> Vec<String> {
    let Some((a, b)) = s.split_once("..") else { return vec![s.to_owned()] };
    let split = |x: &str| {
        let d = x.len() - x.chars().rev().take_while(|c| c.is_ascii_digit()).count();
        (x[..d].to_owned(), x[d..].to_owned())
    };
    let ((pa, na), (pb, nb)) = (split(a), split(b));
    match (na.parse::<u64>(), nb.parse::<u64>()) {
        (Ok(x), Ok(y)) if pa == pb && x <= y && y - x < 100_000 => (x..=y).map(|i| format!("{pa}{i:0w$}", w = na.len())).collect(),
        _ => vec![s.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand() {
        assert_eq!(expand("dgx-009..dgx-011"), vec!["dgx-009", "dgx-010", "dgx-011"]);
        assert_eq!(expand("dgx-1"), vec!["dgx-1"]);
    }
}
