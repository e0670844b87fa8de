//! The Slurm poller: reads `squeue --json` so that jobs whose prolog or epilog post was lost
//! still reach the ledger. GPU indices come from `gres_detail` ("gpu:3(IDX:0-2)", one entry per
//! node of the job, in node order), which Slurm fills even where `SLURM_JOB_GPUS` is empty.
//! Jobs seen running at one poll and gone at the next are closed at the time of that poll.

use std::collections::BTreeMap;
use std::process::Command;

use kilowatch_model::Timestamp;
use serde::Deserialize;

use kilowatch_store::jobs::JobPost;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("squeue --json: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Deserialize)]
struct Squeue {
    #[serde(default)]
    jobs: Vec<SqJob>,
}

#[derive(Debug, Deserialize)]
struct SqJob {
    job_id: u64,
    #[serde(default)]
    job_state: serde_json::Value,
    #[serde(default)]
    nodes: String,
    #[serde(default)]
    user_name: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    start_time: serde_json::Value,
    #[serde(default)]
    gres_detail: Vec<String>,
}

/// Slurm 22.05 writes numbers plainly; 23.x wraps some as {"set":true,"number":N} and states
/// as lists. Both are read.
fn number(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| v.get("number").and_then(serde_json::Value::as_i64))
}

fn is_running(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s == "RUNNING",
        serde_json::Value::Array(a) => a.iter().any(|s| s.as_str() == Some("RUNNING")),
        _ => false,
    }
}

/// "0-2,5" → [0, 1, 2, 5].
pub fn expand_indices(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// The GPU indices of one `gres_detail` entry: "gpu:3(IDX:0-2)" or "gpu:h100:2(IDX:4,6)".
pub fn gres_indices(detail: &str) -> Vec<u32> {
    detail.split_once("IDX:").map(|(_, rest)| expand_indices(rest.trim_end_matches(')').split(')').next().unwrap_or(""))).unwrap_or_default()
}

/// Expands a Slurm host list ("dgx-[001-003],login1") without calling scontrol.
pub fn expand_hosts(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    let mut parts = Vec::new();
    for c in list.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        let Some((prefix, rest)) = p.split_once('[') else {
            out.push(p);
            continue;
        };
        let (ranges, suffix) = rest.split_once(']').unwrap_or((rest, ""));
        for r in ranges.split(',') {
            match r.split_once('-') {
                Some((a, b)) => {
                    let width = a.len();
                    if let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) {
                        out.extend((x..=y).map(|n| format!("{prefix}{n:0width$}{suffix}")));
                    }
                }
                None => out.push(format!("{prefix}{r}{suffix}")),
            }
        }
    }
    out
}

/// Start posts for every running job in a `squeue --json` document, one per node.
pub fn running_allocations(json: &str) -> Result<Vec<JobPost>, SlurmError> {
    let q: Squeue = serde_json::from_str(json)?;
    let mut out = Vec::new();
    for j in q.jobs.into_iter().filter(|j| is_running(&j.job_state)) {
        let start = number(&j.start_time).map(Timestamp::from_secs).unwrap_or_else(Timestamp::now);
        for (i, node) in expand_hosts(&j.nodes).into_iter().enumerate() {
            let gpus = j.gres_detail.get(i).map(|d| gres_indices(d)).unwrap_or_default();
            out.push(JobPost {
                job: format!("slurm:{}", j.job_id),
                owner: Some(j.user_name.clone()).filter(|s| !s.is_empty()),
                project: Some(j.account.clone()).filter(|s| !s.is_empty()),
                node: Some(node),
                gpus: Some(gpus),
                start: Some(start.to_rfc3339()),
                end: None,
                source: Some("slurm-poll".into()),
            });
        }
    }
    Ok(out)
}

pub fn run_squeue(squeue: &str) -> Result<String, SlurmError> {
    let out = Command::new(squeue).arg("--json").output().map_err(|source| SlurmError::Spawn { cmd: squeue.to_owned(), source })?;
    if !out.status.success() {
        return Err(SlurmError::Failed { cmd: format!("{squeue} --json"), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Remembers which (job, node) were running, to close those that vanish between polls.
#[derive(Debug, Default)]
pub struct Poller {
    running: BTreeMap<(String, String), ()>,
}

impl Poller {
    /// The posts one poll makes: starts for what runs, ends for what stopped since last time.
    pub fn poll(&mut self, squeue_json: &str, now: Timestamp) -> Result<Vec<JobPost>, SlurmError> {
        let starts = running_allocations(squeue_json)?;
        let mut now_running = BTreeMap::new();
        for p in &starts {
            now_running.insert((p.job.clone(), p.node.clone().unwrap_or_default()), ());
        }
        let mut posts = starts;
        for (job, node) in self.running.keys().filter(|k| !now_running.contains_key(*k)) {
            posts.push(JobPost { job: job.clone(), owner: None, project: None, node: Some(node.clone()), gpus: None, start: None, end: Some(now.to_rfc3339()), source: Some("slurm-poll".into()) });
        }
        self.running = now_running;
        Ok(posts)
    }
}

/// Polls every `interval` until `shutdown`, handing each poll's posts to `sink`.
pub async fn run_poller<F, Fut>(squeue: String, interval: std::time::Duration, mut shutdown: tokio::sync::watch::Receiver<bool>, mut sink: F)
where
    F: FnMut(Vec<JobPost>) -> Fut,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    let mut poller = Poller::default();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let sq = squeue.clone();
        let json = match tokio::task::spawn_blocking(move || run_squeue(&sq)).await {
            Ok(Ok(j)) => j,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "slurm poll failed");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "slurm poll task failed");
                continue;
            }
        };
        match poller.poll(&json, Timestamp::now()) {
            Ok(posts) if posts.is_empty() => {}
            Ok(posts) => match sink(posts).await {
                Ok(n) => tracing::debug!(rows = n, "slurm poll recorded"),
                Err(e) => tracing::warn!(error = %e, "slurm poll not recorded"),
            },
            Err(e) => tracing::warn!(error = %e, "squeue output not understood"),
        }
    }
}

/// Sends posts to an aggregator's `POST /api/v1/jobs` (for `kilowatch slurm-poll` on a
/// controller host). An end whose start the aggregator never saw is answered 400 and skipped.
pub async fn post_http(client: &reqwest::Client, base: &str, token: &str, posts: Vec<JobPost>) -> Result<usize, String> {
    let url = format!("{}/api/v1/jobs", base.trim_end_matches('/'));
    let mut n = 0;
    for p in posts {
        let r = client.post(&url).header("Authorization", format!("Token {token}")).json(&p).send().await.map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            200 => n += 1,
            400 => tracing::debug!(job = %p.job, "aggregator refused a post"),
            s => return Err(format!("{url}: HTTP {s}")),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_squeue_22_05() {
        let j = r#"{"jobs":[{"job_id":7,"job_state":"RUNNING","nodes":"dgx-[001-002]","user_name":"alice","account":"llm","start_time":1700000000,
            "gres_detail":["gpu:3(IDX:0-2)","gpu:2(IDX:4,6)"]},{"job_id":8,"job_state":"PENDING","nodes":"","gres_detail":[]}]}"#;
        let a = running_allocations(j).expect("parse");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].node.as_deref(), Some("dgx-001"));
        assert_eq!(a[0].gpus, Some(vec![0, 1, 2]));
        assert_eq!(a[1].gpus, Some(vec![4, 6]));
        assert_eq!(a[0].job, "slurm:7");
        let mut p = Poller::default();
        assert_eq!(p.poll(j, Timestamp::from_secs(1)).expect("poll").len(), 2);
        let ends = p.poll(r#"{"jobs":[]}"#, Timestamp::from_secs(2)).expect("poll");
        assert_eq!(ends.len(), 2);
        assert!(ends.iter().all(|e| e.end.is_some()));
    }
}
