//! The store's write path: a request's lines resolved to series (created as needed), checked
//! against the out-of-order window, logged in one transaction, then applied to the heads.

use std::collections::HashMap;

use kilowatch_model::{FieldValueRef, Lines, Timestamp};
use rusqlite::params;

use super::{Inner, SeriesId, SeriesMeta, StoreError, Value, WriteSummary, codec, rollup};

/// What only the write path uses: the out-of-order window, caches that spare it building a key
/// per field, and buffers kept between requests.
#[derive(Default)]
pub(super) struct WriteState {
    /// Samples more than this many nanoseconds older than their series' newest are refused.
    pub(super) window_ns: Option<i64>,
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

/// How far back a reading marks the hours up to its neighbour: a series silent for longer than
/// this (over a year) leaves older cached answers to the next restart.
const MAX_NEIGHBOUR_HOURS: i64 = 10_000;

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

impl Inner {
    pub(super) fn write_lines(&mut self, lines: &Lines<'_>) -> Result<WriteSummary, StoreError> {
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
    pub(super) fn resolve(&mut self, lines: &Lines<'_>, rows: &mut Vec<(SeriesId, i64, Value)>, new_keys: &mut Vec<String>) -> Result<(), StoreError> {
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
    pub(super) fn commit(&mut self, rows: &[(SeriesId, i64, Value)], first_new: usize, new_keys: &[String]) -> Result<(), StoreError> {
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

    pub(super) fn sync_newest(&mut self) {
        self.write.newest = self.last.iter().map(|l| l.as_ref().map_or(i64::MIN, |(t, _)| *t)).collect();
    }

    /// Undoes what `resolve` did in memory for a write that was not stored.
    pub(super) fn take_back(&mut self, first_new: usize, new_keys: &[String]) {
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
            }
            if last.as_ref().is_none_or(|(lt, _)| ts >= *lt) {
                if let Some(n) = self.write.newest.get_mut(i) {
                    *n = ts;
                }
                *last = Some((ts, v.clone()));
            }
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
}
