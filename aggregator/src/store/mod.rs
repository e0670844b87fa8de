//! The embedded store. Every accepted write is first appended, whole, to a request log in
//! SQLite (one row per request, WAL mode: durable against a crash of the process), then applied
//! to in-memory heads, one sorted map per series. A checkpoint moves the heads into per-series
//! chunks and empties the log in one transaction. Reads merge chunks and heads.
//!
//! Why not one SQLite row per sample: measured here, interleaved inserts of 10,000 series run at
//! about 60,000 rows/s, a sixth of what one DC5 site sends at 1 Hz; a request row plus a chunk
//! row per series and checkpoint is a few thousand rows a minute instead.
//!
//! Idempotence: a sample is keyed by (series, timestamp). A replayed request lands on the same
//! keys and replaces the same values, in the heads at once and in chunks when they are read
//! (later writes win).

mod codec;
mod maintain;
pub mod rollup;

pub use maintain::{MaintenanceReport, Retention};

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kilowatch_model::{FieldValueRef, Labels, Lines, Point, Timestamp};
use rusqlite::{Connection, params};
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
    /// A sample further behind its series' newest sample than the out-of-order window allows.
    #[error(
        "line {line}: {series} at {ts} is older than the out-of-order window allows: the series already has a sample at {newest}, and samples more than {window_s} s older than that are refused"
    )]
    TooOld { line: usize, series: String, ts: String, newest: String, window_s: u64 },
}

/// What identifies one stored series: a measurement, its tags and one field.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesMeta {
    pub id: SeriesId,
    pub measurement: String,
    pub tags: Labels,
    pub field: String,
}

impl SeriesMeta {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    pub series: usize,
    pub head_samples: usize,
    pub log_records: u64,
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteSummary {
    pub points: usize,
    pub samples: usize,
    pub new_series: usize,
}

pub struct Store {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    conn: Connection,
    by_key: HashMap<String, SeriesId>,
    meta: Vec<SeriesMeta>,
    /// Samples since the last checkpoint, per series, in arrival order (sorted and de-duplicated
    /// when read or checkpointed: appending is what keeps ingest cheap).
    heads: Vec<Vec<(i64, Value)>>,
    last: Vec<Option<(i64, Value)>>,
    stats: StoreStats,
    horizons: Horizons,
    /// Hours already rolled up that received samples since, to roll up again.
    dirty: BTreeSet<i64>,
    /// Counts applied writes; `hour_seq` holds, per hour of sample time, the count at the last
    /// write into it. Cached answers over a past window stay valid while no write touches it.
    write_seq: u64,
    hour_seq: HashMap<i64, u64>,
    write: WriteState,
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

/// What only the write path uses: the out-of-order window, caches that spare it building a key
/// per field, and buffers kept between requests.
#[derive(Default)]
struct WriteState {
    /// Samples more than this many nanoseconds older than their series' newest are refused.
    window_ns: Option<i64>,
    /// Timestamp of each series' newest sample (`last`), i64::MIN for none; during a write it
    /// runs ahead of `last` and is put back if the write fails.
    newest: Vec<i64>,
    /// A line's series text as sent (or its canonical key prefix) → the series of its fields.
    /// Only a cache in front of `by_key`: cleared when a failed write takes series back.
    groups_by_text: HashMap<Box<str>, u32>,
    groups: Vec<Vec<(Box<str>, SeriesId)>>,
    rows: Vec<(SeriesId, i64, Value)>,
    log: Vec<u8>,
}

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
-- 64 MiB of page cache instead of 2: the indexes of a DC5 store stay in memory, where page
-- reads took a quarter of a maintenance pass.
PRAGMA cache_size=-65536;
CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, measurement TEXT NOT NULL, tags TEXT NOT NULL, field TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY, rows BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(series_id INTEGER NOT NULL, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_series_end ON chunks(series_id, t_max);
CREATE TABLE IF NOT EXISTS last_values(series_id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_end ON chunks(t_max);
CREATE TABLE IF NOT EXISTS blocks(series_id INTEGER NOT NULL, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_by_series_end ON blocks(series_id, t_max);
CREATE INDEX IF NOT EXISTS blocks_by_end ON blocks(t_max);
CREATE TABLE IF NOT EXISTS rollups(series_id INTEGER NOT NULL, level INTEGER NOT NULL, t0 INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(series_id, level, t0)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_by_start ON rollups(level, t0);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dirty_hours(t INTEGER PRIMARY KEY);
";

/// Writes the part of a series key shared by all fields of a point into `k`.
// \u{1f} and \u{1e} separate the parts: a collision would need those control characters
// inside a name, and they keep the key cheap to build.
fn series_prefix<'t>(k: &mut String, measurement: &str, tags: impl IntoIterator<Item = (&'t str, &'t str)>) {
    k.clear();
    k.push_str(measurement);
    for (tk, tv) in tags {
        k.push('\u{1f}');
        k.push_str(tk);
        k.push('=');
        k.push_str(tv);
    }
    k.push('\u{1e}');
}

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

impl Store {
    /// Opens (or creates) `store.db` in `dir` and replays any request log left by a crash.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })?;
        let path = dir.join("store.db");
        let conn = Connection::open(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        conn.execute_batch(SCHEMA).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        // Ingest, checkpoints, reads and maintenance use a few dozen statements: the default
        // cache of 16 evicted them and re-parsed SQL took a tenth of a maintenance pass.
        conn.set_prepared_statement_cache_capacity(64);
        // Without the query planner stability guarantee, SQLite (built with STAT4) re-plans a
        // cached statement each time a bound time range changes: a sixth of a read's time.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let mut inner = Inner {
            conn,
            by_key: HashMap::new(),
            meta: Vec::new(),
            heads: Vec::new(),
            last: Vec::new(),
            stats: StoreStats::default(),
            horizons: Horizons::default(),
            dirty: BTreeSet::new(),
            write_seq: 0,
            hour_seq: HashMap::new(),
            write: WriteState::default(),
        };
        inner.load()?;
        Ok(Store { path, inner: Mutex::new(inner) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Stores a whole request or nothing: the log row and any new series commit together
    /// before the heads change.
    pub fn write(&self, points: &[Point]) -> Result<WriteSummary, StoreError> {
        self.write_lines(&Lines::from_points(points))
    }

    /// [`Store::write`] for a parsed request, without building owned points.
    pub fn write_lines(&self, lines: &Lines<'_>) -> Result<WriteSummary, StoreError> {
        self.lock()?.write_lines(lines)
    }

    /// Refuses, from now on, writes with a sample more than `window` older than the newest
    /// sample of its series (`None`: any age is accepted, the default).
    pub fn set_out_of_order_window(&self, window: Option<std::time::Duration>) -> Result<(), StoreError> {
        self.lock()?.write.window_ns = window.map(|w| i64::try_from(w.as_nanos()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Moves the heads into chunks and truncates the request log.
    pub fn checkpoint(&self) -> Result<usize, StoreError> {
        self.lock()?.checkpoint()
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let g = self.lock()?;
        let mut s = g.stats.clone();
        s.series = g.meta.len();
        s.horizons = g.horizons;
        Ok(s)
    }

    /// Series whose measurement and field match, and whose tags include every `(k, v)` given.
    pub fn find_series(&self, measurement: &str, field: &str, tags: &[(&str, &str)]) -> Result<Vec<SeriesMeta>, StoreError> {
        let g = self.lock()?;
        Ok(g.meta
            .iter()
            .filter(|m| m.measurement == measurement && m.field == field && tags.iter().all(|(k, v)| m.tag(k) == Some(v)))
            .cloned()
            .collect())
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
        self.lock()?.read(id, from, to)
    }

    /// Roll-up buckets of a series starting in `[from, to)`, sorted. Only what has been rolled
    /// up (before `horizons().rolled_to`) is there.
    pub fn read_rollups(&self, id: SeriesId, level: rollup::Level, from: i64, to: i64) -> Result<Vec<rollup::Bucket>, StoreError> {
        let mut g = self.lock()?;
        let mut out = Vec::new();
        for (t0, data) in g.rollup_rows(id, level, from, to, false)? {
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
        Ok(if (b - a) as usize > g.hour_seq.len() {
            g.hour_seq.iter().any(|(h, s)| *s > seq && (a..=b).contains(h))
        } else {
            (a..=b).any(|h| g.hour_seq.get(&h).is_some_and(|s| *s > seq))
        })
    }

    pub fn horizons(&self) -> Result<Horizons, StoreError> {
        Ok(self.lock()?.horizons)
    }
}

impl Inner {
    fn load(&mut self) -> Result<(), StoreError> {
        let mut rows: Vec<(i64, String, String, String, String)> = Vec::new();
        {
            let mut st = self.conn.prepare("SELECT id, key, measurement, tags, field FROM series ORDER BY id")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                rows.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?));
            }
        }
        for (id, key, measurement, tags, field) in rows {
            let tags: Labels = serde_json::from_str(&tags).map_err(|_| codec::CorruptRecord("series tags are not JSON"))?;
            let id = SeriesId::try_from(id).map_err(|_| codec::CorruptRecord("series id out of range"))?;
            if id as usize != self.meta.len() {
                return Err(codec::CorruptRecord("series ids are not dense").into());
            }
            self.by_key.insert(key, id);
            self.meta.push(SeriesMeta { id, measurement, tags, field });
            self.heads.push(Vec::new());
            self.last.push(None);
        }
        {
            let mut st = self.conn.prepare("SELECT series_id, ts, data FROM last_values")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let id: i64 = r.get(0)?;
                let ts: i64 = r.get(1)?;
                let data: Vec<u8> = r.get(2)?;
                let mut v = Vec::new();
                codec::decode_chunk(&data, &mut v)?;
                if let (Some(slot), Some((_, val))) = (self.last.get_mut(id as usize), v.pop()) {
                    *slot = Some((ts, val));
                    self.stats.newest_ts = self.stats.newest_ts.max(Some(ts));
                }
            }
        }
        {
            let mut st = self.conn.prepare("SELECT key, value FROM state")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let k: String = r.get(0)?;
                let v: i64 = r.get(1)?;
                match k.as_str() {
                    "rolled_to" => self.horizons.rolled_to = Some(v),
                    "raw_from" => self.horizons.raw_from = v,
                    "minute_from" => self.horizons.minute_from = v,
                    "hour_from" => self.horizons.hour_from = v,
                    _ => {}
                }
            }
            let mut st = self.conn.prepare("SELECT t FROM dirty_hours")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                self.dirty.insert(r.get(0)?);
            }
        }
        let mut replay = Vec::new();
        {
            let mut st = self.conn.prepare("SELECT rows FROM log ORDER BY seq")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let data: Vec<u8> = r.get(0)?;
                replay.push(codec::decode_rows(&data)?);
                self.stats.log_records += 1;
            }
        }
        for rows in replay {
            self.apply(rows);
        }
        Ok(())
    }

    fn write_lines(&mut self, lines: &Lines<'_>) -> Result<WriteSummary, StoreError> {
        if self.write.newest.len() != self.last.len() {
            // First write since opening (or series added by another path).
            self.sync_newest();
        }
        let first_new = self.meta.len();
        let mut rows = std::mem::take(&mut self.write.rows);
        rows.clear();
        rows.reserve(lines.field_count());
        let mut new_keys: Vec<String> = Vec::new();
        let result = self.resolve(lines, &mut rows, &mut new_keys).and_then(|()| self.commit(&rows, first_new, &new_keys));
        if let Err(e) = result {
            self.take_back(first_new, &new_keys);
            self.write.rows = rows;
            return Err(e);
        }
        let summary = WriteSummary { points: lines.len(), samples: rows.len(), new_series: new_keys.len() };
        self.stats.samples_written += rows.len() as u64;
        self.stats.requests_written += 1;
        self.stats.log_records += 1;
        self.apply(rows.drain(..));
        self.write.rows = rows;
        Ok(summary)
    }

    /// Turns lines into rows, creating the series it has not seen (in memory only, until
    /// `commit`), and checks the out-of-order window.
    fn resolve(&mut self, lines: &Lines<'_>, rows: &mut Vec<(SeriesId, i64, Value)>, new_keys: &mut Vec<String>) -> Result<(), StoreError> {
        let mut key = String::with_capacity(128);
        for line in lines.iter() {
            let cached = line.series_text().and_then(|t| self.write.groups_by_text.get(t)).copied();
            let mut prefix_built = false;
            let group = match cached {
                Some(g) => g as usize,
                None => {
                    series_prefix(&mut key, line.measurement(), line.tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
                    prefix_built = true;
                    let g = match self.write.groups_by_text.get(key.as_str()) {
                        Some(g) => *g,
                        None => {
                            let g = self.write.groups.len() as u32;
                            self.write.groups.push(Vec::new());
                            self.write.groups_by_text.insert(key.as_str().into(), g);
                            g
                        }
                    };
                    if let Some(t) = line.series_text() {
                        self.write.groups_by_text.insert(t.into(), g);
                    }
                    g as usize
                }
            };
            let ts = line.ts().0;
            for (i, (field, v)) in line.fields().iter().enumerate() {
                let fields = &mut self.write.groups[group];
                // Fields usually come in the same order every time: try the same position first.
                let id = match fields.get(i).filter(|(f, _)| **f == **field).or_else(|| fields.iter().find(|(f, _)| **f == **field)) {
                    Some((_, id)) => *id,
                    None => {
                        if !prefix_built {
                            series_prefix(&mut key, line.measurement(), line.tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
                            prefix_built = true;
                        }
                        let prefix = key.len();
                        key.push_str(field);
                        let id = match self.by_key.get(key.as_str()) {
                            Some(id) => *id,
                            None => {
                                let id = self.meta.len() as SeriesId;
                                let tags = line.tags().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                                self.meta.push(SeriesMeta { id, measurement: line.measurement().to_owned(), tags, field: field.to_string() });
                                self.heads.push(Vec::new());
                                self.last.push(None);
                                self.write.newest.push(i64::MIN);
                                self.by_key.insert(key.clone(), id);
                                new_keys.push(key.clone());
                                id
                            }
                        };
                        key.truncate(prefix);
                        self.write.groups[group].push((field.as_ref().into(), id));
                        id
                    }
                };
                let newest = &mut self.write.newest[id as usize];
                if ts > *newest {
                    *newest = ts;
                } else if let Some(w) = self.write.window_ns
                    && ts < newest.saturating_sub(w)
                {
                    let m = &self.meta[id as usize];
                    let series = format!("{}{} {}", m.measurement, m.tags.iter().map(|(k, v)| format!(",{k}={v}")).collect::<String>(), m.field);
                    return Err(StoreError::TooOld {
                        line: line.number(),
                        series,
                        ts: Timestamp(ts).to_rfc3339(),
                        newest: Timestamp(*newest).to_rfc3339(),
                        window_s: u64::try_from(w / 1_000_000_000).unwrap_or(0),
                    });
                }
                let value = match v {
                    FieldValueRef::Str(s) => Value::Text(s.to_string()),
                    // as_f64 is Some for every non-string variant.
                    other => Value::Num(other.as_f64().unwrap_or(f64::NAN)),
                };
                rows.push((id, ts, value));
            }
        }
        Ok(())
    }

    /// The log row and the new series, in one transaction.
    fn commit(&mut self, rows: &[(SeriesId, i64, Value)], first_new: usize, new_keys: &[String]) -> Result<(), StoreError> {
        let mut log = std::mem::take(&mut self.write.log);
        codec::encode_rows_into(&mut log, rows);
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO series(id, key, measurement, tags, field) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for (m, key) in self.meta[first_new..].iter().zip(new_keys) {
                let tags = serde_json::to_string(&m.tags).unwrap_or_else(|_| "{}".into());
                ins.execute(params![m.id, key, m.measurement, tags, m.field])?;
            }
            tx.prepare_cached("INSERT INTO log(rows) VALUES (?1)")?.execute(params![&log])?;
        }
        let r = tx.commit();
        self.write.log = log;
        Ok(r?)
    }

    fn sync_newest(&mut self) {
        self.write.newest = self.last.iter().map(|l| l.as_ref().map_or(i64::MIN, |(t, _)| *t)).collect();
    }

    /// Undoes what `resolve` did in memory for a write that was not stored.
    fn take_back(&mut self, first_new: usize, new_keys: &[String]) {
        for k in new_keys {
            self.by_key.remove(k);
        }
        self.meta.truncate(first_new);
        self.heads.truncate(first_new);
        self.last.truncate(first_new);
        // Cheap next to a failed write, and simpler than tracking what ran ahead.
        self.sync_newest();
        if !new_keys.is_empty() {
            // Groups may name series that no longer exist.
            self.write.groups.clear();
            self.write.groups_by_text.clear();
        }
    }

    fn apply(&mut self, rows: impl IntoIterator<Item = (SeriesId, i64, Value)>) {
        self.write_seq += 1;
        let mut hour = None;
        for (id, ts, v) in rows {
            let i = id as usize;
            let (Some(head), Some(last)) = (self.heads.get_mut(i), self.last.get_mut(i)) else { continue };
            if last.as_ref().is_none_or(|(lt, _)| ts >= *lt) {
                if let Some(n) = self.write.newest.get_mut(i) {
                    *n = ts;
                }
                *last = Some((ts, v.clone()));
            }
            let h = ts.div_euclid(rollup::HOUR);
            if hour != Some(h) {
                hour = Some(h);
                self.hour_seq.insert(h, self.write_seq);
            }
            if self.horizons.rolled_to.is_some_and(|r| ts < r) {
                self.dirty.insert(h * rollup::HOUR);
            }
            head.push((ts, v));
            self.stats.head_samples += 1;
            self.stats.newest_ts = self.stats.newest_ts.max(Some(ts));
        }
    }

    fn checkpoint(&mut self) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let mut moved = 0;
        {
            let mut ins = tx.prepare_cached("INSERT INTO chunks(series_id, t_min, t_max, n, data) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            let mut last = tx.prepare_cached("INSERT OR REPLACE INTO last_values(series_id, ts, data) VALUES (?1, ?2, ?3)")?;
            for (id, head) in self.heads.iter_mut().enumerate() {
                sort_dedup(head);
                // One chunk per UTC day: retention can then drop whole chunks of past days, and
                // a backfill of weeks checkpointed at once does not become one chunk that
                // every roll-up of it would decode again.
                for day in head.chunk_by(|a, b| a.0.div_euclid(rollup::DAY) == b.0.div_euclid(rollup::DAY)) {
                    let (Some((t_min, _)), Some((t_max, _))) = (day.first(), day.last()) else { continue };
                    ins.execute(params![id as i64, t_min, t_max, day.len() as i64, codec::encode_chunk(day)])?;
                    moved += day.len();
                }
                if let Some(Some((ts, v))) = self.last.get(id) {
                    last.execute(params![id as i64, ts, codec::encode_chunk(&[(*ts, v.clone())])])?;
                }
            }
            let mut dirty = tx.prepare_cached("INSERT OR IGNORE INTO dirty_hours(t) VALUES (?1)")?;
            for t in &self.dirty {
                dirty.execute(params![t])?;
            }
            tx.execute("DELETE FROM log", [])?;
        }
        tx.commit()?;
        for h in &mut self.heads {
            h.clear();
        }
        self.stats.head_samples = 0;
        self.stats.log_records = 0;
        self.stats.checkpoints += 1;
        Ok(moved)
    }

    /// Blobs of `table` (chunks or blocks) of one series overlapping `[from, to]`, plus the
    /// nearest on each side, in write order.
    fn blobs(&mut self, table: &str, sid: i64, from: i64, to: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let sql = format!(
            "SELECT data FROM (SELECT rowid AS r, data FROM {table} WHERE series_id = ?1 AND t_max >= ?2 AND t_min <= ?3
             UNION SELECT * FROM (SELECT rowid AS r, data FROM {table} WHERE series_id = ?1 AND t_max < ?2 ORDER BY t_max DESC LIMIT 1)
             UNION SELECT * FROM (SELECT rowid AS r, data FROM {table} WHERE series_id = ?1 AND t_min > ?3 ORDER BY t_min LIMIT 1)) ORDER BY r"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut q = st.query(params![sid, from, to])?;
        let mut blobs = Vec::new();
        while let Some(r) = q.next()? {
            blobs.push(r.get(0)?);
        }
        Ok(blobs)
    }

    /// Roll-up rows `(t0, data)` of a series whose buckets may start in `[from, to)`, and with
    /// `neighbours` the nearest row on each side.
    fn rollup_rows(&mut self, id: SeriesId, level: rollup::Level, from: i64, to: i64, neighbours: bool) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let span = level.row_span();
        let lo = from.div_euclid(span) * span;
        let sql = if neighbours {
            "SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4
             UNION SELECT * FROM (SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 < ?3 ORDER BY t0 DESC LIMIT 1)
             UNION SELECT * FROM (SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?4 ORDER BY t0 LIMIT 1) ORDER BY t0"
        } else {
            "SELECT t0, data FROM rollups WHERE series_id = ?1 AND level = ?2 AND t0 >= ?3 AND t0 < ?4 ORDER BY t0"
        };
        let mut st = self.conn.prepare_cached(sql)?;
        let mut q = st.query(params![i64::from(id), level.code(), lo, to])?;
        let mut rows = Vec::new();
        while let Some(r) = q.next()? {
            rows.push((r.get(0)?, r.get(1)?));
        }
        Ok(rows)
    }

    /// The last reading of each roll-up bucket of `level` in `[from, to]` and around it, and
    /// the first of those starting on an hour.
    fn rollup_lasts(&mut self, id: SeriesId, level: rollup::Level, from: i64, to: i64, out: &mut Vec<(i64, Value)>) -> Result<(), StoreError> {
        let mut buckets = Vec::new();
        for (t0, data) in self.rollup_rows(id, level, from, to.saturating_add(1), true)? {
            rollup::decode_row(t0, level.step(), &data, &mut buckets)?;
        }
        for b in buckets {
            out.extend(b.first);
            out.extend(b.last);
        }
        Ok(())
    }

    fn read(&mut self, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, Value)>, StoreError> {
        let mut all: Vec<(i64, Value)> = Vec::new();
        // Where the raw samples are gone, the last reading of each roll-up bucket stands in:
        // hour buckets before the minute ones, then minute buckets up to the raw samples.
        // Within an hour after a horizon, the newer resolution may hold nothing before `from`,
        // so the older one is asked too, for the left neighbour.
        let h = self.horizons;
        let near = |horizon: i64| horizon != i64::MIN && from < horizon.saturating_add(rollup::HOUR);
        if near(h.raw_from) {
            if near(h.minute_from) {
                self.rollup_lasts(id, rollup::Level::Hour, from, to.min(h.minute_from - 1), &mut all)?;
            }
            self.rollup_lasts(id, rollup::Level::Minute, from, to.min(h.raw_from - 1), &mut all)?;
        }
        let sid = i64::from(id);
        // Blocks are compacted chunks: older than every chunk left, so they go first.
        for table in ["blocks", "chunks"] {
            for b in self.blobs(table, sid, from, to)? {
                if table == "blocks" {
                    codec::decode_block(&b, &mut all)?;
                } else {
                    codec::decode_chunk(&b, &mut all)?;
                }
            }
        }
        if let Some(head) = self.heads.get(id as usize) {
            all.extend(head.iter().cloned());
        }
        // Roll-ups, blocks, chunks in write order, then the head: the last write of a
        // timestamp wins.
        let mut dedup = all;
        sort_dedup(&mut dedup);
        let first_in = dedup.partition_point(|(t, _)| *t < from);
        let last_in = dedup.partition_point(|(t, _)| *t <= to);
        let lo = first_in.saturating_sub(1);
        let hi = (last_in + 1).min(dedup.len());
        Ok(dedup.drain(lo..hi).collect())
    }
}

pub use codec::CorruptRecord;

#[cfg(test)]
mod tests {
    use super::*;
    use kilowatch_model::Timestamp;

    fn pt(v: f64, t: i64) -> Point {
        Point::new("meter", Timestamp(t)).tag("meter", "grid-a").field("energy_kwh", v)
    }

    #[test]
    fn survives_reopen_with_and_without_checkpoint() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let s = Store::open(dir.path()).expect("open");
            s.write(&[pt(1.0, 10), pt(2.0, 20)]).expect("write");
            s.checkpoint().expect("checkpoint");
            s.write(&[pt(3.0, 30), pt(3.0, 30)]).expect("write");
        }
        let s = Store::open(dir.path()).expect("reopen");
        let ids = s.find_series("meter", "energy_kwh", &[("meter", "grid-a")]).expect("find");
        assert_eq!(ids.len(), 1);
        let got = s.read_with_neighbours(ids[0].id, 0, 100).expect("read");
        assert_eq!(got, vec![(10, Value::Num(1.0)), (20, Value::Num(2.0)), (30, Value::Num(3.0))]);
        assert_eq!(s.latest(&[ids[0].id]).expect("latest")[0], Some((30, Value::Num(3.0))));
        // A replay of already checkpointed data is stored once.
        s.write(&[pt(2.0, 20)]).expect("write");
        s.checkpoint().expect("checkpoint");
        assert_eq!(s.read_with_neighbours(ids[0].id, 0, 100).expect("read").len(), 3);
        // Neighbours on both sides of a narrow range.
        assert_eq!(s.read_with_neighbours(ids[0].id, 15, 16).expect("read"), vec![(10, Value::Num(1.0)), (20, Value::Num(2.0))]);
    }
}
