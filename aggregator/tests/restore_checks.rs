//! `kilowatch restore` checks what it downloads before it puts it in place (issue 31 item 9),
//! through the real binary: a truncated download, a corrupt database, a snapshot larger than
//! `--max-bytes` each stop it with a clear error and leave nothing behind; a stale `-wal` of an
//! earlier database and a half-written download of an earlier run are removed, and the restore
//! run again after those failures gives the twin's data.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use common::{ADMIN, Server, WRITE};
use kilowatch_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The twin's snapshots, as its admin API sends them.
struct Snapshots {
    store: Vec<u8>,
    jobs: Vec<u8>,
}

async fn snapshot(twin: &Server, file: &str) -> Vec<u8> {
    let r = reqwest::Client::new().get(twin.url(&format!("/api/v1/admin/snapshot/{file}"))).header("Authorization", format!("Token {ADMIN}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "snapshot of {file}");
    r.bytes().await.expect("body").to_vec()
}

/// A twin that misbehaves, by the first segment of the path: `truncated` announces the whole
/// store.db and sends half of it; `corrupt` sends it whole with a page overwritten.
async fn fake_twin(snaps: Arc<Snapshots>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let snaps = snaps.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mode = path.trim_start_matches('/').split('/').next().unwrap_or("").to_owned();
                let (announced, body) = if path.ends_with("/jobs.db") {
                    (snaps.jobs.len(), snaps.jobs.clone())
                } else if mode == "truncated" {
                    (snaps.store.len(), snaps.store[..snaps.store.len() / 2].to_vec())
                } else {
                    let mut b = snaps.store.clone();
                    // A whole page in the middle of the copy (4096-byte pages; every page of a
                    // vacuumed database is in use).
                    let page = (b.len() / 4096 / 2).max(1) * 4096;
                    for x in &mut b[page..(page + 4096).min(snaps.store.len())] {
                        *x = 0xA5;
                    }
                    (b.len(), b)
                };
                let header = format!("HTTP/1.1 200 OK\r\ncontent-type: application/vnd.sqlite3\r\ncontent-length: {announced}\r\nconnection: close\r\n\r\n");
                let _ = conn.write_all(header.as_bytes()).await;
                let _ = conn.write_all(&body).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn restore(from: &str, dir: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kilowatch"))
        .args(["restore", "--from", from, "--token", ADMIN, "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kilowatch restore")
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

/// A valid WAL of another database: replayed into the restored copy, it would corrupt it.
fn foreign_wal(dir: &Path) -> Vec<u8> {
    let db = dir.join("other.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x BLOB);").expect("schema");
    for _ in 0..50 {
        conn.execute("INSERT INTO t VALUES (randomblob(3000))", []).expect("insert");
    }
    let wal = std::fs::read(dir.join("other.db-wal")).expect("wal");
    assert!(wal.len() > 100_000, "the WAL holds frames");
    wal
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_download_is_never_put_in_place_and_a_rerun_restores_the_twin() {
    let tmp = tempfile::tempdir().expect("tmp");
    let twin = Server::start(&tmp.path().join("twin")).await;
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) - 3600;
    let body: String = (0..200).map(|i| format!("gpu,site=dc5,node=dgx-{:03},gpu=0 power_w={}.5,energy_mj={}i {}\n", i % 20, 300 + i, 1000 * i, t + i)).collect();
    assert_eq!(twin.write(&body, "s", WRITE).await.status(), 204);
    let series = twin.store.stats().expect("stats").series;
    assert!(series >= 40, "{series}");
    let snaps = Arc::new(Snapshots { store: snapshot(&twin, "store.db").await, jobs: snapshot(&twin, "jobs.db").await });
    assert!(snaps.store.len() >= 3 * 4096, "a store of several pages: {}", snaps.store.len());
    let fake = fake_twin(snaps.clone()).await;
    let dir = tmp.path().join("rebuilt");

    // Truncated: the connection ends before the announced length.
    let out = restore(&format!("{fake}/truncated"), &dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a truncated download fails");
    assert!(err.contains("store.db") && err.contains("announced"), "the error says the copy is short: {err}");
    assert!(leftovers(&dir).is_empty(), "nothing left behind: {:?}", leftovers(&dir));

    // Corrupt: whole, but not a sound database.
    let out = restore(&format!("{fake}/corrupt"), &dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt download fails");
    assert!(err.contains("not a sound SQLite database"), "{err}");
    assert!(leftovers(&dir).is_empty(), "nothing left behind: {:?}", leftovers(&dir));

    // Larger than --max-bytes: refused before it is downloaded.
    let out = restore(&twin.url(""), &dir, &["--max-bytes", "4096"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--max-bytes") && err.contains("more than the 4096"), "{err}");
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));

    // An earlier run killed mid-download, and an earlier database's -wal and -shm.
    std::fs::write(dir.join("store.db.part"), &snaps.store[..1000]).expect("part");
    std::fs::write(dir.join("store.db-wal"), foreign_wal(tmp.path())).expect("wal");
    std::fs::write(dir.join("store.db-shm"), vec![0u8; 32768]).expect("shm");
    let out = restore(&twin.url(""), &dir, &[]);
    assert!(out.status.success(), "the rerun restores: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{series} series")), "{}", String::from_utf8_lossy(&out.stdout));
    let mut files = leftovers(&dir);
    files.retain(|f| f.ends_with(".part"));
    assert!(files.is_empty(), "{files:?}");
    let restored = Store::open(&dir).expect("the restored store opens");
    assert_eq!(restored.stats().expect("stats").series, series, "the twin's series, not the stale WAL's pages");
    let id = restored.find_series("gpu", "power_w", &[("node", "dgx-007")]).expect("find")[0].id;
    assert_eq!(restored.read_with_neighbours(id, i64::MIN, i64::MAX).expect("read").len(), 10);
    let conn = rusqlite::Connection::open(dir.join("store.db")).expect("open");
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
    assert_eq!(check, "ok");
}
