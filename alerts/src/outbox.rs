//! Durable state in SQLite (`alerts.db` in the data directory, apart from the sample store):
//! engine and dispatcher state, silences, and the outbox of notifications with their delivery
//! log.
//!
//! Why no notification is lost or repeated across a restart: a tick's new notifications and
//! the group state that says "this was sent" commit in ONE transaction, so after a crash
//! either both exist (the outbox delivers it) or neither (the next tick makes it again).
//! Delivery is at-least-once: a crash between the receiver's 2xx and our `delivered` mark
//! re-sends it. Every send carries the notification's stable id
//! (`X-Kilowatch-Notification-Id`), so a receiver that keeps the ids it has seen turns that
//! into exactly-once; without a crash in that window there is no duplicate at all.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kilowatch_model::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dispatch::{Notification, Silence};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("alert database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("alert database holds bad JSON under {what}: {source}")]
    Json { what: String, source: serde_json::Error },
    #[error("the alert database lock was poisoned")]
    Poisoned,
}

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS silences(id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox(
  id TEXT NOT NULL, receiver TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, status TEXT NOT NULL,
  last_error TEXT, delivered_at INTEGER, PRIMARY KEY(id, receiver));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_at);
";

/// One delivery: a notification to one receiver.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: String,
    pub receiver: String,
    pub notification: Notification,
    pub attempts: u32,
    pub status: String,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

pub struct Outbox {
    conn: Mutex<Connection>,
}

impl Outbox {
    pub fn open(dir: &Path) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir { path: dir.to_owned(), source })?;
        let conn = Connection::open(dir.join("alerts.db"))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Outbox { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, OutboxError> {
        self.conn.lock().map_err(|_| OutboxError::Poisoned)
    }

    pub fn load<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, OutboxError> {
        let c = self.conn()?;
        let v: Option<String> = c.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        v.map(|s| serde_json::from_str(&s).map_err(|source| OutboxError::Json { what: key.into(), source })).transpose()
    }

    /// Saves the state blobs and enqueues `notes`, all or nothing.
    pub fn commit_tick(&self, state: &[(&str, &dyn erased::Json)], notes: &[Notification]) -> Result<(), OutboxError> {
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        for (k, v) in state {
            tx.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?1, ?2)", params![k, v.json()?])?;
        }
        for n in notes {
            let body = serde_json::to_string(n).map_err(|source| OutboxError::Json { what: n.id.clone(), source })?;
            tx.execute("INSERT OR IGNORE INTO outbox(id, receiver, body, created_at, next_at, status) VALUES (?1, ?2, ?3, ?4, ?4, 'pending')", params![n.id, n.receiver, body, n.created_at.0])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Pending deliveries whose next attempt is due, oldest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, OutboxError> {
        self.query("WHERE status = 'pending' AND next_at <= ?1 ORDER BY created_at, id LIMIT ?2", params![now.0, limit as i64])
    }

    /// The delivery log, newest first.
    pub fn log(&self, limit: usize) -> Result<Vec<Delivery>, OutboxError> {
        self.query("WHERE ?1 = ?1 ORDER BY created_at DESC, id LIMIT ?2", params![0, limit as i64])
    }

    /// Every delivery created at or after `from`, oldest first: the alert history the
    /// monthly report counts (delivered rows are kept until `prune`).
    pub fn log_since(&self, from: Timestamp) -> Result<Vec<Delivery>, OutboxError> {
        self.query("WHERE created_at >= ?1 ORDER BY created_at, id", params![from.0])
    }

    fn query(&self, tail: &str, p: impl rusqlite::Params) -> Result<Vec<Delivery>, OutboxError> {
        let c = self.conn()?;
        let mut st = c.prepare(&format!("SELECT id, receiver, body, attempts, status, last_error, created_at, delivered_at FROM outbox {tail}"))?;
        let rows = st.query_map(p, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, receiver, body, attempts, status, last_error, created, delivered) = row?;
            let notification = serde_json::from_str(&body).map_err(|source| OutboxError::Json { what: id.clone(), source })?;
            out.push(Delivery { id, receiver, notification, attempts, status, last_error, created_at: Timestamp(created), delivered_at: delivered.map(Timestamp) });
        }
        Ok(out)
    }

    pub fn mark_delivered(&self, id: &str, receiver: &str, now: Timestamp) -> Result<(), OutboxError> {
        self.conn()?.execute("UPDATE outbox SET status = 'delivered', delivered_at = ?3, attempts = attempts + 1, last_error = NULL WHERE id = ?1 AND receiver = ?2", params![id, receiver, now.0])?;
        Ok(())
    }

    pub fn mark_retry(&self, id: &str, receiver: &str, next_at: Timestamp, error: &str) -> Result<u32, OutboxError> {
        let c = self.conn()?;
        c.execute("UPDATE outbox SET attempts = attempts + 1, next_at = ?3, last_error = ?4 WHERE id = ?1 AND receiver = ?2", params![id, receiver, next_at.0, error])?;
        Ok(c.query_row("SELECT attempts FROM outbox WHERE id = ?1 AND receiver = ?2", params![id, receiver], |r| r.get(0))?)
    }

    /// Gives up on `receiver` and hands the same notification (same id) to `fallback`, in one
    /// transaction; with no fallback the delivery is marked dead and stays in the log.
    pub fn fail_over(&self, d: &Delivery, fallback: Option<&str>, now: Timestamp) -> Result<(), OutboxError> {
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        let status = if fallback.is_some() { "failed_over" } else { "dead" };
        tx.execute("UPDATE outbox SET status = ?3 WHERE id = ?1 AND receiver = ?2", params![d.id, d.receiver, status])?;
        if let Some(f) = fallback {
            let mut n = d.notification.clone();
            n.receiver = f.to_owned();
            let body = serde_json::to_string(&n).map_err(|source| OutboxError::Json { what: n.id.clone(), source })?;
            tx.execute("INSERT OR IGNORE INTO outbox(id, receiver, body, created_at, next_at, status) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')", params![d.id, f, body, d.created_at.0, now.0])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn silences(&self) -> Result<Vec<Silence>, OutboxError> {
        let c = self.conn()?;
        let mut st = c.prepare("SELECT id, body FROM silences ORDER BY id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            out.push(serde_json::from_str(&body).map_err(|source| OutboxError::Json { what: id, source })?);
        }
        Ok(out)
    }

    pub fn put_silence(&self, s: &Silence) -> Result<(), OutboxError> {
        let body = serde_json::to_string(s).map_err(|source| OutboxError::Json { what: s.id.clone(), source })?;
        self.conn()?.execute("INSERT OR REPLACE INTO silences(id, body) VALUES (?1, ?2)", params![s.id, body])?;
        Ok(())
    }

    /// Ends a silence now; false when there is none with that id.
    pub fn expire_silence(&self, id: &str, now: Timestamp) -> Result<bool, OutboxError> {
        let Some(mut s) = self.silences()?.into_iter().find(|s| s.id == id) else { return Ok(false) };
        if s.ends_at > now {
            s.ends_at = now;
        }
        self.put_silence(&s)?;
        Ok(true)
    }

    /// Forgets delivered and dead rows older than `before` (the log is kept 62 days by the
    /// caller's choice).
    pub fn prune(&self, before: Timestamp) -> Result<usize, OutboxError> {
        Ok(self.conn()?.execute("DELETE FROM outbox WHERE status != 'pending' AND created_at < ?1", [before.0])?)
    }
}

/// Serialising heterogeneous state blobs through one slice.
pub mod erased {
    use super::OutboxError;
    pub trait Json {
        fn json(&self) -> Result<String, OutboxError>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Result<String, OutboxError> {
            serde_json::to_string(self).map_err(|source| OutboxError::Json { what: "state".into(), source })
        }
    }
}
