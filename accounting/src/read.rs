//! What accounting asks of the data it reads, as traits it owns: [`SeriesRead`] for the time
//! series (find, ledgers, readings, hour means, first and newest reading) and [`JobsRead`] for
//! the job database (allocations, training progress). The store implements them in the
//! aggregator (`adapters/store_read.rs`), as Prometheus' engine reads through
//! `storage.Queryable`; [`crate::memory`] (feature `memory`) implements them over vectors for
//! accounting's own tests.
//!
//! The series, readings and [`ReadError`] are accounting's types, so a reader other than the
//! store can build them; the `gpu_job` points' longest gap is `kilowatch-model`'s
//! ([`GPU_JOB_MAX_GAP_NS`]), shared with the store that records the runs.

use kilowatch_model::Labels;
use kilowatch_model::energy::Ledger;

pub use kilowatch_model::job::GPU_JOB_MAX_GAP_NS;
use serde::{Deserialize, Serialize};

/// Why a read failed: the reader's own error (the store's, the job database's), carried whole so
/// its message reaches the user unchanged and a caller that knows the reader can look at it
/// ([`ReadError::downcast_ref`]).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
}

impl ReadError {
    /// Wraps a reader's error.
    pub fn source(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ReadError::Source(Box::new(e))
    }

    /// The reader's error, where it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            ReadError::Source(e) => e.downcast_ref::<E>(),
        }
    }
}

/// A series' number within one reader.
pub type SeriesId = u32;

/// One series: a measurement's field under one tag set.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub id: SeriesId,
    pub measurement: String,
    pub field: String,
    pub tags: Labels,
}

impl Series {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
}

/// One job's allocation on one node, as the job database holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub job: String,
    pub owner: String,
    pub project: String,
    pub node: String,
    pub gpus: Vec<u32>,
    pub start: i64,
    pub end: Option<i64>,
    /// "api", "slurm-hook", "slurm-poll", "gpu_job".
    pub source: String,
}

/// One training step a job posted: its tokens and samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub job: String,
    pub step: u64,
    pub t: i64,
    pub tokens: f64,
    pub samples: f64,
}

/// How a series' energy is computed: the increase of a counter (with resets resolved), or the
/// trapezoid integral of a power reading (joules, estimated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnergyKind {
    Counter,
    Power,
}

/// A series' readings per clock hour of a window, as one consistent read: the hour roll-ups'
/// means up to `rolled_to`, then the raw readings (with a neighbour on each side).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourMeans {
    /// Where roll-ups stop and raw readings start, clamped to the window.
    pub rolled_to: i64,
    /// Each hour bucket before `rolled_to` with numeric readings: start, mean, count.
    pub hours: Vec<(i64, f64, u32)>,
    /// Finite numeric raw readings from `rolled_to`, plus the neighbour on each side.
    pub raw: Vec<(i64, f64)>,
}

/// The time series accounting reads.
pub trait SeriesRead {
    /// The newest instant the data reaches (the end of "live" windows).
    fn live_now(&self) -> Result<i64, ReadError>;
    /// The series of `measurement`/`field` whose tags include `tags`.
    fn find_series(&self, measurement: &str, field: &str, tags: &[(&str, &str)]) -> Result<Vec<Series>, ReadError>;
    /// `id`'s energy per segment of `bounds` (sorted, at least two): counter units for
    /// counters, joules for power (flagged estimated); the same whatever the data's age.
    fn ledger(&self, id: SeriesId, kind: EnergyKind, bounds: &[i64]) -> Result<Ledger, ReadError>;
    /// Finite numeric readings over `[from, to]` plus the neighbour on each side.
    fn read_f64(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, ReadError>;
    /// Text readings over `[from, to]` plus the neighbour on each side.
    fn read_text(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, String)>, ReadError>;
    /// Hour roll-ups, then raw readings, over `[from, to)`: the one home of means across
    /// roll-ups and raw samples.
    fn hour_means(&self, id: SeriesId, from: i64, to: i64) -> Result<HourMeans, ReadError>;
    /// The time of `id`'s first reading ever kept.
    fn first_seen(&self, id: SeriesId) -> Result<Option<i64>, ReadError>;
    /// The time of `id`'s newest reading.
    fn newest(&self, id: SeriesId) -> Result<Option<i64>, ReadError>;
    /// The job database beside these series; an error where it cannot be opened.
    fn jobs(&self) -> Result<Box<dyn JobsRead + '_>, ReadError>;
}

/// The job database accounting reads.
pub trait JobsRead {
    /// The allocations overlapping `[from, to)`: the posted ones plus the runs of `gpu_job`
    /// points.
    fn allocations(&self, from: i64, to: i64) -> Result<Vec<Allocation>, ReadError>;
    /// The training progress posted in `[from, to)`, by job and step.
    fn progress(&self, from: i64, to: i64) -> Result<Vec<Step>, ReadError>;
    /// Whether the API or Slurm declared `job` (its allocation wins over runs found from points).
    fn declared(&self, job: &str) -> Result<bool, ReadError>;
    /// The owner and project recorded for a job found by its labels (remote write's pods).
    fn label_owner(&self, job: &str) -> Result<Option<(String, String)>, ReadError>;
}

/// [`SeriesRead::jobs`] answers a box; the functions take any reader.
impl<J: JobsRead + ?Sized> JobsRead for Box<J> {
    fn allocations(&self, from: i64, to: i64) -> Result<Vec<Allocation>, ReadError> {
        (**self).allocations(from, to)
    }
    fn progress(&self, from: i64, to: i64) -> Result<Vec<Step>, ReadError> {
        (**self).progress(from, to)
    }
    fn declared(&self, job: &str) -> Result<bool, ReadError> {
        (**self).declared(job)
    }
    fn label_owner(&self, job: &str) -> Result<Option<(String, String)>, ReadError> {
        (**self).label_owner(job)
    }
}
