//! The on-disk queue between sampling and shipping. Every batch is appended here before it is
//! sent, so neither a network outage, an aggregator restart nor a collector crash loses it.
//! Batches are replayed oldest first; the aggregator stores the same series at the same
//! timestamp once, so a batch sent twice (a crash between send and acknowledgement) is
//! harmless. When the bound is reached, the oldest segment goes, never the newest data, and the
//! loss is counted.
//!
//! Layout: `NNNNNNNNNNNNNNNN.seg` files of records `[len u32 LE][crc32 u32 LE][payload]`, and a
//! `cursor` file holding the segment and offset of the oldest unacknowledged record.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("a batch of {0} bytes is larger than the spool's segment size")]
    TooLarge(usize),
}

/// When appended batches are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every batch: nothing acknowledged by the OS is lost on power failure (default;
    /// at 1 Hz this is one fsync a second).
    #[default]
    Always,
    /// Never explicitly: survives a crash of the collector, not of the machine.
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the spool (default /var/lib/kilowatch-collector/spool).
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Bound on the spool's size on disk; past it the oldest data is dropped (default 1 GiB).
    #[serde(default = "default_max")]
    pub max_bytes: u64,
    /// Size at which a new segment file starts (default 8 MiB).
    #[serde(default = "default_segment")]
    pub segment_bytes: u64,
    #[serde(default)]
    pub fsync: Fsync,
}

fn default_dir() -> PathBuf {
    PathBuf::from("/var/lib/kilowatch-collector/spool")
}
fn default_max() -> u64 {
    1 << 30
}
fn default_segment() -> u64 {
    8 << 20
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { dir: default_dir(), max_bytes: default_max(), segment_bytes: default_segment(), fsync: Fsync::default() }
    }
}

const HEADER: u64 = 8;

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    /// Whole, valid records (corrupt spans are not counted).
    records: u64,
    /// Sequence number of its first record: records are numbered in append order from the
    /// oldest on disk at open, so that an acknowledgement names records, not a count that a
    /// concurrent drop would shift.
    first: u64,
}

/// What the last [`Spool::peek`] handed out and is being sent: records `start..end`. A drop
/// while it is in flight (the disk filled during the request) removes some of them from disk;
/// whether they are lost is known only when the send ends: `start..dropped_to` were dropped.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    start: u64,
    end: u64,
    dropped_to: u64,
}

/// The oldest unacknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    seg: u64,
    off: u64,
    /// Valid records before `off` in that segment.
    before: u64,
}

impl Cursor {
    fn start_of(seg: u64) -> Cursor {
        Cursor { seg, off: 0, before: 0 }
    }
}

pub struct Spool {
    cfg: SpoolConfig,
    segments: VecDeque<Segment>,
    /// Open for appending; always the last of `segments` when set.
    active: Option<File>,
    cursor: Cursor,
    /// Ids only grow, so that a cursor left on disk never points into a newer segment.
    next_id: u64,
    /// Sequence number of the next record appended.
    next_seq: u64,
    in_flight: Option<InFlight>,
    dropped_records: u64,
    corrupt_records: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// Whether freeing space (dropping the oldest data) can make the same write succeed.
fn disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | FileTooLarge | QuotaExceeded)
}

impl Spool {
    pub fn open(cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        fs::create_dir_all(&cfg.dir).map_err(io(&cfg.dir))?;
        let mut ids: Vec<u64> = Vec::new();
        for e in fs::read_dir(&cfg.dir).map_err(io(&cfg.dir))? {
            let e = e.map_err(io(&cfg.dir))?;
            let name = e.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut spool = Spool { cfg, segments: VecDeque::new(), active: None, cursor: Cursor::start_of(0), next_id: 1, next_seq: 0, in_flight: None, dropped_records: 0, corrupt_records: 0 };
        spool.cursor = spool.read_cursor();
        spool.next_id = ids.last().map_or(1, |l| l + 1).max(spool.cursor.seg).max(1);
        for id in ids {
            let (bytes, records) = spool.scan_and_repair(id)?;
            spool.segments.push_back(Segment { id, bytes, records, first: spool.next_seq });
            spool.next_seq += records;
        }
        // Segments the cursor has passed were sent (a stop between the acknowledgement and the
        // delete); a cursor on a segment that is gone (dropped while stopped) moves on to the
        // oldest one left.
        spool.reap();
        match spool.segments.iter().find(|s| s.id >= spool.cursor.seg) {
            Some(s) if s.id == spool.cursor.seg => spool.cursor.before = spool.count_records_before(s, spool.cursor.off)?,
            Some(s) => spool.cursor = Cursor::start_of(s.id),
            None => spool.cursor = Cursor::start_of(spool.next_id),
        }
        if spool.pending_records() > 0 {
            tracing::info!(dir = %spool.cfg.dir.display(), records = spool.pending_records(), bytes = spool.pending_bytes(), "resuming the spool");
        }
        Ok(spool)
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.cfg.dir.join(format!("{id:016}.seg"))
    }

    /// Counts whole, valid records. A corrupt span between valid records is kept on disk and
    /// skipped (counted once here, if not yet sent); a torn or corrupt tail (a crash
    /// mid-append) is cut.
    fn scan_and_repair(&mut self, id: u64) -> Result<(u64, u64), SpoolError> {
        let path = self.seg_path(id);
        let data = fs::read(&path).map_err(io(&path))?;
        let (mut end, mut records) = (data.len(), 0u64);
        for item in Records::new(&data) {
            match item {
                Item::Record { .. } => records += 1,
                Item::Corrupt { at, len } if at + len == data.len() => end = at,
                Item::Corrupt { at, len } => {
                    if id > self.cursor.seg || (id == self.cursor.seg && at as u64 >= self.cursor.off) {
                        self.corrupt_records += 1;
                    }
                    tracing::warn!(segment = %path.display(), at, bytes = len, "spool segment has a corrupt record; skipping it");
                }
            }
        }
        if end < data.len() {
            tracing::warn!(segment = %path.display(), kept = end, cut = data.len() - end, "spool segment had a torn tail; cut it");
            if id > self.cursor.seg || (id == self.cursor.seg && end as u64 >= self.cursor.off) {
                self.corrupt_records += 1;
            }
            let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
            f.set_len(end as u64).map_err(io(&path))?;
        }
        Ok((end as u64, records))
    }

    /// The bytes `[from, s.bytes)` of a segment: a tail past `bytes` (a failed append whose
    /// truncation also failed) is never read.
    fn read_segment(&self, s: &Segment, from: u64) -> Result<Vec<u8>, SpoolError> {
        let path = self.seg_path(s.id);
        let mut data = Vec::new();
        if from < s.bytes {
            let mut f = File::open(&path).map_err(io(&path))?;
            f.seek(SeekFrom::Start(from)).map_err(io(&path))?;
            f.take(s.bytes - from).read_to_end(&mut data).map_err(io(&path))?;
        }
        Ok(data)
    }

    fn count_records_before(&self, s: &Segment, offset: u64) -> Result<u64, SpoolError> {
        let data = self.read_segment(s, 0)?;
        Ok(Records::new(&data).filter(|i| matches!(i, Item::Record { at, .. } if (*at as u64) < offset)).count() as u64)
    }

    fn read_cursor(&self) -> Cursor {
        let text = fs::read_to_string(self.cfg.dir.join("cursor")).unwrap_or_default();
        let mut it = text.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
        match (it.next(), it.next()) {
            (Some(seg), Some(off)) => Cursor { seg, off, before: 0 },
            _ => Cursor::start_of(0),
        }
    }

    fn write_cursor(&self) -> Result<(), SpoolError> {
        // Not fsynced on purpose: a cursor that comes back older only resends acknowledged
        // batches, which the aggregator stores once.
        let tmp = self.cfg.dir.join("cursor.tmp");
        fs::write(&tmp, format!("{} {}\n", self.cursor.seg, self.cursor.off)).map_err(io(&tmp))?;
        let dst = self.cfg.dir.join("cursor");
        fs::rename(&tmp, &dst).map_err(io(&dst))
    }

    /// The largest batch [`Spool::append`] takes (a record fills at most one segment).
    pub fn max_payload_bytes(&self) -> usize {
        usize::try_from(self.cfg.segment_bytes.saturating_sub(HEADER)).unwrap_or(usize::MAX)
    }

    /// Appends one batch. Returns how many old records were dropped to make room for it: past
    /// `max_bytes`, or because the disk is full. Only when there is nothing older left to drop
    /// does the batch itself fail (and count as dropped). A failed append leaves no partial
    /// record behind.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, SpoolError> {
        let need = HEADER + payload.len() as u64;
        if need > self.cfg.segment_bytes {
            self.dropped_records += 1;
            return Err(SpoolError::TooLarge(payload.len()));
        }
        if payload.is_empty() {
            return Ok(0);
        }
        let mut rec = Vec::with_capacity(need as usize);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        rec.extend_from_slice(payload);
        let before = self.dropped_records;
        while let Err((path, e)) = self.try_append(&rec) {
            if !(disk_full(&e) && self.free_oldest()) {
                // Nothing older left to drop: this batch is the one lost.
                self.dropped_records += 1;
                self.save_cursor_after_drops(before);
                return Err(SpoolError::Io { path, source: e });
            }
            tracing::warn!(error = %e, "spool disk full: dropped the oldest segment to make room");
        }
        while self.total_bytes() > self.cfg.max_bytes && self.segments.len() > 1 {
            self.drop_front();
        }
        self.save_cursor_after_drops(before);
        Ok(self.dropped_records - before)
    }

    /// Writes one record at the end of the active segment (rolling to a new one when needed).
    /// On failure the segment is cut back to where it was, or, if even that fails, closed so
    /// that the next record starts a new segment and the partial one is never read.
    fn try_append(&mut self, rec: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
        let need = rec.len() as u64;
        let roll = match self.segments.back() {
            None => true,
            Some(last) => self.active.is_none() || last.bytes + need > self.cfg.segment_bytes,
        };
        if roll {
            let id = self.next_id;
            let path = self.seg_path(id);
            let f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| (path, e))?;
            self.next_id += 1;
            self.active = Some(f);
            self.segments.push_back(Segment { id, bytes: 0, records: 0, first: self.next_seq });
            if self.segments.len() == 1 {
                self.cursor = Cursor::start_of(id);
            }
            // The segment just closed may be fully sent already.
            self.reap();
        }
        let path = self.segments.back().map(|l| self.seg_path(l.id)).unwrap_or_default();
        let (Some(f), Some(last)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err((path, std::io::Error::other("no active segment")));
        };
        let written = f.write_all(rec).and_then(|()| if self.cfg.fsync == Fsync::Always { f.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            if let Err(cut) = f.set_len(last.bytes) {
                tracing::warn!(segment = %path.display(), error = %cut, "cannot cut a failed append back; starting a new segment");
                self.active = None;
            }
            return Err((path, e));
        }
        last.bytes += need;
        last.records += 1;
        self.next_seq += 1;
        Ok(())
    }

    /// Drops the oldest segment to free disk space; false when there is nothing to drop.
    fn free_oldest(&mut self) -> bool {
        match self.segments.front() {
            None => false,
            Some(s) if s.bytes == 0 && self.segments.len() == 1 => false,
            Some(_) => {
                self.drop_front();
                true
            }
        }
    }

    /// Deletes the oldest segment, counting its unsent records as dropped (those in flight
    /// only if their send fails).
    fn drop_front(&mut self) {
        let cursor = self.cursor_seq();
        let Some(old) = self.segments.pop_front() else { return };
        if self.segments.is_empty() {
            self.active = None;
        }
        let (from, end) = (old.first.max(cursor), old.first + old.records);
        let mut lost = end.saturating_sub(from);
        if let Some(f) = &mut self.in_flight {
            let (a, b) = (from.max(f.start), end.min(f.end));
            if a < b {
                f.dropped_to = f.dropped_to.max(b);
                lost -= b - a;
            }
        }
        self.remove_segment_file(old.id);
        if self.cursor.seg <= old.id {
            self.cursor = Cursor::start_of(self.segments.front().map_or(self.next_id, |s| s.id));
        }
        self.dropped_records += lost;
        tracing::warn!(segment = old.id, records = end.saturating_sub(from), "spool full: dropped the oldest unsent data");
    }

    fn remove_segment_file(&self, id: u64) {
        let path = self.seg_path(id);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(segment = %path.display(), error = %e, "cannot delete a spool segment");
        }
    }

    fn save_cursor_after_drops(&self, before: u64) {
        if self.dropped_records != before
            && let Err(e) = self.write_cursor()
        {
            // An older cursor on disk points at a deleted segment: the next start skips it.
            tracing::warn!(error = %e, "cannot save the spool cursor after dropping data");
        }
    }

    /// Deletes the segments the cursor has passed, except the one being appended to.
    fn reap(&mut self) {
        while let Some(front) = self.segments.front() {
            let sent = front.id < self.cursor.seg || (front.id == self.cursor.seg && self.cursor.off >= front.bytes);
            let appending = self.active.is_some() && self.segments.len() == 1;
            if !sent || appending {
                break;
            }
            let id = front.id;
            self.segments.pop_front();
            self.remove_segment_file(id);
            if self.cursor.seg <= id {
                self.cursor = Cursor::start_of(self.segments.front().map_or(self.next_id, |s| s.id));
            }
        }
    }

    /// Sequence number of the oldest unacknowledged record.
    fn cursor_seq(&self) -> u64 {
        self.segments.iter().find(|s| s.id == self.cursor.seg).map_or(self.next_seq, |s| s.first + self.cursor.before)
    }

    /// The oldest unacknowledged batches, up to `max_bytes` of payload (at least one), to be
    /// sent and then acknowledged with [`Spool::ack`]. Corrupt records are skipped.
    pub fn peek(&mut self, max_bytes: usize) -> Result<Vec<Vec<u8>>, SpoolError> {
        // A previous peek never acknowledged: its send failed, so what was dropped from it
        // while in flight is lost.
        self.settle(0);
        let mut out = Vec::new();
        let mut total = 0usize;
        'segments: for s in self.segments.iter().filter(|s| s.id >= self.cursor.seg) {
            let from = if s.id == self.cursor.seg { self.cursor.off } else { 0 };
            let data = self.read_segment(s, from)?;
            for item in Records::new(&data) {
                let Item::Record { payload, .. } = item else { continue };
                if !out.is_empty() && total + payload.len() > max_bytes {
                    break 'segments;
                }
                total += payload.len();
                out.push(payload.to_vec());
            }
        }
        let start = self.cursor_seq();
        self.in_flight = Some(InFlight { start, end: start + out.len() as u64, dropped_to: start });
        Ok(out)
    }

    /// Ends the in-flight send with its first `delivered` records delivered: the rest of what
    /// was dropped from it while in flight is counted as lost. Returns where the cursor must be.
    fn settle(&mut self, delivered: u64) -> Option<u64> {
        let f = self.in_flight.take()?;
        let done = f.start + delivered;
        self.dropped_records += f.dropped_to.saturating_sub(done);
        Some(done)
    }

    /// Marks the `n` oldest batches of the last [`Spool::peek`] as delivered (without a peek:
    /// the `n` oldest). Fully delivered segments are deleted, the last one too once it is no
    /// longer appended to. Batches dropped while they were being sent count as delivered.
    pub fn ack(&mut self, n: u64) -> Result<(), SpoolError> {
        let target = self.settle(n).unwrap_or_else(|| self.cursor_seq() + n);
        while self.cursor_seq() < target {
            let Some(s) = self.segments.iter().find(|s| s.id == self.cursor.seg) else { break };
            let data = self.read_segment(s, self.cursor.off)?;
            let (first, bytes, id) = (s.first, s.bytes, s.id);
            let mut off = 0usize;
            for item in Records::new(&data) {
                match item {
                    Item::Record { .. } if first + self.cursor.before >= target => break,
                    Item::Record { at, payload } => {
                        off = at + HEADER as usize + payload.len();
                        self.cursor.before += 1;
                    }
                    // Past a corrupt span too, so that the segment can be finished.
                    Item::Corrupt { at, len } => off = at + len,
                }
            }
            self.cursor.off += off as u64;
            if self.cursor.off < bytes {
                break;
            }
            match self.segments.iter().find(|s| s.id > id) {
                Some(next) => self.cursor = Cursor::start_of(next.id),
                None => break,
            }
        }
        self.reap();
        self.write_cursor()
    }

    pub fn pending_records(&self) -> u64 {
        self.next_seq.saturating_sub(self.cursor_seq())
    }

    pub fn pending_bytes(&self) -> u64 {
        self.segments.iter().filter(|s| s.id >= self.cursor.seg).map(|s| s.bytes).sum::<u64>().saturating_sub(self.cursor.off)
    }

    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Batches lost: unsent records dropped to stay within the bound or because the disk was
    /// full, and batches that could not be appended at all.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// Corrupt or torn records found in unsent data, skipped.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt_records
    }

    /// How many segment files the spool holds.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// A valid record, or a run of bytes that is none (from a corrupt record to the next valid one).
enum Item<'a> {
    Record { at: usize, payload: &'a [u8] },
    Corrupt { at: usize, len: usize },
}

/// The records of a segment in order, resynchronising after a corrupt one: the next record is
/// the next offset whose header's length and CRC match. Line protocol payloads make a false
/// match practically impossible (their bytes read as lengths far beyond a segment).
struct Records<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Records<'a> {
    fn new(data: &'a [u8]) -> Self {
        Records { data, pos: 0 }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        let at = self.pos;
        if at >= self.data.len() {
            return None;
        }
        if let Some(payload) = read_record(self.data, at) {
            self.pos = at + HEADER as usize + payload.len();
            return Some(Item::Record { at, payload });
        }
        let next = (at + 1..self.data.len()).find(|&p| read_record(self.data, p).is_some()).unwrap_or(self.data.len());
        self.pos = next;
        Some(Item::Corrupt { at, len: next - at })
    }
}

/// The payload of the record at `off`, if its header is whole, its length non-zero (a zeroed
/// region is not a run of empty records) and its CRC right.
fn read_record(data: &[u8], off: usize) -> Option<&[u8]> {
    let h = data.get(off..off + HEADER as usize)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let p = data.get(off + HEADER as usize..off + HEADER as usize + len)?;
    (len > 0 && crc32fast::hash(p) == crc).then_some(p)
}

#[cfg(test)]
mod tests;
