use std::future::Future;
use std::pin::Pin;

use kilowatch_model::{Point, Timestamp};
use kilowatch_sim::live::LiveSite;
pub use kilowatch_sim::live::{JobEvents, TruthMarks};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: {message}")]
    Failed { source_name: String, message: String },
}

/// One sampling in progress. Boxed so that sources stay trait objects (`async fn` in a trait
/// is not object-safe).
pub type Sampling<'a> = Pin<Box<dyn Future<Output = Result<Vec<Point>, SourceError>> + Send + 'a>>;

/// Anything the collector samples each interval, on the collector's runtime: network sources
/// await their devices there; a blocking call (FFI such as NVML, a blocking socket) goes through
/// `tokio::task::spawn_blocking` inside the source, never on a runtime thread.
pub trait Source: Send {
    fn name(&self) -> &str;
    fn sample(&mut self, now: Timestamp) -> Sampling<'_>;
}

/// The simulated site as a source: the demo's and the tests' stand-in for real hardware.
pub type SimSource = LiveSite;

impl Source for LiveSite {
    fn name(&self) -> &str {
        "sim"
    }
    /// A few milliseconds of arithmetic for a whole site: no need to leave the runtime.
    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move { Ok(self.points_at(now)) })
    }
}
