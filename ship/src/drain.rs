//! The loop that empties a spool: sends its batches oldest first, acknowledges what the server
//! took, keeps what it could not, and drops (counted) only what the server calls invalid.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::shipper::Shipper;
use crate::spool::Spool;
use crate::stats::ShipStats;

/// Largest request the shipper builds when catching up after an outage.
const MAX_REQUEST_BYTES: usize = 4 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A spool shared by its producer (appends) and its ship loop (peeks and acks).
pub type SharedSpool = Arc<Mutex<Spool>>;

pub fn update_spool_stats(stats: &ShipStats, spool: &Spool) {
    stats.spool_bytes.store(spool.pending_bytes(), Ordering::Relaxed);
    stats.spool_batches.store(spool.pending_records(), Ordering::Relaxed);
    stats.spool_corrupt.store(spool.corrupt_records(), Ordering::Relaxed);
    stats.batches_dropped.store(spool.dropped_records(), Ordering::Relaxed);
}

/// Appends one batch; when even dropping older ones cannot make room, it is lost (counted by
/// the spool, logged here with `lost`). True when the batch is in the spool.
pub fn spool_append(spool: &mut Spool, body: &[u8], stats: &ShipStats, lost: &str) -> bool {
    let result = spool.append(body);
    if let Err(e) = &result {
        stats.spool_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "{lost}");
    }
    update_spool_stats(stats, spool);
    result.is_ok()
}

/// Sends a spool's batches oldest first until `shutdown`, waking on `notify` when new batches
/// arrive. Used by the collector, the demo, and the aggregator's forwarding to InfluxDB.
pub async fn ship_loop(shipper: Shipper, spool: SharedSpool, notify: Arc<Notify>, stats: Arc<ShipStats>, mut shutdown: watch::Receiver<bool>) {
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

fn ack(spool: &SharedSpool, n: u64, stats: &ShipStats) {
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
