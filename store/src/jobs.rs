//! The job ledger: allocations (job, node, GPU indices, start, end) from `POST /api/v1/jobs`,
//! the Slurm hooks and poller, and the collector's `gpu_job` points. Kept in its own SQLite
//! file (`jobs.db` beside `store.db`) so the sample store's layout does not change; one row per
//! (job, node), so a replayed start or a poller that sees the job again changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kilowatch_model::Timestamp;
use kilowatch_model::job::GPU_JOB_MAX_GAP_NS;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError, rollup};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("jobs database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("jobs database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the jobs database lock was poisoned")]
    Poisoned,
    #[error("{0}")]
    Invalid(String),
    /// The post is well formed but its sender may not make it (another node's or tenant's job,
    /// an owner change without an admin token).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One job's allocation on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub job: String,
    pub owner: String,
    pub project: String,
    pub node: String,
    pub gpus: Vec<u32>,
    pub start: i64,
    pub end: Option<i64>,
    /// "api", "slurm-hook", "slurm-poll", "gpu_job".
    pub source: String,
}

/// The body of `POST /api/v1/jobs`. `node` and `start` may be left out of an end-only update.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobPost {
    pub job: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default, alias = "account")]
    pub project: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub gpus: Option<Vec<u32>>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

pub struct JobStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS jobs(job TEXT NOT NULL, node TEXT NOT NULL, owner TEXT NOT NULL, project TEXT NOT NULL,
  gpus TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER, source TEXT NOT NULL, PRIMARY KEY(job, node));
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs(start_ns, end_ns);
CREATE TABLE IF NOT EXISTS job_owners(job TEXT PRIMARY KEY, owner TEXT NOT NULL, project TEXT NOT NULL);
";

fn ts(name: &str, v: &str) -> Result<i64, JobError> {
    Timestamp::parse_rfc3339(v).map(|t| t.0).map_err(|e| JobError::Invalid(format!("{name}={v:?} is not RFC 3339: {e}")))
}

fn gpus_text(g: &[u32]) -> String {
    g.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Allocation> {
    let gpus: String = r.get(4)?;
    Ok(Allocation {
        job: r.get(0)?,
        node: r.get(1)?,
        owner: r.get(2)?,
        project: r.get(3)?,
        gpus: gpus.split(',').filter_map(|g| g.trim().parse().ok()).collect(),
        start: r.get(5)?,
        end: r.get(6)?,
        source: r.get(7)?,
    })
}

impl JobStore {
    pub fn open(dir: &Path) -> Result<JobStore, JobError> {
        let path = dir.join("jobs.db");
        let conn = Connection::open(&path).map_err(|source| JobError::Open { path: path.clone(), source })?;
        conn.execute_batch(SCHEMA).map_err(|source| JobError::Open { path: path.clone(), source })?;
        conn.execute_batch(crate::progress::SCHEMA).map_err(|source| JobError::Open { path: path.clone(), source })?;
        // When each row last changed (ns, wall clock): a reader that keeps closed hours asks
        // what changed since it last read. Rows from before the column have 0.
        let has = conn.prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'changed_ns'").and_then(|mut st| st.exists([])).map_err(|source| JobError::Open { path: path.clone(), source })?;
        if !has {
            conn.execute_batch("ALTER TABLE jobs ADD COLUMN changed_ns INTEGER NOT NULL DEFAULT 0").map_err(|source| JobError::Open { path, source })?;
        }
        Ok(JobStore { conn: Mutex::new(conn) })
    }

    /// The earliest start of the allocations that changed at or after `since` (ns, wall
    /// clock), if any: every hour from there on may be attributed differently now (a job's end
    /// moved earlier frees hours up to its old end, which is not kept).
    pub fn changed_since(&self, since: i64) -> Result<Option<i64>, JobError> {
        Ok(self.lock()?.query_row("SELECT MIN(start_ns) FROM jobs WHERE changed_ns >= ?1", params![since], |r| r.get(0))?)
    }

    /// Opens the ledger beside a store's database file.
    pub fn beside(store: &Store) -> Result<JobStore, JobError> {
        let dir = store.path().parent().unwrap_or_else(|| Path::new("."));
        JobStore::open(dir)
    }

    pub(crate) fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, JobError> {
        self.conn.lock().map_err(|_| JobError::Poisoned)
    }

    /// Applies a post: a start (node, gpus, start) creates or refreshes the allocation; an end
    /// closes it (on `node`, or on every node of the job when none is given). Returns the rows
    /// touched. Idempotent: the same post twice leaves the same rows.
    pub fn post(&self, p: &JobPost) -> Result<usize, JobError> {
        let conn = self.lock()?;
        apply(&conn, p)
    }

    /// [`JobStore::post`] once `allow` has seen the job's allocations as they are, under the
    /// same lock, so no other post changes them in between; its refusal is
    /// [`JobError::Forbidden`].
    pub fn post_if(&self, p: &JobPost, allow: impl FnOnce(&[Allocation]) -> Result<(), String>) -> Result<usize, JobError> {
        check_strings(p)?;
        let conn = self.lock()?;
        let known = {
            let mut st = conn.prepare_cached("SELECT job, node, owner, project, gpus, start_ns, end_ns, source FROM jobs WHERE job = ?1 ORDER BY node")?;
            st.query_map(params![p.job], row)?.collect::<Result<Vec<_>, _>>()?
        };
        allow(&known).map_err(JobError::Forbidden)?;
        apply(&conn, p)
    }

    /// Several posts in one transaction (a backfill's job events): all or none.
    pub fn post_many(&self, posts: &[JobPost]) -> Result<usize, JobError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut n = 0;
        for p in posts {
            n += apply(&tx, p)?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Allocations overlapping `[from, to)` (open ones included).
    pub fn overlapping(&self, from: i64, to: i64) -> Result<Vec<Allocation>, JobError> {
        let conn = self.lock()?;
        let mut st = conn.prepare_cached("SELECT job, node, owner, project, gpus, start_ns, end_ns, source FROM jobs WHERE start_ns < ?2 AND (end_ns IS NULL OR end_ns > ?1) ORDER BY job, node")?;
        let rows = st.query_map(params![from, to], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn job(&self, job: &str) -> Result<Vec<Allocation>, JobError> {
        let conn = self.lock()?;
        let mut st = conn.prepare_cached("SELECT job, node, owner, project, gpus, start_ns, end_ns, source FROM jobs WHERE job = ?1 ORDER BY node")?;
        let rows = st.query_map(params![job], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn exists(&self, job: &str) -> Result<bool, JobError> {
        let conn = self.lock()?;
        Ok(conn.query_row("SELECT 1 FROM jobs WHERE job = ?1 LIMIT 1", params![job], |_| Ok(())).optional()?.is_some())
    }
}

/// Longest job id, owner, project, node or source accepted, in bytes: far above any scheduler's
/// names, far below what would cost the ledger, its pages and its statements.
pub const MAX_JOB_STRING_BYTES: usize = 256;

/// Every string of a post bounded and free of control characters (a newline in an owner would
/// forge a row of a CSV statement; a megabyte id is kept in every answer naming it).
pub fn check_strings(p: &JobPost) -> Result<(), JobError> {
    let fields = [("job", Some(&p.job)), ("owner", p.owner.as_ref()), ("project", p.project.as_ref()), ("node", p.node.as_ref()), ("source", p.source.as_ref())];
    for (name, v) in fields {
        let Some(v) = v else { continue };
        if v.len() > MAX_JOB_STRING_BYTES {
            return Err(JobError::Invalid(format!("{name} is {} bytes long; at most {MAX_JOB_STRING_BYTES} are accepted", v.len())));
        }
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(JobError::Invalid(format!("{name} contains the control character {c:?}, which is not accepted")));
        }
    }
    Ok(())
}

fn apply(conn: &Connection, p: &JobPost) -> Result<usize, JobError> {
    if p.job.trim().is_empty() {
        return Err(JobError::Invalid("job is required".into()));
    }
    check_strings(p)?;
    let end = p.end.as_deref().map(|e| ts("end", e)).transpose()?;
    let source = p.source.clone().unwrap_or_else(|| "api".into());
    match (&p.node, &p.start) {
        (Some(node), Some(start)) => {
            let start = ts("start", start)?;
            if end.is_some_and(|e| e < start) {
                return Err(JobError::Invalid("end is before start".into()));
            }
            let gpus = gpus_text(p.gpus.as_deref().unwrap_or(&[]));
            // A later start post (the poller after the hook) keeps the known end and the
            // earliest start; it fills owner and project only if they were unknown.
            // `changed_ns` moves only when the row does: a poller posting a running job again
            // every minute changes nothing.
            let n = conn.execute(
                "INSERT INTO jobs(job, node, owner, project, gpus, start_ns, end_ns, source, changed_ns) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)
                 ON CONFLICT(job, node) DO UPDATE SET
                   owner = CASE WHEN excluded.owner <> '' THEN excluded.owner ELSE owner END,
                   project = CASE WHEN excluded.project <> '' THEN excluded.project ELSE project END,
                   gpus = CASE WHEN excluded.gpus <> '' THEN excluded.gpus ELSE gpus END,
                   start_ns = MIN(start_ns, excluded.start_ns),
                   end_ns = COALESCE(excluded.end_ns, end_ns),
                   changed_ns = CASE WHEN (excluded.owner <> '' AND excluded.owner IS NOT owner)
                       OR (excluded.project <> '' AND excluded.project IS NOT project)
                       OR (excluded.gpus <> '' AND excluded.gpus IS NOT gpus)
                       OR excluded.start_ns < start_ns
                       OR (excluded.end_ns IS NOT NULL AND excluded.end_ns IS NOT end_ns)
                     THEN excluded.changed_ns ELSE changed_ns END",
                params![p.job, node, p.owner.clone().unwrap_or_default(), p.project.clone().unwrap_or_default(), gpus, start, end, source, Timestamp::now().0],
            )?;
            Ok(n)
        }
        (node, None) => {
            let Some(end) = end else {
                return Err(JobError::Invalid("a post needs node and start (a start), or end (an end-only update)".into()));
            };
            let n = match node {
                Some(node) => conn.execute(
                    "UPDATE jobs SET end_ns = ?3, changed_ns = CASE WHEN end_ns IS NOT ?3 THEN ?4 ELSE changed_ns END WHERE job = ?1 AND node = ?2 AND ?3 >= start_ns",
                    params![p.job, node, end, Timestamp::now().0],
                )?,
                None => conn.execute(
                    "UPDATE jobs SET end_ns = ?2, changed_ns = CASE WHEN end_ns IS NOT ?2 THEN ?3 ELSE changed_ns END WHERE job = ?1 AND ?2 >= start_ns",
                    params![p.job, end, Timestamp::now().0],
                )?,
            };
            if n == 0 {
                return Err(JobError::Invalid(format!("no running allocation of job {:?} to close", p.job)));
            }
            Ok(n)
        }
        (None, Some(_)) => Err(JobError::Invalid("a start needs node".into())),
    }
}

/// Allocations read from the collector's `gpu_job` points (`job="slurm:1234"` per GPU while a
/// process of the job uses it) in `[from, to]`. A GPU is held from the first to the last point
/// of a run of points naming the same job; runs break on a gap longer than `max_gap_ns`. One
/// allocation per (job, node): the GPUs that ran the job, over the union of their runs.
pub fn gpu_job_runs(store: &Store, from: i64, to: i64, max_gap_ns: i64) -> Result<Vec<Allocation>, JobError> {
    use std::collections::BTreeMap;
    let mut runs: BTreeMap<(String, String, u32), Vec<(i64, i64)>> = BTreeMap::new();
    for meta in store.find_series("gpu_job", "job", &[])? {
        let (Some(node), Some(gpu)) = (meta.tag("node"), meta.tag("gpu").and_then(|g| g.parse::<u32>().ok())) else { continue };
        let samples = store.read_with_neighbours(meta.id, from.saturating_sub(max_gap_ns), to.saturating_add(max_gap_ns))?;
        let mut cur: Option<(String, i64, i64)> = None;
        for (t, v) in samples {
            let Some(job) = v.as_text().map(str::to_owned) else { continue };
            cur = match cur.take() {
                Some((j, s, e)) if j == job && t.saturating_sub(e) <= max_gap_ns => Some((j, s, t)),
                Some((j, s, e)) => {
                    runs.entry((j, node.to_owned(), gpu)).or_default().push((s, e));
                    Some((job, t, t))
                }
                None => Some((job, t, t)),
            };
        }
        if let Some((j, s, e)) = cur {
            runs.entry((j, node.to_owned(), gpu)).or_default().push((s, e));
        }
    }
    let mut per_job: BTreeMap<(String, String), (Vec<u32>, i64, i64)> = BTreeMap::new();
    for ((job, node, gpu), spans) in runs {
        for (s, e) in spans {
            if e <= s || e < from || s > to {
                continue;
            }
            let ent = per_job.entry((job.clone(), node.clone())).or_insert((Vec::new(), s, e));
            if !ent.0.contains(&gpu) {
                ent.0.push(gpu);
            }
            ent.1 = ent.1.min(s);
            ent.2 = ent.2.max(e);
        }
    }
    Ok(per_job
        .into_iter()
        .map(|((job, node), (mut gpus, s, e))| {
            gpus.sort_unstable();
            Allocation { job, owner: String::new(), project: String::new(), node, gpus, start: s, end: Some(e), source: GPU_JOB.into() }
        })
        .collect())
}

/// The source of allocations derived from `gpu_job` points.
pub const GPU_JOB: &str = "gpu_job";

/// Merges `b` into `a` (same job and node): the union of GPUs over the union of spans.
fn merge_into(a: &mut Allocation, b: &Allocation) {
    for g in &b.gpus {
        if !a.gpus.contains(g) {
            a.gpus.push(*g);
        }
    }
    a.gpus.sort_unstable();
    a.start = a.start.min(b.start);
    a.end = match (a.end, b.end) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    };
}

impl JobStore {
    /// Writes the runs found in `gpu_job` points over `[from, to]` into the ledger (source
    /// `gpu_job`), widening what an earlier pass recorded, so that jobs known only from those
    /// points survive the points' retention. Jobs declared by the API or Slurm are left alone.
    /// Returns the allocations written.
    pub fn record_gpu_job_runs(&self, store: &Store, from: i64, to: i64, max_gap_ns: i64) -> Result<usize, JobError> {
        let found = gpu_job_runs(store, from, to, max_gap_ns)?;
        if found.is_empty() {
            return Ok(0);
        }
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut n = 0;
        for mut a in found {
            let existing: Vec<Allocation> = {
                let mut st = tx.prepare_cached("SELECT job, node, owner, project, gpus, start_ns, end_ns, source FROM jobs WHERE job = ?1")?;
                st.query_map(params![a.job], row)?.collect::<Result<Vec<_>, _>>()?
            };
            if existing.iter().any(|e| e.source != GPU_JOB) {
                continue;
            }
            if let Some(old) = existing.iter().find(|e| e.node == a.node) {
                merge_into(&mut a, old);
            }
            let (owner, project) = owner_of(&tx, &a.job)?.unwrap_or_default();
            tx.prepare_cached("INSERT OR REPLACE INTO jobs(job, node, owner, project, gpus, start_ns, end_ns, source) VALUES (?1,?2,?7,?8,?3,?4,?5,?6)")?.execute(params![
                a.job,
                a.node,
                gpus_text(&a.gpus),
                a.start,
                a.end,
                GPU_JOB,
                owner,
                project
            ])?;
            n += 1;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Records the owner and project of a job known only from `gpu_job` points, as its
    /// reporter names them (remote write's job labels): the runs of those points get them.
    /// A job the API or Slurm declared keeps its declared owner. Returns whether a row changed.
    pub fn set_gpu_job_owner(&self, job: &str, owner: &str, project: &str) -> Result<bool, JobError> {
        let conn = self.lock()?;
        let n = conn.execute(
            "INSERT INTO job_owners(job, owner, project) VALUES (?1,?2,?3)
             ON CONFLICT(job) DO UPDATE SET owner = excluded.owner, project = excluded.project
             WHERE owner IS NOT excluded.owner OR project IS NOT excluded.project",
            params![job, owner, project],
        )?;
        if n > 0 {
            conn.execute("UPDATE jobs SET owner = ?2, project = ?3 WHERE job = ?1 AND source = ?4", params![job, owner, project, GPU_JOB])?;
        }
        Ok(n > 0)
    }

    /// The owner and project recorded by [`JobStore::set_gpu_job_owner`].
    pub fn gpu_job_owner(&self, job: &str) -> Result<Option<(String, String)>, JobError> {
        owner_of(&*self.lock()?, job)
    }

    /// Whether the API or Slurm declared the job (its allocation wins over `gpu_job` points).
    pub fn declared(&self, job: &str) -> Result<bool, JobError> {
        let conn = self.lock()?;
        Ok(conn.query_row("SELECT 1 FROM jobs WHERE job = ?1 AND source <> ?2 LIMIT 1", params![job, GPU_JOB], |_| Ok(())).optional()?.is_some())
    }
}

fn owner_of(conn: &Connection, job: &str) -> Result<Option<(String, String)>, JobError> {
    Ok(conn.prepare_cached("SELECT owner, project FROM job_owners WHERE job = ?1")?.query_row(params![job], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
}

/// The store maintenance's `on_rolled` hook: records the job runs of each span rolled up, while
/// its raw `gpu_job` points are still there. Failures are logged; the span is recorded again
/// if late samples make it roll up again.
pub fn recorder(jobs: Option<&JobStore>) -> impl FnMut(&Store, i64, i64) + '_ {
    move |store, from, to| {
        let Some(j) = jobs else { return };
        if let Err(e) = j.record_gpu_job_runs(store, from, to, GPU_JOB_MAX_GAP_NS) {
            tracing::error!(error = %e, "recording job runs from gpu_job points failed");
        }
        if let Err(e) = j.record_job_edges(store, from, to) {
            tracing::error!(error = %e, "recording the energy at job edges failed");
        }
    }
}

impl JobStore {
    /// Records, for every GPU and node series of a node, its energy up to each start and end
    /// of an allocation on that node inside the hours of `[from, to)`, from the raw samples:
    /// once they expire, a job's share of the hour it starts or ends in stays what it was.
    pub fn record_job_edges(&self, store: &Store, from: i64, to: i64) -> Result<usize, JobError> {
        let mut by_node: std::collections::BTreeMap<String, Vec<i64>> = std::collections::BTreeMap::new();
        for a in self.overlapping(from, to)? {
            for t in [Some(a.start), a.end].into_iter().flatten() {
                if t > from && t < to && t.rem_euclid(rollup::HOUR) != 0 {
                    by_node.entry(a.node.clone()).or_default().push(t);
                }
            }
        }
        let mut n = 0;
        for (node, mut ts) in by_node {
            ts.sort_unstable();
            let mut series = Vec::new();
            for (measurement, fields) in [("gpu", ["energy_mj", "power_w"]), ("node", ["energy_j", "power_w"])] {
                for f in fields {
                    series.extend(store.find_series(measurement, f, &[("node", node.as_str())])?);
                }
            }
            let mut hours: Vec<i64> = ts.iter().map(|t| t.div_euclid(rollup::HOUR) * rollup::HOUR).collect();
            hours.dedup();
            for h in hours {
                let inside: Vec<i64> = ts.iter().copied().filter(|t| t.div_euclid(rollup::HOUR) * rollup::HOUR == h).collect();
                for m in &series {
                    n += store.record_edges(m.id, rollup::energy_kind(m), h, &inside)?;
                }
            }
        }
        Ok(n)
    }
}

/// `stored` (the ledger's allocations over a window) completed with the runs in the `gpu_job`
/// points of `[from, to]` not yet recorded: a run extends the recorded allocation of the same
/// job and node, and a job the API or Slurm declared keeps its declared allocation.
pub fn with_gpu_job_points(store: &Store, jobs: &JobStore, mut stored: Vec<Allocation>, from: i64, to: i64, max_gap_ns: i64) -> Result<Vec<Allocation>, JobError> {
    for a in gpu_job_runs(store, from, to, max_gap_ns)? {
        if let Some(s) = stored.iter_mut().find(|s| s.job == a.job && s.node == a.node && s.source == GPU_JOB) {
            merge_into(s, &a);
        } else if !stored.iter().any(|s| s.job == a.job && s.source != GPU_JOB) && !jobs.declared(&a.job)? {
            stored.push(a);
        }
    }
    for s in stored.iter_mut().filter(|s| s.source == GPU_JOB && s.owner.is_empty()) {
        if let Some((owner, project)) = jobs.gpu_job_owner(&s.job)? {
            (s.owner, s.project) = (owner, project);
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(job: &str, node: Option<&str>, start: Option<&str>, end: Option<&str>) -> JobPost {
        JobPost {
            job: job.into(),
            owner: Some("alice".into()),
            project: None,
            node: node.map(Into::into),
            gpus: Some(vec![0, 1]),
            start: start.map(Into::into),
            end: end.map(Into::into),
            source: None,
        }
    }

    #[test]
    fn owners_of_gpu_job_runs_come_from_what_their_reporter_named() {
        use kilowatch_model::Point;
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let j = JobStore::open(dir.path()).expect("jobs");
        let s = 1_000_000_000i64;
        let pts: Vec<Point> = [1800, 2700, 3600].iter().map(|t| Point::new("gpu_job", Timestamp(t * s)).tag("node", "n1").tag("gpu", "1").field("job", "k8s:ns/p")).collect();
        store.write(&pts).expect("write");
        assert!(j.set_gpu_job_owner("k8s:ns/p", "acme", "ns").expect("set"));
        assert!(!j.set_gpu_job_owner("k8s:ns/p", "acme", "ns").expect("again"), "the same owner again changes nothing");
        let a = with_gpu_job_points(&store, &j, Vec::new(), 0, 3600 * s, 1000 * s).expect("read");
        assert_eq!((a[0].owner.as_str(), a[0].project.as_str()), ("acme", "ns"));
        j.record_gpu_job_runs(&store, 0, 3600 * s, 1000 * s).expect("record");
        assert_eq!(j.job("k8s:ns/p").expect("job")[0].owner, "acme", "recorded runs keep it");
        j.set_gpu_job_owner("k8s:ns/p", "acme/new", "ns").expect("change");
        assert_eq!(j.job("k8s:ns/p").expect("job")[0].owner, "acme/new", "a new owner reaches the recorded runs");
    }

    #[test]
    fn start_end_idempotent() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = JobStore::open(dir.path()).expect("open");
        let s = post("1", Some("n1"), Some("2026-01-01T00:00:00Z"), None);
        j.post(&s).expect("start");
        j.post(&s).expect("start again");
        assert_eq!(j.job("1").expect("job").len(), 1);
        j.post(&post("1", None, None, Some("2026-01-01T01:00:00Z"))).expect("end");
        let a = &j.job("1").expect("job")[0];
        assert_eq!(a.gpus, vec![0, 1]);
        assert_eq!(a.end.map(|e| e - a.start), Some(3_600_000_000_000));
        // A start replayed after the end keeps the end.
        j.post(&s).expect("replay");
        assert!(j.job("1").expect("job")[0].end.is_some());
        assert!(j.post(&post("2", None, None, Some("2026-01-01T01:00:00Z"))).is_err());
    }

    /// What a reader keeping closed hours asks: a post that changes a row is seen, one that
    /// repeats it (a poller every minute) is not.
    #[test]
    fn changed_since_sees_changes_not_repeats() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = JobStore::open(dir.path()).expect("open");
        let s = post("1", Some("n1"), Some("2026-01-01T00:00:00Z"), None);
        let t0 = Timestamp::now().0;
        j.post(&s).expect("start");
        let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("t").0;
        assert_eq!(j.changed_since(t0).expect("changed"), Some(start));
        let t1 = Timestamp::now().0 + 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
        j.post(&s).expect("start again");
        assert_eq!(j.changed_since(t1).expect("changed"), None, "a repeated post changes nothing");
        j.post(&post("1", None, None, Some("2026-01-01T01:00:00Z"))).expect("end");
        assert_eq!(j.changed_since(t1).expect("changed"), Some(start), "an end is a change");
        let t2 = Timestamp::now().0 + 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
        j.post(&post("1", None, None, Some("2026-01-01T01:00:00Z"))).expect("same end");
        assert_eq!(j.changed_since(t2).expect("changed"), None, "the same end again is not");
    }
}

#[cfg(test)]
mod gpu_job_tests {
    use super::*;
    use kilowatch_model::Point;

    #[test]
    fn runs_of_gpu_job_points_become_allocations() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let j = JobStore::open(dir.path()).expect("jobs");
        let s = 1_000_000_000i64;
        let pts: Vec<Point> = [1800, 2700, 3600].iter().map(|t| Point::new("gpu_job", Timestamp(t * s)).tag("node", "n1").tag("gpu", "1").field("job", "slurm:42")).collect();
        store.write(&pts).expect("write");
        let a = with_gpu_job_points(&store, &j, Vec::new(), 0, 3600 * s, 1000 * s).expect("read");
        assert!(with_gpu_job_points(&store, &j, Vec::new(), 0, 3600 * s, 300 * s).expect("read").is_empty(), "isolated points hold nothing");
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!((a[0].start, a[0].end, a[0].gpus.clone()), (1800 * s, Some(3600 * s), vec![1]));
    }
}
