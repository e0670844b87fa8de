//! [`NvmlSource`]: the GPU backend as one of the collector's [`Source`]s. Each `sample()`
//! reads every GPU once, turns the readings into wire-schema points, and leaves the same
//! readings in a [`SharedGpuMetrics`] for the `/metrics` listener, so a scrape never calls
//! NVML itself (a scrape storm cannot slow the sampling, and both views agree).

use std::sync::{Arc, Mutex, PoisonError};

use kilowatch_model::Timestamp;
use tracing::{info, warn};

use super::backend::{GpuBackend, NvmlBackend, NvmlOptions};
use super::metrics::DcgmMetrics;
use super::{GpuEventKind, GpuStatic, NvmlError, NvmlSourceConfig};
use crate::source::{Sampling, Source, SourceError};

/// The latest GPU values, shared between the sampling loop (writer) and `/metrics` (reader).
#[derive(Debug, Clone, Default)]
pub struct SharedGpuMetrics(Arc<Mutex<DcgmMetrics>>);

impl SharedGpuMetrics {
    pub fn new(metrics: DcgmMetrics) -> Self {
        SharedGpuMetrics(Arc::new(Mutex::new(metrics)))
    }

    /// Appends the DCGM-style exposition to `out`.
    pub fn render_into(&self, out: &mut String) {
        // A panic while holding the lock leaves valid (if stale) data: render it anyway.
        self.0.lock().unwrap_or_else(PoisonError::into_inner).render_into(out);
    }

    fn with<R>(&self, f: impl FnOnce(&mut DcgmMetrics) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The GPUs each compute process ran on at the latest sample (PID → GPU indices, ascending),
/// for the inference source, which maps a server's processes to its GPUs.
#[derive(Debug, Clone, Default)]
pub struct SharedGpuPids(Arc<Mutex<std::collections::BTreeMap<u32, Vec<u32>>>>);

impl SharedGpuPids {
    /// The GPUs any of `pids` ran on, ascending, without repeats.
    pub fn gpus_of(&self, pids: &std::collections::BTreeSet<u32>) -> Vec<u32> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<u32> = pids.iter().filter_map(|p| map.get(p)).flatten().copied().collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn set(&self, readings: &[super::GpuReading]) {
        let mut map: std::collections::BTreeMap<u32, Vec<u32>> = std::collections::BTreeMap::new();
        for r in readings {
            for p in &r.processes {
                map.entry(p.pid).or_default().push(r.index);
            }
        }
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = map;
    }
}

/// The node's GPUs as a collector source.
pub struct NvmlSource {
    /// Out of its slot while a sample runs on the blocking pool; gone only if NVML panicked.
    backend: Option<Box<dyn GpuBackend>>,
    site: String,
    node: String,
    statics: Vec<GpuStatic>,
    metrics: SharedGpuMetrics,
    pids: SharedGpuPids,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSource").field("site", &self.site).field("node", &self.node).field("gpus", &self.statics.len()).finish()
    }
}

impl NvmlSource {
    /// Wraps any backend (NVML, or a stand-in in tests).
    pub fn new(mut backend: Box<dyn GpuBackend>, site: impl Into<String>, node: impl Into<String>) -> Self {
        let node = node.into();
        let statics = backend.devices();
        let metrics = SharedGpuMetrics::new(DcgmMetrics::new(node.clone(), statics.clone()));
        NvmlSource { backend: Some(backend), site: site.into(), node, statics, metrics, pids: SharedGpuPids::default() }
    }

    /// Opens NVML as `[nvml]` says: `KILOWATCH_NVML_LIB`, else `lib_path`, else the driver's
    /// `libnvidia-ml.so.1`. When NVML cannot start, an optional source is `Ok(None)` (with a
    /// warning: the collector runs without GPUs); a required one is the error, for the
    /// operator to read at startup.
    pub fn from_config(cfg: &NvmlSourceConfig, site: &str, node: &str) -> Result<Option<Self>, NvmlError> {
        let opts = NvmlOptions::from_env(cfg.lib_path.as_deref()).proc_root(cfg.proc_root.clone());
        match NvmlBackend::open(opts) {
            Ok(b) => {
                let src = NvmlSource::new(Box::new(b), site, node);
                info!(gpus = src.statics.len(), node, "NVML source ready");
                Ok(Some(src))
            }
            Err(e) if cfg.optional => {
                warn!(error = %e, "NVML is unavailable and [nvml] is optional: running without GPUs");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The handle the `/metrics` listener renders from.
    pub fn metrics(&self) -> SharedGpuMetrics {
        self.metrics.clone()
    }

    /// The handle the inference source maps server processes to GPUs with.
    pub fn pids(&self) -> SharedGpuPids {
        self.pids.clone()
    }

    pub fn gpus(&self) -> &[GpuStatic] {
        &self.statics
    }
}

impl Source for NvmlSource {
    fn name(&self) -> &str {
        "nvml"
    }

    /// Never fails as a whole: a GPU in trouble is an event and a `down` entry, and the other
    /// GPUs are still in the points.
    /// NVML is blocking FFI: the whole reading (every GPU, and the statics of one that came
    /// back) is one `spawn_blocking`, off the runtime.
    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move {
            let Some(mut backend) = self.backend.take() else {
                return Err(SourceError::Failed { source_name: "nvml".into(), message: "the NVML backend was lost to an earlier panic".into() });
            };
            let read = tokio::task::spawn_blocking(move || {
                let set = backend.sample();
                // A GPU that was down when NVML opened has its name and UUID read when it comes
                // back; only then can the statics differ, so only then are they read again.
                let statics = set.events.iter().any(|e| e.kind == GpuEventKind::Recovered).then(|| backend.devices());
                (backend, set, statics)
            })
            .await;
            let (backend, set, statics) = read.map_err(|e| SourceError::Failed { source_name: "nvml".into(), message: format!("NVML sampling panicked: {e}") })?;
            self.backend = Some(backend);
            if let Some(statics) = statics {
                self.statics = statics.clone();
                self.metrics.with(|m| m.set_statics(statics));
            }
            self.metrics.with(|m| m.update(&set));
            self.pids.set(&set.readings);
            Ok(super::sample_to_points(&self.site, &self.node, &self.statics, &set, now))
        })
    }
}
