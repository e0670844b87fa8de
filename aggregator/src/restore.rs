//! `kilowatch restore`: a new (or rebuilt) member of an active-active pair starts from its
//! twin's data. It downloads the twin's snapshots (`GET /api/v1/admin/snapshot/{file}`, an admin
//! token) into an empty data directory, then checks the copy opens. What the twin received after
//! its snapshot reaches the new member from the collectors' spools (ingest is idempotent: what
//! both hold is stored once).

use std::path::{Path, PathBuf};

use crate::admin::SNAPSHOT_FILES;

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
    #[error("the copy of {file} is short: {got} of {expected} bytes")]
    Short { file: &'static str, got: u64, expected: u64 },
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

/// Downloads the twin at `from` (its base URL) into `data_dir`, with the admin `token`.
pub async fn restore(from: &str, token: &str, data_dir: &Path) -> Result<Restored, RestoreError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| RestoreError::Write { path, source }
    };
    if data_dir.join("store.db").exists() {
        return Err(RestoreError::NotEmpty(data_dir.to_owned()));
    }
    std::fs::create_dir_all(data_dir).map_err(write_err(data_dir))?;
    let client = reqwest::Client::new();
    let mut total = 0u64;
    for file in SNAPSHOT_FILES {
        let url = format!("{}/api/v1/admin/snapshot/{file}", from.trim_end_matches('/'));
        let req_err = |source| RestoreError::Request { url: url.clone(), source };
        let mut r = client.get(&url).header("Authorization", format!("Token {token}")).send().await.map_err(req_err)?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            return Err(RestoreError::Refused { url, status, body });
        }
        let expected = r.content_length();
        // Written under another name, renamed once whole: an interrupted restore leaves no
        // store.db that looks complete.
        let part = data_dir.join(format!("{file}.part"));
        let mut out = std::fs::File::create(&part).map_err(write_err(&part))?;
        let mut got = 0u64;
        while let Some(chunk) = r.chunk().await.map_err(req_err)? {
            std::io::Write::write_all(&mut out, &chunk).map_err(write_err(&part))?;
            got += chunk.len() as u64;
        }
        out.sync_all().map_err(write_err(&part))?;
        if let Some(expected) = expected.filter(|e| *e != got) {
            return Err(RestoreError::Short { file, got, expected });
        }
        let dest = data_dir.join(file);
        std::fs::rename(&part, &dest).map_err(write_err(&dest))?;
        tracing::info!(file, bytes = got, from = %from, "snapshot restored");
        total += got;
    }
    let store = kilowatch_store::Store::open(data_dir)?;
    let stats = store.stats()?;
    Ok(Restored { bytes: total, series: stats.series, newest: stats.newest_ts })
}
