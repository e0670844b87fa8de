//! [`SeriesRead`] and [`JobsRead`] over vectors (feature `memory`): accounting's tests build a
//! site in a few lines and compute its figures in microseconds, with no store, file or server.
//! Every series is raw readings only, as a store holds them before any roll-up, so the figures
//! are the ones the store gives for data younger than its raw retention.

use std::collections::BTreeMap;

use kilowatch_model::energy::{self, Ledger};
use kilowatch_model::{Labels, Timestamp};

use crate::read::{Allocation, EnergyKind, HourMeans, JobsRead, ReadError, Series, SeriesId, SeriesRead, Step};

/// One reading: a number or a text (a cooling unit's mode, an inference server's GPUs).
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Num(f64),
    Text(String),
}

/// A site held in memory: series with their readings, allocations and training progress.
#[derive(Debug, Clone, Default)]
pub struct MemoryReader {
    series: Vec<(Series, BTreeMap<i64, Reading>)>,
    allocations: Vec<Allocation>,
    progress: Vec<Step>,
    /// "Now" for live windows; the newest reading when unset.
    now: Option<i64>,
}

impl MemoryReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The series of `measurement`/`field` under `tags`, created on first use.
    pub fn series(&mut self, measurement: &str, field: &str, tags: &[(&str, &str)]) -> SeriesId {
        let labels: Labels = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Some((s, _)) = self.series.iter().find(|(s, _)| s.measurement == measurement && s.field == field && s.tags == labels) {
            return s.id;
        }
        // Ids are positions: a reader never forgets a series.
        let id = SeriesId::try_from(self.series.len()).unwrap_or(SeriesId::MAX);
        self.series.push((Series { id, measurement: measurement.to_owned(), field: field.to_owned(), tags: labels }, BTreeMap::new()));
        id
    }

    /// Adds a numeric reading at `t` ns (a later one at the same instant replaces it, as the
    /// store's idempotent ingest does).
    pub fn push(&mut self, measurement: &str, field: &str, tags: &[(&str, &str)], t: i64, v: f64) -> &mut Self {
        let id = self.series(measurement, field, tags);
        self.readings(id).insert(t, Reading::Num(v));
        self
    }

    /// Adds a text reading at `t` ns.
    pub fn push_text(&mut self, measurement: &str, field: &str, tags: &[(&str, &str)], t: i64, v: &str) -> &mut Self {
        let id = self.series(measurement, field, tags);
        self.readings(id).insert(t, Reading::Text(v.to_owned()));
        self
    }

    pub fn allocate(&mut self, a: Allocation) -> &mut Self {
        self.allocations.push(a);
        self
    }

    pub fn step(&mut self, s: Step) -> &mut Self {
        self.progress.push(s);
        self
    }

    pub fn set_now(&mut self, now: i64) -> &mut Self {
        self.now = Some(now);
        self
    }

    fn readings(&mut self, id: SeriesId) -> &mut BTreeMap<i64, Reading> {
        // `id` comes from `series`, so it is a position in the vector.
        &mut self.series[id as usize].1
    }

    fn get(&self, id: SeriesId) -> Option<&BTreeMap<i64, Reading>> {
        self.series.get(id as usize).map(|(_, r)| r)
    }

    /// The readings in `[from, to]` plus the last before and the first after, as the store's
    /// `read_with_neighbours` answers.
    fn with_neighbours(&self, id: SeriesId, from: i64, to: i64) -> Vec<(i64, &Reading)> {
        let Some(r) = self.get(id) else { return Vec::new() };
        let before = r.range(..from).next_back();
        let after = if to < i64::MAX { r.range(to.saturating_add(1)..).next() } else { None };
        before.into_iter().chain(r.range(from..=to.max(from))).chain(after).map(|(t, v)| (*t, v)).collect()
    }
}

impl SeriesRead for MemoryReader {
    fn live_now(&self) -> Result<i64, ReadError> {
        let newest = self.series.iter().filter_map(|(_, r)| r.keys().next_back().copied()).max();
        Ok(self.now.or(newest).unwrap_or_else(|| Timestamp::now().0))
    }

    fn find_series(&self, measurement: &str, field: &str, tags: &[(&str, &str)]) -> Result<Vec<Series>, ReadError> {
        Ok(self.series.iter().map(|(s, _)| s).filter(|s| s.measurement == measurement && s.field == field && tags.iter().all(|(k, v)| s.tag(k) == Some(v))).cloned().collect())
    }

    fn ledger(&self, id: SeriesId, kind: EnergyKind, bounds: &[i64]) -> Result<Ledger, ReadError> {
        let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else { return Ok(Ledger::zeros(0, kind == EnergyKind::Power)) };
        if to <= from {
            return Ok(Ledger::zeros(bounds.len().saturating_sub(1), kind == EnergyKind::Power));
        }
        let samples = self.read_f64(id, from, to)?;
        Ok(match kind {
            EnergyKind::Counter => energy::counter_ledger(&samples, bounds),
            EnergyKind::Power => energy::power_ledger(&samples, bounds),
        })
    }

    fn read_f64(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, ReadError> {
        Ok(self
            .with_neighbours(id, from, to)
            .into_iter()
            .filter_map(|(t, v)| match v {
                Reading::Num(f) if f.is_finite() => Some((t, *f)),
                _ => None,
            })
            .collect())
    }

    fn read_text(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, String)>, ReadError> {
        Ok(self
            .with_neighbours(id, from, to)
            .into_iter()
            .filter_map(|(t, v)| match v {
                Reading::Text(s) => Some((t, s.clone())),
                Reading::Num(_) => None,
            })
            .collect())
    }

    fn hour_means(&self, id: SeriesId, from: i64, to: i64) -> Result<HourMeans, ReadError> {
        // Nothing is rolled up: every hour comes from raw readings.
        Ok(HourMeans { rolled_to: from, hours: Vec::new(), raw: self.read_f64(id, from, to)? })
    }

    fn first_seen(&self, id: SeriesId) -> Result<Option<i64>, ReadError> {
        Ok(self.get(id).and_then(|r| r.keys().next().copied()))
    }

    fn newest(&self, id: SeriesId) -> Result<Option<i64>, ReadError> {
        Ok(self.get(id).and_then(|r| r.keys().next_back().copied()))
    }

    fn jobs(&self) -> Result<Box<dyn JobsRead + '_>, ReadError> {
        Ok(Box::new(self))
    }
}

impl JobsRead for &MemoryReader {
    fn allocations(&self, from: i64, to: i64) -> Result<Vec<Allocation>, ReadError> {
        // Sorted as the store's job database answers.
        let mut a: Vec<Allocation> = self.allocations.iter().filter(|a| a.start < to && a.end.is_none_or(|e| e > from)).cloned().collect();
        a.sort_by(|x, y| x.job.cmp(&y.job).then(x.node.cmp(&y.node)));
        Ok(a)
    }

    fn progress(&self, from: i64, to: i64) -> Result<Vec<Step>, ReadError> {
        let mut steps: Vec<Step> = self.progress.iter().filter(|s| s.t >= from && s.t < to).cloned().collect();
        steps.sort_by(|a, b| a.job.cmp(&b.job).then(a.step.cmp(&b.step)));
        Ok(steps)
    }

    fn declared(&self, job: &str) -> Result<bool, ReadError> {
        Ok(self.allocations.iter().any(|a| a.job == job && a.source != "gpu_job"))
    }

    fn label_owner(&self, _job: &str) -> Result<Option<(String, String)>, ReadError> {
        // Jobs found by labels get their owner from the allocation a test adds.
        Ok(None)
    }
}

impl JobsRead for MemoryReader {
    fn allocations(&self, from: i64, to: i64) -> Result<Vec<Allocation>, ReadError> {
        (&self).allocations(from, to)
    }

    fn progress(&self, from: i64, to: i64) -> Result<Vec<Step>, ReadError> {
        (&self).progress(from, to)
    }

    fn declared(&self, job: &str) -> Result<bool, ReadError> {
        (&self).declared(job)
    }

    fn label_owner(&self, job: &str) -> Result<Option<(String, String)>, ReadError> {
        (&self).label_owner(job)
    }
}

/// A job in a property test's schedule: the node's index (`n{index}`), its GPUs, and its start
/// and duration in seconds after the span's start (open where the duration is `None`).
pub type ScheduledJob = (usize, Vec<u32>, i64, Option<i64>);

/// A property test's schedule as allocations from `t0` (ns): five job ids reused (`j0`…`j4`, so
/// one job may hold several spans and nodes), all of owner `o`.
pub fn scheduled_allocations(jobs: &[ScheduledJob], t0: i64) -> Vec<Allocation> {
    const S: i64 = 1_000_000_000;
    jobs.iter()
        .enumerate()
        .map(|(i, (node, gpus, start, dur))| Allocation {
            job: format!("j{}", i % 5),
            owner: "o".into(),
            project: String::new(),
            node: format!("n{node}"),
            gpus: gpus.clone(),
            start: t0 + start * S,
            end: dur.map(|d| t0 + (start + d) * S),
            source: "test".into(),
        })
        .collect()
}
