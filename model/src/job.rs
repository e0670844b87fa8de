use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

pub type JobId = String;

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
