//! The catch-up hold: a starting member whose data is far behind the clock holds its alerts
//! until the data catches up ([`CatchUp`]).

use std::time::Duration;

use kilowatch_model::Timestamp;
use kilowatch_store::Store;

/// Holds a starting member's alerts while its data is far behind the clock: a member of an
/// active-active pair back from an outage receives the collectors' spools oldest first, and
/// its alert state is the one it had when it stopped. Evaluated on that stale data, an alert
/// that resolved during the outage would still be firing here and be pushed to Alertmanager
/// again (every minute, as firing alerts are), which notifies it as firing anew. Held, nothing
/// is evaluated or sent until the newest sample is within `lag_ok` of the clock, or for
/// `max` at most: collectors that really are silent must still raise their alerts.
pub struct CatchUp {
    started: std::time::Instant,
    max: Duration,
    lag_ok: Duration,
    /// Set once released: a start holds once, never again.
    released: bool,
    announced: bool,
    /// `kilowatch_alerts_catching_up`: 1 while held.
    gauge: Option<prometheus_client::metrics::gauge::Gauge>,
}

impl CatchUp {
    /// `lag_ok` is four evaluations, and two minutes at least (meters read once a minute are
    /// not behind).
    pub fn new(every: Duration, max: Duration) -> CatchUp {
        CatchUp { started: std::time::Instant::now(), max, lag_ok: (every * 4).max(Duration::from_secs(120)), released: max.is_zero(), announced: false, gauge: None }
    }

    /// Sets `gauge` (`kilowatch_alerts_catching_up`) to 1 while held, 0 once released.
    pub fn with_gauge(mut self, gauge: prometheus_client::metrics::gauge::Gauge) -> CatchUp {
        self.gauge = Some(gauge);
        self
    }

    /// Never holds (the demo, whose clock is its data's).
    pub fn never() -> CatchUp {
        CatchUp::new(Duration::from_secs(1), Duration::ZERO)
    }

    /// Whether alerts are held now, given the clock and the store's newest sample (`None`: an
    /// empty store, nothing to catch up), asked only while held.
    pub fn holding(&mut self, now: Timestamp, newest: impl FnOnce() -> Option<Timestamp>) -> bool {
        if self.released {
            return false;
        }
        let held = self.decide(now, newest);
        if let Some(g) = &self.gauge {
            g.set(i64::from(held));
        }
        held
    }

    fn decide(&mut self, now: Timestamp, newest: impl FnOnce() -> Option<Timestamp>) -> bool {
        let lag = newest().map_or(0, |n| now.0.saturating_sub(n.0).max(0));
        let lag_s = lag / 1_000_000_000;
        if lag <= i64::try_from(self.lag_ok.as_nanos()).unwrap_or(i64::MAX) {
            self.released = true;
            if self.announced {
                tracing::info!(lag_s, held_s = self.started.elapsed().as_secs(), "alerts evaluated and sent again: the data has caught up with the clock");
            }
            return false;
        }
        if self.started.elapsed() >= self.max {
            self.released = true;
            tracing::warn!(
                lag_s,
                held_s = self.started.elapsed().as_secs(),
                "alerts evaluated again although the data is still behind the clock: alerts.catch_up_max_s reached (collectors silent, or spools slow to replay)"
            );
            return false;
        }
        if !self.announced {
            self.announced = true;
            tracing::warn!(lag_s, max_s = self.max.as_secs(), "alerts held while the store catches up: its newest data is behind the clock (a restart after an outage; spools replaying)");
        }
        true
    }
}

/// The newest sample's time, `None` for an empty store.
pub(super) fn newest(store: &Store) -> Option<Timestamp> {
    store.stats().ok().and_then(|s| s.newest_ts).map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_start_far_behind_the_clock_holds_until_the_data_catches_up_then_never_again() {
        let mut c = CatchUp::new(Duration::from_secs(15), Duration::from_secs(600));
        let now = Timestamp(1_800_000_000 * S);
        assert!(c.holding(now, || Some(Timestamp(now.0 - 3600 * S))), "an hour behind: held");
        assert!(c.holding(now, || Some(Timestamp(now.0 - 121 * S))), "just over two minutes behind: held");
        assert!(!c.holding(now, || Some(Timestamp(now.0 - 60 * S))), "a minute behind: released");
        assert!(!c.holding(now, || Some(Timestamp(now.0 - 3600 * S))), "released for good: a later outage of the collectors must still raise its alerts");
    }

    #[test]
    fn an_empty_store_or_a_zero_limit_never_holds_and_the_limit_releases() {
        let now = Timestamp(1_800_000_000 * S);
        assert!(!CatchUp::new(Duration::from_secs(15), Duration::from_secs(600)).holding(now, || None), "nothing to catch up");
        assert!(!CatchUp::never().holding(now, || Some(Timestamp(0))));
        let mut c = CatchUp::new(Duration::from_secs(15), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!c.holding(now, || Some(Timestamp(now.0 - 3600 * S))), "alerts.catch_up_max_s reached");
        // Long evaluation intervals widen what counts as caught up.
        let mut slow = CatchUp::new(Duration::from_secs(60), Duration::from_secs(600));
        assert!(!slow.holding(now, || Some(Timestamp(now.0 - 200 * S))), "four evaluations of 60 s");
    }
}
