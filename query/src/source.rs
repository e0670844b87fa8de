//! Where the engine's samples come from: a small trait the aggregator implements over the
//! store, and an in-memory implementation for tests.

use std::collections::BTreeMap;

use promql_parser::label::Matcher;

/// A series' labels, `__name__` included, sorted by name.
pub type Labels = BTreeMap<String, String>;

pub const NAME_LABEL: &str = "__name__";

/// Prometheus' stale marker: a NaN with this bit pattern ends a series (remote write sends it
/// when a target disappears). Any other NaN is a value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// One series as read: its labels and its samples (ms, value), sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// What a read returned: the series, and warnings to pass on to the client (the resolution
/// of data read from roll-ups).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub series: Vec<SourceSeries>,
    pub warnings: Vec<String>,
}

pub trait SeriesSource: Send + Sync {
    /// Series matching every matcher, with their samples in `[from_ms, to_ms]`. A series with
    /// no sample in the window may be left out.
    fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Result<Selection, SourceError>;

    /// The labels of every series matching every matcher, whatever their samples (the
    /// `series`, `labels` and `label/{name}/values` endpoints).
    fn series(&self, matchers: &[Matcher]) -> Result<Vec<Labels>, SourceError>;
}

/// Series held in memory: the engine's unit tests, and small fixed data sets.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    pub series: Vec<SourceSeries>,
}

impl MemorySource {
    /// Adds a series from its labels (`[("__name__", "up"), ("job", "a")]`) and samples.
    pub fn push(&mut self, labels: &[(&str, &str)], samples: Vec<(i64, f64)>) {
        self.series.push(SourceSeries { labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), samples });
    }
}

/// Whether a series' labels satisfy a matcher: an absent label reads as "".
pub fn matches(labels: &Labels, m: &Matcher) -> bool {
    m.is_match(labels.get(&m.name).map_or("", String::as_str))
}

impl SeriesSource for MemorySource {
    fn select(&self, matchers: &[Matcher], from_ms: i64, to_ms: i64) -> Result<Selection, SourceError> {
        let series = self
            .series
            .iter()
            .filter(|s| matchers.iter().all(|m| matches(&s.labels, m)))
            .map(|s| SourceSeries { labels: s.labels.clone(), samples: s.samples.iter().copied().filter(|(t, _)| (from_ms..=to_ms).contains(t)).collect() })
            .filter(|s| !s.samples.is_empty())
            .collect();
        Ok(Selection { series, warnings: Vec::new() })
    }

    fn series(&self, matchers: &[Matcher]) -> Result<Vec<Labels>, SourceError> {
        Ok(self.series.iter().filter(|s| matchers.iter().all(|m| matches(&s.labels, m))).map(|s| s.labels.clone()).collect())
    }
}
