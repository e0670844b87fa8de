//! The SNMP v2c source: UPS outputs (where the EU measures E_IT, PUE category 1) and rack PDU
//! inlets (category 2). Each device lists the OIDs it reads and the wire-schema point each
//! becomes, inline or from a preset file (`deploy/snmp/*.toml`). Devices are polled
//! concurrently, one thread each, with their own timeout: one dead UPS costs its timeout only.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kilowatch_model::{FieldValue, Labels, Point, Timestamp};
use serde::Deserialize;
use snmp2::{Oid, SyncSession, Value};

use super::validate::{Bounds, CounterTracker, EventKind, Validator, check_bounds, event};
use crate::source::{Sampling, Source, SourceError};

/// One OID and the point it becomes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpOid {
    /// Numeric OID, dotted (`1.3.6.1.2.1.33.1.4.4.1.4.1`).
    pub oid: String,
    /// value = raw × scale + offset (e.g. 0.001 for a Wh counter into `energy_kwh`).
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    pub measurement: String,
    pub field: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A cumulative counter: Counter32 wraps are unwrapped, other decreases are resets.
    #[serde(default)]
    pub counter: bool,
}

fn one() -> f64 {
    1.0
}

/// A preset file: `[[oid]]` entries for one device model.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidMap {
    #[serde(default)]
    pub description: String,
    #[serde(default, rename = "oid")]
    pub oids: Vec<SnmpOid>,
    /// Plausibility bounds by unit overriding the defaults, as in a Modbus register map.
    #[serde(default)]
    pub bounds: Bounds,
}

impl OidMap {
    pub fn load(path: &Path) -> Result<Self, SnmpError> {
        let text = std::fs::read_to_string(path).map_err(|e| SnmpError::Config { what: path.display().to_string(), message: e.to_string() })?;
        let map: OidMap = toml::from_str(&text).map_err(|e| SnmpError::Config { what: path.display().to_string(), message: e.to_string() })?;
        check_bounds(&map.bounds).map_err(|message| SnmpError::Config { what: path.display().to_string(), message })?;
        for o in &map.oids {
            parse_oid(&o.oid).map_err(|message| SnmpError::Config { what: format!("{}: oid {}", path.display(), o.oid), message })?;
        }
        Ok(map)
    }
}

/// One SNMP agent (`[[facility.snmp]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpDevice {
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// v2c community (default `public`). Prefer a read-only community limited to the collector.
    #[serde(default = "default_community")]
    pub community: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A preset of OIDs (`deploy/snmp/*.toml`), relative to the configuration file's folder.
    #[serde(default)]
    pub preset: Option<PathBuf>,
    #[serde(default, rename = "oid")]
    pub oids: Vec<SnmpOid>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Plausibility bounds by unit, over the preset's and the defaults.
    #[serde(default)]
    pub bounds: Bounds,
}

fn default_port() -> u16 {
    161
}
fn default_community() -> String {
    "public".into()
}
fn default_timeout_ms() -> u64 {
    1000
}

#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("{what}: {message}")]
    Config { what: String, message: String },
    #[error("{device}: {message}")]
    Request { device: String, message: String },
}

fn parse_oid(s: &str) -> Result<Vec<u64>, String> {
    let arcs: Result<Vec<u64>, _> = s.trim_start_matches('.').split('.').map(str::parse).collect();
    match arcs {
        Ok(a) if a.len() >= 2 => Ok(a),
        _ => Err("not a numeric dotted OID".into()),
    }
}

/// The number in a varbind, if it holds one. Some agents (Eaton, older APC) report numbers as
/// strings.
fn number(v: &Value<'_>) -> Option<(f64, Option<u32>)> {
    match v {
        Value::Integer(i) => Some((*i as f64, None)),
        Value::Counter32(c) => Some((f64::from(*c), Some(32))),
        Value::Unsigned32(u) | Value::Timeticks(u) => Some((f64::from(*u), None)),
        Value::Counter64(c) => Some((*c as f64, None)),
        Value::OctetString(b) => std::str::from_utf8(b).ok()?.trim().parse().ok().map(|x| (x, None)),
        _ => None,
    }
}

/// A numeric varbind and, for Counter32, its width; `None` when the agent had no number.
type Reading = Option<(f64, Option<u32>)>;

struct DeviceState {
    cfg: SnmpDevice,
    oids: Vec<SnmpOid>,
    arcs: Vec<Vec<u64>>,
    addr: Option<SocketAddr>,
    session: Option<SyncSession>,
    base: Labels,
    validator: Validator,
    counters: Vec<CounterTracker>,
    down: bool,
}

impl DeviceState {
    fn poll(&mut self, now: Timestamp) -> Vec<Point> {
        let mut events = Vec::new();
        match self.read() {
            Ok(values) => {
                if self.down {
                    self.down = false;
                    events.push(event(&self.base, &self.cfg.name, EventKind::Recovered, None, now, "agent answers again"));
                }
                let pts = self.points_from(values, now, &mut events);
                events.extend(pts);
            }
            Err(e) => {
                // A fresh socket next time: a late answer must not be taken for the next one.
                self.session = None;
                self.validator.count_drop("no_response");
                if !self.down {
                    self.down = true;
                    tracing::warn!(device = %self.cfg.name, error = %e, "SNMP agent not answering");
                    events.push(event(&self.base, &self.cfg.name, EventKind::NoResponse, None, now, &e.to_string()));
                }
            }
        }
        events.extend(self.validator.drop_points(now));
        events
    }

    /// One GET for every OID (v2c allows many varbinds; UPS and PDU lists are short).
    fn read(&mut self) -> Result<Vec<Reading>, SnmpError> {
        let err = |message: String| SnmpError::Request { device: self.cfg.name.clone(), message };
        if self.addr.is_none() {
            self.addr = (self.cfg.host.as_str(), self.cfg.port).to_socket_addrs().map_err(|e| err(e.to_string()))?.next();
        }
        let addr = self.addr.ok_or_else(|| err("no address".into()))?;
        if self.session.is_none() {
            let s = SyncSession::new_v2c(addr, self.cfg.community.as_bytes(), Some(Duration::from_millis(self.cfg.timeout_ms)), 0).map_err(|e| err(format!("{e:?}")))?;
            self.session = Some(s);
        }
        let oids: Vec<Oid<'static>> = self.arcs.iter().map(|a| Oid::from(a.as_slice()).map_err(|e| err(format!("{e:?}")))).collect::<Result<_, _>>()?;
        let refs: Vec<&Oid<'_>> = oids.iter().collect();
        let Some(session) = self.session.as_mut() else { return Err(err("no session".into())) };
        let pdu = session.get_many(&refs).map_err(|e| SnmpError::Request { device: self.cfg.name.clone(), message: format!("{e:?}") })?;
        if pdu.error_status != 0 {
            return Err(SnmpError::Request { device: self.cfg.name.clone(), message: format!("error status {} at {}", pdu.error_status, pdu.error_index) });
        }
        let mut out = vec![None; oids.len()];
        for (i, (_, v)) in pdu.varbinds.enumerate().take(out.len()) {
            out[i] = number(&v);
        }
        Ok(out)
    }

    fn points_from(&mut self, values: Vec<Reading>, now: Timestamp, events: &mut Vec<Point>) -> Vec<Point> {
        let mut groups: BTreeMap<(String, Labels), Point> = BTreeMap::new();
        for (i, v) in values.into_iter().enumerate() {
            let o = &self.oids[i];
            let Some((raw, bits)) = v else {
                // noSuchObject / noSuchInstance / a non-numeric value: the preset does not fit.
                self.validator.count_drop("no_such_object");
                continue;
            };
            let mut x = raw;
            if o.counter {
                let (u, ev) = self.counters[i].track(bits, raw as i128);
                x = u as f64;
                if let Some(kind) = ev {
                    let mut e = event(&self.base, &self.cfg.name, kind, Some(&o.field), now, "counter went down");
                    e.tags.extend(o.tags.iter().map(|(a, b)| (a.clone(), b.clone())));
                    events.push(e);
                }
            }
            let value = super::regmap::apply_scale(x, o.scale, o.offset);
            let mut tags = self.base.clone();
            tags.extend(o.tags.iter().map(|(a, b)| (a.clone(), b.clone())));
            let p = groups.entry((o.measurement.clone(), tags.clone())).or_insert_with(|| {
                let mut p = Point::new(o.measurement.clone(), now);
                p.tags = tags;
                p
            });
            p.fields.push((o.field.clone(), FieldValue::F64(value)));
        }
        self.validator.check(groups.into_values().collect(), events)
    }
}

pub struct SnmpSource {
    devices: Vec<DeviceState>,
}

impl SnmpSource {
    pub fn new(devices: &[SnmpDevice], base_dir: &Path, site_tags: &Labels) -> Result<Self, SnmpError> {
        let mut out = Vec::new();
        for d in devices {
            let mut oids = Vec::new();
            let mut bounds = Bounds::new();
            if let Some(p) = &d.preset {
                let path = if p.is_absolute() { p.clone() } else { base_dir.join(p) };
                let map = OidMap::load(&path)?;
                oids.extend(map.oids);
                bounds = map.bounds;
            }
            oids.extend(d.oids.iter().cloned());
            bounds.extend(d.bounds.clone());
            let arcs = oids.iter().map(|o| parse_oid(&o.oid).map_err(|message| SnmpError::Config { what: format!("{}: oid {}", d.name, o.oid), message })).collect::<Result<Vec<_>, _>>()?;
            let mut base = site_tags.clone();
            base.extend(d.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            out.push(DeviceState {
                validator: Validator::new(&d.name, base.clone(), 0.0).with_bounds(bounds),
                counters: vec![CounterTracker::default(); oids.len()],
                oids,
                arcs,
                addr: None,
                session: None,
                base,
                down: false,
                cfg: d.clone(),
            });
        }
        Ok(SnmpSource { devices: out })
    }
}

impl Source for SnmpSource {
    fn name(&self) -> &str {
        "snmp"
    }

    /// snmp2's session is a blocking socket: the devices are polled off the runtime, one thread
    /// each so that a dead one costs only its own timeout.
    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move {
            let mut devices = std::mem::take(&mut self.devices);
            let polled = tokio::task::spawn_blocking(move || {
                let results: Vec<Vec<Point>> = std::thread::scope(|s| {
                    let handles: Vec<_> = devices.iter_mut().map(|d| s.spawn(move || d.poll(now))).collect();
                    handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
                });
                (devices, results)
            })
            .await;
            let (devices, results) = polled.map_err(|e| SourceError::Failed { source_name: "snmp".into(), message: format!("polling failed: {e}") })?;
            self.devices = devices;
            Ok(results.into_iter().flatten().collect())
        })
    }
}
