//! The store behind accounting's read traits ([`SeriesRead`], [`JobsRead`]), as Prometheus'
//! engine reads through `storage.Queryable`: accounting never names the store, and its tests
//! read vectors instead (`kilowatch_accounting::memory`).

use kilowatch_accounting::read::{Allocation, EnergyKind, HourMeans, JobsRead, ReadError, Series, SeriesId, SeriesRead, Step};
use kilowatch_model::energy::Ledger;
use kilowatch_model::job::GPU_JOB_MAX_GAP_NS;
use kilowatch_store::jobs::{self, JobError, JobStore, with_gpu_job_points};
use kilowatch_store::rollup::{self, Level};
use kilowatch_store::{SeriesMeta, Store, StoreError};

/// The store's series as accounting reads them.
#[derive(Clone, Copy)]
pub struct StoreRead<'a>(pub &'a Store);

/// The store's job database (with the store, whose `gpu_job` points make allocations too).
pub struct StoreJobs<'a> {
    store: &'a Store,
    jobs: Jobs<'a>,
}

enum Jobs<'a> {
    Borrowed(&'a JobStore),
    Owned(JobStore),
}

impl<'a> StoreJobs<'a> {
    pub fn new(store: &'a Store, jobs: &'a JobStore) -> Self {
        StoreJobs { store, jobs: Jobs::Borrowed(jobs) }
    }

    fn jobs(&self) -> &JobStore {
        match &self.jobs {
            Jobs::Borrowed(j) => j,
            Jobs::Owned(j) => j,
        }
    }
}

/// A job database row as accounting reads it.
pub fn allocation(a: jobs::Allocation) -> Allocation {
    Allocation { job: a.job, owner: a.owner, project: a.project, node: a.node, gpus: a.gpus, start: a.start, end: a.end, source: a.source }
}

fn series(m: SeriesMeta) -> Series {
    Series { id: m.id, measurement: m.measurement.to_string(), field: m.field.to_string(), tags: m.tags.to_labels() }
}

fn store_kind(kind: EnergyKind) -> rollup::EnergyKind {
    match kind {
        EnergyKind::Counter => rollup::EnergyKind::Counter,
        EnergyKind::Power => rollup::EnergyKind::Power,
    }
}

impl StoreRead<'_> {
    fn f64s(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(self.0.read_with_neighbours(id, from, to)?.into_iter().filter_map(|(t, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (t, f))).collect())
    }
}

// The store's and the job database's errors travel whole in `ReadError::Source`: the handlers
// find them again (`ReadError::downcast_ref`) to answer as they answer the store's own.
impl SeriesRead for StoreRead<'_> {
    fn live_now(&self) -> Result<i64, ReadError> {
        self.0.live_now().map_err(ReadError::source)
    }

    fn find_series(&self, measurement: &str, field: &str, tags: &[(&str, &str)]) -> Result<Vec<Series>, ReadError> {
        Ok(self.0.find_series(measurement, field, tags).map_err(ReadError::source)?.into_iter().map(series).collect())
    }

    fn ledger(&self, id: SeriesId, kind: EnergyKind, bounds: &[i64]) -> Result<Ledger, ReadError> {
        self.0.ledger(id, store_kind(kind), bounds).map_err(ReadError::source)
    }

    fn read_f64(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, ReadError> {
        self.f64s(id, from, to).map_err(ReadError::source)
    }

    fn read_text(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, String)>, ReadError> {
        Ok(self.0.read_with_neighbours(id, from, to).map_err(ReadError::source)?.into_iter().filter_map(|(t, v)| v.as_text().map(|x| (t, x.to_owned()))).collect())
    }

    fn hour_means(&self, id: SeriesId, from: i64, to: i64) -> Result<HourMeans, ReadError> {
        // Roll-ups and raw readings as of one set of horizons (`Store::read_consistent`).
        self.0
            .read_consistent(|h| {
                let rolled_to = h.rolled_to.unwrap_or(i64::MIN).clamp(from, to);
                let mut hours = Vec::new();
                if rolled_to > from {
                    hours = self.0.read_rollups(id, Level::Hour, from, rolled_to)?.into_iter().filter(|b| b.n > 0 && b.mean.is_finite()).map(|b| (b.t, b.mean, b.n)).collect();
                }
                let raw = self.f64s(id, rolled_to, to)?;
                Ok(HourMeans { rolled_to, hours, raw })
            })
            .map_err(ReadError::source)
    }

    fn first_seen(&self, id: SeriesId) -> Result<Option<i64>, ReadError> {
        self.0.first_seen(id).map_err(ReadError::source)
    }

    fn newest(&self, id: SeriesId) -> Result<Option<i64>, ReadError> {
        Ok(self.0.latest(&[id]).map_err(ReadError::source)?.into_iter().flatten().next().map(|(t, _)| t))
    }

    fn jobs(&self) -> Result<Box<dyn JobsRead + '_>, ReadError> {
        Ok(Box::new(StoreJobs { store: self.0, jobs: Jobs::Owned(JobStore::beside(self.0).map_err(ReadError::source)?) }))
    }
}

impl JobsRead for StoreJobs<'_> {
    fn allocations(&self, from: i64, to: i64) -> Result<Vec<Allocation>, ReadError> {
        let jobs = self.jobs();
        let posted = jobs.overlapping(from, to).map_err(ReadError::source)?;
        Ok(with_gpu_job_points(self.store, jobs, posted, from, to, GPU_JOB_MAX_GAP_NS).map_err(ReadError::source)?.into_iter().map(allocation).collect())
    }

    fn progress(&self, from: i64, to: i64) -> Result<Vec<Step>, ReadError> {
        Ok(self.jobs().progress(from, to).map_err(ReadError::source)?.into_iter().map(|s| Step { job: s.job, step: s.step, t: s.t, tokens: s.tokens, samples: s.samples }).collect())
    }

    fn declared(&self, job: &str) -> Result<bool, ReadError> {
        self.jobs().declared(job).map_err(ReadError::source)
    }

    fn label_owner(&self, job: &str) -> Result<Option<(String, String)>, ReadError> {
        self.jobs().gpu_job_owner(job).map_err(ReadError::source)
    }
}

/// The store's error a [`StoreRead`] read failed with, for callers that answer in the store's
/// terms. Its series reads fail only with the store's error and the job database's wraps the
/// store's as `JobError::Store`; anything else (no reader here makes one) is logged whole and
/// answered as a corrupt record.
pub fn store_error(e: ReadError) -> StoreError {
    match job_error(e) {
        JobError::Store(s) => s,
        other => {
            tracing::error!(error = %other, "a store read failed with an error not the store's");
            StoreError::Corrupt(kilowatch_store::CorruptRecord("a read failed with an error not the store's"))
        }
    }
}

/// The job database's error a [`StoreRead`]/[`StoreJobs`] read failed with (the store's as
/// `JobError::Store`), for the handlers that answer the job database's errors; another reader's
/// error keeps its message as `JobError::Invalid`.
pub fn job_error(e: ReadError) -> JobError {
    let ReadError::Source(e) = e;
    match e.downcast::<JobError>() {
        Ok(j) => *j,
        Err(e) => match e.downcast::<StoreError>() {
            Ok(s) => JobError::Store(*s),
            Err(e) => JobError::Invalid(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_and_job_errors_come_back_whole() {
        let e = store_error(ReadError::source(StoreError::Poisoned));
        assert!(matches!(e, StoreError::Poisoned), "{e:?}");
        let e = store_error(ReadError::source(JobError::Store(StoreError::Poisoned)));
        assert!(matches!(e, StoreError::Poisoned), "{e:?}");
        let e = job_error(ReadError::source(JobError::Invalid("bad job".into())));
        assert!(matches!(&e, JobError::Invalid(m) if m == "bad job"), "{e:?}");
        let e = job_error(ReadError::source(StoreError::Poisoned));
        assert!(matches!(e, JobError::Store(StoreError::Poisoned)), "{e:?}");
        // Another reader's error keeps its message.
        let e = job_error(ReadError::source(std::io::Error::other("disk gone")));
        assert_eq!(e.to_string(), "disk gone");
    }
}
