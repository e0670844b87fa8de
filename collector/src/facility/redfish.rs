//! The Redfish source: node input power from each node's BMC. Reads
//! `Chassis/{id}/EnvironmentMetrics` (`PowerWatts`, `EnergykWh`: an energy counter, preferred)
//! where the BMC has it, else `Chassis/{id}/Power` → `PowerControl[].PowerConsumedWatts`.
//! Basic or session auth (one session per BMC, reused until the BMC says 401), TLS with a CA
//! file or an explicit `insecure` flag. BMCs are polled concurrently on the collector's
//! runtime, each within its timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kilowatch_model::{FieldValue, Labels, Point, Timestamp};
use serde::Deserialize;
use serde_json::Value;

use super::validate::{EventKind, Validator, event};
use crate::source::{Sampling, Source};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// `POST /redfish/v1/SessionService/Sessions`, then `X-Auth-Token` (what BMCs prefer: one
    /// login instead of a password check per request).
    #[default]
    Session,
    Basic,
    None,
}

/// One BMC (`[[facility.redfish]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedfishDevice {
    pub name: String,
    /// Base URL of the BMC, e.g. `https://dgx-001-bmc`.
    pub url: String,
    /// The `node` tag of the points (`dgx-001`).
    pub node: String,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (preferred) …
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// … or the password inline, for tests.
    #[serde(default)]
    pub password: Option<String>,
    /// PEM CA bundle the BMC's certificate must chain to (only these CAs are trusted).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Explicit, and logged at every start: a BMC password crosses it.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The chassis whose power is the node's (DGX: the system chassis). Absent: the first
    /// chassis that has power readings.
    #[serde(default)]
    pub chassis: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    3000
}

#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error("{device}: {message}")]
    Config { device: String, message: String },
    #[error("{device}: {message}")]
    Request { device: String, message: String },
    #[error("{device}: no answer within {ms} ms")]
    Timeout { device: String, ms: u64 },
}

#[derive(Debug, Clone)]
enum PowerPath {
    Env(String),
    Power(String),
}

struct Bmc {
    cfg: RedfishDevice,
    base: String,
    password: Option<String>,
    client: reqwest::Client,
    token: Option<String>,
    path: Option<PowerPath>,
    tags: Labels,
    validator: Validator,
    down: bool,
}

/// A reading of one BMC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodePower {
    pub power_w: Option<f64>,
    pub energy_kwh: Option<f64>,
}

/// Reads `EnvironmentMetrics`: `PowerWatts.Reading` and `EnergykWh.Reading`.
pub fn parse_environment_metrics(v: &Value) -> NodePower {
    NodePower { power_w: v.pointer("/PowerWatts/Reading").and_then(Value::as_f64), energy_kwh: v.pointer("/EnergykWh/Reading").and_then(Value::as_f64) }
}

/// Reads `Power`: the first `PowerControl` entry that reports `PowerConsumedWatts` (entry 0 is
/// the chassis total by convention; later ones, where present, are parts of it).
pub fn parse_power(v: &Value) -> NodePower {
    let w = v.get("PowerControl").and_then(Value::as_array).and_then(|a| a.iter().find_map(|c| c.get("PowerConsumedWatts").and_then(Value::as_f64)));
    NodePower { power_w: w, energy_kwh: None }
}

fn odata_id(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.get("@odata.id")).and_then(Value::as_str).map(str::to_owned)
}

impl Bmc {
    fn new(cfg: &RedfishDevice, base_dir: &Path, site_tags: &Labels) -> Result<Self, RedfishError> {
        let bad = |message: String| RedfishError::Config { device: cfg.name.clone(), message };
        let mut b = reqwest::Client::builder().timeout(Duration::from_millis(cfg.timeout_ms));
        if let Some(ca) = &cfg.ca_file {
            let path = if ca.is_absolute() { ca.clone() } else { base_dir.join(ca) };
            let pem = std::fs::read(&path).map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
            b = b.tls_certs_only(certs);
        }
        if cfg.insecure {
            tracing::warn!(device = %cfg.name, "Redfish TLS certificate checks are OFF (insecure = true)");
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let client = b.build().map_err(|e| bad(e.to_string()))?;
        let password = match (&cfg.password_file, &cfg.password) {
            (Some(f), _) => {
                let path = if f.is_absolute() { f.clone() } else { base_dir.join(f) };
                Some(std::fs::read_to_string(&path).map_err(|e| bad(format!("password_file {}: {e}", path.display())))?.trim().to_owned())
            }
            (None, p) => p.clone(),
        };
        if cfg.auth != Auth::None && (cfg.username.is_none() || password.is_none()) {
            return Err(bad("username and password_file (or password) are required unless auth = \"none\"".into()));
        }
        let mut tags = site_tags.clone();
        tags.extend(cfg.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        tags.insert("node".into(), cfg.node.clone());
        Ok(Bmc {
            base: cfg.url.trim_end_matches('/').to_owned(),
            password,
            client,
            token: None,
            path: None,
            validator: Validator::new(&cfg.name, tags.clone(), 0.0),
            tags,
            down: false,
            cfg: cfg.clone(),
        })
    }

    fn err(&self, message: String) -> RedfishError {
        RedfishError::Request { device: self.cfg.name.clone(), message }
    }

    async fn login(&mut self) -> Result<(), RedfishError> {
        let body = serde_json::json!({ "UserName": self.cfg.username, "Password": self.password });
        let r = self.client.post(format!("{}/redfish/v1/SessionService/Sessions", self.base)).json(&body).send().await.map_err(|e| self.err(e.to_string()))?;
        if !r.status().is_success() {
            return Err(self.err(format!("login: HTTP {}", r.status())));
        }
        let token = r.headers().get("X-Auth-Token").and_then(|v| v.to_str().ok()).ok_or_else(|| self.err("login: no X-Auth-Token".into()))?;
        self.token = Some(token.to_owned());
        tracing::debug!(device = %self.cfg.name, "Redfish session opened");
        Ok(())
    }

    /// GET a resource; with session auth, logs in when needed and once more on a 401 (the BMC
    /// expired or dropped the session).
    async fn get(&mut self, path: &str) -> Result<Value, RedfishError> {
        for attempt in 0..2 {
            if self.cfg.auth == Auth::Session && self.token.is_none() {
                self.login().await?;
            }
            let mut req = self.client.get(format!("{}{}", self.base, path));
            match self.cfg.auth {
                Auth::Session => req = req.header("X-Auth-Token", self.token.clone().unwrap_or_default()),
                Auth::Basic => req = req.basic_auth(self.cfg.username.clone().unwrap_or_default(), self.password.clone()),
                Auth::None => {}
            }
            let r = req.send().await.map_err(|e| self.err(format!("GET {path}: {e}")))?;
            if r.status() == reqwest::StatusCode::UNAUTHORIZED && self.cfg.auth == Auth::Session && attempt == 0 {
                self.token = None;
                continue;
            }
            if !r.status().is_success() {
                return Err(self.err(format!("GET {path}: HTTP {}", r.status())));
            }
            return r.json().await.map_err(|e| self.err(format!("GET {path}: {e}")));
        }
        Err(self.err(format!("GET {path}: unauthorized")))
    }

    /// Finds the chassis and which of its resources carries power.
    async fn discover(&mut self) -> Result<PowerPath, RedfishError> {
        let list = self.get("/redfish/v1/Chassis").await?;
        let members: Vec<String> =
            list.get("Members").and_then(Value::as_array).map(|a| a.iter().filter_map(|m| m.get("@odata.id").and_then(Value::as_str).map(str::to_owned)).collect()).unwrap_or_default();
        for m in members {
            let id = m.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned();
            if self.cfg.chassis.as_ref().is_some_and(|c| *c != id) {
                continue;
            }
            let c = self.get(&m).await?;
            if let Some(p) = odata_id(&c, "EnvironmentMetrics") {
                return Ok(PowerPath::Env(p));
            }
            if let Some(p) = odata_id(&c, "Power") {
                return Ok(PowerPath::Power(p));
            }
        }
        Err(self.err(format!("no chassis with power readings{}", self.cfg.chassis.as_ref().map(|c| format!(" named {c:?}")).unwrap_or_default())))
    }

    async fn read(&mut self) -> Result<NodePower, RedfishError> {
        let path = match self.path.clone() {
            Some(p) => p,
            None => {
                let p = self.discover().await?;
                tracing::info!(device = %self.cfg.name, path = ?p, "Redfish power resource found");
                self.path = Some(p.clone());
                p
            }
        };
        match path {
            PowerPath::Env(p) => Ok(parse_environment_metrics(&self.get(&p).await?)),
            PowerPath::Power(p) => Ok(parse_power(&self.get(&p).await?)),
        }
    }

    async fn poll(&mut self, now: Timestamp) -> Vec<Point> {
        let mut out = Vec::new();
        let ms = self.cfg.timeout_ms;
        let res = match tokio::time::timeout(Duration::from_millis(ms), self.read()).await {
            Ok(r) => r,
            Err(_) => Err(RedfishError::Timeout { device: self.cfg.name.clone(), ms }),
        };
        match res {
            Ok(np) => {
                if self.down {
                    self.down = false;
                    out.push(event(&self.tags, &self.cfg.name, EventKind::Recovered, None, now, "BMC answers again"));
                }
                let mut p = Point::new("node", now);
                p.tags = self.tags.clone();
                if let Some(w) = np.power_w {
                    p.fields.push(("power_w".into(), FieldValue::F64(w)));
                }
                if let Some(k) = np.energy_kwh {
                    p.fields.push(("energy_j".into(), FieldValue::F64(k * 3.6e6)));
                }
                out.extend(self.validator.check(vec![p], &mut Vec::new()));
            }
            Err(e) => {
                self.validator.count_drop("no_response");
                if !self.down {
                    self.down = true;
                    tracing::warn!(device = %self.cfg.name, error = %e, "BMC not answering");
                    out.push(event(&self.tags, &self.cfg.name, EventKind::NoResponse, None, now, &e.to_string()));
                }
            }
        }
        out.extend(self.validator.drop_points(now));
        out
    }
}

pub struct RedfishSource {
    bmcs: Vec<Bmc>,
}

impl RedfishSource {
    pub fn new(devices: &[RedfishDevice], base_dir: &Path, site_tags: &Labels) -> Result<Self, RedfishError> {
        let bmcs = devices.iter().map(|d| Bmc::new(d, base_dir, site_tags)).collect::<Result<Vec<_>, _>>()?;
        Ok(RedfishSource { bmcs })
    }

    /// The chassis each BMC lists, for diagnostics (`--once` troubleshooting) and tests.
    pub async fn chassis_ids(&mut self) -> Vec<Result<Vec<String>, RedfishError>> {
        async fn list(b: &mut Bmc) -> Result<Vec<String>, RedfishError> {
            let v = b.get("/redfish/v1/Chassis").await?;
            Ok(v.get("Members")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|m| m.get("@odata.id").and_then(Value::as_str)).map(|s| s.rsplit('/').next().unwrap_or_default().to_owned()).collect())
                .unwrap_or_default())
        }
        join_all(self.bmcs.iter_mut().map(list).collect()).await
    }

    async fn poll_all(bmcs: &mut [Bmc], now: Timestamp) -> Vec<Point> {
        let futs: Vec<_> = bmcs.iter_mut().map(|b| b.poll(now)).collect();
        let mut out = Vec::new();
        // Polled together on one thread: the BMCs answer concurrently.
        for p in join_all(futs).await {
            out.extend(p);
        }
        out
    }
}

/// Polls futures together on the current task (no `futures` dependency for this one use).
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().flatten().collect()
}

impl Source for RedfishSource {
    fn name(&self) -> &str {
        "redfish"
    }

    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move { Ok(Self::poll_all(&mut self.bmcs, now).await) })
    }
}
