//! The collector's two loops. The sampler samples every source each interval and appends the
//! batch to the spool; the shipper sends the spool oldest first. They run apart so that a slow
//! or absent aggregator never delays a sample. Errors are logged and counted; both keep going.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kilowatch_model::{Precision, encode_points};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::sanitize::Sanitizer;
use crate::ship::Shipper;
use crate::source::Source;
use crate::spool::Spool;

/// Counters an operator reads to know whether the agent is healthy.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub cycles: AtomicU64,
    pub points: AtomicU64,
    pub source_errors: AtomicU64,
    pub batches_sent: AtomicU64,
    pub send_errors: AtomicU64,
    /// Batches the server called invalid; they can never succeed and are dropped.
    pub batches_rejected: AtomicU64,
    /// Lines the server refused (a wrong clock, a limit) while storing the rest of their batch.
    pub lines_refused: AtomicU64,
    /// Batches lost: dropped from a full spool, or not written because the disk failed (the
    /// spool's own count, see [`Spool::dropped_records`]).
    pub batches_dropped: AtomicU64,
    pub spool_errors: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_batches: AtomicU64,
    /// Corrupt or torn records found in the spool and skipped.
    pub spool_corrupt: AtomicU64,
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
}

pub struct Agent {
    pub sources: Vec<Box<dyn Source>>,
    pub shipper: Shipper,
    pub interval: Duration,
    pub clock: Clock,
    pub spool: Spool,
    pub stats: Arc<AgentStats>,
}

/// Largest request the shipper builds when catching up after an outage.
const MAX_REQUEST_BYTES: usize = 4 << 20;
/// Largest batch spooled from one sample: larger samples are spooled as several batches, so
/// that each one fits a spool segment and a request.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// `body` (whole lines) cut at line ends into pieces of at most `max` bytes. A single line
/// longer than `max` is a piece of its own (the spool refuses it, and only it).
fn pieces(body: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = body;
    while rest.len() > max {
        // The last line end within `max`, or the end of the first line when it alone is longer.
        let cut = match rest.as_bytes()[..max].iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None => rest.find('\n').map_or(rest.len(), |i| i + 1),
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

pub type SharedSpool = Arc<Mutex<Spool>>;

pub fn update_spool_stats(stats: &AgentStats, spool: &Spool) {
    stats.spool_bytes.store(spool.pending_bytes(), Ordering::Relaxed);
    stats.spool_batches.store(spool.pending_records(), Ordering::Relaxed);
    stats.spool_corrupt.store(spool.corrupt_records(), Ordering::Relaxed);
    stats.batches_dropped.store(spool.dropped_records(), Ordering::Relaxed);
}

/// Appends one batch; when even dropping older ones cannot make room, it is lost (counted by
/// the spool, logged here with `lost`). True when the batch is in the spool.
pub fn spool_append(spool: &mut Spool, body: &[u8], stats: &AgentStats, lost: &str) -> bool {
    let result = spool.append(body);
    if let Err(e) = &result {
        stats.spool_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "{lost}");
    }
    update_spool_stats(stats, spool);
    result.is_ok()
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

/// A spool with the loop that drains it: what the sampler appends to.
#[derive(Clone)]
struct Target {
    spool: SharedSpool,
    notify: Arc<Notify>,
    stats: Arc<AgentStats>,
}

impl FanOut {
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let FanOut { sources, interval, clock, endpoints, stats } = self;
        let mut targets = Vec::new();
        let mut shipping = Vec::new();
        for Endpoint { name, shipper, spool, stats: ep_stats } in endpoints {
            tracing::info!(endpoint = shipper.endpoint(), name = %name, interval_ms = interval.as_millis() as u64, sources = sources.len(), spooled = spool.pending_records(), "collector started");
            update_spool_stats(&ep_stats, &spool);
            let t = Target { spool: Arc::new(Mutex::new(spool)), notify: Arc::new(Notify::new()), stats: ep_stats };
            shipping.push(tokio::spawn(ship_loop(shipper, t.spool.clone(), t.notify.clone(), t.stats.clone(), shutdown.clone())));
            targets.push(t);
        }
        sample_loop(sources, interval, clock, targets.clone(), stats, shutdown).await;
        for s in shipping {
            let _ = s.await;
        }
        for t in &targets {
            if let Ok(s) = t.spool.lock() {
                tracing::info!(spooled = s.pending_records(), "collector stopped; unsent batches stay in the spool");
            }
        }
    }
}

async fn sample_loop(mut sources: Vec<Box<dyn Source>>, interval: Duration, clock: Clock, targets: Vec<Target>, stats: Arc<AgentStats>, mut shutdown: watch::Receiver<bool>) {
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
        let st = stats.clone();
        let ts = targets.clone();
        // Sources do blocking I/O (FFI, files, sockets): off the async runtime.
        let joined = tokio::task::spawn_blocking(move || {
            let mut points = Vec::new();
            for s in &mut sources {
                match s.sample(now) {
                    Ok(p) => points.extend(p),
                    Err(e) => {
                        st.source_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(source = s.name(), error = %e, "sampling failed");
                    }
                }
            }
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
                for t in &ts {
                    match t.spool.lock() {
                        Ok(mut spool) => {
                            // A sample larger than a spool record (a page of a million series
                            // once made one) is spooled as several: it must never be lost whole.
                            for piece in pieces(&body, spool.max_payload_bytes().min(MAX_BATCH_BYTES)) {
                                spool_append(&mut spool, piece.as_bytes(), &t.stats, "cannot spool a batch; it is lost");
                            }
                        }
                        Err(_) => tracing::error!("spool lock poisoned"),
                    }
                    t.notify.notify_one();
                }
            }
            (sources, sanitizer)
        })
        .await;
        match joined {
            Ok((s, z)) => (sources, sanitizer) = (s, z),
            Err(e) => {
                tracing::error!(error = %e, "a source panicked; stopping the collector");
                break;
            }
        }
        stats.cycles.fetch_add(1, Ordering::Relaxed);
        stats.last_cycle_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// Sends a spool's batches oldest first until `shutdown`, waking on `notify` when new batches
/// arrive. Used by the collector, and by the aggregator's forwarding to InfluxDB.
pub async fn ship_loop(shipper: Shipper, spool: SharedSpool, notify: Arc<Notify>, stats: Arc<AgentStats>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_MIN;
    // After a rejection, send one batch at a time to find the bad one without losing the rest.
    let mut single = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let limit = if single { 0 } else { MAX_REQUEST_BYTES };
        let batches = match spool.lock() {
            Ok(mut s) => {
                let b = s.peek(limit);
                update_spool_stats(&stats, &s);
                b
            }
            Err(_) => break,
        };
        let batches = match batches {
            Ok(b) => b,
            Err(e) => {
                stats.spool_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "cannot read the spool");
                if wait_or_stop(&mut shutdown, backoff).await {
                    break;
                }
                continue;
            }
        };
        if batches.is_empty() {
            single = false;
            tokio::select! {
                _ = notify.notified() => {}
                _ = shutdown.changed() => break,
            }
            continue;
        }
        let n = batches.len() as u64;
        let body = String::from_utf8_lossy(&batches.concat()).into_owned();
        match shipper.send(body).await {
            Ok(delivered) => {
                if delivered.refused_lines > 0 {
                    // Once a request, not per line: a node with a wrong clock sends thousands.
                    stats.lines_refused.fetch_add(delivered.refused_lines, Ordering::Relaxed);
                    tracing::warn!(refused_lines = delivered.refused_lines, batches = n, reason = delivered.reason.as_deref().unwrap_or(""), "the server refused some lines and stored the others");
                }
                stats.batches_sent.fetch_add(n, Ordering::Relaxed);
                ack(&spool, n, &stats);
                backoff = BACKOFF_MIN;
            }
            Err(e) if e.retryable() => {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                // Full jitter: collectors that lost the aggregator together do not all come back
                // in the same second.
                let wait = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
                tracing::warn!(error = %e, batches = n, retry_in_ms = wait.as_millis() as u64, "send failed; kept in the spool");
                backoff = (backoff * 2).min(BACKOFF_MAX);
                if wait_or_stop(&mut shutdown, wait).await {
                    break;
                }
            }
            Err(e) if n > 1 => {
                tracing::warn!(error = %e, batches = n, "request rejected; resending one batch at a time to isolate the bad one");
                single = true;
            }
            Err(e) => {
                stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "batch rejected by the server as invalid; dropping it");
                ack(&spool, 1, &stats);
            }
        }
    }
}

fn ack(spool: &SharedSpool, n: u64, stats: &AgentStats) {
    if let Ok(mut s) = spool.lock() {
        if let Err(e) = s.ack(n) {
            stats.spool_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "cannot record delivery in the spool; batches may be resent (the aggregator stores them once)");
        }
        update_spool_stats(stats, &s);
    }
}

/// Sleeps `d` unless asked to stop first; true when stopping.
async fn wait_or_stop(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn a_large_sample_is_spooled_in_pieces_of_whole_lines() {
        let body = "a v=1 1\nbb v=2 2\nccc v=3 3\n";
        assert_eq!(pieces(body, 1 << 20), [body]);
        assert_eq!(pieces(body, 17), ["a v=1 1\nbb v=2 2\n", "ccc v=3 3\n"]);
        assert_eq!(pieces(body, 9), ["a v=1 1\n", "bb v=2 2\n", "ccc v=3 3\n"]);
        // A line longer than the limit is alone, and nothing else is lost with it.
        assert_eq!(pieces(body, 4), ["a v=1 1\n", "bb v=2 2\n", "ccc v=3 3\n"]);
        assert_eq!(pieces(body, 9).concat(), body);
        assert!(pieces("", 9).is_empty());
    }
}
