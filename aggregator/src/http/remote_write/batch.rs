//! What a request becomes: the store's lines, one per thing and time, each value borrowed from
//! the request's mappings (no line-protocol text formatted and parsed again).

#[cfg(test)]
use std::fmt::Write;
use std::sync::Arc;

use kilowatch_model::{FieldValueRef, Lines, LinesBuffers, Timestamp};

use super::cache::Mapped;
use super::key::Key;
use super::rules::LabelJob;

/// What a request becomes: the store's lines (one per thing and time, ms timestamps), built
/// without line-protocol text, and what was left out.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<OutLine>,
    /// Every value, in request order: grouped by line in [`Batch::store_lines`].
    pub(super) values: Vec<Entry>,
    /// The mappings the values name (one per series of the request that has values), which
    /// hold their job strings while the lines borrow them.
    pub(super) series: Vec<Arc<Mapped>>,
    /// The mapper's field names, by number.
    pub(super) field_names: Option<Arc<[Box<str>]>>,
    /// The jobs the request's job labels name, once each, with an owner or a project: the
    /// receiver records them for the runs of their `gpu_job` points ([`super::owners`]).
    pub label_jobs: Vec<Arc<LabelJob>>,
    /// Series refused whole or in part, with why, in request order.
    pub refused: Vec<(u32, String)>,
    pub counts: Counts,
    /// Each line by its key's address and time.
    at: hashbrown::HashMap<(usize, i64), u32>,
}

/// One line: a series key and a time in ms; its values are the batch's entries naming it.
#[derive(Debug)]
pub struct OutLine {
    pub key: Arc<Key>,
    pub ts_ms: i64,
    /// The fields it has, by [`super::rules::Mapper`] field number (the first [`SEEN_BITS`]): two rules for
    /// one field (an old and a new dcgm name) give it once.
    pub(super) seen: u128,
}

pub(super) const SEEN_BITS: u16 = 128;

/// One value of a line.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) line: u32,
    /// Index in [`Batch::series`].
    pub(super) series: u32,
    pub(super) field: u16,
    pub(super) value: Num,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    F(f64),
    I(i64),
    /// The series' job string (a `gpu_job` line's `job` field).
    Job,
    /// A string known when compiled (an XID event's `kind`).
    Text(&'static str),
}

impl Batch {
    /// An empty batch in the memory of this one, for the next request: its vectors and table
    /// keep their capacity (the series and keys they named are let go).
    pub fn recycle(mut self) -> Batch {
        self.lines.clear();
        self.values.clear();
        self.series.clear();
        self.label_jobs.clear();
        self.refused.clear();
        self.at.clear();
        self.counts = Counts::default();
        self
    }

    /// Bytes its vectors and table reserve, for a caller that bounds what it keeps.
    pub fn capacity_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.lines) + bytes(&self.values) + bytes(&self.series) + bytes(&self.label_jobs) + self.at.capacity() * (std::mem::size_of::<((usize, i64), u32)>() + 1)
    }

    /// The store's lines of the batch: each line's values in request order, borrowed from the
    /// batch (nothing is formatted or parsed again).
    pub fn store_lines(&self) -> Lines<'_> {
        self.store_lines_into(LinesBuffers::default())
    }

    /// [`Batch::store_lines`] in the memory of an earlier request's lines.
    pub fn store_lines_into(&self, buffers: LinesBuffers) -> Lines<'_> {
        // Values grouped by line with a counting sort: lines fill in request order, a GPU's
        // values arriving one series (dcgm field) after the other.
        let mut start = vec![0u32; self.lines.len() + 1];
        for e in &self.values {
            start[e.line as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut next = start.clone();
        let mut order = vec![0u32; self.values.len()];
        for (i, e) in self.values.iter().enumerate() {
            let slot = &mut next[e.line as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        let names: &[Box<str>] = self.field_names.as_deref().unwrap_or_default();
        let mut out = Lines::from_buffers(buffers);
        for (li, l) in self.lines.iter().enumerate() {
            let values = order[start[li] as usize..start[li + 1] as usize].iter().map(|&i| {
                let e = &self.values[i as usize];
                let name = names.get(e.field as usize).map_or("value", |n| &**n);
                match e.value {
                    Num::F(v) => (name, FieldValueRef::F64(v)),
                    Num::I(v) => (name, FieldValueRef::I64(v)),
                    Num::Job => {
                        let job = match &*self.series[e.series as usize] {
                            Mapped::Field(m) => m.job.as_ref().map_or("", |(_, j)| &**j),
                            _ => "",
                        };
                        (name, FieldValueRef::Str(std::borrow::Cow::Borrowed(job)))
                    }
                    Num::Text(t) => (name, FieldValueRef::Str(std::borrow::Cow::Borrowed(t))),
                }
            });
            let k = &l.key;
            out.push_line(k.plain(), k.measurement(), k.tags(), values, Timestamp(l.ts_ms.saturating_mul(1_000_000)));
        }
        out
    }

    /// The line protocol of the batch, millisecond precision (what the store is given, as text).
    #[cfg(test)]
    pub fn text(&self) -> String {
        let lines = self.store_lines();
        let mut out = String::new();
        for (l, line) in self.lines.iter().zip(lines.iter()) {
            let fields: Vec<String> = line
                .fields()
                .iter()
                .map(|(k, v)| match v {
                    FieldValueRef::I64(i) => format!("{k}={i}i"),
                    FieldValueRef::F64(f) => format!("{k}={f}"),
                    FieldValueRef::Str(s) => format!("{k}=\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                    other => format!("{k}={other:?}"),
                })
                .collect();
            let _ = writeln!(out, "{} {} {}", l.key.text, fields.join(","), l.ts_ms);
        }
        out
    }

    /// Adds a value to the line of `key` at `ts_ms` unless that line has the field already.
    // Inlined into the per-sample loop, as before it had a second caller (XID events).
    #[inline]
    pub(super) fn put(&mut self, key: &Arc<Key>, ts_ms: i64, series: u32, field: u16, value: Num) -> bool {
        // A GPU's series come one after the other: the last line is the likely one.
        let line = match self.lines.last() {
            Some(l) if Arc::ptr_eq(&l.key, key) && l.ts_ms == ts_ms => (self.lines.len() - 1) as u32,
            _ => {
                let lines = &mut self.lines;
                *self.at.entry((Arc::as_ptr(key) as usize, ts_ms)).or_insert_with(|| {
                    lines.push(OutLine { key: key.clone(), ts_ms, seen: 0 });
                    (lines.len() - 1) as u32
                })
            }
        };
        let l = &mut self.lines[line as usize];
        if field < SEEN_BITS {
            let bit = 1u128 << field;
            if l.seen & bit != 0 {
                return false;
            }
            l.seen |= bit;
        } else if self.values.iter().any(|e| e.line == line && e.field == field) {
            // Past the bitmap (more than 128 distinct fields in the rules): rare, slower.
            return false;
        }
        self.values.push(Entry { line, series, field, value });
        true
    }
}

/// Samples by what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub mapped: u64,
    pub unmapped: u64,
    pub refused: u64,
    /// Prometheus' staleness markers: a series that disappeared, not a reading.
    pub stale: u64,
    /// Readings of a GPU the collector reports too, kept apart (see [`super::rules::SHADOW_MEASUREMENT`]).
    pub shadowed: u64,
}
