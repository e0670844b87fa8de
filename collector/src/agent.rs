//! The collector's sampling loop. The sampler samples every source each interval and appends
//! the batch to each endpoint's [`Outbox`]; each outbox's loop ships its spool oldest first.
//! They run apart so that a slow or absent aggregator never delays a sample. Errors are logged
//! and counted; both keep going.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kilowatch_model::{Precision, encode_points};
use kilowatch_ship::{Outbox, ShipStats, Shipper, Spool};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::sanitize::Sanitizer;
use crate::source::Source;

/// Counters an operator reads to know whether the agent is healthy: the sampler's own, and
/// (through `Deref`) the shipping counters of [`ShipStats`] for the endpoint they belong to.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub cycles: AtomicU64,
    pub points: AtomicU64,
    pub source_errors: AtomicU64,
    pub last_cycle_us: AtomicU64,
    /// Names and string values from outside (labels, device strings) repaired before sending
    /// so that the aggregator takes their line ([`crate::sanitize`]).
    pub values_repaired: AtomicU64,
    /// Tags, fields and points left out because nothing sendable was left of them.
    pub values_dropped: AtomicU64,
    /// Inference pages abandoned: past `max_page_bytes`, or past the sample's deadline.
    pub inference_pages_over_cap: AtomicU64,
    /// Inference page rows left out past `max_rows`, and labels cut to `max_label_bytes`.
    pub inference_rows_over_cap: AtomicU64,
    /// The spool's and the ship loop's counters, shared with the endpoint's [`Outbox`].
    pub ship: Arc<ShipStats>,
}

/// `stats.batches_sent` reads on as before the shipping counters moved to kilowatch-ship.
impl Deref for AgentStats {
    type Target = ShipStats;
    fn deref(&self) -> &ShipStats {
        &self.ship
    }
}

pub struct Agent {
    pub sources: Vec<Box<dyn Source>>,
    pub shipper: Shipper,
    pub interval: Duration,
    pub clock: Clock,
    pub spool: Spool,
    pub stats: Arc<AgentStats>,
}

impl Agent {
    /// One endpoint: every counter in `stats`, as before endpoints could be several.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let Agent { sources, shipper, interval, clock, spool, stats } = self;
        let endpoint = Endpoint { name: String::new(), shipper, spool, stats: stats.clone() };
        FanOut { sources, interval, clock, endpoints: vec![endpoint], stats }.run(shutdown).await;
    }
}

/// One place the samples go (`[[aggregator]]`): its shipper, its own spool and cursor, and its
/// shipping counters.
pub struct Endpoint {
    pub name: String,
    pub shipper: Shipper,
    pub spool: Spool,
    pub stats: Arc<AgentStats>,
}

/// A collector shipping every batch to several endpoints (an active-active pair). Each sampled
/// batch is appended to every endpoint's spool; each endpoint has its own ship loop, so one
/// that is down or slow only grows its own spool and never delays the others.
pub struct FanOut {
    pub sources: Vec<Box<dyn Source>>,
    pub interval: Duration,
    pub clock: Clock,
    pub endpoints: Vec<Endpoint>,
    /// Sampling counters (cycles, points, source errors, cycle time).
    pub stats: Arc<AgentStats>,
}

impl FanOut {
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let FanOut { sources, interval, clock, endpoints, stats } = self;
        let mut outboxes = Vec::new();
        let mut shipping = Vec::new();
        for Endpoint { name, shipper, spool, stats: ep_stats } in endpoints {
            tracing::info!(endpoint = shipper.endpoint(), name = %name, interval_ms = interval.as_millis() as u64, sources = sources.len(), spooled = spool.pending_records(), "collector started");
            let (outbox, ship) = Outbox::start(shipper, spool, ep_stats.ship.clone(), shutdown.clone());
            shipping.push(ship);
            outboxes.push(outbox);
        }
        sample_loop(sources, interval, clock, outboxes.clone(), stats, shutdown).await;
        for s in shipping {
            let _ = s.await;
        }
        for o in &outboxes {
            if let Some(spooled) = o.pending_records() {
                tracing::info!(spooled, "collector stopped; unsent batches stay in the spool");
            }
        }
    }
}

async fn sample_loop(mut sources: Vec<Box<dyn Source>>, interval: Duration, clock: Clock, outboxes: Vec<Outbox>, stats: Arc<AgentStats>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sanitizer = Sanitizer::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let started = Instant::now();
        let now = clock.now();
        // Each source awaits its own devices (blocking ones run on the blocking pool inside
        // the source), one after the other as before.
        let mut points = Vec::new();
        for s in &mut sources {
            match s.sample(now).await {
                Ok(p) => points.extend(p),
                Err(e) => {
                    stats.source_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(source = s.name(), error = %e, "sampling failed");
                }
            }
        }
        let st = stats.clone();
        let ts = outboxes.clone();
        // Encoding and the spool's file writes block: off the async runtime.
        let joined = tokio::task::spawn_blocking(move || {
            // The one place every source's points pass: nothing the aggregator would refuse
            // goes out, whichever source took it from outside.
            let (repaired, dropped) = (sanitizer.repaired, sanitizer.dropped);
            sanitizer.points(&mut points);
            st.values_repaired.fetch_add(sanitizer.repaired - repaired, Ordering::Relaxed);
            st.values_dropped.fetch_add(sanitizer.dropped - dropped, Ordering::Relaxed);
            if !points.is_empty() {
                st.points.fetch_add(points.len() as u64, Ordering::Relaxed);
                let body = encode_points(&points, Precision::Ns);
                // Each endpoint's loop is woken as soon as its own copy is on disk: one whose
                // spool is busy (a large catch-up read holds its lock) delays no other.
                for o in &ts {
                    o.append(&body, "cannot spool a batch; it is lost");
                }
            }
            sanitizer
        })
        .await;
        match joined {
            Ok(z) => sanitizer = z,
            Err(e) => {
                tracing::error!(error = %e, "the sanitizer panicked; stopping the collector");
                break;
            }
        }
        stats.cycles.fetch_add(1, Ordering::Relaxed);
        stats.last_cycle_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}
