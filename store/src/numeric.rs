//! The numeric read path PromQL takes: each series' samples inside a window as `(ts, f64)`,
//! without the neighbours [`Store::read_with_neighbours`] adds and without a `Value` per sample.
//!
//! A query's window is a few minutes of hour-long blocks, so most of a read's cost was
//! decoding blobs it then threw away. Here only the blobs overlapping the window are read,
//! blob bytes are borrowed from SQLite rather than copied, and decoded blobs are kept in a
//! bounded cache (`BlobCache`) so that dashboards asking for the same recent hours again
//! neither read nor decode them again: a cached blob is found by its row's rowid, series, end,
//! sample count and length, and the rows a compaction, an expiry or a deletion changes are
//! evicted as they change (see `BlobCache`).
//!
//! Whatever this path cannot answer as numbers alone (a series holding text, a window within
//! an hour of the raw horizon, where roll-ups stand in) goes through the general read and is
//! filtered the same way, so the answers are those of the general read to the bit.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::hooks::Action;
use rusqlite::{Connection, params, types::ValueRef};

use super::codec::{self, CorruptRecord, Reader};
use super::{Horizons, Inner, SeriesId, Store, StoreError, Value, head, read, rollup};

/// Bytes of decoded blobs kept (16 bytes a sample plus the blob's own bytes): about 6 M
/// samples, two hours of 800 series at 1 Hz. When full, the blobs ending earliest go first:
/// dashboards ask for recent hours.
const CACHE_BYTES: usize = 128 << 20;

/// A blob decoded: what its row said of it (a later read compares) and its numeric samples in
/// stored order.
struct Decoded {
    meta: RowMeta,
    samples: Box<[(i64, f64)]>,
    /// Strictly increasing timestamps: the window is found by binary search.
    sorted: bool,
}

/// What a blob's row says of it without reading the blob: its series, layout, end, sample
/// count and byte length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowMeta {
    series: i64,
    fmt: i64,
    t_max: i64,
    n: i64,
    len: i64,
}

impl Decoded {
    fn bytes(&self) -> usize {
        self.samples.len() * std::mem::size_of::<(i64, f64)>() + std::mem::size_of::<Decoded>() + 64
    }

    /// The samples inside the window, where the blob is sorted.
    fn window(&self, from: i64, to: i64) -> Option<&[(i64, f64)]> {
        if !self.sorted {
            return None;
        }
        let lo = self.samples.partition_point(|(t, _)| *t < from);
        let hi = self.samples.partition_point(|(t, _)| *t <= to);
        self.samples.get(lo..hi)
    }

    fn window_into(&self, from: i64, to: i64, out: &mut Vec<(i64, f64)>) {
        if let Some(w) = self.window(from, to) {
            out.extend_from_slice(w);
        } else {
            out.extend(self.samples.iter().filter(|(t, _)| (from..=to).contains(t)));
        }
    }
}

/// Which blob: its table and its rowid.
type Key = (Table, i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Table {
    Blocks,
    Chunks,
}

impl Table {
    fn named(name: &str) -> Option<Table> {
        match name {
            "blocks" => Some(Table::Blocks),
            "chunks" => Some(Table::Chunks),
            _ => None,
        }
    }
}

/// Decoded blobs, bounded by bytes, the earliest-ending evicted first.
///
/// Kept exact without reading a blob to check it: every statement that inserts, updates or
/// deletes a chunk or block row evicts that row (an SQLite update hook on the two connections
/// that write them, [`BlobCache::watch`]), and every such statement runs with the writer
/// connection held ([`Writer`]), which moves `writes` when taken and when given back. A read
/// keeps what it decoded only if `writes` was even (no writer) when its snapshot was pinned
/// and has not moved since: a read whose snapshot predates a change the hook already evicted
/// cannot put the old samples back.
pub(super) struct BlobCache {
    inner: Mutex<CacheInner>,
    writes: AtomicU64,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<Key, Arc<Decoded>>,
    by_end: BTreeSet<(i64, Key)>,
    bytes: usize,
}

impl CacheInner {
    fn remove(&mut self, key: Key) {
        if let Some(old) = self.map.remove(&key) {
            self.bytes -= old.bytes();
            self.by_end.remove(&(old.meta.t_max, key));
        }
    }
}

impl BlobCache {
    pub(super) fn new() -> BlobCache {
        BlobCache { inner: Mutex::new(CacheInner::default()), writes: AtomicU64::new(0) }
    }

    /// Has `conn` evict each chunk or block row it changes.
    pub(super) fn watch(self: &Arc<Self>, conn: &mut Connection) -> Result<(), StoreError> {
        let cache = Arc::clone(self);
        conn.update_hook(Some(move |_: Action, _: &str, table: &str, rowid: i64| {
            if let Some(t) = Table::named(table)
                && let Ok(mut c) = cache.inner.lock()
            {
                c.remove((t, rowid));
            }
        }))?;
        Ok(())
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.inner.lock().map(|c| c.bytes).unwrap_or(0)
    }

    /// The mark a read takes before pinning its snapshot, for [`BlobCache::put`].
    fn mark(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn get(&self, key: Key, meta: RowMeta) -> Option<Arc<Decoded>> {
        let c = self.inner.lock().ok()?;
        c.map.get(&key).filter(|d| d.meta == meta).cloned()
    }

    /// Keeps `d`, decoded by a read that took `mark` before pinning its snapshot, unless the
    /// writer was held or taken since.
    fn put(&self, key: Key, d: Arc<Decoded>, mark: u64) {
        let Ok(mut c) = self.inner.lock() else { return };
        if mark % 2 == 1 || self.writes.load(Ordering::SeqCst) != mark {
            return;
        }
        let size = d.bytes();
        if size > CACHE_BYTES {
            return;
        }
        c.remove(key);
        while c.bytes + size > CACHE_BYTES {
            let Some(&(end, victim)) = c.by_end.first() else { break };
            // Full of newer blobs than this one: keep them rather than churn.
            if end >= d.meta.t_max {
                return;
            }
            c.remove(victim);
        }
        c.bytes += size;
        c.by_end.insert((d.meta.t_max, key));
        c.map.insert(key, d);
    }
}

/// The writer connection, held. Every change to chunks and blocks is made and committed
/// through it, or (deletions) while it is held: taking it and giving it back each move the
/// read cache's `writes`, so the count is odd while it is held.
pub(super) struct Writer<'a> {
    guard: MutexGuard<'a, Connection>,
    cache: &'a BlobCache,
}

impl<'a> Writer<'a> {
    pub(super) fn new(guard: MutexGuard<'a, Connection>, cache: &'a BlobCache) -> Writer<'a> {
        cache.writes.fetch_add(1, Ordering::SeqCst);
        Writer { guard, cache }
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.cache.writes.fetch_add(1, Ordering::SeqCst);
    }
}

impl std::ops::Deref for Writer<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl std::ops::DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

/// A series' samples not yet in chunks, inside the window: as numbers, or, where the head
/// holds text, as values for the general read.
enum Recent {
    Numbers(Vec<(i64, f64)>),
    Values(Vec<(i64, Value)>),
}

impl Recent {
    /// For the general read: only the window's samples are needed, as it is kept to the window.
    fn into_values(self) -> Vec<(i64, Value)> {
        match self {
            Recent::Numbers(r) => r.into_iter().map(|(t, v)| (t, Value::Num(v))).collect(),
            Recent::Values(v) => v,
        }
    }
}

impl Inner {
    fn recent_numbers(&self, id: SeriesId, from: i64, to: i64) -> Result<Recent, StoreError> {
        let heads = self.flushing.iter().filter_map(|s| s.get(id as usize)).chain(self.heads.get(id as usize));
        let mut out = Vec::new();
        for h in heads {
            for seg in h.segments.iter().filter(|s| s.n > 0 && s.t_max >= from && s.t_min <= to) {
                if !packed_numbers(&seg.to_chunk(), |t, v| {
                    if (from..=to).contains(&t) {
                        out.push((t, v));
                    }
                })? {
                    let mut values = Vec::new();
                    self.recent(id, &mut values)?;
                    return Ok(Recent::Values(values));
                }
            }
        }
        Ok(Recent::Numbers(out))
    }
}

impl Store {
    /// The numeric samples of each of `ids` with `from <= ts <= to`, sorted, one per timestamp
    /// (the last write wins), from one snapshot as [`Store::read_many_with_neighbours`] reads
    /// them: exactly what that read returns inside the window, less its text samples. `each`
    /// gets the index in `ids` and the samples of each series in turn, as pieces to be read one
    /// after the other (the cache's own, not copies).
    pub fn read_many_numeric(&self, ids: &[SeriesId], from: i64, to: i64, mut each: impl FnMut(usize, &[&[(i64, f64)]])) -> Result<(), StoreError> {
        let mut snap = self.readers.take()?;
        let mut recents = Vec::with_capacity(ids.len());
        let mark;
        let horizons = {
            let g = self.lock()?;
            for id in ids {
                recents.push(g.recent_numbers(*id, from, to)?);
            }
            mark = self.blob_cache.mark();
            snap.pin()?;
            g.horizons
        };
        let conn = snap.conn();
        let mut buf: Vec<(i64, f64)> = Vec::new();
        let mut blobs: Vec<Arc<Decoded>> = Vec::new();
        for (i, (id, recent)) in ids.iter().zip(recents).enumerate() {
            blobs.clear();
            let numeric = match &recent {
                Recent::Numbers(r) if !near_raw_horizon(horizons, from) && self.disk_numbers(conn, mark, *id, from, to, &mut blobs)? => Some(r),
                _ => None,
            };
            match numeric {
                Some(r) => {
                    // Usually each blob's window follows the last one's: handed over as they
                    // are in the cache, not copied and sorted.
                    let pieces: Vec<&[(i64, f64)]> = blobs.iter().filter_map(|d| d.window(from, to)).filter(|w| !w.is_empty()).collect();
                    let in_order = pieces.len() == blobs.len() && r.is_empty() && pieces.windows(2).all(|w| w[0].last().map(|l| l.0) < w[1].first().map(|f| f.0));
                    if in_order {
                        each(i, &pieces);
                        continue;
                    }
                    buf.clear();
                    for d in &blobs {
                        d.window_into(from, to, &mut buf);
                    }
                    buf.extend_from_slice(r);
                    sort_dedup_numbers(&mut buf);
                }
                None => {
                    buf.clear();
                    general_read(conn, horizons, *id, from, to, recent.into_values(), &mut buf)?;
                }
            }
            each(i, &[&buf]);
        }
        Ok(())
    }

    /// `id`'s blocks and chunks overlapping the window, decoded, in write order (blocks, then
    /// chunks); false, with `out` left partial, if a blob holds text. Blobs come
    /// from the cache when their rows are unchanged, else are read and decoded.
    fn disk_numbers(&self, conn: &Connection, mark: u64, id: SeriesId, from: i64, to: i64, out: &mut Vec<Arc<Decoded>>) -> Result<bool, StoreError> {
        let sid = i64::from(id);
        for (table, rows, one) in [
            (Table::Blocks, "SELECT rowid, 0, t_max, n, length(data) FROM blocks WHERE series_id = ?1 AND t_max >= ?2 AND t_min <= ?3 ORDER BY rowid", "SELECT data FROM blocks WHERE rowid = ?1"),
            (Table::Chunks, "SELECT rowid, fmt, t_max, n, length(data) FROM chunks WHERE series_id = ?1 AND t_max >= ?2 AND t_min <= ?3 ORDER BY rowid", "SELECT data FROM chunks WHERE rowid = ?1"),
        ] {
            let mut st = conn.prepare_cached(rows)?;
            let mut q = st.query(params![sid, from, to])?;
            while let Some(r) = q.next()? {
                let rowid: i64 = r.get(0)?;
                let meta = RowMeta { series: sid, fmt: r.get(1)?, t_max: r.get(2)?, n: r.get(3)?, len: r.get(4)? };
                let key = (table, rowid);
                let d = match self.blob_cache.get(key, meta) {
                    Some(d) => d,
                    None => {
                        let mut blob_st = conn.prepare_cached(one)?;
                        let mut bq = blob_st.query(params![rowid])?;
                        let Some(br) = bq.next()? else { return Err(CorruptRecord("a blob row vanished inside a read transaction").into()) };
                        // Borrowed from SQLite's row, not copied.
                        let ValueRef::Blob(blob) = br.get_ref(0)? else { return Err(CorruptRecord("a blob column holds no blob").into()) };
                        let Some(samples) = decode_numbers(table, meta.fmt, blob)? else { return Ok(false) };
                        let sorted = samples.windows(2).all(|w| w[0].0 < w[1].0);
                        let d = Arc::new(Decoded { meta, samples: samples.into(), sorted });
                        self.blob_cache.put(key, d.clone(), mark);
                        d
                    }
                };
                out.push(d);
            }
        }
        Ok(true)
    }
}

/// Whether roll-ups take part in a read from `from` (`read::read_in_tx`'s rule).
fn near_raw_horizon(h: Horizons, from: i64) -> bool {
    h.raw_from != i64::MIN && from < h.raw_from.saturating_add(rollup::HOUR)
}

/// The general read (`read::read_in_tx`), kept to the window and to numbers.
fn general_read(conn: &Connection, h: Horizons, id: SeriesId, from: i64, to: i64, recent: Vec<(i64, Value)>, out: &mut Vec<(i64, f64)>) -> Result<(), StoreError> {
    for (t, v) in read::read_in_tx(conn, h, id, from, to, recent)? {
        if let (true, Some(v)) = ((from..=to).contains(&t), v.as_f64()) {
            out.push((t, v));
        }
    }
    Ok(())
}

/// A blob's samples as numbers, in stored order; `None` if it holds text.
fn decode_numbers(table: Table, fmt: i64, blob: &[u8]) -> Result<Option<Vec<(i64, f64)>>, CorruptRecord> {
    if table == Table::Blocks {
        if let Some((ts, vs)) = codec::decode_block_columns(blob)? {
            return Ok(Some(ts.into_iter().zip(vs).collect()));
        }
    } else if fmt == head::FMT_PACKED {
        let mut out = Vec::new();
        let numeric = packed_numbers(blob, |t, v| out.push((t, v)))?;
        return Ok(numeric.then_some(out));
    }
    // The older plain layouts, rare: through `Value`.
    let mut values = Vec::new();
    if table == Table::Blocks {
        codec::decode_block(blob, &mut values)?;
    } else {
        codec::decode_chunk_fmt(fmt, blob, &mut values)?;
    }
    Ok(values.into_iter().map(|(t, v)| v.as_f64().map(|f| (t, f))).collect())
}

/// Walks a `FMT_PACKED` chunk blob's samples as numbers; false at the first text sample.
fn packed_numbers(data: &[u8], mut each: impl FnMut(i64, f64)) -> Result<bool, CorruptRecord> {
    let mut r = Reader::new(data);
    let n = r.uvarint()? as usize;
    head::walk_body(r.rest(), n, |t, v| match v {
        head::Packed::Num(f) => {
            each(t, f);
            true
        }
        head::Packed::Text(_) => false,
    })
}

/// `sort_dedup` for numbers: sorted by time, the last written of equal timestamps kept.
fn sort_dedup_numbers(samples: &mut Vec<(i64, f64)>) {
    if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
        // Stable: among equal timestamps, write order is kept, so the last write wins below.
        samples.sort_by_key(|(t, _)| *t);
        let mut kept = 0;
        for i in 0..samples.len() {
            if kept > 0 && samples[kept - 1].0 == samples[i].0 {
                samples[kept - 1] = samples[i];
            } else {
                samples[kept] = samples[i];
                kept += 1;
            }
        }
        samples.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::HOUR;
    use crate::{Retention, Selector};
    use kilowatch_model::{Point, Timestamp};

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_790_812_800 * S;

    /// What the general read gives inside the window, less text, bit for bit.
    fn general(s: &Store, id: SeriesId, from: i64, to: i64) -> Vec<(i64, u64)> {
        let all = s.read_with_neighbours(id, from, to).expect("read");
        all.into_iter().filter(|(t, _)| (from..=to).contains(t)).filter_map(|(t, v)| v.as_f64().map(|f| (t, f.to_bits()))).collect()
    }

    fn assert_same(s: &Store, what: &str) {
        let ids: Vec<SeriesId> = s.series_where(|_| true).expect("series").iter().map(|m| m.id).collect();
        let windows =
            [(T0, T0 + 4 * HOUR), (T0 + 3 * HOUR + 55 * 60 * S, T0 + 4 * HOUR), (T0 + 90 * S, T0 + 95 * S), (T0 + HOUR - 7 * S, T0 + HOUR + 3 * S), (0, i64::MAX), (T0 + 10 * HOUR, T0 + 11 * HOUR)];
        for (from, to) in windows {
            // Twice: the second read is served from the cache.
            for _ in 0..2 {
                let mut got = vec![Vec::new(); ids.len()];
                s.read_many_numeric(&ids, from, to, |i, r| got[i] = r.iter().flat_map(|p| p.iter()).map(|(t, v)| (*t, v.to_bits())).collect()).expect("numeric");
                for (id, g) in ids.iter().zip(&got) {
                    assert_eq!(g, &general(s, *id, from, to), "{what}: series {id}, window {from}..={to}");
                }
            }
        }
    }

    fn power(t: i64, v: f64) -> Point {
        Point::new("gpu", Timestamp(t)).tag("gpu", "0").field("power_w", v)
    }

    #[test]
    fn numeric_reads_equal_the_general_read_through_checkpoints_compaction_expiry_and_deletes() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        let mode = |t: i64, m: &str| Point::new("cooling", Timestamp(t)).tag("unit", "c1").field("mode", m).field("flow", 3.5);
        for h in 0..4 {
            let pts: Vec<Point> = (0..3600).map(|i| power(T0 + (h * 3600 + i) * S, ((h * 3600 + i) as f64).sin() * 300.0 + 400.0)).collect();
            s.write(&pts).expect("write");
            s.write(&[mode(T0 + h * HOUR + 5 * S, if h % 2 == 0 { "evaporative" } else { "chiller" })]).expect("write");
            // Late and repeated timestamps: the last write wins.
            s.write(&[power(T0 + h * HOUR + 92 * S, -1.0), power(T0 + h * HOUR + 92 * S, f64::NAN), power(T0 + h * HOUR + 93 * S, 7.25)]).expect("write");
            assert_same(&s, "heads");
            s.checkpoint().expect("checkpoint");
            assert_same(&s, "chunks");
        }
        s.write(&[power(T0 + 4 * HOUR + 10 * S, 1.0), power(T0 + 3 * HOUR + 30 * S, 2.0)]).expect("write");
        assert_same(&s, "chunks and heads");
        let keep = Retention { raw: 2 * HOUR, minute: 3 * HOUR, hour: None };
        s.maintain(&keep, i64::MAX).expect("maintain");
        assert!(s.horizons().expect("h").raw_from > T0, "raw samples expired");
        assert_same(&s, "blocks, roll-ups");
        assert!(s.stats().expect("stats").read_cache_bytes > 0);
        let sel = Selector { measurement: "gpu".into(), tags: Vec::new(), field: Some("power_w".into()), from: T0 + 3 * HOUR + 100 * S, to: Some(T0 + 3 * HOUR + 200 * S) };
        s.delete(&sel).expect("delete");
        assert_same(&s, "after a delete");
        s.checkpoint().expect("checkpoint");
        s.maintain(&keep, i64::MAX).expect("maintain");
        assert_same(&s, "after a second pass");
    }

    #[test]
    fn a_blob_rewritten_under_a_reused_rowid_is_decoded_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        s.write(&[power(T0, 1.0), power(T0 + S, 2.0)]).expect("write");
        s.checkpoint().expect("checkpoint");
        assert_same(&s, "first");
        // The same rowid, other bytes: what a deletion and a new insert may leave.
        // The same rowid, series, end, count and length, other bytes: only the update hook
        // tells the cache.
        let (old, new) = (head_chunk(&[(T0, 1.0), (T0 + S, 2.0)]), head_chunk(&[(T0, 1.5), (T0 + S, 2.0)]));
        assert!(old.len() == new.len() && old != new);
        s.writer().expect("writer").execute("UPDATE chunks SET data = ?1", params![new]).expect("update");
        let id = s.series_where(|_| true).expect("series")[0].id;
        let mut got = Vec::new();
        s.read_many_numeric(&[id], 0, i64::MAX, |_, r| got = r.concat()).expect("read");
        assert_eq!(got, vec![(T0, 1.5), (T0 + S, 2.0)]);
    }

    /// A read whose snapshot may predate a change the writer is making keeps nothing.
    #[test]
    fn reads_while_the_writer_is_held_keep_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(dir.path()).expect("open");
        s.write(&[power(T0, 1.0), power(T0 + S, 2.0)]).expect("write");
        s.checkpoint().expect("checkpoint");
        let id = s.series_where(|_| true).expect("series")[0].id;
        let read = |s: &Store| s.read_many_numeric(&[id], 0, i64::MAX, |_, r| assert_eq!(r.concat().len(), 2)).expect("read");
        {
            let _held = s.writer().expect("writer");
            read(&s);
            assert_eq!(s.stats().expect("stats").read_cache_bytes, 0);
        }
        read(&s);
        assert!(s.stats().expect("stats").read_cache_bytes > 0);
    }

    fn head_chunk(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut h = head::Head::default();
        for (t, v) in samples {
            h.push(*t, &Value::Num(*v));
        }
        h.segments[0].to_chunk()
    }
}
