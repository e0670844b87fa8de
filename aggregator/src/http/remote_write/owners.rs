//! Which nodes the collector already reports, so that a GPU seen by both the collector and
//! dcgm-exporter is counted once: the collector wins. Its energy counter is read from NVML
//! directly at its own interval and its series are the ledger's since the node was installed;
//! two counters of one GPU in one series would make garbage deltas, and two series of one GPU
//! would count it twice. dcgm-exporter's readings of such a GPU go to
//! [`super::map::SHADOW_MEASUREMENT`], which no ledger reads.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kilowatch_store::Store;

use super::map::{GpuOwners, SOURCE_TAG};

/// How long the set of the collector's nodes is reused before it is read again from the store:
/// a node whose collector starts is seen within this.
const REFRESH: Duration = Duration::from_secs(10);

/// The nodes with `gpu` series written without the remote-write [`SOURCE_TAG`]: the collector's
/// (or any line-protocol writer's), read from the store's index at most every [`REFRESH`].
pub struct CollectorNodes {
    store: Arc<Store>,
    cached: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl CollectorNodes {
    pub fn new(store: Arc<Store>) -> CollectorNodes {
        CollectorNodes { store, cached: Mutex::new(None) }
    }

    /// The current set (read again when older than [`REFRESH`]); empty if the store cannot say.
    pub fn snapshot(&self) -> Arc<HashSet<String>> {
        let mut g = match self.cached.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((at, set)) = g.as_ref()
            && at.elapsed() < REFRESH
        {
            return set.clone();
        }
        let mut set = HashSet::new();
        for field in ["energy_mj", "power_w"] {
            match self.store.latest_of("gpu", field) {
                Ok(series) => set.extend(series.into_iter().filter(|(tags, _)| tags.get(SOURCE_TAG.0) != Some(SOURCE_TAG.1)).filter_map(|(tags, _)| tags.get("node").map(str::to_owned))),
                Err(e) => tracing::warn!(error = %e, "cannot list the collector's GPU series; remote-write GPUs are taken as the only source meanwhile"),
            }
        }
        let set = Arc::new(set);
        *g = Some((Instant::now(), set.clone()));
        set
    }
}

impl GpuOwners for HashSet<String> {
    fn collector_reports(&mut self, node: &str) -> bool {
        self.contains(node)
    }
}
