//! `kilowatch restore`: a new (or rebuilt) member of an active-active pair starts from its
//! twin's data. It downloads the twin's snapshots (`GET /api/v1/admin/snapshot/{file}`, an admin
//! token) into an empty data directory, checks each copy (its length against the answer's
//! `Content-Length`, SQLite's `PRAGMA integrity_check`) before renaming any into place, then
//! checks the store opens. What the twin received after its snapshot reaches the new member
//! from the collectors' spools (ingest is idempotent: what both hold is stored once).
//!
//! A restore that fails leaves no database that looks complete and can be run again: the
//! downloads are `*.part` files, removed on failure and at the next start; `store.db` is renamed
//! into place last, so its presence means a finished restore.

use std::path::{Path, PathBuf};

use crate::admin::SNAPSHOT_FILES;

/// Largest snapshot `kilowatch restore` downloads unless told otherwise (`--max-bytes`): a
/// year of a DC5-sized site's raw samples and roll-ups is a few tens of GB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 30;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0} already holds a store.db: restore only into an empty data directory (move it away first)")]
    NotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot reach {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("{url} sent no Content-Length: the download's length cannot be checked")]
    NoLength { url: String },
    #[error("the copy of {file} is {got} bytes, the twin announced {expected}: not restored (run again)")]
    Short { file: &'static str, got: u64, expected: u64 },
    #[error("the snapshot of {file} is {bytes} bytes, more than the {max} this restore accepts (--max-bytes)")]
    TooLarge { file: &'static str, bytes: u64, max: u64 },
    #[error("the copy of {file} is not a sound SQLite database ({why}): not restored (run again)")]
    Corrupt { file: &'static str, why: String },
    #[error("the restored store does not open: {0}")]
    Open(#[from] kilowatch_store::StoreError),
}

/// What was restored.
#[derive(Debug)]
pub struct Restored {
    pub bytes: u64,
    pub series: usize,
    /// The newest sample in the copy, ns.
    pub newest: Option<i64>,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + use<> {
    let path = path.to_owned();
    move |source| RestoreError::Write { path, source }
}

/// The download of `file` beside its final name.
fn part_path(data_dir: &Path, file: &str) -> PathBuf {
    data_dir.join(format!("{file}.part"))
}

/// Removes `path` if it is there.
fn remove_if_present(path: &Path) -> Result<(), RestoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(write_err(path)(e)),
        _ => Ok(()),
    }
}

/// The leftovers of an interrupted restore: half-written downloads and their SQLite side files.
fn remove_parts(data_dir: &Path) -> Result<(), RestoreError> {
    for file in SNAPSHOT_FILES {
        let part = part_path(data_dir, file);
        for p in [part.clone(), side_file(&part, "-wal"), side_file(&part, "-shm"), side_file(&part, "-journal")] {
            remove_if_present(&p)?;
        }
    }
    Ok(())
}

fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Downloads the twin at `from` (its base URL) into `data_dir`, with the admin `token`, each
/// file at most `max_bytes`.
pub async fn restore(from: &str, token: &str, data_dir: &Path, max_bytes: u64) -> Result<Restored, RestoreError> {
    if data_dir.join("store.db").exists() {
        return Err(RestoreError::NotEmpty(data_dir.to_owned()));
    }
    std::fs::create_dir_all(data_dir).map_err(write_err(data_dir))?;
    remove_parts(data_dir)?;
    let res = download_all(from, token, data_dir, max_bytes).await;
    if res.is_err() {
        // Nothing half-written stays: the next run starts clean.
        let _ = remove_parts(data_dir);
    }
    let total = res?;
    // store.db last: its presence means the restore finished.
    for file in SNAPSHOT_FILES.iter().rev() {
        let dest = data_dir.join(file);
        // A -wal left by an earlier database would be replayed into the copy when it opens.
        for stale in [side_file(&dest, "-wal"), side_file(&dest, "-shm")] {
            if stale.exists() {
                tracing::warn!(file = %stale.display(), "a stale SQLite side file is removed before the restored copy is put in place");
                remove_if_present(&stale)?;
            }
        }
        std::fs::rename(part_path(data_dir, file), &dest).map_err(write_err(&dest))?;
    }
    let store = kilowatch_store::Store::open(data_dir)?;
    let stats = store.stats()?;
    Ok(Restored { bytes: total, series: stats.series, newest: stats.newest_ts })
}

/// Every snapshot downloaded to its `.part` file and checked; the bytes in all.
async fn download_all(from: &str, token: &str, data_dir: &Path, max_bytes: u64) -> Result<u64, RestoreError> {
    let client = reqwest::Client::new();
    let mut total = 0;
    for file in SNAPSHOT_FILES {
        let part = part_path(data_dir, file);
        let got = download(&client, from, token, file, &part, max_bytes).await?;
        check_database(file, &part)?;
        tracing::info!(file, bytes = got, from = %from, "snapshot downloaded and checked");
        total += got;
    }
    Ok(total)
}

/// One snapshot into `part`: its length is the announced one and at most `max_bytes`.
async fn download(client: &reqwest::Client, from: &str, token: &str, file: &'static str, part: &Path, max_bytes: u64) -> Result<u64, RestoreError> {
    let url = format!("{}/api/v1/admin/snapshot/{file}", from.trim_end_matches('/'));
    let req_err = |source| RestoreError::Request { url: url.clone(), source };
    let mut r = client.get(&url).header("Authorization", format!("Token {token}")).send().await.map_err(req_err)?;
    if !r.status().is_success() {
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default().chars().take(1000).collect();
        return Err(RestoreError::Refused { url, status, body });
    }
    let Some(expected) = r.content_length() else { return Err(RestoreError::NoLength { url }) };
    if expected > max_bytes {
        return Err(RestoreError::TooLarge { file, bytes: expected, max: max_bytes });
    }
    let mut out = std::fs::File::create(part).map_err(write_err(part))?;
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await.map_err(|source| {
        // The connection ended before the announced length: say so, not only "error decoding".
        if got < expected { RestoreError::Short { file, got, expected } } else { RestoreError::Request { url: url.clone(), source } }
    })? {
        got += chunk.len() as u64;
        if got > expected {
            return Err(RestoreError::Short { file, got, expected });
        }
        std::io::Write::write_all(&mut out, &chunk).map_err(write_err(part))?;
    }
    out.sync_all().map_err(write_err(part))?;
    if got != expected {
        return Err(RestoreError::Short { file, got, expected });
    }
    Ok(got)
}

/// SQLite's own check of every page of the copy.
fn check_database(file: &'static str, path: &Path) -> Result<(), RestoreError> {
    let corrupt = |why: String| RestoreError::Corrupt { file, why };
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(|e| corrupt(e.to_string()))?;
    let answer: Vec<String> = conn.prepare("PRAGMA integrity_check").and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect()).map_err(|e| corrupt(e.to_string()))?;
    drop(conn);
    match answer.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        [] => Err(corrupt("integrity_check answered nothing".into())),
        rows => Err(corrupt(format!("integrity_check: {}", rows.iter().take(3).cloned().collect::<Vec<_>>().join("; ")))),
    }
}
