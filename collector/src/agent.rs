//! The sampling loop: every interval, sample each source, encode, queue, and ship the queue
//! oldest first. A source or a network error is logged and counted; the loop keeps going.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kilowatch_model::{Precision, encode_points};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::ship::Shipper;
use crate::source::Source;

/// Counters an operator reads to know whether the agent is healthy.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub cycles: AtomicU64,
    pub points: AtomicU64,
    pub source_errors: AtomicU64,
    pub batches_sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub batches_dropped: AtomicU64,
    pub pending_bytes: AtomicU64,
    pub last_cycle_us: AtomicU64,
}

pub struct Agent {
    pub sources: Vec<Box<dyn Source>>,
    pub shipper: Shipper,
    pub interval: Duration,
    pub clock: Clock,
    /// Unsent batches are kept up to this many bytes; past it the oldest go first.
    pub max_pending_bytes: usize,
    pub stats: Arc<AgentStats>,
}

impl Agent {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut pending: VecDeque<String> = VecDeque::new();
        let mut pending_bytes = 0usize;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(endpoint = self.shipper.endpoint(), interval_ms = self.interval.as_millis() as u64, sources = self.sources.len(), "collector started");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let started = Instant::now();
            let now = self.clock.now();
            let sources = std::mem::take(&mut self.sources);
            let stats = self.stats.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let mut sources = sources;
                let mut points = Vec::new();
                for s in &mut sources {
                    match s.sample(now) {
                        Ok(p) => points.extend(p),
                        Err(e) => {
                            stats.source_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(source = s.name(), error = %e, "sampling failed");
                        }
                    }
                }
                (sources, points)
            })
            .await;
            let points = match joined {
                Ok((sources, points)) => {
                    self.sources = sources;
                    points
                }
                Err(e) => {
                    tracing::error!(error = %e, "a source panicked; stopping the collector");
                    break;
                }
            };
            self.stats.cycles.fetch_add(1, Ordering::Relaxed);
            if !points.is_empty() {
                self.stats.points.fetch_add(points.len() as u64, Ordering::Relaxed);
                let body = encode_points(&points, Precision::Ns);
                pending_bytes += body.len();
                pending.push_back(body);
            }
            while pending_bytes > self.max_pending_bytes {
                let Some(old) = pending.pop_front() else { break };
                pending_bytes -= old.len();
                self.stats.batches_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(bytes = old.len(), "queue full: dropped the oldest batch");
            }
            while let Some(body) = pending.front() {
                match self.shipper.send(body.clone()).await {
                    Ok(()) => {
                        self.stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.retryable() => {
                        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, pending = pending.len(), "send failed; will retry next interval");
                        break;
                    }
                    Err(e) => {
                        self.stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "batch rejected by the server; dropping it");
                    }
                }
                if let Some(sent) = pending.pop_front() {
                    pending_bytes -= sent.len();
                }
            }
            self.stats.pending_bytes.store(pending_bytes as u64, Ordering::Relaxed);
            self.stats.last_cycle_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        tracing::info!(pending = pending.len(), "collector stopped");
    }
}
