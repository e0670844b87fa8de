//! The store's write path: a request's lines checked against the write policy (names, clock
//! skew, out-of-order window, series count) line by line, resolved to series (created as
//! needed, in memory until the next checkpoint), appended to the write-ahead log, then applied
//! to the heads. A refused line is reported and skipped; the request's other lines are stored
//! (InfluxDB v2's partial writes).

use std::collections::HashMap;

use kilowatch_model::{Line, Lines, Timestamp};

use super::record::{self, Body, Decoded};
use super::{Inner, SeriesId, SeriesMeta, StoreError, Value, WriteSummary, head, rollup, wal};

/// What the store refuses, line by line, from a write (`[store]` in the config; all off by
/// default, as the demo and the tests that write history want).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WritePolicy {
    /// Samples more than this many nanoseconds older than their series' newest are refused.
    /// The newest counts only up to the wall clock plus the skew below, so a series that holds
    /// a sample from the future (written before the skew was enforced) still takes new ones.
    pub out_of_order_window_ns: Option<i64>,
    /// Samples stamped more than this many nanoseconds ahead of the server's clock are refused.
    pub max_future_skew_ns: Option<i64>,
    /// A line that would create a series beyond this count is refused.
    pub max_series: Option<usize>,
    /// Longest measurement, tag key, tag value or field key, in bytes.
    pub max_name_bytes: Option<usize>,
    /// New series a minute, all writers together, and each writer (token) alone. A line that
    /// would create more is refused with [`Refusal::retry_after_s`] set: a client retrying
    /// later gets in, a typo in a tag cannot make a million series.
    pub max_new_series_per_minute: Option<usize>,
    pub max_new_series_per_minute_per_writer: Option<usize>,
    /// Bytes of memory the store may hold for series and recent samples. Series may take
    /// all of it but an eighth, kept for recent samples ([`HEADS_SHARE`]): a line that would
    /// create a series past that is refused (no retry helps: the budget must be raised). Past
    /// the budget, writes are refused whole ([`StoreError::OverBudget`]) until a checkpoint
    /// frees the heads.
    pub memory_budget_bytes: Option<usize>,
}

/// The part of the memory budget (one in `HEADS_SHARE`) always left to recent samples: writes
/// are refused whole only while the heads hold more than that, so a checkpoint always lets
/// them in again, even when the series alone fill the budget (a budget lowered under a store
/// that holds more series).
pub const HEADS_SHARE: usize = 8;

/// What the store counts for each series it holds in memory (its share of the names and tag
/// set, its index entries and newest value), for the memory budget. Measured with
/// `ingest_bench --series 100000`: about 600 bytes a series when a line holds ten fields (a
/// GPU's), 850 when it holds one (see docs/performance.md); the budget counts 1 KB, above
/// both, for the doubling of the vectors and tables that hold them.
pub const SERIES_BYTES: usize = 1024;

/// What the store counts for each tag of a tag set besides its text, for the memory budget: the
/// interned name and value (each an allocation and an interner slot), the set's tag vector, its
/// index entries. A series of 64 tags was measured at about 41 KB (issue 31) while counted as
/// [`SERIES_BYTES`]: 640 bytes a tag makes that 41 KB. A tag set is counted once, however many
/// fields (series) it has.
pub const TAG_BYTES: usize = 640;

/// The memory-budget cost of a tag set: its tags, and its names' bytes twice (the interned
/// names and the set's text).
pub(crate) fn set_cost<'a>(measurement: &str, tags: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> usize {
    let n = tags.len();
    n * TAG_BYTES + 2 * (measurement.len() + tags.map(|(k, v)| k.len() + v.len() + 2).sum::<usize>())
}

/// Bytes a value holds outside the head (a text's characters, kept as the series' newest).
fn text_len(v: &Value) -> usize {
    match v {
        Value::Text(t) => t.capacity(),
        Value::Num(_) => 0,
    }
}

/// New series a writer may still create: refilled continuously, up to a minute's worth.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeriesBucket {
    available: f64,
    at: std::time::Instant,
}

impl SeriesBucket {
    fn full(per_minute: usize) -> SeriesBucket {
        SeriesBucket { available: per_minute as f64, at: std::time::Instant::now() }
    }

    fn refill(&mut self, per_minute: usize, now: std::time::Instant) -> usize {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.available = (self.available + dt * per_minute as f64 / 60.0).min(per_minute as f64);
        self.at = now;
        self.available as usize
    }

    /// Seconds until `n` more series are allowed.
    fn wait_s(&self, n: usize, per_minute: usize) -> u64 {
        let missing = (n as f64 - self.available).max(0.0);
        ((missing * 60.0 / per_minute.max(1) as f64).ceil() as u64).clamp(1, 60)
    }
}

/// One line the store did not take, and why; the other lines of its request were stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// From 1, as in the request body.
    pub line: usize,
    pub reason: String,
    /// Set when the same line will be taken later (a rate cap): seconds to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What only the write path uses: the policy, the newest timestamps, and buffers kept between
/// requests.
#[derive(Default)]
pub(super) struct WriteState {
    pub(super) policy: WritePolicy,
    /// Timestamp of each series' newest sample (`last`), i64::MIN for none; during a write it
    /// runs ahead of `last` and is put back if the write fails.
    newest: Vec<i64>,
    rows: Vec<(SeriesId, i64, Value)>,
    log: Vec<u8>,
    /// The series of the current line's fields, `None` where it is still to be created.
    ids: Vec<Option<SeriesId>>,
    /// New-series allowances: all writers, and each writer by name.
    series_all: Option<SeriesBucket>,
    series_by_writer: HashMap<String, SeriesBucket>,
    /// What the tag sets cost ([`set_cost`]), and the text values held as series' newest:
    /// counted by the memory budget besides each series' [`SERIES_BYTES`].
    set_bytes: usize,
    text_bytes: usize,
}

/// A line's measurement and tags as line protocol writes them.
fn line_series(line: &Line<'_, '_>) -> String {
    format!("{}{}", truncated(line.measurement()), line.tags().iter().map(|(k, v)| format!(",{}={}", truncated(k), truncated(v))).collect::<String>())
}

fn series_text(m: &SeriesMeta) -> String {
    format!("{}{} {}", m.measurement, m.tags.iter().map(|(k, v)| format!(",{k}={v}")).collect::<String>(), m.field)
}

/// The first name of a line longer than `max` bytes, described. Called for every line: the
/// description is only written for a name that is too long.
fn long_name(line: &Line<'_, '_>, max: usize) -> Option<String> {
    let too_long = |what: &dyn Fn() -> String, name: &str| (name.len() > max).then(|| format!("{} of {} bytes is longer than the limit of {max} bytes ([store] max_name_bytes)", what(), name.len()));
    // The measurement and tags as sent hold every one of their names (escaped, so no shorter):
    // when that text fits, they all do, and only the field keys are left to read.
    if line.series_text().is_some_and(|t| t.len() <= max) {
        return line.fields().iter().find_map(|(k, _)| too_long(&|| "a field key".into(), k));
    }
    too_long(&|| "the measurement".into(), line.measurement())
        .or_else(|| line.tags().iter().find_map(|(k, v)| too_long(&|| "a tag key".into(), k).or_else(|| too_long(&|| format!("the value of tag {:?}", truncated(k)), v))))
        .or_else(|| line.fields().iter().find_map(|(k, _)| too_long(&|| "a field key".into(), k)))
}

/// At most 64 bytes of a name, for messages about names that are too long.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How far back a reading marks the hours up to its neighbour: a series silent for longer than
/// this (over a year) leaves older cached answers to the next restart.
const MAX_NEIGHBOUR_HOURS: i64 = 10_000;

impl Inner {
    /// Resolves, logs and applies a write; returns what was stored and the log position to
    /// sync before acknowledging it (`None`: nothing was logged).
    pub(super) fn write_lines(&mut self, lines: &Lines<'_>, body: Option<&Body<'_>>, writer: &str, wal: &wal::Wal) -> Result<(WriteSummary, Option<u64>), StoreError> {
        if let Some(e) = self.over_budget() {
            return Err(e);
        }
        if self.write.newest.len() != self.last.len() {
            // First write since opening (or series added by another path).
            self.sync_newest();
        }
        let first_new = self.meta.len();
        let mut rows = std::mem::take(&mut self.write.rows);
        rows.clear();
        rows.reserve(lines.field_count());
        let mut new_series = 0;
        let mut refused: Vec<Refusal> = Vec::new();
        self.resolve(lines, &[], Some(writer), &mut rows, &mut new_series, &mut refused);
        let mut pos = None;
        // Every line refused: nothing to log.
        if !rows.is_empty() {
            let skip: Vec<usize> = refused.iter().map(|r| r.line).collect();
            let mut log = std::mem::take(&mut self.write.log);
            let appended = match body {
                Some(b) => {
                    record::encode_body_head(&mut log, b, &skip);
                    wal.append_parts(&[&log, b.text.as_bytes()])
                }
                None => {
                    record::encode_lines(&mut log, lines, &skip);
                    wal.append_parts(&[&log])
                }
            };
            if log.capacity() <= 8 << 20 {
                self.write.log = log;
            }
            match appended {
                Ok(p) => pos = Some(p),
                Err(e) => {
                    self.take_back(first_new);
                    self.write.rows = rows;
                    return Err(e.into());
                }
            }
        }
        let summary = WriteSummary { points: lines.len() - refused.len(), samples: rows.len(), new_series, refused };
        if !rows.is_empty() {
            self.stats.samples_written += rows.len() as u64;
            self.stats.requests_written += 1;
            self.stats.log_records += 1;
            self.apply(rows.drain(..));
        }
        self.write.rows = rows;
        Ok((summary, pos))
    }

    /// Applies one logged write again, as it was stored (opening after a crash).
    pub(super) fn replay(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let decoded = record::decode(data)?;
        if self.write.newest.len() != self.last.len() {
            self.sync_newest();
        }
        let mut rows = Vec::new();
        let mut new_series = 0;
        let mut refused = Vec::new();
        match &decoded {
            Decoded::Body { body, skip } => {
                let lines = record::reparse(body)?;
                self.resolve(&lines, skip, None, &mut rows, &mut new_series, &mut refused);
            }
            Decoded::Points { points, skip } => {
                self.resolve(&Lines::from_points(points), skip, None, &mut rows, &mut new_series, &mut refused);
            }
        }
        self.apply(rows);
        Ok(())
    }

    /// Turns lines into rows, creating the series it has not seen (in memory only, until the
    /// next checkpoint). A line the policy refuses adds a [`Refusal`] and nothing else: no row,
    /// no series. Lines numbered in `skip` (sorted) are passed over: a replay's refused lines.
    pub(super) fn resolve(&mut self, lines: &Lines<'_>, skip: &[usize], writer: Option<&str>, rows: &mut Vec<(SeriesId, i64, Value)>, new_series: &mut usize, refused: &mut Vec<Refusal>) {
        let policy = self.write.policy;
        let now = std::time::Instant::now();
        let caps = writer.map(|w| {
            let all = policy.max_new_series_per_minute.map(|cap| (cap, self.write.series_all.get_or_insert_with(|| SeriesBucket::full(cap)).refill(cap, now)));
            let one = policy.max_new_series_per_minute_per_writer.map(|cap| {
                let b = self.write.series_by_writer.entry(w.to_owned()).or_insert_with(|| SeriesBucket::full(cap));
                (cap, b.refill(cap, now))
            });
            (all, one)
        });
        let mut created = 0usize;
        // The clock is read once a request: its lines are judged against the same instant.
        let wall = Timestamp::now().0;
        let ahead_limit = policy.max_future_skew_ns.map(|s| wall.saturating_add(s));
        let mut ids = std::mem::take(&mut self.write.ids);
        let mut prev_set: Option<u32> = None;
        // String bytes this request's lines add to the newest values (applied after resolving).
        let mut text_pending = 0usize;
        for line in lines.iter() {
            if !skip.is_empty() && skip.binary_search(&line.number()).is_ok() {
                continue;
            }
            let refuse = |reason: String| Refusal { line: line.number(), reason, retry_after_s: None };
            if let Some(why) = policy.max_name_bytes.and_then(|max| long_name(&line, max)) {
                refused.push(refuse(why));
                continue;
            }
            let ts = line.ts().0;
            if let (Some(limit), Some(skew)) = (ahead_limit, policy.max_future_skew_ns)
                && ts > limit
            {
                refused.push(refuse(format!(
                    "{} at {} is {} s ahead of the server's clock ({}); samples more than {} s ahead are refused ([store] max_future_skew_s): check the sender's clock",
                    line_series(&line),
                    Timestamp(ts).to_rfc3339(),
                    ts.saturating_sub(wall) / 1_000_000_000,
                    Timestamp(wall).to_rfc3339(),
                    skew / 1_000_000_000
                )));
                continue;
            }
            // Lines come in the order their tag sets were made: the next set is the guess.
            let mut set = self.set_of(&line, prev_set.map(|s| s.wrapping_add(1)));
            prev_set = set.or(prev_set);
            ids.clear();
            for (i, (field, _)) in line.fields().iter().enumerate() {
                ids.push(set.and_then(|s| self.names.field_of(s, i, field)));
            }
            if let Some(w) = policy.out_of_order_window_ns {
                // Judged against the newest sample, but never against one ahead of the clock:
                // a series holding a sample from the future (an old store) still takes new ones.
                let too_old = ids.iter().flatten().find_map(|id| {
                    let newest = self.write.newest[*id as usize];
                    let reference = ahead_limit.map_or(newest, |l| newest.min(l));
                    (ts < reference.saturating_sub(w)).then_some((*id, reference))
                });
                if let Some((id, reference)) = too_old {
                    let newest = self.write.newest[id as usize];
                    let has = if reference < newest {
                        format!(
                            "the series' newest sample counts as {}, the server's clock plus the allowed skew (it holds one at {})",
                            Timestamp(reference).to_rfc3339(),
                            Timestamp(newest).to_rfc3339()
                        )
                    } else {
                        format!("the series already has a sample at {}", Timestamp(reference).to_rfc3339())
                    };
                    refused.push(refuse(format!(
                        "{} at {} is older than the out-of-order window allows: {has}, and samples more than {} s older than that are refused ([store] out_of_order_window_s)",
                        series_text(&self.meta[id as usize]),
                        Timestamp(ts).to_rfc3339(),
                        w / 1_000_000_000
                    )));
                    continue;
                }
            }
            let missing = ids.iter().filter(|i| i.is_none()).count();
            // A string value stays in memory as its series' newest until a newer one replaces
            // it (no checkpoint frees it): held to the series' share of the budget, as new
            // series are, so a flood of long strings is refused rather than held.
            if let Some(budget) = policy.memory_budget_bytes {
                let grows: usize = line
                    .fields()
                    .iter()
                    .zip(ids.iter())
                    .filter_map(|((_, v), id)| match v {
                        kilowatch_model::FieldValueRef::Str(t) => Some(t.len().saturating_sub(id.and_then(|id| self.last.get(id as usize)).and_then(|l| l.as_ref()).map_or(0, |(_, o)| text_len(o)))),
                        _ => None,
                    })
                    .sum();
                if grows > 0 && self.series_bytes() + self.write.text_bytes + text_pending + grows > budget - budget / HEADS_SHARE {
                    refused.push(refuse(format!(
                        "{} holds {grows} bytes of string values more than its series' newest, but series and the string values kept as their newest already take {} MB of the store's memory budget of {} MB, of which an eighth is kept for recent samples ([store] memory_budget_mb): send shorter strings or raise the budget",
                        line_series(&line),
                        (self.series_bytes() + self.write.text_bytes + text_pending) >> 20,
                        budget >> 20
                    )));
                    continue;
                }
                text_pending += grows;
            }
            if let Some(max) = policy.max_series
                && missing > 0
                && self.meta.len() + missing > max
            {
                refused.push(refuse(format!("{} would be {missing} new series, beyond the limit of {max} series ([store] max_series); the store holds {}", line_series(&line), self.meta.len())));
                continue;
            }
            if let Some(budget) = policy.memory_budget_bytes
                && missing > 0
                && self.series_bytes() + missing * SERIES_BYTES + if set.is_none() { set_cost(line.measurement(), line.tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref()))) } else { 0 }
                    > budget - budget / HEADS_SHARE
            {
                refused.push(refuse(format!(
                    "{} would be {missing} new series, but the store's {} series already take {} MB of its memory budget of {} MB, of which an eighth is kept for recent samples ([store] memory_budget_mb): raise the budget for more series, or send fewer tags",
                    line_series(&line),
                    self.meta.len(),
                    self.series_bytes() >> 20,
                    budget >> 20
                )));
                continue;
            }
            if missing > 0
                && let Some((all, one)) = caps
            {
                let over = |c: Option<(usize, usize)>| c.filter(|(_, left)| created + missing > *left);
                let who = writer.unwrap_or_default();
                let capped = over(one)
                    .map(|(cap, _)| {
                        (
                            cap,
                            self.write.series_by_writer.get(who).map_or(1, |b| b.wait_s(created + missing, cap)),
                            format!("token {who:?} has created its {cap} new series for this minute ([store] max_new_series_per_minute_per_token)"),
                        )
                    })
                    .or_else(|| {
                        over(all).map(|(cap, _)| {
                            (
                                cap,
                                self.write.series_all.map_or(1, |b| b.wait_s(created + missing, cap)),
                                format!("the store has created its {cap} new series for this minute, all tokens together ([store] max_new_series_per_minute)"),
                            )
                        })
                    });
                if let Some((_, wait, why)) = capped {
                    refused.push(Refusal {
                        line: line.number(),
                        reason: format!(
                            "{} would be {missing} new series, but {why}; retry in {wait} s. Existing series are not limited: check the line's tags for a typo or a value that changes with every line",
                            line_series(&line)
                        ),
                        retry_after_s: Some(wait),
                    });
                    continue;
                }
                created += missing;
            }
            for (i, (field, v)) in line.fields().iter().enumerate() {
                let id = match ids[i] {
                    Some(id) => id,
                    None => self.create(&mut set, i, field, &line, new_series),
                };
                let newest = &mut self.write.newest[id as usize];
                if ts > *newest {
                    *newest = ts;
                }
                rows.push((id, ts, record::stored_value(v)));
            }
        }
        self.write.ids = ids;
        if created > 0 {
            if let Some(b) = self.write.series_all.as_mut() {
                b.available -= created as f64;
            }
            if let Some(b) = writer.and_then(|w| self.write.series_by_writer.get_mut(w)) {
                b.available -= created as f64;
            }
        }
    }

    /// The tag set of the line's measurement and tags, if the store has it.
    fn set_of(&mut self, line: &Line<'_, '_>, guess: Option<u32>) -> Option<u32> {
        let text = line.series_text();
        if let Some(s) = text.and_then(|t| self.names.find_text(t, guess)) {
            return Some(s);
        }
        let s = self.names.find(line.measurement(), line.tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())))?;
        // Another spelling of a known tag set (tags in another order): found by its text next.
        if let Some(t) = text {
            self.names.remember_text(t, s);
        }
        Some(s)
    }

    /// The series of the line's `i`th field, created (in memory, until the next checkpoint)
    /// with its tag set if needed.
    fn create(&mut self, set: &mut Option<u32>, i: usize, field: &str, line: &Line<'_, '_>, new_series: &mut usize) -> SeriesId {
        let s = match *set {
            Some(s) => {
                // A line naming the same field twice creates it once.
                if let Some(id) = self.names.field_of(s, i, field) {
                    return id;
                }
                s
            }
            None => {
                let sets = self.names.sets.len();
                let s = self.names.find_or_add(line.measurement(), line.tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
                if self.names.sets.len() > sets {
                    self.write.set_bytes += set_cost(line.measurement(), line.tags().iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
                }
                if let Some(t) = line.series_text() {
                    self.names.remember_text(t, s);
                }
                *set = Some(s);
                s
            }
        };
        *new_series += 1;
        let id = self.add_series(s, field);
        self.write.newest.push(i64::MIN);
        id
    }

    /// A new series: field `field` of tag set `set`.
    pub(super) fn add_series(&mut self, set: u32, field: &str) -> SeriesId {
        let id = self.meta.len() as SeriesId;
        let field = self.names.intern(field);
        let ts = &mut self.names.sets[set as usize];
        // Sized exactly: a Vec's first growth would hold four fields, and most tag sets have
        // one. Series are created rarely; copying a set's few fields then costs nothing.
        let mut fields = Vec::with_capacity(ts.fields.len() + 1);
        fields.append(&mut ts.fields);
        fields.push((field.clone(), id));
        ts.fields = fields;
        self.by_field.entry((ts.measurement.to_string(), field.to_string())).or_default().push(id);
        self.meta.push(SeriesMeta { id, measurement: ts.measurement.clone(), tags: ts.tags.clone(), field });
        self.heads.push(head::Head::default());
        self.last.push(None);
        self.last_flag.push(false);
        id
    }

    /// The error a write gets now for the memory budget, if it is spent.
    pub(super) fn over_budget(&self) -> Option<StoreError> {
        let budget = self.write.policy.memory_budget_bytes?;
        let used = self.memory_bytes();
        let heads = self.head_bytes + self.flushing_bytes;
        (used > budget && heads > budget / HEADS_SHARE).then(|| StoreError::OverBudget { used, budget, heads, series: self.meta.len() })
    }

    /// What the memory budget counts: recent samples, each series at [`SERIES_BYTES`], each
    /// tag set at what its tags cost ([`set_cost`]), and the text values held as newest.
    pub(super) fn memory_bytes(&self) -> usize {
        self.head_bytes + self.flushing_bytes + self.series_bytes() + self.write.text_bytes
    }

    /// What the series and their tag sets count for.
    fn series_bytes(&self) -> usize {
        self.meta.len() * SERIES_BYTES + self.write.set_bytes
    }

    pub(super) fn sync_newest(&mut self) {
        self.write.newest = self.last.iter().map(|l| l.as_ref().map_or(i64::MIN, |(t, _)| *t)).collect();
        // Series loaded at opening, or taken back: counted again from what is held.
        self.write.set_bytes = self.names.sets.iter().map(|s| set_cost(&s.measurement, s.tags.iter())).sum();
        self.write.text_bytes = self.last.iter().flatten().map(|(_, v)| text_len(v)).sum();
    }

    /// Undoes what `resolve` did in memory for a write that was not stored.
    pub(super) fn take_back(&mut self, first_new: usize) {
        self.names.take_back(first_new as SeriesId);
        // The series taken back are the newest: at the end of their lists.
        for m in &self.meta[first_new.min(self.meta.len())..] {
            if let Some(ids) = self.by_field.get_mut(&(m.measurement.to_string(), m.field.to_string())) {
                ids.retain(|id| (*id as usize) < first_new);
            }
        }
        self.meta.truncate(first_new);
        self.heads.truncate(first_new);
        self.last.truncate(first_new);
        self.last_flag.truncate(first_new);
        // Cheap next to a failed write, and simpler than tracking what ran ahead.
        self.sync_newest();
    }

    pub(super) fn apply(&mut self, rows: impl IntoIterator<Item = (SeriesId, i64, Value)>) {
        self.write_seq += 1;
        let mut hour = None;
        for (id, ts, v) in rows {
            let i = id as usize;
            let (Some(head), Some(last)) = (self.heads.get_mut(i), self.last.get_mut(i)) else { continue };
            // A reading after a silence changes what the windows in that silence interpolate:
            // the hours back to the series' previous newest are written too, for the answers
            // cached over them. (A late sample inside a silence is rare enough to be left to
            // its own hour.)
            let h = ts.div_euclid(rollup::HOUR);
            if let Some(lh) = last.as_ref().map(|(lt, _)| lt.div_euclid(rollup::HOUR)).filter(|lh| *lh < h) {
                for x in lh.max(h - MAX_NEIGHBOUR_HOURS)..h {
                    self.hour_seq.insert(x, self.write_seq);
                }
                // Hours rolled up before this reading arrived lack the energy of the pair it
                // closes (from the series' previous reading to the hour's end, and whole hours of
                // silence): they are rolled up again. Dense series never get here, as the next
                // reading arrives before the hour's roll-up.
                let rolled_h = self.horizons.rolled_to.map(|r| r.div_euclid(rollup::HOUR));
                if rolled_h.is_some_and(|r| lh < r) && self.meta.get(i).is_some_and(|m| rollup::energy_kind(m) != rollup::EnergyKind::None) {
                    let end = rolled_h.map_or(h, |r| r.min(h));
                    for x in lh.max(h - MAX_NEIGHBOUR_HOURS)..end {
                        self.dirty.insert(x * rollup::HOUR);
                    }
                }
            }
            if last.as_ref().is_none_or(|(lt, _)| ts >= *lt) {
                if let Some(n) = self.write.newest.get_mut(i) {
                    *n = ts;
                }
                let old = last.as_ref().map_or(0, |(_, o)| text_len(o));
                *last = Some((ts, v.clone()));
                self.write.text_bytes = self.write.text_bytes + text_len(&v) - old;
                if let Some(f) = self.last_flag.get_mut(i).filter(|f| !**f) {
                    *f = true;
                    self.last_changed.push(id);
                }
            }
            if hour != Some(h) {
                hour = Some(h);
                self.hour_seq.insert(h, self.write_seq);
            }
            if self.horizons.rolled_to.is_some_and(|r| ts < r) {
                self.dirty.insert(h * rollup::HOUR);
            }
            let before = head.bytes();
            head.push(ts, &v);
            self.head_bytes = self.head_bytes + head.bytes() - before;
            self.stats.head_samples += 1;
            self.stats.newest_ts = self.stats.newest_ts.max(Some(ts));
        }
    }
}
