//! Which job a GPU process belongs to, from its cgroup. Slurm and Kubernetes both put every
//! process of a job (pod) under a cgroup named after it, so `/proc/<pid>/cgroup` answers
//! without asking the scheduler, and keeps answering for processes started by `srun` steps.
//!
//! Recognised layouts:
//! - Slurm cgroup v1: `4:memory:/slurm/uid_1000/job_1234/step_0/task_0` → `slurm:1234`
//! - Slurm cgroup v2: `0::/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0` → `slurm:1234`
//! - Kubernetes, cgroupfs driver: `…/kubepods/burstable/pod<uid>/<container>` → `k8s:<uid>`
//! - Kubernetes, systemd driver: `…/kubepods-burstable-pod<uid with _>.slice/…` → `k8s:<uid>`

use std::path::PathBuf;

/// Maps PIDs to jobs by reading `<proc_root>/<pid>/cgroup`. `proc_root` is `/proc` on a
/// node, `/host/proc` in a container that mounts the host's, a fixture tree in tests.
#[derive(Debug, Clone)]
pub struct JobResolver {
    proc_root: PathBuf,
}

impl Default for JobResolver {
    fn default() -> Self {
        JobResolver { proc_root: PathBuf::from("/proc") }
    }
}

impl JobResolver {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        JobResolver { proc_root: proc_root.into() }
    }

    /// The job of `pid`, or `None` when the process has gone, is in no job, or lives in
    /// another PID namespace than `proc_root` shows.
    pub fn job_of(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        job_from_cgroup(&text)
    }
}

/// Parses the text of a `/proc/<pid>/cgroup` file. The unified (v2) line wins when both
/// hierarchies name a job, since that is the one systemd and Slurm keep current.
pub fn job_from_cgroup(text: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        // hierarchy-ID:controllers:path — the path may itself contain ':'.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if let Some(job) = job_from_path(path) {
            if id == "0" {
                return Some(job);
            }
            found.get_or_insert(job);
        }
    }
    found
}

fn job_from_path(path: &str) -> Option<String> {
    for comp in path.split('/') {
        if let Some(id) = comp.strip_prefix("job_").filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())) {
            return Some(format!("slurm:{id}"));
        }
        if let Some(uid) = k8s_pod_uid(comp) {
            return Some(format!("k8s:{uid}"));
        }
    }
    None
}

fn k8s_pod_uid(comp: &str) -> Option<String> {
    // systemd driver: kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice
    if let Some(slice) = comp.strip_prefix("kubepods-").and_then(|c| c.strip_suffix(".slice")) {
        let pos = slice.find("pod")?;
        let uid = slice[pos + 3..].replace('_', "-");
        return is_uid(&uid).then_some(uid);
    }
    // cgroupfs driver: pod<uid>
    let uid = comp.strip_prefix("pod")?;
    is_uid(uid).then(|| uid.to_owned())
}

/// A pod UID is a UUID: 36 characters, hex digits and four dashes.
fn is_uid(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') && s.bytes().filter(|&b| b == b'-').count() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_v1_and_v2() {
        let v1 = "12:pids:/slurm/uid_1000/job_1234/step_0/task_0\n4:memory:/slurm/uid_1000/job_1234/step_0/task_0\n1:name=systemd:/system.slice/slurmd.service\n";
        assert_eq!(job_from_cgroup(v1).as_deref(), Some("slurm:1234"));
        let v2 = "0::/system.slice/slurmstepd.scope/job_987/step_batch/user/task_0\n";
        assert_eq!(job_from_cgroup(v2).as_deref(), Some("slurm:987"));
    }

    #[test]
    fn kubernetes_both_drivers() {
        let fs = "0::/kubepods/burstable/pod8dbc5577-d0e2-4706-8787-57d52c03ddf2/3c2e0ab4b5d1\n";
        assert_eq!(job_from_cgroup(fs).as_deref(), Some("k8s:8dbc5577-d0e2-4706-8787-57d52c03ddf2"));
        let sd = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8dbc5577_d0e2_4706_8787_57d52c03ddf2.slice/cri-containerd-abc.scope\n";
        assert_eq!(job_from_cgroup(sd).as_deref(), Some("k8s:8dbc5577-d0e2-4706-8787-57d52c03ddf2"));
        let guaranteed = "0::/kubepods.slice/kubepods-pod8dbc5577_d0e2_4706_8787_57d52c03ddf2.slice/x\n";
        assert_eq!(job_from_cgroup(guaranteed).as_deref(), Some("k8s:8dbc5577-d0e2-4706-8787-57d52c03ddf2"));
    }

    #[test]
    fn no_job() {
        assert_eq!(job_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n"), None);
        assert_eq!(job_from_cgroup("0::/system.slice/job_x.service\n"), None);
        assert_eq!(job_from_cgroup("0::/kubepods.slice/kubepods-burstable.slice\n"), None);
        assert_eq!(job_from_cgroup(""), None);
    }
}
