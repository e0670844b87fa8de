use kilowatch_model::{Point, Timestamp};
use kilowatch_sim::{SimConfig, Site};

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
pub struct SimSource {
    site: Site,
}

impl SimSource {
    pub fn new(cfg: SimConfig) -> Self {
        SimSource { site: Site::new(cfg) }
    }
    /// Continues an already advanced simulation (the demo's live phase after its backfill).
    pub fn from_site(site: Site) -> Self {
        SimSource { site }
    }
    pub fn site_mut(&mut self) -> &mut Site {
        &mut self.site
    }
}

impl Source for SimSource {
    fn name(&self) -> &str {
        "sim"
    }
    fn sample(&mut self, now: Timestamp) -> Result<Vec<Point>, SourceError> {
        // A clock that steps back (NTP) must not rewind the simulation.
        if now > self.site.now() {
            self.site.advance_to(now);
        }
        Ok(self.site.points())
    }
}
