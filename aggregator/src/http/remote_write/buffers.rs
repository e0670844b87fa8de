//! The memory of earlier requests, for the next ones: the inflated body, the decoded request,
//! the batch and the store's lines of a request are reused rather than allocated, grown and
//! freed request after request (allocation, growth and page faults were a fifth of the
//! high-cardinality bench's CPU).

use std::sync::Mutex;

use kilowatch_model::LinesBuffers;

use super::map::Batch;
use super::proto::RequestBuffers;

/// Sets kept: one per request handled at the same time, as senders run a few shards each.
const MAX_KEPT: usize = 4;

/// Bytes a kept set may reserve: one request's at `server.max_body_bytes` is not kept, so a
/// rare huge request does not stay resident.
const MAX_KEPT_BYTES: usize = 8 << 20;

/// One request's memory.
#[derive(Debug, Default)]
pub struct Buffers {
    /// The inflated body; longer than the current request's (its first bytes are that body):
    /// it only grows, so that no request writes zeros over it first.
    pub raw: Vec<u8>,
    pub request: RequestBuffers,
    pub batch: Batch,
    pub lines: LinesBuffers,
}

impl Buffers {
    fn capacity_bytes(&self) -> usize {
        self.raw.capacity() + self.request.capacity_bytes() + self.batch.capacity_bytes() + self.lines.capacity_bytes()
    }
}

/// The sets not in use.
#[derive(Debug, Default)]
pub struct Pool(Mutex<Vec<Buffers>>);

impl Pool {
    /// A kept set, or a new one.
    pub fn take(&self) -> Buffers {
        self.0.lock().ok().and_then(|mut v| v.pop()).unwrap_or_default()
    }

    /// Keeps `b` for a later request, unless enough are kept or it is too large.
    pub fn give(&self, b: Buffers) {
        if b.capacity_bytes() > MAX_KEPT_BYTES {
            return;
        }
        if let Ok(mut v) = self.0.lock()
            && v.len() < MAX_KEPT
        {
            v.push(b);
        }
    }

    /// Bytes the kept sets reserve.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.0.lock().map_or(0, |v| v.iter().map(Buffers::capacity_bytes).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_kept_up_to_a_count_and_a_size() {
        let pool = Pool::default();
        let mut b = pool.take();
        b.raw.reserve(1000);
        pool.give(b);
        assert!(pool.bytes() >= 1000, "kept");
        assert!(pool.take().raw.capacity() >= 1000, "given back as it was");
        assert_eq!(pool.bytes(), 0);
        let huge = Buffers { raw: Vec::with_capacity(MAX_KEPT_BYTES + 1), ..Buffers::default() };
        pool.give(huge);
        assert_eq!(pool.bytes(), 0, "a huge set is let go");
        for _ in 0..MAX_KEPT + 3 {
            pool.give(Buffers { raw: Vec::with_capacity(10), ..Buffers::default() });
        }
        assert_eq!(pool.0.lock().map(|v| v.len()).unwrap_or_default(), MAX_KEPT);
    }
}
