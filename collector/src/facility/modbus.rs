//! The Modbus TCP source: energy meters, water totalisers and cooling units, each described by
//! a register map. Each sample polls all the devices concurrently on the collector's runtime,
//! each under its own timeout: one dead device costs at most its timeout and never delays the
//! others' readings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kilowatch_model::{FieldValue, Labels, Point, Timestamp};
use serde::Deserialize;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::Slave;

use super::regmap::{Batch, Function, Raw, RegMapError, Register, RegisterMap, decode_raw, is_fault_pattern, plan_batches, scaled};
use super::validate::{Bounds, CounterTracker, EventKind, Validator, event};
use crate::source::{Sampling, Source};

/// One Modbus TCP device (`[[facility.modbus]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    /// Name of the device in events and logs (`device` tag).
    pub name: String,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Modbus unit (slave) id; gateways route on it (default 1).
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Per-device deadline for connecting and reading everything, ms (default 1000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Seconds between polls of this device; absent: every collector interval.
    #[serde(default)]
    pub poll_s: Option<f64>,
    /// A register map file (`deploy/modbus/*.toml`); relative paths are from the
    /// configuration file's folder.
    #[serde(default)]
    pub map: Option<PathBuf>,
    /// Registers given inline, added to the map's.
    #[serde(default, rename = "register")]
    pub registers: Vec<Register>,
    /// Plausibility bounds by unit, over the map's and the defaults (`[facility.modbus.bounds.w]`).
    #[serde(default)]
    pub bounds: Bounds,
    /// Tags added to every point of this device (`site`, `meter`, `role`, `category`, …).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Largest gap of unused registers read to save a request (default 8; 0 for devices that
    /// refuse to read unmapped registers).
    #[serde(default = "default_gap")]
    pub max_gap: u16,
    /// Seconds a temperature or humidity may stay identical before a `frozen` event (default
    /// 900; 0 disables).
    #[serde(default = "default_frozen")]
    pub frozen_after_s: f64,
}

fn default_port() -> u16 {
    502
}
fn default_unit() -> u8 {
    1
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_gap() -> u16 {
    8
}
fn default_frozen() -> f64 {
    900.0
}

#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error(transparent)]
    Map(#[from] RegMapError),
    #[error("{device}: cannot resolve {host}:{port}: {message}")]
    Resolve { device: String, host: String, port: u16, message: String },
    #[error("{device}: {message}")]
    Io { device: String, message: String },
    #[error("{device}: no answer within {ms} ms")]
    Timeout { device: String, ms: u64 },
}

/// A device's registers and what is remembered between polls.
struct DeviceState {
    cfg: ModbusDevice,
    regs: Vec<Register>,
    batches: Vec<Batch>,
    ctx: Option<Context>,
    base: Labels,
    validator: Validator,
    counters: Vec<CounterTracker>,
    float_last: Vec<Option<f64>>,
    /// Registers whose latest reading was a fault pattern (logged once per episode).
    faulted: Vec<bool>,
    last_poll: Option<Timestamp>,
    down: bool,
}

impl DeviceState {
    fn new(cfg: ModbusDevice, base_dir: &Path, site_tags: &Labels) -> Result<Self, ModbusError> {
        let mut regs = Vec::new();
        let mut bounds = Bounds::new();
        if let Some(m) = &cfg.map {
            let path = if m.is_absolute() { m.clone() } else { base_dir.join(m) };
            let map = RegisterMap::load(&path)?;
            regs.extend(map.registers);
            bounds = map.bounds;
        }
        regs.extend(cfg.registers.iter().cloned());
        bounds.extend(cfg.bounds.clone());
        RegisterMap { description: String::new(), registers: regs.clone(), bounds: bounds.clone() }.validate(Path::new(&cfg.name))?;
        let mut base = site_tags.clone();
        base.extend(cfg.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        let batches = plan_batches(&regs, cfg.max_gap);
        let n = regs.len();
        Ok(DeviceState {
            validator: Validator::new(&cfg.name, base.clone(), cfg.frozen_after_s).with_bounds(bounds),
            faulted: vec![false; n],
            regs,
            batches,
            ctx: None,
            base,
            counters: vec![CounterTracker::default(); n],
            float_last: vec![None; n],
            last_poll: None,
            down: false,
            cfg,
        })
    }

    fn due(&self, now: Timestamp) -> bool {
        match (self.cfg.poll_s, self.last_poll) {
            (Some(p), Some(last)) => (now.0 - last.0) as f64 / 1e9 >= p * 0.999,
            _ => true,
        }
    }

    /// Connects if needed and reads every batch. A transport error drops the connection (the
    /// next poll reconnects); a Modbus exception loses only that batch's registers.
    async fn read(&mut self) -> Result<Vec<Option<Vec<u16>>>, ModbusError> {
        let dev = || self.cfg.name.clone();
        if self.ctx.is_none() {
            let addr: SocketAddr = tokio::net::lookup_host((self.cfg.host.as_str(), self.cfg.port))
                .await
                .map_err(|e| ModbusError::Resolve { device: dev(), host: self.cfg.host.clone(), port: self.cfg.port, message: e.to_string() })?
                .next()
                .ok_or_else(|| ModbusError::Resolve { device: dev(), host: self.cfg.host.clone(), port: self.cfg.port, message: "no address".into() })?;
            let ctx = tokio_modbus::client::tcp::connect_slave(addr, Slave(self.cfg.unit)).await.map_err(|e| ModbusError::Io { device: dev(), message: format!("connect {addr}: {e}") })?;
            self.ctx = Some(ctx);
        }
        let mut out = Vec::with_capacity(self.batches.len());
        for b in &self.batches {
            let Some(ctx) = self.ctx.as_mut() else { break };
            let r = match b.function {
                Function::Holding => ctx.read_holding_registers(b.start, b.count).await,
                Function::Input => ctx.read_input_registers(b.start, b.count).await,
            };
            match r {
                Ok(Ok(words)) if words.len() == usize::from(b.count) => out.push(Some(words)),
                Ok(Ok(words)) => {
                    tracing::warn!(device = %self.cfg.name, start = b.start, want = b.count, got = words.len(), "short read");
                    out.push(None);
                }
                Ok(Err(code)) => {
                    tracing::warn!(device = %self.cfg.name, start = b.start, count = b.count, ?code, "Modbus exception");
                    out.push(None);
                }
                Err(e) => {
                    self.ctx = None;
                    return Err(ModbusError::Io { device: self.cfg.name.clone(), message: e.to_string() });
                }
            }
        }
        Ok(out)
    }

    /// Turns the words read into points, unwrapping counters and validating.
    fn decode(&mut self, reads: Vec<Option<Vec<u16>>>, now: Timestamp, events: &mut Vec<Point>) -> Vec<Point> {
        let mut groups: BTreeMap<(String, Labels), Point> = BTreeMap::new();
        for (b, words) in self.batches.iter().zip(reads) {
            let Some(words) = words else {
                for _ in &b.members {
                    self.validator.count_drop("modbus_exception");
                }
                continue;
            };
            for &i in &b.members {
                let r = &self.regs[i];
                let at = usize::from(r.address - b.start);
                let regwords = &words[at..at + usize::from(r.ty.words())];
                let fault = is_fault_pattern(r, regwords);
                if fault != self.faulted[i] {
                    self.faulted[i] = fault;
                    if fault {
                        tracing::warn!(device = %self.cfg.name, field = %r.field, address = r.address, words = ?regwords, "register reads a fault pattern (all ones); dropping its values until it recovers");
                    } else {
                        tracing::info!(device = %self.cfg.name, field = %r.field, address = r.address, "register reads plausible values again");
                    }
                }
                if fault {
                    self.validator.count_drop("register_fault");
                    continue;
                }
                let raw = decode_raw(r, regwords);
                let value = if !r.states.is_empty() {
                    let n = raw.as_f64();
                    let idx = scaled(r, n);
                    match r.states.get(idx as usize).filter(|_| idx >= 0.0 && idx.fract() == 0.0) {
                        Some(s) => FieldValue::Str(s.clone()),
                        None => {
                            self.validator.count_drop("unknown_state");
                            continue;
                        }
                    }
                } else if r.counter {
                    // Refused before the tracker sees it, or the next good reading would look
                    // like a reset.
                    if let Some(reason) = self.validator.implausible(&r.field, scaled(r, raw.as_f64())) {
                        self.validator.count_drop(reason);
                        continue;
                    }
                    let (v, ev) = match raw {
                        Raw::Int(n) => {
                            let (u, ev) = self.counters[i].track(r.ty.wrap_bits(), n);
                            (scaled(r, u as f64), ev)
                        }
                        Raw::Float(f) => {
                            let v = scaled(r, f);
                            let ev = self.counters[i].track_f64(&mut self.float_last[i], v);
                            (v, ev)
                        }
                    };
                    if let Some(kind) = ev {
                        let mut e = event(&self.base, &self.cfg.name, kind, Some(&r.field), now, "counter went down");
                        e.tags.extend(r.tags.iter().map(|(a, b)| (a.clone(), b.clone())));
                        e.fields.push(("value".into(), FieldValue::F64(v)));
                        events.push(e);
                    }
                    FieldValue::F64(v)
                } else {
                    FieldValue::F64(scaled(r, raw.as_f64()))
                };
                let mut tags = self.base.clone();
                tags.extend(r.tags.iter().map(|(a, b)| (a.clone(), b.clone())));
                let p = groups.entry((r.measurement.clone(), tags.clone())).or_insert_with(|| {
                    let mut p = Point::new(r.measurement.clone(), now);
                    p.tags = tags;
                    p
                });
                p.fields.push((r.field.clone(), value));
            }
        }
        let mut points = self.validator.check(groups.into_values().collect(), events);
        super::derive::add_psychrometrics(&mut points);
        super::derive::add_inferred_mode(&mut points);
        points
    }
}

/// Every configured Modbus device, polled concurrently once per due interval.
pub struct ModbusSource {
    devices: Vec<DeviceState>,
}

impl ModbusSource {
    /// `base_dir` resolves relative map paths (the configuration file's folder); `site_tags`
    /// are added to every point (usually `site`).
    pub fn new(devices: &[ModbusDevice], base_dir: &Path, site_tags: &Labels) -> Result<Self, ModbusError> {
        let devices = devices.iter().map(|d| DeviceState::new(d.clone(), base_dir, site_tags)).collect::<Result<_, _>>()?;
        Ok(ModbusSource { devices })
    }

    async fn poll_all(devices: Vec<DeviceState>, now: Timestamp) -> Vec<(DeviceState, Vec<Point>)> {
        let mut set = tokio::task::JoinSet::new();
        for (idx, mut d) in devices.into_iter().enumerate() {
            set.spawn(async move {
                let mut events = Vec::new();
                if !d.due(now) {
                    return (idx, d, events);
                }
                d.last_poll = Some(now);
                let ms = d.cfg.timeout_ms;
                let res = match tokio::time::timeout(Duration::from_millis(ms), d.read()).await {
                    Ok(r) => r,
                    Err(_) => {
                        // A half-answered request leaves the stream out of step: start afresh.
                        d.ctx = None;
                        Err(ModbusError::Timeout { device: d.cfg.name.clone(), ms })
                    }
                };
                match res {
                    Ok(reads) => {
                        if d.down {
                            d.down = false;
                            tracing::info!(device = %d.cfg.name, "device answers again");
                            events.push(event(&d.base, &d.cfg.name, EventKind::Recovered, None, now, "device answers again"));
                        }
                        let pts = d.decode(reads, now, &mut events);
                        events.extend(pts);
                    }
                    Err(e) => {
                        d.validator.count_drop("no_response");
                        if !d.down {
                            d.down = true;
                            tracing::warn!(device = %d.cfg.name, error = %e, "device not answering");
                            events.push(event(&d.base, &d.cfg.name, EventKind::NoResponse, None, now, &e.to_string()));
                        }
                    }
                }
                events.extend(d.validator.drop_points(now));
                (idx, d, events)
            });
        }
        let mut out: Vec<(usize, DeviceState, Vec<Point>)> = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(x) => out.push(x),
                // A panicking device task loses that device's state; say so loudly.
                Err(e) => tracing::error!(error = %e, "a Modbus device task failed"),
            }
        }
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, d, p)| (d, p)).collect()
    }
}

impl Source for ModbusSource {
    fn name(&self) -> &str {
        "modbus"
    }

    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move {
            let done = Self::poll_all(std::mem::take(&mut self.devices), now).await;
            let mut points = Vec::new();
            for (d, p) in done {
                points.extend(p);
                self.devices.push(d);
            }
            Ok(points)
        })
    }
}
