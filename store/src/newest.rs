//! The newest sample of each series, kept in store.db for the next start.
//!
//! A checkpoint writes one row holding every series whose newest sample moved, and, when such
//! rows would outweigh it, one row holding every series that replaces all the rows before it.
//! A row per series (`last_values`, still read when opening an older store) cost a checkpoint
//! at high cardinality an `INSERT OR REPLACE` per series: 100,000 of them, a seventh of its
//! time (docs/performance.md). Rows apply in `seq` order; a series left out keeps its value
//! from an earlier row, and a full row leaves out only series with no newest sample.

use rusqlite::{Connection, params};

use super::codec::{CorruptRecord, Reader, get_value, put_ivarint, put_uvarint, put_value};
use super::{SeriesId, Value};

pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS newest(seq INTEGER PRIMARY KEY, full INTEGER NOT NULL, data BLOB NOT NULL);";

/// Partial rows never trigger a full one before they reach this size: a small site would
/// otherwise rewrite all of its series every other checkpoint.
const MIN_FULL_BYTES: usize = 64 * 1024;

const UNSET: u8 = 0;
const SET: u8 = 1;

/// Bytes in the `newest` table: what decides when a full row is due.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct LogSize {
    /// The last full row's bytes.
    pub full: usize,
    /// Bytes of the partial rows written since.
    pub since_full: usize,
    /// Rows of the older per-series table are left: the next row written is full and empties it.
    pub legacy: bool,
}

impl LogSize {
    /// Whether the row for `changed` of `series` series should hold them all: when most of them
    /// moved (a busy site, every checkpoint), or when the partial rows since the last full one
    /// outweigh it (so the table stays under about twice one full row).
    pub fn full_due(&self, changed: usize, series: usize) -> bool {
        self.legacy || changed.saturating_mul(2) >= series || self.since_full > self.full.max(MIN_FULL_BYTES)
    }

    pub fn wrote(&mut self, bytes: usize, full: bool) {
        if full {
            *self = LogSize { full: bytes, since_full: 0, legacy: false };
        } else {
            self.since_full += bytes;
        }
    }
}

/// Bytes to reserve per entry: one of a numeric sample in nanoseconds takes 20 to 23.
const ENTRY_BYTES: usize = 24;

/// Appends one series' entry: its newest sample, or none (a delete took it).
fn put(buf: &mut Vec<u8>, id: SeriesId, newest: Option<&(i64, Value)>) {
    put_uvarint(buf, u64::from(id));
    match newest {
        Some((t, v)) => {
            buf.push(SET);
            put_ivarint(buf, *t);
            put_value(buf, v);
        }
        None => buf.push(UNSET),
    }
}

/// The data of a partial row: these series' entries.
pub(super) fn encode<'a>(entries: impl ExactSizeIterator<Item = (SeriesId, Option<&'a (i64, Value)>)>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for (id, newest) in entries {
        put(&mut buf, id, newest);
    }
    buf
}

/// Every series with a newest sample: the data of a full row.
fn encode_all(last: &[Option<(i64, Value)>]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(last.len() * ENTRY_BYTES);
    for (id, l) in last.iter().enumerate() {
        if let (Some(l), Ok(id)) = (l, SeriesId::try_from(id)) {
            put(&mut buf, id, Some(l));
        }
    }
    buf
}

/// The row a checkpoint writes for the series in `changed` (not empty), `last` indexed by
/// series id: whether it is full, and its data.
pub(super) fn row_for(changed: &[SeriesId], last: &[Option<(i64, Value)>], log: &LogSize) -> (Vec<u8>, bool) {
    if log.full_due(changed.len(), last.len()) { (encode_all(last), true) } else { (encode(changed.iter().map(|id| (*id, last.get(*id as usize).and_then(Option::as_ref)))), false) }
}

/// Writes a row in `conn`'s open transaction; a full one first deletes every row before it.
pub(super) fn write(conn: &Connection, data: &[u8], full: bool) -> rusqlite::Result<()> {
    if full {
        conn.execute("DELETE FROM newest", [])?;
        conn.execute("DELETE FROM last_values", [])?;
    }
    conn.execute("INSERT INTO newest(full, data) VALUES (?1, ?2)", params![full, data])?;
    Ok(())
}

/// Applies one row's entries to `last` (indexed by series id; ids past its end are skipped).
pub(super) fn apply(data: &[u8], last: &mut [Option<(i64, Value)>]) -> Result<(), CorruptRecord> {
    let mut r = Reader::new(data);
    while !r.rest_is_empty() {
        let id = usize::try_from(r.uvarint()?).map_err(|_| CorruptRecord("series id out of range"))?;
        let newest = match r.bytes(1)?[0] {
            SET => Some((r.ivarint()?, get_value(&mut r)?)),
            UNSET => None,
            _ => return Err(CorruptRecord("unknown newest-sample tag")),
        };
        if let Some(slot) = last.get_mut(id) {
            *slot = newest;
        }
    }
    Ok(())
}

/// Reads the newest samples into `last`: the older per-series rows first, then the rows of
/// `newest` in order. Returns the table's size.
pub(super) fn load(conn: &Connection, last: &mut [Option<(i64, Value)>]) -> Result<LogSize, super::StoreError> {
    let mut size = LogSize::default();
    {
        let mut st = conn.prepare("SELECT series_id, ts, data FROM last_values")?;
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            let id: i64 = r.get(0)?;
            let ts: i64 = r.get(1)?;
            let data: Vec<u8> = r.get(2)?;
            let mut v = Vec::new();
            super::codec::decode_chunk(&data, &mut v)?;
            if let (Some(slot), Some((_, val))) = (usize::try_from(id).ok().and_then(|i| last.get_mut(i)), v.pop()) {
                *slot = Some((ts, val));
            }
            size.legacy = true;
        }
    }
    let mut st = conn.prepare("SELECT full, data FROM newest ORDER BY seq")?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let full: bool = r.get(0)?;
        let data: Vec<u8> = r.get(1)?;
        if full {
            // Rows before a full one are deleted with it; this only matters for a table edited
            // by hand, but then the full row still says what is newest.
            last.iter_mut().for_each(|l| *l = None);
        }
        apply(&data, last)?;
        size.wrote(data.len(), full);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_including_unset_and_text() {
        let mut buf = Vec::new();
        put(&mut buf, 0, Some(&(-5, Value::Num(f64::NAN))));
        put(&mut buf, 300, Some(&(i64::MAX, Value::Text("free cooling".into()))));
        put(&mut buf, 2, None);
        put(&mut buf, 7, Some(&(1_790_812_800_000_000_000, Value::Num(-0.0))));
        let mut last = vec![Some((1, Value::Num(1.0))); 301];
        apply(&buf, &mut last).expect("valid");
        assert!(matches!(last[0], Some((-5, Value::Num(f))) if f.is_nan()));
        assert_eq!(last[300], Some((i64::MAX, Value::Text("free cooling".into()))));
        assert_eq!(last[2], None);
        assert!(matches!(last[7], Some((1_790_812_800_000_000_000, Value::Num(f))) if f.to_bits() == (-0.0f64).to_bits()));
        assert_eq!(last[1], Some((1, Value::Num(1.0))), "a series left out keeps its value");
        // A cut row is an error, not a silent half.
        assert!(apply(&buf[..buf.len() - 3], &mut last).is_err());
    }

    #[test]
    fn a_full_row_is_due_when_most_series_moved_or_partial_rows_outweigh_it() {
        let mut s = LogSize::default();
        assert!(s.full_due(500, 1000));
        s.wrote(1_000_000, true);
        assert!(!s.full_due(1, 1000));
        s.wrote(900_000, false);
        assert!(!s.full_due(1, 1000));
        s.wrote(200_000, false);
        assert!(s.full_due(1, 1000));
        // A small site: partial rows up to 64 KB before a full one.
        let mut small = LogSize::default();
        small.wrote(100, true);
        small.wrote(60_000, false);
        assert!(!small.full_due(1, 10));
        assert!(LogSize { legacy: true, ..LogSize::default() }.full_due(1, 1000));
    }
}
