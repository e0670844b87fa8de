use kilowatch_model::{Point, Timestamp};
use kilowatch_sim::live::LiveSite;
pub use kilowatch_sim::live::{JobEvents, TruthMarks};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name}: {message}")]
    Failed { source_name: String, message: String },
}

/// Anything the collector samples each interval. Calls may block (hardware, FFI): the agent
/// runs them off the async runtime.
pub trait Source: Send {
    fn name(&self) -> &str;
    fn sample(&mut self, now: Timestamp) -> Result<Vec<Point>, SourceError>;
}

/// The simulated site as a source: the demo's and the tests' stand-in for real hardware.
pub type SimSource = LiveSite;

impl Source for LiveSite {
    fn name(&self) -> &str {
        "sim"
    }
    fn sample(&mut self, now: Timestamp) -> Result<Vec<Point>, SourceError> {
        Ok(self.points_at(now))
    }
}
