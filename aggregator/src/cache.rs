//! A cache of computed API answers. Attribution over a day reads every GPU's counter (hundreds
//! of milliseconds at DC5 scale) and KPIs over a month or a year read every meter: a dashboard
//! that several people keep open, each refreshing, would compute the same answer again and
//! again.
//!
//! An answer over a past window stays valid until a write lands in that window (the store
//! counts writes per hour of sample time), so a late replay or a backfill is seen at once. An
//! answer over a window that reaches the present moves every second anyway: it is fresh for
//! `live_ttl` (15 s); after that it is still served while one request computes it again in the
//! background (stale-while-revalidate), so the dashboard never waits for attribution once it
//! has been computed. A job post clears everything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kilowatch_store::{Horizons, Store};

use crate::events::{CacheLookup, InternalEvent};
use crate::metrics::Metrics;

/// A window ending this close to the present (ns) is live.
const LIVE_NS: i64 = 300_000_000_000;

struct Entry {
    at: Instant,
    seq: u64,
    horizons: Horizons,
    from: i64,
    to: i64,
    live: bool,
    /// A background computation of this answer is running.
    refreshing: bool,
    /// The memory the answer takes ([`value_bytes`]), what the byte budget counts.
    bytes: usize,
    value: Arc<serde_json::Value>,
}

/// The store's state when an answer over `[from, to]` began to be computed.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    seq: u64,
    horizons: Horizons,
    from: i64,
    to: i64,
    live: bool,
}

/// What the cache holds for a key.
pub enum Lookup {
    Fresh(Arc<serde_json::Value>),
    /// A live answer past its time: serve it, and compute the next one if `refresh`.
    Stale {
        value: Arc<serde_json::Value>,
        refresh: bool,
    },
    Miss,
}

pub struct ResponseCache {
    live_ttl: Duration,
    max_entries: usize,
    /// The most the answers held may take in memory ([`value_bytes`]): a few answers over
    /// long windows with many jobs can be tens of megabytes each.
    max_bytes: usize,
    entries: Mutex<HashMap<String, Entry>>,
    /// Where lookups are counted (hits, stale, misses), when the cache serves the API.
    metrics: Option<Arc<Metrics>>,
}

/// Default byte budget of the cache.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

impl Default for ResponseCache {
    fn default() -> Self {
        ResponseCache::new(Duration::from_secs(15), 256, DEFAULT_MAX_BYTES)
    }
}

impl ResponseCache {
    pub fn new(live_ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        ResponseCache { live_ttl, max_entries, max_bytes, entries: Mutex::new(HashMap::new()), metrics: None }
    }

    /// Counts lookups in `metrics` (`kilowatch_api_cache_lookups_total`).
    pub fn counted_in(self, metrics: Arc<Metrics>) -> Self {
        ResponseCache { metrics: Some(metrics), ..self }
    }

    /// [`ResponseCache::find`], counted.
    pub fn lookup(&self, store: &Store, key: &str) -> Lookup {
        let found = self.find(store, key);
        if let Some(m) = &self.metrics {
            let event = match found {
                Lookup::Fresh(_) => CacheLookup::Hit,
                Lookup::Stale { .. } => CacheLookup::Stale,
                Lookup::Miss => CacheLookup::Miss,
            };
            event.emit(m);
        }
        found
    }

    /// What the cache holds for `key`. A live answer past its time comes back as stale, with
    /// `refresh` true for the one caller that should compute the next (the others keep being
    /// served the stale one meanwhile). Errors (a poisoned lock) only miss.
    fn find(&self, store: &Store, key: &str) -> Lookup {
        let Ok(mut g) = self.entries.lock() else { return Lookup::Miss };
        let Some(e) = g.get_mut(key) else { return Lookup::Miss };
        if e.live {
            if e.at.elapsed() < self.live_ttl {
                return Lookup::Fresh(e.value.clone());
            }
            let refresh = !e.refreshing;
            e.refreshing = true;
            return Lookup::Stale { value: e.value.clone(), refresh };
        }
        let (seq, from, to, then, value) = (e.seq, e.from, e.to, e.horizons, e.value.clone());
        drop(g);
        // Retention moved part of the window from raw samples to roll-ups (or deleted it):
        // the answer is computed again rather than assumed unchanged.
        let moved = |a: i64, b: i64| a != b && from < a.max(b);
        match (store.written_since(from, to, seq), store.horizons()) {
            (Ok(false), Ok(now)) if !moved(then.raw_from, now.raw_from) && !moved(then.minute_from, now.minute_from) && !moved(then.hour_from, now.hour_from) => Lookup::Fresh(value),
            _ => Lookup::Miss,
        }
    }

    /// A background refresh failed: let a later request try again.
    pub fn refresh_failed(&self, key: &str) {
        if let Ok(mut g) = self.entries.lock()
            && let Some(e) = g.get_mut(key)
        {
            e.refreshing = false;
        }
    }

    /// A mark taken before computing an answer over `[from, to]`, to [`ResponseCache::put`] it
    /// with: writes during the computation then invalidate it.
    pub fn mark(&self, store: &Store, from: i64, to: i64) -> Option<Mark> {
        let seq = store.write_seq().ok()?;
        let horizons = store.horizons().ok()?;
        // The present: the clock, or data time where a fast demo runs ahead of it. A window
        // over history loaded into a store is not live, even if it ends at its newest sample.
        let newest = store.stats().ok()?.newest_ts.unwrap_or(i64::MIN).max(kilowatch_model::Timestamp::now().0);
        Some(Mark { seq, horizons, from, to, live: to >= newest.saturating_sub(LIVE_NS) })
    }

    pub fn put(&self, key: String, mark: Option<Mark>, value: Arc<serde_json::Value>) {
        let Some(Mark { seq, horizons, from, to, live }) = mark else { return };
        let bytes = value_bytes(&value);
        if bytes > self.max_bytes / 4 {
            // One answer bigger than a quarter of the budget would push out everything else.
            tracing::debug!(bytes, key, "answer too large to cache");
            return;
        }
        let Ok(mut g) = self.entries.lock() else { return };
        g.remove(&key);
        let ttl = self.live_ttl;
        let used = |g: &HashMap<String, Entry>| g.values().map(|e| e.bytes).sum::<usize>();
        if g.len() >= self.max_entries || used(&g) + bytes > self.max_bytes {
            g.retain(|_, e| !e.live || e.at.elapsed() < ttl);
        }
        // Then the oldest answers go first, until this one fits.
        while !g.is_empty() && (g.len() >= self.max_entries || used(&g) + bytes > self.max_bytes) {
            let Some(oldest) = g.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) else { break };
            g.remove(&oldest);
        }
        g.insert(key, Entry { at: Instant::now(), seq, horizons, from, to, live, refreshing: false, bytes, value });
    }

    pub fn clear(&self) {
        if let Ok(mut g) = self.entries.lock() {
            g.clear();
        }
    }
}

/// What the allocator adds to each allocation (its header, and rounding up to 16 bytes).
const ALLOC_OVERHEAD: usize = 16;

/// Keys and values in a B-tree leaf (`std::collections::BTreeMap`, which `serde_json::Map` is:
/// 11 slots, allocated whole even for one entry).
const BTREE_SLOTS: usize = 11;

/// The memory an answer takes as a `serde_json::Value` tree, not as JSON text: a value is 32
/// bytes, an object a B-tree whose leaves hold 11 keys and values each, a string its capacity,
/// each allocation its header. Counting the JSON text let the cache hold about five times its
/// budget (a `{"kwh": 1.5}` is 12 bytes of text and over 600 in memory).
pub fn value_bytes(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    let node = |v: &Value| match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity() + ALLOC_OVERHEAD,
        Value::Array(a) => a.capacity() * std::mem::size_of::<Value>() + ALLOC_OVERHEAD + a.iter().map(value_bytes).sum::<usize>() - a.len() * std::mem::size_of::<Value>(),
        Value::Object(m) => {
            // Leaves are at least half full once a tree has split: count two-thirds full.
            let leaves = m.len().div_ceil(BTREE_SLOTS * 2 / 3).max(1);
            let leaf = BTREE_SLOTS * (std::mem::size_of::<String>() + std::mem::size_of::<Value>()) + 16 + ALLOC_OVERHEAD;
            leaves * leaf + m.iter().map(|(k, v)| k.capacity() + ALLOC_OVERHEAD + value_bytes(v) - std::mem::size_of::<Value>()).sum::<usize>()
        }
    };
    std::mem::size_of::<Value>() + node(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kilowatch_model::{Point, Timestamp};

    const H: i64 = 3_600_000_000_000;

    fn write(s: &Store, t: i64) {
        s.write(&[Point::new("meter", Timestamp(t)).tag("meter", "g").field("energy_kwh", 1.0)]).expect("write");
    }

    fn fresh(c: &ResponseCache, s: &Store, key: &str) -> bool {
        matches!(c.lookup(s, key), Lookup::Fresh(_))
    }

    #[test]
    fn past_answers_last_until_a_write_lands_in_their_window() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let now = Timestamp::now().0;
        write(&s, now);
        let c = ResponseCache::new(Duration::from_millis(50), 4, DEFAULT_MAX_BYTES);
        let v = Arc::new(serde_json::json!(1));
        c.put("past".into(), c.mark(&s, now - 20 * H, now - 10 * H), v.clone());
        c.put("live".into(), c.mark(&s, now - 10 * H, now), v.clone());
        write(&s, now - 50 * H);
        assert!(fresh(&c, &s, "past"), "a write elsewhere leaves it valid");
        assert!(fresh(&c, &s, "live"));
        std::thread::sleep(Duration::from_millis(60));
        // Live answers expire, but stale ones are still served while one caller refreshes.
        assert!(matches!(c.lookup(&s, "live"), Lookup::Stale { refresh: true, .. }), "live answers expire");
        assert!(matches!(c.lookup(&s, "live"), Lookup::Stale { refresh: false, .. }));
        c.refresh_failed("live");
        assert!(matches!(c.lookup(&s, "live"), Lookup::Stale { refresh: true, .. }));
        c.put("live".into(), c.mark(&s, now - 10 * H, now), v.clone());
        assert!(matches!(c.lookup(&s, "live"), Lookup::Fresh(_)));
        assert!(fresh(&c, &s, "past"), "past ones do not");
        write(&s, now - 15 * H);
        assert!(matches!(c.lookup(&s, "past"), Lookup::Miss), "a late write into the window invalidates it");
        c.put("past".into(), c.mark(&s, now - 20 * H, now - 10 * H), v);
        c.clear();
        assert!(matches!(c.lookup(&s, "past"), Lookup::Miss));
    }

    #[test]
    fn the_cache_holds_no_more_bytes_than_its_budget() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let now = Timestamp::now().0;
        write(&s, now);
        // 10 kB of budget; answers of about 1.7 kB each in memory.
        let c = ResponseCache::new(Duration::from_secs(60), 100, 10_000);
        let answer = || Arc::new(serde_json::json!({ "jobs": "x".repeat(1000) }));
        for i in 0..30 {
            c.put(format!("k{i}"), c.mark(&s, now - 20 * H, now - 10 * H), answer());
        }
        let held: usize = c.entries.lock().expect("lock").values().map(|e| e.bytes).sum();
        assert!(held <= 10_000, "{held} bytes held");
        assert!(fresh(&c, &s, "k29"), "the newest answer stays");
        assert!(!fresh(&c, &s, "k0"), "the oldest went first");
        // An answer larger than a quarter of the budget is not cached at all.
        c.put("big".into(), c.mark(&s, now - 20 * H, now - 10 * H), Arc::new(serde_json::json!("y".repeat(3000))));
        assert!(!fresh(&c, &s, "big"));
    }

    #[test]
    fn answers_are_counted_at_what_they_take_in_memory_not_as_text() {
        // A job list's shape: many small objects. As text 15 bytes each; in memory each is a
        // B-tree leaf of several hundred bytes.
        let rows: Vec<serde_json::Value> = (0..1000).map(|i| serde_json::json!({ "kwh": i })).collect();
        let v = serde_json::Value::Array(rows);
        let text = serde_json::to_vec(&v).expect("json").len();
        let counted = value_bytes(&v);
        assert!(counted > 20 * text, "{counted} bytes counted for {text} bytes of text");
        let leaf = BTREE_SLOTS * (std::mem::size_of::<String>() + std::mem::size_of::<serde_json::Value>());
        assert!(counted >= 1000 * leaf, "each object's leaf is counted: {counted}");
        assert_eq!(value_bytes(&serde_json::json!(1)), std::mem::size_of::<serde_json::Value>());
    }
}
