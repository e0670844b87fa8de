//! PromQL over Kilowatch's series: parsed by `promql-parser` and evaluated with the semantics
//! of Prometheus 2.x (the version Debian ships, which the conformance test compares against):
//! a 5-minute lookback, stale markers, `offset` and `@`, range vectors closed at both ends,
//! `rate`/`increase`/`delta` extrapolated as Prometheus' `extrapolatedRate`, aggregations,
//! vector matching and classic-bucket `histogram_quantile`.
//!
//! The engine reads through [`SeriesSource`], a trait this crate owns: the aggregator
//! implements it over the store, the unit tests over [`MemorySource`]. Whatever the engine
//! cannot answer exactly (a function it does not implement, native histograms) is refused
//! with [`QueryError::Unsupported`], never answered with a wrong number.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod parse;
mod source;
mod steps;
mod value;

pub use eval::{Engine, Limits, QueryResult, parse_selector};
pub use parse::{parse_duration_ms, parse_time_ms};
pub use promql_parser::label::{MatchOp, Matcher};
pub use source::{Labels, MemorySource, NAME_LABEL, STALE_NAN_BITS, Selection, SeriesSource, SourceError, SourceSeries, is_stale};
pub use value::{Sample, Series, Value, format_value};

/// Why a query has no answer. [`QueryError::kind`] is the `errorType` of Prometheus' API.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    BadData(String),
    /// A function or construct this engine does not evaluate: refused rather than guessed.
    #[error("{0} is not supported by Kilowatch's PromQL engine (docs/prometheus.md, \"PromQL deviations\")")]
    Unsupported(String),
    /// What Prometheus' evaluation refuses (duplicate series in a match, …).
    #[error("{0}")]
    Execution(String),
    #[error("query processing would load too many {what} into memory (limit {limit}); narrow the matchers or the window")]
    TooMuch { what: &'static str, limit: usize },
    #[error("reading the store: {0}")]
    Source(#[from] SourceError),
}

impl QueryError {
    /// Prometheus' `errorType` for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::Parse(_) | QueryError::BadData(_) | QueryError::Unsupported(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooMuch { .. } => "execution",
            QueryError::Source(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests;
