//! The write-ahead log: accepted requests, appended to segment files before their samples
//! enter the heads, and synced before the write is acknowledged. A checkpoint starts a new
//! segment, writes the heads into chunks, then deletes the segments it covered.
//!
//! Why files and not a table: appending a request to a file is one `write` and, at the
//! acknowledgement, one `fdatasync` shared by every request appended meanwhile (group commit);
//! the same bytes in SQLite went through its page cache, its own WAL, a later copy into the
//! database and a delete, all under the store's lock.
//!
//! A record is `len: u32 LE | crc32: u32 LE | payload`. A crash can leave a torn record at the
//! end of a segment: it was never acknowledged, so replay stops that segment there. A failed
//! append is cut off again (`set_len`), or, if even that fails, the segment is abandoned and the
//! next append starts a new one, so that no later record sits behind a torn one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the write-ahead log's lock was poisoned by a panic in another thread")]
    Poisoned,
}

const HEADER: usize = 8;
/// A record larger than this is corrupt, not a request (requests are capped far below).
const MAX_RECORD: u32 = 1 << 30;

struct Tail {
    seq: u64,
    file: Arc<File>,
    /// Bytes in the current segment.
    len: u64,
    /// Bytes appended since opening, all segments: the positions `sync` is asked for.
    written: u64,
    /// An append failed and could not be cut off: the next append starts a new segment.
    broken: bool,
}

pub struct Wal {
    dir: PathBuf,
    tail: Mutex<Tail>,
    /// Position up to which everything appended is on disk.
    synced: Mutex<u64>,
}

/// What `open` read back: each segment's records, oldest first, and how many segments ended
/// in a torn or corrupt record.
pub struct Replay {
    pub records: Vec<Vec<u8>>,
    pub torn: usize,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

impl Wal {
    /// Opens the log in `dir` (created if missing), returns its records, and appends to a new
    /// segment from now on.
    pub fn open(dir: &Path) -> Result<(Wal, Replay), WalError> {
        let io = |source| WalError::Io { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut seqs: Vec<u64> = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io)? {
            let name = e.map_err(io)?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else { continue };
            if let Ok(s) = u64::from_str_radix(stem, 16) {
                seqs.push(s);
            }
        }
        seqs.sort_unstable();
        let mut replay = Replay { records: Vec::new(), torn: 0 };
        for s in &seqs {
            let path = seg_path(dir, *s);
            let mut data = Vec::new();
            File::open(&path).and_then(|mut f| f.read_to_end(&mut data)).map_err(|source| WalError::Io { path: path.clone(), source })?;
            if !read_records(&data, &mut replay.records) {
                replay.torn += 1;
                tracing::warn!(segment = %path.display(), "write-ahead log segment ends in a torn record (a write cut off by a crash, never acknowledged); replay stops there");
            }
        }
        let seq = seqs.last().map_or(1, |s| s + 1);
        let file = create_segment(dir, seq)?;
        let tail = Tail { seq, file: Arc::new(file), len: 0, written: 0, broken: false };
        Ok((Wal { dir: dir.to_owned(), tail: Mutex::new(tail), synced: Mutex::new(0) }, replay))
    }

    /// Appends one record; returns the position to pass to [`Wal::sync`]. Not on disk until then.
    #[cfg(test)]
    pub fn append(&self, payload: &[u8]) -> Result<u64, WalError> {
        self.append_parts(&[payload])
    }

    /// Appends one record made of `parts` end to end (a record's head, then the request body
    /// as received), handed to the kernel as they are: no copy of the body is made.
    pub fn append_parts(&self, parts: &[&[u8]]) -> Result<u64, WalError> {
        let mut t = self.tail.lock().map_err(|_| WalError::Poisoned)?;
        if t.broken {
            let seq = t.seq + 1;
            t.file = Arc::new(create_segment(&self.dir, seq)?);
            t.seq = seq;
            t.len = 0;
            t.broken = false;
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut crc = crc32fast::Hasher::new();
        for p in parts {
            crc.update(p);
        }
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc.finalize().to_le_bytes());
        let mut slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&header[..]).chain(parts.iter().copied()).map(std::io::IoSlice::new).collect();
        let res = write_all_vectored(&t.file, &mut slices);
        let n = (HEADER + len) as u64;
        match res {
            Ok(()) => {
                t.len += n;
                t.written += n;
                Ok(t.written)
            }
            Err(source) => {
                if t.file.set_len(t.len).is_err() {
                    t.broken = true;
                }
                Err(WalError::Io { path: seg_path(&self.dir, t.seq), source })
            }
        }
    }

    /// Returns once everything appended up to `pos` is on disk. Callers waiting at the same
    /// time share one `fdatasync`.
    pub fn sync(&self, pos: u64) -> Result<(), WalError> {
        let mut synced = self.synced.lock().map_err(|_| WalError::Poisoned)?;
        if *synced >= pos {
            return Ok(());
        }
        let (file, written, seq) = {
            let t = self.tail.lock().map_err(|_| WalError::Poisoned)?;
            (t.file.clone(), t.written, t.seq)
        };
        file.sync_data().map_err(|source| WalError::Io { path: seg_path(&self.dir, seq), source })?;
        *synced = written;
        Ok(())
    }

    /// Syncs the current segment and starts a new one. Returns the new segment's number:
    /// every record appended before this call is in a segment below it.
    pub fn rotate(&self) -> Result<u64, WalError> {
        let mut synced = self.synced.lock().map_err(|_| WalError::Poisoned)?;
        let mut t = self.tail.lock().map_err(|_| WalError::Poisoned)?;
        t.file.sync_data().map_err(|source| WalError::Io { path: seg_path(&self.dir, t.seq), source })?;
        *synced = t.written;
        let seq = t.seq + 1;
        t.file = Arc::new(create_segment(&self.dir, seq)?);
        t.seq = seq;
        t.len = 0;
        t.broken = false;
        Ok(seq)
    }

    /// Deletes the segments below `seq` (their records are in chunks now).
    pub fn remove_before(&self, seq: u64) -> Result<usize, WalError> {
        let io = |source| WalError::Io { path: self.dir.clone(), source };
        let mut removed = 0;
        for e in std::fs::read_dir(&self.dir).map_err(io)? {
            let name = e.map_err(io)?.file_name();
            let Some(s) = name.to_str().and_then(|n| n.strip_suffix(".wal")).and_then(|n| u64::from_str_radix(n, 16).ok()) else { continue };
            if s < seq {
                std::fs::remove_file(seg_path(&self.dir, s)).map_err(io)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// `write_all` for several buffers in one `writev` (a short write goes on where it stopped).
fn write_all_vectored(mut file: &File, mut slices: &mut [std::io::IoSlice<'_>]) -> std::io::Result<()> {
    std::io::IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn create_segment(dir: &Path, seq: u64) -> Result<File, WalError> {
    let path = seg_path(dir, seq);
    let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|source| WalError::Io { path: path.clone(), source })?;
    // The new name must survive a crash too, or a synced record could vanish with it.
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| WalError::Io { path: dir.to_owned(), source })?;
    Ok(file)
}

/// Appends the records of one segment to `out`; false when it ends in a torn or corrupt one.
fn read_records(data: &[u8], out: &mut Vec<Vec<u8>>) -> bool {
    let mut pos = 0;
    while pos < data.len() {
        let Some(h) = data.get(pos..pos + HEADER) else { return false };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if len > MAX_RECORD {
            return false;
        }
        let Some(payload) = data.get(pos + HEADER..pos + HEADER + len as usize) else { return false };
        if crc32fast::hash(payload) != crc {
            return false;
        }
        out.push(payload.to_vec());
        pos += HEADER + len as usize;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_across_segments_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let (w, r) = Wal::open(dir.path()).expect("open");
            assert!(r.records.is_empty());
            let p = w.append(b"one").expect("append");
            w.sync(p).expect("sync");
            let seq = w.rotate().expect("rotate");
            w.append(b"two").expect("append");
            let p = w.append(b"").expect("append");
            w.sync(p).expect("sync");
            assert_eq!(seq, 2);
        }
        // A crash in the middle of an append: half a header, then half a record.
        let last = seg_path(dir.path(), 2);
        let mut f = OpenOptions::new().append(true).open(&last).expect("open");
        f.write_all(&[9, 0, 0, 0, 1, 2, 3, 4, b'x']).expect("write");
        drop(f);
        let (w, r) = Wal::open(dir.path()).expect("reopen");
        assert_eq!(r.records, vec![b"one".to_vec(), b"two".to_vec(), Vec::new()]);
        assert_eq!(r.torn, 1);
        // New records go to a new segment, after the torn one.
        w.append(b"three").expect("append");
        assert_eq!(w.remove_before(3).expect("remove"), 2);
        drop(w);
        let (_, r) = Wal::open(dir.path()).expect("reopen");
        assert_eq!(r.records, vec![b"three".to_vec()]);
    }

    #[test]
    fn a_corrupt_record_stops_its_segment() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let (w, _) = Wal::open(dir.path()).expect("open");
            w.append(b"good").expect("append");
            w.append(b"flipped").expect("append");
        }
        let path = seg_path(dir.path(), 1);
        let mut data = std::fs::read(&path).expect("read");
        let n = data.len();
        data[n - 1] ^= 1;
        std::fs::write(&path, data).expect("write");
        let (_, r) = Wal::open(dir.path()).expect("reopen");
        assert_eq!(r.records, vec![b"good".to_vec()]);
        assert_eq!(r.torn, 1);
    }
}
