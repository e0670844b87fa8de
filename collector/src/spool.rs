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
    records: u64,
}

pub struct Spool {
    cfg: SpoolConfig,
    segments: VecDeque<Segment>,
    active: Option<File>,
    /// Oldest unacknowledged record: segment id, byte offset, records before it in that segment.
    cursor: (u64, u64, u64),
    dropped_records: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
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
        let mut spool = Spool { cfg, segments: VecDeque::new(), active: None, cursor: (0, 0, 0), dropped_records: 0 };
        for id in ids {
            let (bytes, records) = spool.scan_and_repair(id)?;
            spool.segments.push_back(Segment { id, bytes, records });
        }
        spool.cursor = spool.read_cursor();
        // A cursor pointing at a segment that is gone (dropped while stopped) starts over at
        // the oldest one left.
        match spool.segments.front() {
            Some(first) if spool.cursor.0 < first.id => spool.cursor = (first.id, 0, 0),
            None => spool.cursor = (0, 0, 0),
            _ => {}
        }
        if let Some(seg) = spool.segments.iter().find(|s| s.id == spool.cursor.0) {
            spool.cursor.2 = spool.count_records_before(seg.id, spool.cursor.1)?;
        }
        if spool.pending_records() > 0 {
            tracing::info!(dir = %spool.cfg.dir.display(), records = spool.pending_records(), bytes = spool.pending_bytes(), "resuming the spool");
        }
        Ok(spool)
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.cfg.dir.join(format!("{id:016}.seg"))
    }

    /// Counts whole, valid records; cuts a torn or corrupt tail (a crash mid-append).
    fn scan_and_repair(&self, id: u64) -> Result<(u64, u64), SpoolError> {
        let path = self.seg_path(id);
        let data = fs::read(&path).map_err(io(&path))?;
        let (mut off, mut records) = (0usize, 0u64);
        while let Some(len) = read_record(&data, off).map(|p| p.len()) {
            off += HEADER as usize + len;
            records += 1;
        }
        if off < data.len() {
            tracing::warn!(segment = %path.display(), kept = off, cut = data.len() - off, "spool segment had a torn tail; cut it");
            let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
            f.set_len(off as u64).map_err(io(&path))?;
        }
        Ok((off as u64, records))
    }

    fn count_records_before(&self, id: u64, offset: u64) -> Result<u64, SpoolError> {
        let path = self.seg_path(id);
        let data = fs::read(&path).map_err(io(&path))?;
        let (mut off, mut n) = (0usize, 0u64);
        while (off as u64) < offset {
            let Some(p) = read_record(&data, off) else { break };
            off += HEADER as usize + p.len();
            n += 1;
        }
        Ok(n)
    }

    fn read_cursor(&self) -> (u64, u64, u64) {
        let text = fs::read_to_string(self.cfg.dir.join("cursor")).unwrap_or_default();
        let mut it = text.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
        match (it.next(), it.next()) {
            (Some(seg), Some(off)) => (seg, off, 0),
            _ => (0, 0, 0),
        }
    }

    fn write_cursor(&self) -> Result<(), SpoolError> {
        // Not fsynced on purpose: a cursor that comes back older only resends acknowledged
        // batches, which the aggregator stores once.
        let tmp = self.cfg.dir.join("cursor.tmp");
        fs::write(&tmp, format!("{} {}\n", self.cursor.0, self.cursor.1)).map_err(io(&tmp))?;
        let dst = self.cfg.dir.join("cursor");
        fs::rename(&tmp, &dst).map_err(io(&dst))
    }

    /// Appends one batch. Returns how many old records were dropped to stay within the bound.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, SpoolError> {
        let need = HEADER + payload.len() as u64;
        if need > self.cfg.segment_bytes {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let roll = match self.segments.back() {
            None => true,
            Some(last) => self.active.is_none() || last.bytes + need > self.cfg.segment_bytes,
        };
        if roll {
            let id = self.segments.back().map_or(1, |s| s.id + 1);
            let path = self.seg_path(id);
            let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
            self.active = Some(f);
            self.segments.push_back(Segment { id, bytes: 0, records: 0 });
            if self.segments.len() == 1 {
                self.cursor = (id, 0, 0);
            }
        }
        let (Some(f), Some(last)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Ok(0);
        };
        let path = self.cfg.dir.join(format!("{:016}.seg", last.id));
        let mut rec = Vec::with_capacity(need as usize);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        rec.extend_from_slice(payload);
        f.write_all(&rec).map_err(io(&path))?;
        if self.cfg.fsync == Fsync::Always {
            f.sync_data().map_err(io(&path))?;
        }
        last.bytes += need;
        last.records += 1;
        self.enforce_bound()
    }

    fn enforce_bound(&mut self) -> Result<u64, SpoolError> {
        let mut dropped = 0;
        while self.total_bytes() > self.cfg.max_bytes && self.segments.len() > 1 {
            let Some(old) = self.segments.pop_front() else { break };
            let lost = if old.id < self.cursor.0 {
                0
            } else {
                old.records - self.cursor.2
            };
            dropped += lost;
            let path = self.seg_path(old.id);
            fs::remove_file(&path).map_err(io(&path))?;
            if let Some(next) = self.segments.front()
                && self.cursor.0 <= old.id
            {
                self.cursor = (next.id, 0, 0);
            }
            tracing::warn!(segment = old.id, records = lost, "spool full: dropped the oldest unsent data");
        }
        if dropped > 0 {
            self.dropped_records += dropped;
            self.write_cursor()?;
        }
        Ok(dropped)
    }

    /// The oldest unacknowledged batches, up to `max_bytes` of payload (at least one).
    pub fn peek(&self, max_bytes: usize) -> Result<Vec<Vec<u8>>, SpoolError> {
        let mut out = Vec::new();
        let mut total = 0usize;
        let (start, mut off) = (self.cursor.0, self.cursor.1);
        for s in self.segments.iter().filter(|s| s.id >= start) {
            if s.id != start {
                off = 0;
            }
            if off >= s.bytes {
                continue;
            }
            let path = self.seg_path(s.id);
            let mut f = File::open(&path).map_err(io(&path))?;
            f.seek(SeekFrom::Start(off)).map_err(io(&path))?;
            let mut data = Vec::new();
            f.take(s.bytes - off).read_to_end(&mut data).map_err(io(&path))?;
            let mut pos = 0usize;
            while let Some(p) = read_record(&data, pos) {
                if !out.is_empty() && total + p.len() > max_bytes {
                    return Ok(out);
                }
                total += p.len();
                out.push(p.to_vec());
                pos += HEADER as usize + p.len();
            }
        }
        Ok(out)
    }

    /// Marks the `n` oldest batches as delivered; fully delivered segments are deleted.
    pub fn ack(&mut self, mut n: u64) -> Result<(), SpoolError> {
        while n > 0 {
            let Some(idx) = self.segments.iter().position(|s| s.id == self.cursor.0) else { break };
            let s = &self.segments[idx];
            let left = s.records - self.cursor.2;
            let take = n.min(left);
            // Offsets advance record by record: read the lengths of the records being acked.
            let path = self.seg_path(s.id);
            let data = fs::read(&path).map_err(io(&path))?;
            let mut off = self.cursor.1 as usize;
            for _ in 0..take {
                let Some(p) = read_record(&data, off) else { break };
                off += HEADER as usize + p.len();
            }
            self.cursor.1 = off as u64;
            self.cursor.2 += take;
            n -= take;
            let done = self.cursor.2 >= s.records;
            let is_last = idx + 1 == self.segments.len();
            if done && !is_last {
                let id = s.id;
                self.segments.remove(idx);
                let path = self.seg_path(id);
                fs::remove_file(&path).map_err(io(&path))?;
                if let Some(next) = self.segments.get(idx) {
                    self.cursor = (next.id, 0, 0);
                }
            } else if done {
                break;
            }
        }
        self.write_cursor()
    }

    pub fn pending_records(&self) -> u64 {
        self.segments.iter().filter(|s| s.id >= self.cursor.0).map(|s| s.records).sum::<u64>() - self.cursor.2
    }

    pub fn pending_bytes(&self) -> u64 {
        self.segments.iter().filter(|s| s.id >= self.cursor.0).map(|s| s.bytes).sum::<u64>().saturating_sub(self.cursor.1)
    }

    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }
}

fn read_record(data: &[u8], off: usize) -> Option<&[u8]> {
    let h = data.get(off..off + HEADER as usize)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let p = data.get(off + HEADER as usize..off + HEADER as usize + len)?;
    (crc32fast::hash(p) == crc).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max: u64, seg: u64) -> SpoolConfig {
        SpoolConfig { dir: dir.to_owned(), max_bytes: max, segment_bytes: seg, fsync: Fsync::Never }
    }

    #[test]
    fn replays_oldest_first_across_restarts() {
        let d = tempfile::tempdir().expect("tmp");
        {
            let mut s = Spool::open(cfg(d.path(), 1 << 20, 64)).expect("open");
            for i in 0..10u8 {
                s.append(&[i; 20]).expect("append");
            }
            assert_eq!(s.pending_records(), 10);
            let first = s.peek(45).expect("peek");
            assert_eq!(first, vec![vec![0u8; 20], vec![1u8; 20]]);
            s.ack(3).expect("ack");
        }
        let mut s = Spool::open(cfg(d.path(), 1 << 20, 64)).expect("reopen");
        assert_eq!(s.pending_records(), 7);
        let all = s.peek(1 << 20).expect("peek");
        assert_eq!(all.len(), 7);
        assert_eq!(all[0], vec![3u8; 20]);
        s.ack(7).expect("ack");
        assert_eq!(s.pending_records(), 0);
        assert!(s.peek(100).expect("peek").is_empty());
        s.append(b"new").expect("append");
        assert_eq!(s.peek(100).expect("peek"), vec![b"new".to_vec()]);
    }

    #[test]
    fn full_spool_drops_the_oldest_and_counts() {
        let d = tempfile::tempdir().expect("tmp");
        let mut s = Spool::open(cfg(d.path(), 200, 60)).expect("open");
        let mut dropped = 0;
        for i in 0..20u8 {
            dropped += s.append(&[i; 20]).expect("append");
        }
        assert!(dropped > 0);
        assert_eq!(s.dropped_records(), dropped);
        assert!(s.total_bytes() <= 200);
        let left = s.peek(1 << 20).expect("peek");
        assert_eq!(left.last(), Some(&vec![19u8; 20]), "the newest is kept");
        assert_eq!(left.len() as u64 + dropped, 20, "every batch is either kept or counted");
    }

    #[test]
    fn a_torn_tail_is_cut() {
        let d = tempfile::tempdir().expect("tmp");
        {
            let mut s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("open");
            s.append(b"one").expect("append");
            s.append(b"two").expect("append");
        }
        let seg = d.path().join(format!("{:016}.seg", 1));
        let mut f = OpenOptions::new().append(true).open(&seg).expect("seg");
        f.write_all(&[9, 0, 0, 0, 1, 2]).expect("torn");
        drop(f);
        let s = Spool::open(cfg(d.path(), 1 << 20, 1 << 20)).expect("reopen");
        assert_eq!(s.peek(1 << 20).expect("peek"), vec![b"one".to_vec(), b"two".to_vec()]);
    }
}
