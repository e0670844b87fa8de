//! kilowatch-store: keeps the samples (store.db) and the job ledger (jobs.db) and answers reads
//! over them. No HTTP, no configuration files: callers hand it a `WritePolicy` and `Retention`.
//!
//! The embedded store. Every accepted write is first appended, whole, to the write-ahead log
//! (`wal.rs`: the request body as received, synced before the write is acknowledged), then
//! applied to in-memory heads, compressed as samples arrive (`head.rs`, `write.rs`). A
//! checkpoint swaps the heads out, writes them as chunks in the layout they already have and
//! deletes the log segments they covered (`checkpoint.rs`); ingest and reads go on meanwhile.
//! Maintenance rolls hours up, compacts chunks into blocks and expires old data (`maintain.rs`,
//! `rollup.rs`). Reads merge roll-up readings, blocks, chunks and heads (`read.rs`).
//!
//! Locks: `inner` guards the in-memory state, and is held for memory work only (no disk
//! write, no sync, no disk read on the hot paths: reads pin a snapshot on a pooled connection
//! under it, then read store.db outside it, `read.rs`). `writer` serialises the transactions that write
//! store.db (checkpoints, maintenance, deletions, edges) on their own connection; it is taken
//! before `inner`, never after.
//!
//! Why not one SQLite row per sample: measured here, interleaved inserts of 10,000 series run at
//! about 60,000 rows/s, a sixth of what one DC5 site sends at 1 Hz; a request row plus a chunk
//! row per series and checkpoint is a few thousand rows a minute instead.
//!
//! Idempotence: a sample is keyed by (series, timestamp). A replayed request lands on the same
//! keys and replaces the same values, in the heads at once and in chunks when they are read
//! (later writes win).

mod checkpoint;
mod codec;
mod delete;
mod head;
pub mod jobs;
mod ledger;
mod load;
mod maintain;
mod names;
mod newest;
mod numeric;
pub mod progress;
mod read;
mod record;
pub mod rollup;
pub mod snapshot;
mod wal;
mod write;

pub use checkpoint::{MemoryUse, RETRY_MAX_S, RETRY_MIN_S};
pub use names::{Name, Tags};
pub use record::Body;

pub use delete::{Deleted, Selector};
pub use maintain::{MaintenanceReport, OnRolled, Retention};
use write::WriteState;
pub use write::{Refusal, SERIES_BYTES, WritePolicy};

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use kilowatch_model::{Lines, Point};
use rusqlite::Connection;
use serde::Serialize;

pub type SeriesId = u32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Text(String),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(v) => Some(*v),
            Value::Text(_) => None,
        }
    }
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            Value::Num(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Corrupt(#[from] codec::CorruptRecord),
    #[error("the store's lock was poisoned by a panic in another thread")]
    Poisoned,
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(
        "the store holds {used} bytes of series and recent samples ({series} series, {heads} bytes of samples waiting for a checkpoint), over its budget of {budget} bytes ([store] memory_budget_mb); writes resume once a checkpoint has written the samples out"
    )]
    OverBudget { used: usize, budget: usize, heads: usize, series: usize },
}

/// A series' tags and its newest sample, if any ([`Store::latest_of`]).
pub type TaggedLatest = (Arc<Tags>, Option<(i64, Value)>);

/// What identifies one stored series: a measurement, its tags and one field.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesMeta {
    pub id: SeriesId,
    #[serde(serialize_with = "name_str")]
    pub measurement: Name,
    /// Shared by the series of one tag set (a GPU's ten fields hold one, not ten), its names
    /// shared by the whole store (`names.rs`).
    #[serde(serialize_with = "shared_tags")]
    pub tags: Arc<Tags>,
    #[serde(serialize_with = "name_str")]
    pub field: Name,
}

fn name_str<S: serde::Serializer>(v: &Name, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn shared_tags<S: serde::Serializer>(v: &Arc<Tags>, s: S) -> Result<S::Ok, S::Error> {
    v.as_ref().serialize(s)
}

impl SeriesMeta {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    pub series: usize,
    pub head_samples: usize,
    /// Bytes the heads hold (compressed samples since the last checkpoint, and those a
    /// checkpoint is writing).
    pub head_bytes: usize,
    /// What the memory budget counts ([`WritePolicy::memory_budget_bytes`]), and the budget.
    pub memory_bytes: usize,
    pub memory_budget_bytes: Option<usize>,
    /// Bytes of decoded blocks and chunks kept for reads (bounded on its own, not part of
    /// `memory_bytes`: a full cache evicts, it never refuses a write).
    pub read_cache_bytes: usize,
    /// Requests in the write-ahead log since the last checkpoint.
    pub log_records: u64,
    /// Log segments that ended in a torn record when the store was opened (a crash mid-write).
    pub log_torn_segments: u64,
    pub samples_written: u64,
    pub requests_written: u64,
    pub checkpoints: u64,
    pub newest_ts: Option<i64>,
    /// Where raw samples and each roll-up begin and end.
    pub horizons: Horizons,
    pub maintenance_passes: u64,
    pub maintenance_failures: u64,
    pub last_maintenance: Option<MaintenanceReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteSummary {
    /// Lines stored.
    pub points: usize,
    pub samples: usize,
    pub new_series: usize,
    /// Lines refused by the write policy, in request order; the others were stored.
    pub refused: Vec<Refusal>,
}

pub struct Store {
    path: PathBuf,
    inner: Mutex<Inner>,
    wal: wal::Wal,
    /// The connection that writes store.db outside `inner` (see the module's note on locks).
    writer: Mutex<Connection>,
    /// Told how long each acquisition of `inner` waited, once set (the aggregator's metrics).
    lock_wait: OnceLock<LockWaitObserver>,
    /// The connections reads run on, outside `inner` (`read.rs`).
    readers: read::Readers,
    /// Decoded blocks and chunks the numeric read path keeps (`numeric.rs`).
    blob_cache: Arc<numeric::BlobCache>,
    /// Set by [`Store::stop_maintenance`]: maintenance stops at its next unit of work.
    stopping: std::sync::atomic::AtomicBool,
    /// Recent checkpoints' sizes and durations (`Retry-After` for writers over the budget).
    pace: checkpoint::Pace,
}

/// Called with how long an acquisition of the store's lock waited.
pub type LockWaitObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;

struct Inner {
    /// Opens the store, and serves deletions and maintenance's look at the oldest samples;
    /// reads have their own connections.
    conn: Connection,
    /// The names of every series, and the index from a line's names to its series.
    names: names::Names,
    /// The series of each measurement and field, in id order: `find_series` looks at these
    /// instead of every series (the GPU page of 10,000 GPUs reads 4 fields of 130,000 series).
    by_field: HashMap<(String, String), Vec<SeriesId>>,
    meta: Vec<SeriesMeta>,
    /// Samples since the last checkpoint, per series, compressed, in arrival order (sorted and
    /// de-duplicated when read: appending is what keeps ingest cheap).
    heads: Vec<head::Head>,
    /// Heads a checkpoint took and is writing (or failed to write: the next one retries), oldest
    /// first, indexed by series. Reads see them until their chunks are committed.
    flushing: Vec<Arc<Vec<head::Head>>>,
    /// Series below this index are in the `series` table; the others were created since the
    /// last checkpoint (the log recreates them after a crash).
    persisted_series: usize,
    last: Vec<Option<(i64, Value)>>,
    /// Series whose `last` changed since the last checkpoint: the only ones it writes
    /// (`last_flag` marks them, so that a sample costs no set insertion).
    last_changed: Vec<SeriesId>,
    last_flag: Vec<bool>,
    /// Size of what store.db holds of `last` (newest.rs).
    newest_log: newest::LogSize,
    /// Bytes and samples held by `heads`, and by `flushing`.
    head_bytes: usize,
    flushing_bytes: usize,
    flushing_samples: usize,
    stats: StoreStats,
    horizons: Horizons,
    /// Hours already rolled up that received samples since, to roll up again.
    dirty: BTreeSet<i64>,
    /// Counts applied writes; `hour_seq` holds, per hour of sample time, the count at the last
    /// write into it. Cached answers over a past window stay valid while no write touches it.
    write_seq: u64,
    hour_seq: HashMap<i64, u64>,
    write: WriteState,
    /// The oldest sample in store.db, once looked up (`None`: to look up), kept by checkpoints
    /// (the heads hold the rest: `recent_min`); what maintenance starts from before its first
    /// roll-up. Looking it up reads every chunk.
    oldest_known: Option<Option<i64>>,
}

/// Where each resolution of the store begins and ends, ns. Before `raw_from` raw samples have
/// been deleted and reads use roll-ups; minute roll-ups exist from `minute_from` and hour
/// roll-ups from `hour_from`, up to `rolled_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Horizons {
    pub rolled_to: Option<i64>,
    #[serde(serialize_with = "none_if_min")]
    pub raw_from: i64,
    #[serde(serialize_with = "none_if_min")]
    pub minute_from: i64,
    #[serde(serialize_with = "none_if_min")]
    pub hour_from: i64,
}

/// `i64::MIN` means "nothing deleted yet": shown as null rather than a date in 1677.
fn none_if_min<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&(*v != i64::MIN).then_some(*v))
}

impl Default for Horizons {
    fn default() -> Self {
        Horizons { rolled_to: None, raw_from: i64::MIN, minute_from: i64::MIN, hour_from: i64::MIN }
    }
}

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
-- FULL: every commit syncs the WAL. A write is acknowledged (204) after its commit, and the
-- collector deletes its copy on the 204: with NORMAL a power loss could take back an
-- acknowledged commit. Cost measured in docs/performance.md (Durability).
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, measurement TEXT NOT NULL, tags TEXT NOT NULL, field TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY, rows BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(series_id INTEGER NOT NULL, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_series_end ON chunks(series_id, t_max);
-- Newest samples as an older version kept them, a row per series: read when opening, emptied by
-- the first full row of `newest` (newest.rs).
CREATE TABLE IF NOT EXISTS last_values(series_id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, data BLOB NOT NULL);
-- Chunks by end time cost every checkpoint an index insert a series, a seventh of its time at
-- high cardinality. Only maintenance asked by time, once an hour, over chunks that it compacts
-- into blocks every hour: it scans them instead.
DROP INDEX IF EXISTS chunks_by_end;
CREATE TABLE IF NOT EXISTS blocks(series_id INTEGER NOT NULL, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_by_series_end ON blocks(series_id, t_max);
CREATE INDEX IF NOT EXISTS blocks_by_end ON blocks(t_max);
CREATE TABLE IF NOT EXISTS rollups(series_id INTEGER NOT NULL, level INTEGER NOT NULL, t0 INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(series_id, level, t0)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_by_start ON rollups(level, t0);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dirty_hours(t INTEGER PRIMARY KEY);
-- Energy of a series from the start of an hour to an instant inside it (a job's start or end),
-- computed from the raw samples when the hour was rolled up: windows cut there stay exact
-- after the raw samples expire (ledger.rs).
CREATE TABLE IF NOT EXISTS edges(series_id INTEGER NOT NULL, t INTEGER NOT NULL, e REAL NOT NULL, PRIMARY KEY(series_id, t)) WITHOUT ROWID;
";

/// Sorts by time and keeps the last write of each timestamp.
fn sort_dedup(samples: &mut Vec<(i64, Value)>) {
    if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
        // Stable: among equal timestamps, write order is kept, so the last write wins below.
        samples.sort_by_key(|(t, _)| *t);
        let mut out: Vec<(i64, Value)> = Vec::with_capacity(samples.len());
        for s in samples.drain(..) {
            match out.last_mut() {
                Some(l) if l.0 == s.0 => *l = s,
                _ => out.push(s),
            }
        }
        *samples = out;
    }
}

fn open_conn(path: &Path, cache_kib: i64) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open { path: path.to_owned(), source };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size={cache_kib};")).map_err(open_err)?;
    // Two connections write store.db one at a time (the writer mutex orders them); the wait is
    // a safety net, not a schedule.
    conn.busy_timeout(std::time::Duration::from_secs(60)).map_err(open_err)?;
    // Ingest, checkpoints, reads and maintenance use a few dozen statements: the default
    // cache of 16 evicted them and re-parsed SQL took a tenth of a maintenance pass.
    conn.set_prepared_statement_cache_capacity(64);
    // Without the query planner stability guarantee, SQLite (built with STAT4) re-plans a
    // cached statement each time a bound time range changes: a sixth of a read's time.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(open_err)?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) `store.db` in `dir` and replays any request log left by a crash.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })?;
        let path = dir.join("store.db");
        // Reads do not use this connection (they have `readers`): a small cache.
        let mut conn = open_conn(&path, -4096)?;
        conn.execute_batch(SCHEMA).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        conn.execute_batch(newest::SCHEMA).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        // Chunks written before heads were kept compressed have fmt 0.
        let has_fmt =
            conn.prepare("SELECT 1 FROM pragma_table_info('chunks') WHERE name = 'fmt'").and_then(|mut st| st.exists([])).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        if !has_fmt {
            conn.execute_batch("ALTER TABLE chunks ADD COLUMN fmt INTEGER NOT NULL DEFAULT 0").map_err(|source| StoreError::Open { path: path.clone(), source })?;
        }
        // The writer's cache (8 MB) holds what checkpoints and compaction touch: they write
        // more than they read again; reads keep the larger one.
        let mut writer = open_conn(&path, -8192)?;
        // The two connections that change chunks and blocks tell the read cache which rows.
        let blob_cache = Arc::new(numeric::BlobCache::new());
        blob_cache.watch(&mut conn)?;
        blob_cache.watch(&mut writer)?;
        let (wal, replay) = wal::Wal::open(&dir.join("wal"))?;
        let mut inner = Inner {
            conn,
            names: names::Names::default(),
            by_field: HashMap::new(),
            meta: Vec::new(),
            heads: Vec::new(),
            flushing: Vec::new(),
            persisted_series: 0,
            last: Vec::new(),
            last_changed: Vec::new(),
            last_flag: Vec::new(),
            newest_log: newest::LogSize::default(),
            head_bytes: 0,
            flushing_bytes: 0,
            flushing_samples: 0,
            stats: StoreStats::default(),
            horizons: Horizons::default(),
            dirty: BTreeSet::new(),
            write_seq: 0,
            hour_seq: HashMap::new(),
            write: WriteState::default(),
            oldest_known: None,
        };
        inner.load(replay)?;
        let readers = read::Readers::new(&path);
        Ok(Store { path, inner: Mutex::new(inner), wal, writer: Mutex::new(writer), lock_wait: OnceLock::new(), readers, blob_cache, stopping: Default::default(), pace: Default::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Has `observe` told how long each later acquisition of the store's lock waited (zero when
    /// it was free). Only the first observer set is kept.
    pub fn observe_lock_wait(&self, observe: LockWaitObserver) {
        let _ = self.lock_wait.set(observe);
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        let Some(observe) = self.lock_wait.get() else {
            return self.inner.lock().map_err(|_| StoreError::Poisoned);
        };
        // A free lock costs no clock read.
        match self.inner.try_lock() {
            Ok(g) => {
                observe(std::time::Duration::ZERO);
                Ok(g)
            }
            Err(std::sync::TryLockError::Poisoned(_)) => Err(StoreError::Poisoned),
            Err(std::sync::TryLockError::WouldBlock) => {
                let t0 = std::time::Instant::now();
                let g = self.inner.lock().map_err(|_| StoreError::Poisoned);
                observe(t0.elapsed());
                g
            }
        }
    }

    /// The connection that writes store.db, for a transaction outside `inner`. Take it before
    /// `inner`, never while holding it.
    fn writer(&self) -> Result<numeric::Writer<'_>, StoreError> {
        let guard = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(numeric::Writer::new(guard, &self.blob_cache))
    }

    /// Stores the lines the write policy accepts, and reports the others in
    /// [`WriteSummary::refused`]. What is stored is in the write-ahead log, synced, when this
    /// returns; a failed write stored nothing.
    pub fn write(&self, points: &[Point]) -> Result<WriteSummary, StoreError> {
        self.write_lines(&Lines::from_points(points))
    }

    /// [`Store::write`] for lines built from points (logged as names and values).
    pub fn write_lines(&self, lines: &Lines<'_>) -> Result<WriteSummary, StoreError> {
        self.write_logged(lines, None, "")
    }

    /// [`Store::write_lines`] for `writer`'s new-series allowance: a request of which some lines
    /// could not be parsed is logged as the lines it kept, since its body no longer is what
    /// they are; remote write's lines, built without text, are logged the same way (record
    /// kind `POINTS`, which every version replays).
    pub fn write_lines_by(&self, lines: &Lines<'_>, writer: &str) -> Result<WriteSummary, StoreError> {
        self.write_logged(lines, None, writer)
    }

    /// [`Store::write`] for a request body and the lines `parse_batch` made of it: the body
    /// itself is logged, so `lines` must be what `body` parses to. `writer` names the token,
    /// for its new-series allowance.
    pub fn write_body(&self, body: &Body<'_>, lines: &Lines<'_>, writer: &str) -> Result<WriteSummary, StoreError> {
        self.write_logged(lines, Some(body), writer)
    }

    fn write_logged(&self, lines: &Lines<'_>, body: Option<&Body<'_>>, writer: &str) -> Result<WriteSummary, StoreError> {
        let (summary, pos) = self.lock()?.write_lines(lines, body, writer, &self.wal)?;
        // Outside the lock: reads and other writes go on while the disk syncs, and writes
        // that wait together share one sync.
        if let Some(pos) = pos {
            self.wal.sync(pos)?;
        }
        Ok(summary)
    }

    /// Refuses, from now on, lines with a sample more than `window` older than the newest
    /// sample of its series (`None`: any age is accepted, the default).
    pub fn set_out_of_order_window(&self, window: Option<std::time::Duration>) -> Result<(), StoreError> {
        self.lock()?.write.policy.out_of_order_window_ns = window.map(|w| i64::try_from(w.as_nanos()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// What writes refuse from now on (default: nothing).
    pub fn set_policy(&self, policy: WritePolicy) -> Result<(), StoreError> {
        self.lock()?.write.policy = policy;
        Ok(())
    }

    pub fn policy(&self) -> Result<WritePolicy, StoreError> {
        Ok(self.lock()?.write.policy)
    }

    /// "Now" for live views, ns: the newest sample, which runs ahead of the clock in a fast
    /// demo, but never later than the wall clock plus the allowed skew when one is set (a sample
    /// from the future must not move the whole site's "now"). The wall clock when empty.
    pub fn live_now(&self) -> Result<i64, StoreError> {
        let g = self.lock()?;
        let wall = kilowatch_model::Timestamp::now().0;
        Ok(match (g.stats.newest_ts, g.write.policy.max_future_skew_ns) {
            (Some(n), Some(skew)) => n.min(wall.saturating_add(skew)),
            (Some(n), None) => n,
            (None, _) => wall,
        })
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let g = self.lock()?;
        let mut s = g.stats.clone();
        s.series = g.meta.len();
        s.head_bytes = g.head_bytes + g.flushing_bytes;
        s.memory_bytes = g.memory_bytes();
        s.memory_budget_bytes = g.write.policy.memory_budget_bytes;
        s.horizons = g.horizons;
        drop(g);
        s.read_cache_bytes = self.blob_cache.bytes();
        Ok(s)
    }

    /// Series whose measurement and field match, and whose tags include every `(k, v)` given.
    pub fn find_series(&self, measurement: &str, field: &str, tags: &[(&str, &str)]) -> Result<Vec<SeriesMeta>, StoreError> {
        let g = self.lock()?;
        let Some(ids) = g.by_field.get(&(measurement.to_owned(), field.to_owned())) else { return Ok(Vec::new()) };
        Ok(ids.iter().filter_map(|id| g.meta.get(*id as usize)).filter(|m| tags.iter().all(|(k, v)| m.tag(k) == Some(v))).cloned().collect())
    }

    /// Every series `keep` accepts, whatever its measurement and field: what a query by labels
    /// alone (PromQL's `{job="x"}`, the label listings) looks through.
    pub fn series_where(&self, keep: impl Fn(&SeriesMeta) -> bool) -> Result<Vec<SeriesMeta>, StoreError> {
        let g = self.lock()?;
        Ok(g.meta.iter().filter(|m| keep(m)).cloned().collect())
    }

    /// The tags and newest sample of every series of a measurement and field, in one look:
    /// what a page of every GPU's latest reading needs, without copying each series' names.
    pub fn latest_of(&self, measurement: &str, field: &str) -> Result<Vec<TaggedLatest>, StoreError> {
        let g = self.lock()?;
        let Some(ids) = g.by_field.get(&(measurement.to_owned(), field.to_owned())) else { return Ok(Vec::new()) };
        Ok(ids.iter().filter_map(|id| Some((g.meta.get(*id as usize)?.tags.clone(), g.last.get(*id as usize).cloned().flatten()))).collect())
    }

    /// Newest sample of each series passed, in the same order.
    pub fn latest(&self, ids: &[SeriesId]) -> Result<Vec<Option<(i64, Value)>>, StoreError> {
        let g = self.lock()?;
        Ok(ids.iter().map(|id| g.last.get(*id as usize).cloned().flatten()).collect())
    }

    /// Samples with `from <= ts <= to`, plus the nearest sample on each side of the range when
    /// there is one, sorted, one per timestamp. The neighbours let callers interpolate at the
    /// range's edges.
    pub fn read_with_neighbours(&self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, Value)>, StoreError> {
        self.read_pinned(id, from, to)
    }

    /// Roll-up buckets of a series starting in `[from, to)`, sorted. Only what has been rolled
    /// up (before `horizons().rolled_to`) is there.
    pub fn read_rollups(&self, id: SeriesId, level: rollup::Level, from: i64, to: i64) -> Result<Vec<rollup::Bucket>, StoreError> {
        let snap = self.readers.begin()?;
        let mut out = Vec::new();
        for (t0, data) in read::rollup_rows(snap.conn(), id, level, from, to, false)? {
            rollup::decode_row(t0, level.step(), &data, &mut out)?;
        }
        out.retain(|b| b.t >= from && b.t < to);
        Ok(out)
    }

    /// A mark to pass to [`Store::written_since`] later.
    pub fn write_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.write_seq)
    }

    /// Whether a write since `seq` had samples in `[from, to]` (to the hour).
    pub fn written_since(&self, from: i64, to: i64, seq: u64) -> Result<bool, StoreError> {
        let g = self.lock()?;
        let (a, b) = (from.div_euclid(rollup::HOUR), to.div_euclid(rollup::HOUR));
        Ok(if (b - a) as usize > g.hour_seq.len() { g.hour_seq.iter().any(|(h, s)| *s > seq && (a..=b).contains(h)) } else { (a..=b).any(|h| g.hour_seq.get(&h).is_some_and(|s| *s > seq)) })
    }

    /// The hours (their starts, ns) in `[from, to)` that a write since `seq` touched, sorted:
    /// what a reader that keeps closed hours must fetch again. Counted since this process
    /// started (see [`Store::write_seq`]).
    pub fn hours_written_since(&self, from: i64, to: i64, seq: u64) -> Result<Vec<i64>, StoreError> {
        let g = self.lock()?;
        let mut hours: Vec<i64> = g.hour_seq.iter().filter(|(h, s)| **s > seq && (from..to).contains(&(**h * rollup::HOUR))).map(|(h, _)| h * rollup::HOUR).collect();
        hours.sort_unstable();
        Ok(hours)
    }

    pub fn horizons(&self) -> Result<Horizons, StoreError> {
        Ok(self.lock()?.horizons)
    }
}

pub use codec::CorruptRecord;

#[cfg(test)]
mod tests;
