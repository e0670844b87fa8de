//! Consistent copies of the databases, for a new member of an active-active pair to start from
//! its twin's data (docs/ha.md, "Rebuild a member").

use std::path::Path;

use rusqlite::params;

use super::jobs::{JobError, JobStore};
use super::{Store, StoreError};

/// `dest` as SQLite takes it: a path it can open.
fn dest_text(dest: &Path) -> Result<&str, StoreError> {
    dest.to_str().ok_or(StoreError::Corrupt(super::CorruptRecord("a snapshot path that is not UTF-8")))
}

/// The name a snapshot is made under in the data directory before it is sent (then unlinked).
const TEMP_PREFIX: &str = ".snapshot-";

/// Where a snapshot of `file` is made in `dir`, unique per call.
pub fn temp_path(dir: &Path, file: &str) -> std::path::PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}-{n}-{file}", kilowatch_model::Timestamp::now().0))
}

/// Removes the snapshots a crash left in `dir` (made, not yet unlinked: each as large as its
/// database), and SQLite's side files of them; the paths removed.
pub fn remove_leftovers(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

impl Store {
    /// Writes to `dest` (which must not exist) a copy of store.db holding every write
    /// acknowledged before the call: a checkpoint first moves the heads and the log into
    /// store.db, then one read transaction copies it (`VACUUM INTO`, compacted). Ingest, reads
    /// and checkpoints go on meanwhile; the copy is the store as of its snapshot.
    pub fn snapshot_into(&self, dest: &Path) -> Result<(), StoreError> {
        {
            let mut w = self.writer()?;
            self.checkpoint_with(&mut w)?;
        }
        let conn = self.readers.take()?;
        conn.conn().execute("VACUUM INTO ?1", params![dest_text(dest)?])?;
        Ok(())
    }
}

impl JobStore {
    /// Writes to `dest` (which must not exist) a copy of jobs.db (allocations and training
    /// progress).
    pub fn snapshot_into(&self, dest: &Path) -> Result<(), JobError> {
        let text = dest.to_str().ok_or_else(|| JobError::Invalid("a snapshot path that is not UTF-8".into()))?;
        self.lock()?.execute("VACUUM INTO ?1", params![text])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kilowatch_model::{Point, Timestamp};

    /// The copy holds what was written, heads included, and opens as a store of its own.
    #[test]
    fn a_snapshot_holds_every_acknowledged_write_and_opens() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("a")).expect("open");
        let pts: Vec<Point> = (0..100).map(|i| Point::new("meter", Timestamp::from_secs(1_790_812_800 + i * 60)).tag("meter", "grid-a").field("energy_kwh", i as f64)).collect();
        s.write(&pts[..50]).expect("write");
        s.checkpoint().expect("checkpoint");
        s.write(&pts[50..]).expect("write");
        let copy = dir.path().join("b");
        std::fs::create_dir_all(&copy).expect("dir");
        s.snapshot_into(&copy.join("store.db")).expect("snapshot");
        assert!(s.snapshot_into(&copy.join("store.db")).is_err(), "an existing file is not overwritten");
        let b = Store::open(&copy).expect("open the copy");
        let id = b.find_series("meter", "energy_kwh", &[]).expect("find")[0].id;
        assert_eq!(b.read_with_neighbours(id, i64::MIN, i64::MAX).expect("read").len(), 100);
    }
}
