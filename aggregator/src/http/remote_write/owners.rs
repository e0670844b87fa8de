//! Who owns what remote write reports. [`CollectorNodes`]: which nodes the collector already
//! reports, so that a GPU seen by both the collector and
//! dcgm-exporter is counted once: the collector wins. Its energy counter is read from NVML
//! directly at its own interval and its series are the ledger's since the node was installed;
//! two counters of one GPU in one series would make garbage deltas, and two series of one GPU
//! would count it twice. dcgm-exporter's readings of such a GPU go to
//! [`super::map::SHADOW_MEASUREMENT`], which no ledger reads. [`JobOwners`]: the owners of the
//! jobs that series' job labels name (`hpc_job`, `pod`/`namespace`), recorded in the job ledger
//! so that the runs of their `gpu_job` points, and so statements and tenant scopes, have them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kilowatch_store::Store;
use kilowatch_store::jobs::JobStore;

use super::map::{GpuOwners, LabelJob, SOURCE_TAG};
use crate::config::prometheus::XID;

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

/// What one request's mapping asks: the collector's nodes (a snapshot) and the store.
pub struct Sources {
    nodes: Arc<HashSet<String>>,
    store: Arc<Store>,
}

impl CollectorNodes {
    /// For one request.
    pub fn sources(&self) -> Sources {
        Sources { nodes: self.snapshot(), store: self.store.clone() }
    }
}

impl GpuOwners for Sources {
    fn collector_reports(&mut self, node: &str) -> bool {
        self.nodes.contains(node)
    }

    fn newest_xid(&mut self, tags: &[(String, String)]) -> Option<f64> {
        let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ids: Vec<_> = match self.store.find_series(XID.0, XID.1, &tags) {
            Ok(s) => s.into_iter().map(|m| m.id).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a GPU's newest XID event; dcgm-exporter's current code is taken as new");
                return None;
            }
        };
        let newest = self.store.latest(&ids).ok()?.into_iter().flatten().max_by_key(|(t, _)| *t)?;
        newest.1.as_f64()
    }
}

impl GpuOwners for HashSet<String> {
    fn collector_reports(&mut self, node: &str) -> bool {
        self.contains(node)
    }
}

/// Jobs recorded, at most, before the memory of what was recorded is emptied (a few hundred
/// bytes each).
const MAX_REMEMBERED_JOBS: usize = 100_000;

/// Records the owner and project of each job named by job labels in the job ledger
/// ([`JobStore::set_gpu_job_owner`]), once per change: a sender repeats the same labels in
/// every request.
pub struct JobOwners {
    jobs: Option<JobStore>,
    recorded: Mutex<HashSet<LabelJob>>,
}

impl JobOwners {
    /// Beside `store`'s database; without a job ledger (it cannot be opened) jobs found from
    /// labels keep no owner, and the error is logged.
    pub fn new(store: &Store) -> JobOwners {
        let jobs = JobStore::beside(store).map_err(|e| tracing::error!(error = %e, "job ledger unavailable: owners of jobs named by remote-write labels are not recorded")).ok();
        JobOwners { jobs, recorded: Mutex::new(HashSet::new()) }
    }

    /// Records the jobs of a request not recorded yet with the same owner and project.
    pub fn record(&self, found: &[Arc<LabelJob>]) {
        let Some(jobs) = &self.jobs else { return };
        if found.is_empty() {
            return;
        }
        let mut recorded = match self.recorded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for j in found {
            if recorded.contains(&**j) {
                continue;
            }
            match jobs.set_gpu_job_owner(&j.job, &j.owner, &j.project) {
                Ok(changed) => {
                    if changed {
                        tracing::info!(job = %j.job, owner = %j.owner, project = %j.project, "owner of a job named by remote-write labels recorded");
                    }
                    if recorded.len() >= MAX_REMEMBERED_JOBS {
                        recorded.clear();
                    }
                    recorded.insert((**j).clone());
                }
                Err(e) => tracing::warn!(job = %j.job, error = %e, "cannot record the owner of a job named by remote-write labels; tried again with the next request"),
            }
        }
    }
}
