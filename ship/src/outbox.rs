//! The producer's end of a spool: appends line protocol in pieces a spool record holds, and
//! wakes the loop that ships them.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::drain::{SharedSpool, ship_loop, spool_append, update_spool_stats};
use crate::shipper::Shipper;
use crate::spool::Spool;
use crate::stats::ShipStats;

/// Largest batch spooled from one append: larger bodies are spooled as several batches, so
/// that each one fits a spool segment and a request.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// A spool with the loop that drains it. Cloned by every producer of the same destination.
#[derive(Clone)]
pub struct Outbox {
    spool: SharedSpool,
    notify: Arc<Notify>,
    stats: Arc<ShipStats>,
}

impl Outbox {
    /// Starts shipping `spool` through `shipper` until `shutdown`. The handle ends once the
    /// loop has stopped; what it did not send stays in the spool for the next start.
    pub fn start(shipper: Shipper, spool: Spool, stats: Arc<ShipStats>, shutdown: watch::Receiver<bool>) -> (Outbox, JoinHandle<()>) {
        update_spool_stats(&stats, &spool);
        let outbox = Outbox { spool: Arc::new(Mutex::new(spool)), notify: Arc::new(Notify::new()), stats };
        let shipping = tokio::spawn(ship_loop(shipper, outbox.spool.clone(), outbox.notify.clone(), outbox.stats.clone(), shutdown));
        (outbox, shipping)
    }

    /// Spools `body` (whole lines) and wakes the ship loop. A body larger than a spool record
    /// (a page of a million series once made one) is spooled as several: it must never be lost
    /// whole. What the spool cannot take is counted and logged with `lost`. Blocking (file
    /// I/O): call it off the async runtime.
    pub fn append(&self, body: &str, lost: &str) {
        match self.spool.lock() {
            Ok(mut spool) => {
                for piece in pieces(body, spool.max_payload_bytes().min(MAX_BATCH_BYTES)) {
                    spool_append(&mut spool, piece.as_bytes(), &self.stats, lost);
                }
            }
            Err(_) => tracing::error!("spool lock poisoned"),
        }
        self.notify.notify_one();
    }

    /// Batches waiting in the spool (none when its lock is poisoned).
    pub fn pending_records(&self) -> Option<u64> {
        self.spool.lock().ok().map(|s| s.pending_records())
    }

    pub fn stats(&self) -> &Arc<ShipStats> {
        &self.stats
    }
}

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
