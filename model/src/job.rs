use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

pub type JobId = String;

/// A collector's `gpu_job` points are read as holding a GPU across gaps up to this long: the
/// collector sends them every second, a backfill or a slow shipper every 15 minutes. The store
/// (recording the runs) and accounting (reading serving allocations) share it.
pub const GPU_JOB_MAX_GAP_NS: i64 = 1_200_000_000_000;

/// Which GPUs of which node a job held, and when. `end: None` while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAllocation {
    pub job: JobId,
    pub owner: String,
    pub node: String,
    pub gpus: Vec<u32>,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}
