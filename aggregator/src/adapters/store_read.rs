//! The store behind accounting's read traits ([`SeriesRead`], [`JobsRead`]), as Prometheus'
//! engine reads through `storage.Queryable`: accounting never names the store, and its tests
//! read vectors instead (`kilowatch_accounting::memory`).

use kilowatch_accounting::read::{Allocation, EnergyKind, HourMeans, JobError, JobsRead, Series, SeriesId, SeriesRead, Step, StoreError};
use kilowatch_model::energy::Ledger;
use kilowatch_store::jobs::{self, GPU_JOB_MAX_GAP_NS, JobStore, with_gpu_job_points};
use kilowatch_store::rollup::{self, Level};
use kilowatch_store::{SeriesMeta, Store};

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

impl SeriesRead for StoreRead<'_> {
    fn live_now(&self) -> Result<i64, StoreError> {
        self.0.live_now()
    }

    fn find_series(&self, measurement: &str, field: &str, tags: &[(&str, &str)]) -> Result<Vec<Series>, StoreError> {
        Ok(self.0.find_series(measurement, field, tags)?.into_iter().map(series).collect())
    }

    fn ledger(&self, id: SeriesId, kind: EnergyKind, bounds: &[i64]) -> Result<Ledger, StoreError> {
        self.0.ledger(id, store_kind(kind), bounds)
    }

    fn read_f64(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(self.0.read_with_neighbours(id, from, to)?.into_iter().filter_map(|(t, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (t, f))).collect())
    }

    fn read_text(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(self.0.read_with_neighbours(id, from, to)?.into_iter().filter_map(|(t, v)| v.as_text().map(|x| (t, x.to_owned()))).collect())
    }

    fn hour_means(&self, id: SeriesId, from: i64, to: i64) -> Result<HourMeans, StoreError> {
        // Roll-ups and raw readings as of one set of horizons (`Store::read_consistent`).
        self.0.read_consistent(|h| {
            let rolled_to = h.rolled_to.unwrap_or(i64::MIN).clamp(from, to);
            let mut hours = Vec::new();
            if rolled_to > from {
                hours = self.0.read_rollups(id, Level::Hour, from, rolled_to)?.into_iter().filter(|b| b.n > 0 && b.mean.is_finite()).map(|b| (b.t, b.mean, b.n)).collect();
            }
            let raw = self.read_f64(id, rolled_to, to)?;
            Ok(HourMeans { rolled_to, hours, raw })
        })
    }

    fn first_seen(&self, id: SeriesId) -> Result<Option<i64>, StoreError> {
        self.0.first_seen(id)
    }

    fn newest(&self, id: SeriesId) -> Result<Option<i64>, StoreError> {
        Ok(self.0.latest(&[id])?.into_iter().flatten().next().map(|(t, _)| t))
    }

    fn jobs(&self) -> Result<Box<dyn JobsRead + '_>, JobError> {
        Ok(Box::new(StoreJobs { store: self.0, jobs: Jobs::Owned(JobStore::beside(self.0)?) }))
    }
}

impl JobsRead for StoreJobs<'_> {
    fn allocations(&self, from: i64, to: i64) -> Result<Vec<Allocation>, JobError> {
        let jobs = self.jobs();
        Ok(with_gpu_job_points(self.store, jobs, jobs.overlapping(from, to)?, from, to, GPU_JOB_MAX_GAP_NS)?.into_iter().map(allocation).collect())
    }

    fn progress(&self, from: i64, to: i64) -> Result<Vec<Step>, JobError> {
        Ok(self.jobs().progress(from, to)?.into_iter().map(|s| Step { job: s.job, step: s.step, t: s.t, tokens: s.tokens, samples: s.samples }).collect())
    }

    fn declared(&self, job: &str) -> Result<bool, JobError> {
        self.jobs().declared(job)
    }

    fn label_owner(&self, job: &str) -> Result<Option<(String, String)>, JobError> {
        self.jobs().gpu_job_owner(job)
    }
}
