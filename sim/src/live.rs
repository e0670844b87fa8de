//! The simulated site run live: advanced to each sample's time rather than backfilled, with
//! handles on its job events and ground truth for whoever records or checks them.

use std::sync::{Arc, Mutex};

use kilowatch_model::{Point, Timestamp};

use crate::{JobEvent, PointBuf, ProgressStep, SimConfig, Site, Truth};

/// The simulator's ground truth at the first and the latest sample a [`LiveSite`] took, so
/// tests and the fault harness can compare what was stored with what was simulated between
/// exactly those readings.
#[derive(Debug, Clone, Default)]
pub struct TruthMarks {
    inner: Arc<Mutex<(Option<Mark>, Option<Mark>)>>,
}

/// The simulator's cumulative ground truth at one sample time.
type Mark = (Timestamp, Truth);

impl TruthMarks {
    pub fn first(&self) -> Option<(Timestamp, Truth)> {
        self.inner.lock().ok().and_then(|g| g.0)
    }
    pub fn last(&self) -> Option<(Timestamp, Truth)> {
        self.inner.lock().ok().and_then(|g| g.1)
    }
    fn record(&self, mark: Mark) {
        if let Ok(mut g) = self.inner.lock() {
            g.0.get_or_insert(mark);
            g.1 = Some(mark);
        }
    }
}

/// Job starts and ends from a [`LiveSite`]'s simulation, for whoever records allocations
/// (the demo's job ledger). The source drains its simulation's events every sample, whether or
/// not anyone holds this handle, so they never pile up.
#[derive(Debug, Clone, Default)]
pub struct JobEvents {
    inner: Arc<Mutex<Vec<JobEvent>>>,
    progress: Arc<Mutex<Vec<ProgressStep>>>,
}

impl JobEvents {
    /// The events since the last call, in time order.
    pub fn take(&self) -> Vec<JobEvent> {
        self.inner.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default()
    }
    /// The training steps reported since the last call.
    pub fn take_progress(&self) -> Vec<ProgressStep> {
        self.progress.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default()
    }
}

/// The simulated site sampled live, at times a clock gives: the demo's and the collector's
/// `sim` source, the stand-in for real hardware.
pub struct LiveSite {
    site: Site,
    buf: PointBuf,
    marks: TruthMarks,
    events: Option<JobEvents>,
}

impl LiveSite {
    pub fn new(cfg: SimConfig) -> Self {
        Self::from_site(Site::new(cfg))
    }
    /// Continues an already advanced simulation (the demo's live phase after its backfill).
    pub fn from_site(site: Site) -> Self {
        LiveSite { site, buf: PointBuf::new(), marks: TruthMarks::default(), events: None }
    }
    /// A handle on the job events this source's simulation produces from now on.
    pub fn job_events(&mut self) -> JobEvents {
        self.events.get_or_insert_with(JobEvents::default).clone()
    }
    /// A handle on the ground truth at this source's first and latest samples.
    pub fn truth_marks(&self) -> TruthMarks {
        self.marks.clone()
    }
    pub fn site_mut(&mut self) -> &mut Site {
        &mut self.site
    }

    /// The site's points at `now`, after advancing it there. Job events and training progress
    /// go to the [`JobEvents`] handle, if one was taken.
    pub fn points_at(&mut self, now: Timestamp) -> Vec<Point> {
        // A clock that steps back (NTP) must not rewind the simulation.
        if now > self.site.now() {
            self.site.advance_to(now);
        }
        self.marks.record((self.site.now(), self.site.truth()));
        let events = self.site.take_job_events();
        if let (Some(handle), false) = (&self.events, events.is_empty())
            && let Ok(mut g) = handle.inner.lock()
        {
            g.extend(events);
        }
        let progress = self.site.take_progress();
        if let (Some(handle), false) = (&self.events, progress.is_empty())
            && let Ok(mut g) = handle.progress.lock()
        {
            g.extend(progress);
        }
        // The reused buffer rewrites values in place; only the copy handed out allocates.
        self.site.fill_points(&mut self.buf);
        self.buf.points().to_vec()
    }
}
