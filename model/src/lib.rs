//! The vocabulary every Kilowatch crate shares: what a measurement is, how it is named,
//! and how it travels as InfluxDB line protocol. Nothing here does I/O.

pub mod config;
pub mod energy;
pub mod job;
pub mod lineproto;
pub mod metric;
pub mod point;
pub mod psychro;
pub mod time;

pub use job::{JobAllocation, JobId};
pub use lineproto::{FieldValueRef, Line, LineError, Lines, LinesBuffers, Precision, SkippedLines, encode_points, parse_batch, parse_batch_into, parse_batch_lenient_into, parse_lines};
pub use metric::{Kind, METRICS, MetricDef, Unit, lookup_metric};
pub use point::{FieldValue, Labels, Point};
pub use time::{TimeError, TimeRange, Timestamp};
