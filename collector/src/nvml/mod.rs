//! The NVML source: GPU telemetry read through `nvml-wrapper` ([`NvmlBackend`]), the jobs
//! that hold each GPU (from `/proc/<pid>/cgroup`, [`procs`]), the wire-schema points
//! ([`sample_to_points`]) and the DCGM-compatible `/metrics` text ([`metrics`]).
//!
//! Every call into NVML is blocking FFI: the caller runs [`GpuBackend::sample`] inside
//! `tokio::task::spawn_blocking` (or on a thread of its own); nothing here is async.

pub mod backend;
pub mod metrics;
pub mod procs;
pub mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kilowatch_model::{Point, Timestamp};
use serde::Deserialize;

pub use backend::{GpuBackend, NvmlBackend, NvmlOptions};
pub use metrics::DcgmMetrics;
pub use procs::JobResolver;
pub use source::{NvmlSource, SharedGpuMetrics, SharedGpuPids};

/// `[nvml]` in the collector's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmlSourceConfig {
    /// Path of `libnvidia-ml.so.1` (default: found through the loader's search path). The
    /// environment variable `KILOWATCH_NVML_LIB` overrides it.
    #[serde(default)]
    pub lib_path: Option<PathBuf>,
    /// When NVML cannot start (library missing, driver not loaded): `false` (default) stops the
    /// collector with the reason, `true` logs a warning and runs without GPUs.
    #[serde(default)]
    pub optional: bool,
    /// Where the host's `/proc` is, to map GPU processes to jobs through their cgroups
    /// (`/host/proc` in a container; default `/proc`).
    #[serde(default = "default_proc_root")]
    pub proc_root: PathBuf,
}

/// What `kilowatch-collector --once` uses when there is no config file: the driver's library,
/// required, the host's `/proc`.
impl Default for NvmlSourceConfig {
    fn default() -> Self {
        NvmlSourceConfig { lib_path: None, optional: false, proc_root: default_proc_root() }
    }
}

/// The host's `/proc` unless configured otherwise (`/host/proc` in a container).
pub(crate) fn default_proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

/// The environment variable that points the collector at another `libnvidia-ml.so`.
pub const NVML_LIB_ENV: &str = "KILOWATCH_NVML_LIB";
/// What the driver package installs on every distribution; the unversioned
/// `libnvidia-ml.so` (nvml-wrapper's default) exists only with the development package.
pub const DEFAULT_NVML_LIB: &str = "libnvidia-ml.so.1";

/// Picks the NVML library: `KILOWATCH_NVML_LIB` if set, else the config key, else
/// [`DEFAULT_NVML_LIB`] (found through the loader's search path).
pub fn resolve_lib_path(config: Option<&std::path::Path>) -> PathBuf {
    match std::env::var_os(NVML_LIB_ENV).filter(|v| !v.is_empty()) {
        Some(env) => PathBuf::from(env),
        None => config.map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_NVML_LIB)),
    }
}

/// Why the NVML source could not start. The messages are written for the operator who
/// reads them in `journalctl`.
#[derive(Debug, thiserror::Error)]
pub enum NvmlError {
    #[error(
        "cannot load the NVML library {path:?}: {detail}. Is the NVIDIA driver installed on this node? \
         Set {NVML_LIB_ENV} (or `lib_path` under `[nvml]` in the collector config) to the full path of libnvidia-ml.so.1, \
         or set `optional = true` under `[nvml]`"
    )]
    LibraryNotFound { path: PathBuf, detail: String },
    #[error(
        "the NVIDIA kernel driver is not loaded (NVML at {path:?} answered DRIVER_NOT_LOADED): \
         check `nvidia-smi` and `lsmod | grep nvidia`, or set `optional = true` under `[nvml]`"
    )]
    DriverNotLoaded { path: PathBuf },
    #[error("NVML at {path:?} refused access (NO_PERMISSION): the collector's user needs read access to /dev/nvidia*")]
    NoPermission { path: PathBuf },
    #[error("NVML at {path:?} failed to start: {source}")]
    Init {
        path: PathBuf,
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
    #[error("NVML at {path:?} could not count the GPUs: {source}")]
    DeviceCount {
        path: PathBuf,
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
}

/// What is read once per GPU: identity and limits that do not change while the driver runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuStatic {
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub pci_bus_id: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub slowdown_temp_c: Option<u32>,
    pub shutdown_temp_c: Option<u32>,
    pub mig: Option<MigMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

/// One GPU's dynamic values in one interval. `None` is "absent": unsupported by this GPU or
/// driver, or failed this once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuReading {
    pub index: u32,
    pub power_w: Option<f64>,
    /// Cumulative since driver load; the aggregator takes deltas.
    pub energy_mj: Option<u64>,
    pub power_limit_w: Option<f64>,
    pub temp_c: Option<u32>,
    /// Degrees left before thermal slowdown (slowdown threshold − GPU temperature).
    pub temp_margin_c: Option<i64>,
    pub mem_temp_c: Option<u32>,
    pub util_pct: Option<u32>,
    pub mem_util_pct: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub mem_used_bytes: Option<u64>,
    pub mem_total_bytes: Option<u64>,
    /// NVML clock-event (throttle) reasons bitmask.
    pub throttle_reasons: Option<u64>,
    /// Volatile (since driver load) ECC counts.
    pub ecc_corrected: Option<u64>,
    pub ecc_uncorrected: Option<u64>,
    pub pcie_replays: Option<u64>,
    pub processes: Vec<GpuProcess>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory_bytes: Option<u64>,
    /// `slurm:<id>` or `k8s:<pod uid>`, from the process's cgroup; `None` outside any job.
    pub job: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuEvent {
    pub gpu: u32,
    pub kind: GpuEventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GpuEventKind {
    /// A critical XID from the driver's event set.
    Xid { code: u64 },
    /// The energy counter went backwards (driver reload, GPU reset): count from the new value.
    CounterReset { previous_mj: u64, current_mj: u64 },
    /// The GPU stopped answering (GPU_IS_LOST, UNKNOWN, TIMEOUT, …); retried with backoff.
    Lost { error: String },
    /// A lost GPU answers again.
    Recovered,
}

impl GpuEventKind {
    pub fn name(&self) -> &'static str {
        match self {
            GpuEventKind::Xid { .. } => "xid",
            GpuEventKind::CounterReset { .. } => "counter_reset",
            GpuEventKind::Lost { .. } => "lost",
            GpuEventKind::Recovered => "recovered",
        }
    }
}

/// Everything one `sample()` saw: readings of the GPUs that answered, events since the last
/// call, and the GPUs that are down (not queried or failing).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuSampleSet {
    pub readings: Vec<GpuReading>,
    pub events: Vec<GpuEvent>,
    pub down: Vec<u32>,
}

fn gpu_tags(p: Point, site: &str, node: &str, gpu: u32, st: Option<&GpuStatic>) -> Point {
    let p = p.tag("site", site).tag("node", node).tag("gpu", gpu.to_string());
    match st.and_then(|s| s.uuid.as_deref()) {
        Some(uuid) if !uuid.is_empty() => p.tag("uuid", uuid),
        _ => p,
    }
}

fn opt_i64(p: Point, k: &str, v: Option<u64>) -> Point {
    match v {
        // Values above i64::MAX do not occur (mJ since driver load, bytes, bitmasks < 2^63).
        Some(v) => p.field(k, i64::try_from(v).unwrap_or(i64::MAX)),
        None => p,
    }
}

fn opt_f64(p: Point, k: &str, v: Option<f64>) -> Point {
    match v {
        Some(v) => p.field(k, v),
        None => p,
    }
}

/// The wire-schema points for one sample: a `gpu` line per GPU that answered, a `gpu_job`
/// line per (GPU, job) holding it, and a `gpu_event` line per event. Absent values are simply
/// missing fields.
pub fn sample_to_points(site: &str, node: &str, statics: &[GpuStatic], sample: &GpuSampleSet, ts: Timestamp) -> Vec<Point> {
    let static_of = |i: u32| statics.iter().find(|s| s.index == i);
    let mut out = Vec::with_capacity(sample.readings.len() * 2 + sample.events.len());
    for r in &sample.readings {
        let st = static_of(r.index);
        let mut p = gpu_tags(Point::new("gpu", ts), site, node, r.index, st);
        p = opt_f64(p, "power_w", r.power_w);
        p = opt_i64(p, "energy_mj", r.energy_mj);
        p = opt_f64(p, "temp_c", r.temp_c.map(f64::from));
        p = opt_f64(p, "temp_margin_c", r.temp_margin_c.map(|m| m as f64));
        p = opt_f64(p, "mem_temp_c", r.mem_temp_c.map(f64::from));
        p = opt_f64(p, "util_pct", r.util_pct.map(f64::from));
        p = opt_f64(p, "mem_util_pct", r.mem_util_pct.map(f64::from));
        p = opt_i64(p, "sm_clock_mhz", r.sm_clock_mhz.map(u64::from));
        p = opt_i64(p, "mem_clock_mhz", r.mem_clock_mhz.map(u64::from));
        p = opt_i64(p, "mem_used_bytes", r.mem_used_bytes);
        p = opt_i64(p, "mem_total_bytes", r.mem_total_bytes);
        p = opt_f64(p, "power_limit_w", r.power_limit_w);
        p = opt_i64(p, "throttle_reasons", r.throttle_reasons);
        p = opt_i64(p, "ecc_corrected", r.ecc_corrected);
        p = opt_i64(p, "ecc_uncorrected", r.ecc_uncorrected);
        if !p.fields.is_empty() {
            out.push(p);
        }
        for (job, pids) in jobs_of(r) {
            let pids = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let p = gpu_tags(Point::new("gpu_job", ts), site, node, r.index, st).field("job", job).field("pids", pids);
            out.push(p);
        }
    }
    for e in &sample.events {
        let mut p = gpu_tags(Point::new("gpu_event", ts), site, node, e.gpu, static_of(e.gpu)).field("kind", e.kind.name());
        p = match &e.kind {
            GpuEventKind::Xid { code } => opt_i64(p, "xid", Some(*code)),
            GpuEventKind::CounterReset { previous_mj, current_mj } => opt_i64(opt_i64(p, "previous_mj", Some(*previous_mj)), "current_mj", Some(*current_mj)),
            GpuEventKind::Lost { error } => p.field("error", error.as_str()),
            GpuEventKind::Recovered => p,
        };
        out.push(p);
    }
    out
}

/// The jobs holding one GPU, each with its PIDs in ascending order.
pub fn jobs_of(r: &GpuReading) -> BTreeMap<&str, Vec<u32>> {
    let mut jobs: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for p in &r.processes {
        if let Some(job) = p.job.as_deref() {
            jobs.entry(job).or_default().push(p.pid);
        }
    }
    for pids in jobs.values_mut() {
        pids.sort_unstable();
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use kilowatch_model::{Precision, encode_points};

    #[test]
    fn absent_fields_are_missing_and_jobs_grouped() {
        let statics = vec![GpuStatic { index: 0, uuid: Some("GPU-a".into()), ..Default::default() }];
        let sample = GpuSampleSet {
            readings: vec![GpuReading {
                index: 0,
                power_w: Some(512.5),
                energy_mj: Some(123),
                processes: vec![
                    GpuProcess { pid: 9, used_memory_bytes: None, job: Some("slurm:1".into()) },
                    GpuProcess { pid: 3, used_memory_bytes: None, job: Some("slurm:1".into()) },
                    GpuProcess { pid: 4, used_memory_bytes: None, job: None },
                ],
                ..Default::default()
            }],
            events: vec![GpuEvent { gpu: 0, kind: GpuEventKind::Xid { code: 79 } }],
            down: vec![],
        };
        let text = encode_points(&sample_to_points("dc5", "n1", &statics, &sample, Timestamp(5)), Precision::Ns);
        assert_eq!(
            text,
            "gpu,gpu=0,node=n1,site=dc5,uuid=GPU-a power_w=512.5,energy_mj=123i 5\n\
             gpu_job,gpu=0,node=n1,site=dc5,uuid=GPU-a job=\"slurm:1\",pids=\"3,9\" 5\n\
             gpu_event,gpu=0,node=n1,site=dc5,uuid=GPU-a kind=\"xid\",xid=79i 5\n"
        );
    }

    #[test]
    fn every_field_is_in_the_model_table() {
        let statics = vec![GpuStatic { index: 0, uuid: Some("GPU-a".into()), ..Default::default() }];
        let full = GpuReading {
            index: 0,
            power_w: Some(1.0),
            energy_mj: Some(1),
            power_limit_w: Some(1.0),
            temp_c: Some(1),
            temp_margin_c: Some(1),
            mem_temp_c: Some(1),
            util_pct: Some(1),
            mem_util_pct: Some(1),
            sm_clock_mhz: Some(1),
            mem_clock_mhz: Some(1),
            mem_used_bytes: Some(1),
            mem_total_bytes: Some(1),
            throttle_reasons: Some(1),
            ecc_corrected: Some(1),
            ecc_uncorrected: Some(1),
            pcie_replays: Some(1),
            processes: vec![GpuProcess { pid: 1, used_memory_bytes: None, job: Some("slurm:1".into()) }],
        };
        let events = [GpuEventKind::Xid { code: 79 }, GpuEventKind::CounterReset { previous_mj: 2, current_mj: 1 }, GpuEventKind::Lost { error: "x".into() }, GpuEventKind::Recovered];
        let sample = GpuSampleSet { readings: vec![full], events: events.into_iter().map(|kind| GpuEvent { gpu: 0, kind }).collect(), down: vec![] };
        for p in sample_to_points("dc5", "n1", &statics, &sample, Timestamp(1)) {
            for (f, _) in &p.fields {
                assert!(kilowatch_model::lookup_metric(&p.measurement, f).is_some(), "{}.{f} missing from model::METRICS", p.measurement);
            }
        }
    }
}
