//! The counters of one spool and its shipping loop, read by the collector's `/metrics` and the
//! aggregator's health answer.

use std::sync::atomic::AtomicU64;

/// Counters an operator reads to know whether shipping keeps up.
#[derive(Debug, Default)]
pub struct ShipStats {
    pub batches_sent: AtomicU64,
    pub send_errors: AtomicU64,
    /// Batches the server called invalid; they can never succeed and are dropped.
    pub batches_rejected: AtomicU64,
    /// Lines the server refused (a wrong clock, a limit) while storing the rest of their batch.
    pub lines_refused: AtomicU64,
    /// Batches lost: dropped from a full spool, or not written because the disk failed (the
    /// spool's own count, see [`crate::Spool::dropped_records`]).
    pub batches_dropped: AtomicU64,
    pub spool_errors: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_batches: AtomicU64,
    /// Corrupt or torn records found in the spool and skipped.
    pub spool_corrupt: AtomicU64,
}
