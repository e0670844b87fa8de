//! Training progress (`POST /api/v1/progress`): one row per (job, step) with the tokens and
//! samples that step processed and when it finished, kept in the job ledger's `jobs.db`. A
//! step posted again replaces its row, so a client that retries (or replays a log) never
//! counts a step twice.

use kilowatch_model::Timestamp;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::jobs::{JobError, JobStore};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS progress(job TEXT NOT NULL, step INTEGER NOT NULL, t_ns INTEGER NOT NULL,
  tokens REAL NOT NULL, samples REAL NOT NULL, PRIMARY KEY(job, step));
CREATE INDEX IF NOT EXISTS progress_by_time ON progress(t_ns);
";

/// Longest job name accepted: the job ledger's bound.
const MAX_JOB_BYTES: usize = crate::jobs::MAX_JOB_STRING_BYTES;

/// The body of `POST /api/v1/progress`: the step a job has just finished, the tokens and
/// samples *that step* processed (not running totals), and when (default: when received).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressPost {
    pub job: String,
    pub step: u64,
    #[serde(default)]
    pub tokens: f64,
    #[serde(default)]
    pub samples: f64,
    /// RFC 3339.
    #[serde(default)]
    pub time: Option<String>,
}

/// One stored step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub job: String,
    pub step: u64,
    pub t: i64,
    pub tokens: f64,
    pub samples: f64,
}

impl ProgressPost {
    fn check(&self, now: i64) -> Result<(String, i64, i64, f64, f64), JobError> {
        if self.job.is_empty() || self.job.len() > MAX_JOB_BYTES {
            return Err(JobError::Invalid(format!("job must be 1 to {MAX_JOB_BYTES} bytes")));
        }
        if let Some(c) = self.job.chars().find(|c| c.is_control()) {
            return Err(JobError::Invalid(format!("job contains the control character {c:?}, which is not accepted")));
        }
        for (k, v) in [("tokens", self.tokens), ("samples", self.samples)] {
            if !(0.0..=1e15).contains(&v) {
                return Err(JobError::Invalid(format!("{k}={v} must be a count from 0 to 1e15")));
            }
        }
        let step = i64::try_from(self.step).map_err(|_| JobError::Invalid(format!("step={} is too large", self.step)))?;
        let t = match &self.time {
            Some(v) => Timestamp::parse_rfc3339(v).map(|t| t.0).map_err(|e| JobError::Invalid(format!("time={v:?} is not RFC 3339: {e}")))?,
            None => now,
        };
        Ok((self.job.clone(), step, t, self.tokens, self.samples))
    }
}

impl JobStore {
    /// Stores steps in one transaction, all or none; `now` stamps those without a time.
    pub fn post_progress(&self, posts: &[ProgressPost], now: i64) -> Result<usize, JobError> {
        let rows = posts.iter().map(|p| p.check(now)).collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        for (job, step, t, tokens, samples) in &rows {
            tx.execute("INSERT OR REPLACE INTO progress(job, step, t_ns, tokens, samples) VALUES (?1, ?2, ?3, ?4, ?5)", params![job, step, t, tokens, samples])?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    /// Steps finished in `[from, to)`, by job then step.
    pub fn progress(&self, from: i64, to: i64) -> Result<Vec<Step>, JobError> {
        let conn = self.lock()?;
        let mut st = conn.prepare_cached("SELECT job, step, t_ns, tokens, samples FROM progress WHERE t_ns >= ?1 AND t_ns < ?2 ORDER BY job, step")?;
        let rows = st.query_map(params![from, to], |r| {
            let step: i64 = r.get(1)?;
            Ok(Step { job: r.get(0)?, step: u64::try_from(step).unwrap_or(0), t: r.get(2)?, tokens: r.get(3)?, samples: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_posted_twice_counts_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let js = JobStore::open(dir.path()).expect("open");
        let p = |step, tokens| ProgressPost { job: "slurm:7".into(), step, tokens, samples: 8.0, time: Some("2026-11-01T10:00:00Z".into()) };
        assert_eq!(js.post_progress(&[p(1, 100.0), p(2, 100.0)], 0).expect("post"), 2);
        assert_eq!(js.post_progress(&[p(2, 120.0)], 0).expect("post"), 1);
        let t = Timestamp::parse_rfc3339("2026-11-01T10:00:00Z").expect("t").0;
        let steps = js.progress(t, t + 1).expect("read");
        assert_eq!(steps.iter().map(|s| (s.step, s.tokens)).collect::<Vec<_>>(), vec![(1, 100.0), (2, 120.0)]);
        assert!(js.post_progress(&[p(3, f64::NAN)], 0).is_err());
        assert!(js.post_progress(&[ProgressPost { time: Some("yesterday".into()), ..p(3, 1.0) }], 0).is_err());
        assert_eq!(js.progress(t, t + 1).expect("read").len(), 2, "a refused batch stores nothing");
    }
}
