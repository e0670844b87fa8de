//! Kepler's node and pod counters in the ledger (docs/prometheus.md, "Kepler"): which of a
//! node's energy series make its energy, the pods of a CPU-only node as jobs, and how a
//! segment of such a node splits between its pods and idle.
//!
//! Kepler writes one counter per mode (`dynamic`, `idle`) and socket, so a node's energy is
//! the sum of several series, each read on its own (its resets and gaps its own, as the
//! collector's counters are). A measured input wins over Kepler's: the collector's (or any
//! line-protocol writer's) `node` counter, else a node power reading (a BMC, ipmi_exporter),
//! because Kepler's platform figure is ACPI's or a model's and package + DRAM is not the whole
//! node. Among Kepler's own, the platform zone (the whole node) wins over package + DRAM (which
//! leave out fans, disks, NICs, PSU losses). Pods: what Kepler attributes a pod is its dynamic
//! share; what Kepler calls idle is the node's idle, so Σ pods ≤ node and the rest is idle.

use std::collections::BTreeMap;

use crate::read::{Allocation, EnergyKind, JobsRead, ReadError, Series, SeriesRead};
use kilowatch_model::metric::{POD, pod_job_id};

/// The tag Kepler's series carry (the receiver's shipped Kepler rules set it).
const SOURCE: (&str, &str) = ("source", "kepler");
const J_PER_KWH: f64 = 3.6e6;
/// The source of allocations made from Kepler's pod series.
pub const KEPLER: &str = "kepler";
/// Kepler 0.7's pseudo-container for the processes of no container: not a pod, so its energy
/// stays the node's (idle).
const SYSTEM_POD: (&str, &str) = ("system", "system_processes");

/// The counters that make a node's energy, out of every `node` `energy_j` series of it.
pub fn node_energy(mut series: Vec<Series>, has_power: bool) -> Vec<Series> {
    let is_kepler = |m: &Series| m.tag(SOURCE.0) == Some(SOURCE.1);
    if let Some(measured) = series.iter().rposition(|m| !is_kepler(m)) {
        // As before Kepler: one measured counter a node, the last found.
        return vec![series.swap_remove(measured)];
    }
    if has_power {
        return Vec::new();
    }
    let zone = |m: &Series, z: &str| m.tag("zone") == Some(z);
    if series.iter().any(|m| zone(m, "platform")) {
        series.retain(|m| zone(m, "platform"));
    } else {
        series.retain(|m| zone(m, "package") || zone(m, "dram"));
    }
    series
}

/// Every pod series with its node and job (`k8s:<namespace>/<pod>`).
pub fn pod_series(store: &(impl SeriesRead + ?Sized)) -> Result<Vec<(String, String, Series)>, ReadError> {
    let mut out = Vec::new();
    for m in store.find_series(POD, "energy_j", &[])? {
        let (Some(node), Some(ns), Some(pod)) = (m.tag("node"), m.tag("namespace"), m.tag("pod")) else { continue };
        if (ns, pod) == SYSTEM_POD {
            continue;
        }
        let (node, job) = (node.to_owned(), pod_job_id(ns, pod));
        out.push((node, job, m));
    }
    Ok(out)
}

/// The sum of `series`' counter energy per segment in kWh, and their resets; `None` when none
/// has a pair of readings in any segment.
pub fn summed_counters(store: &(impl SeriesRead + ?Sized), series: &[Series], bounds: &[i64]) -> Result<Option<(Vec<f64>, u32)>, ReadError> {
    let mut sum: Option<(Vec<f64>, u32)> = None;
    for m in series {
        let l = store.ledger(m.id, EnergyKind::Counter, bounds)?;
        if l.total_covered_s() <= 0.0 {
            continue;
        }
        let (v, resets) = sum.get_or_insert_with(|| (vec![0.0; l.values.len()], 0));
        for (x, y) in v.iter_mut().zip(&l.values) {
            *x += y / J_PER_KWH;
        }
        *resets += l.resets;
    }
    Ok(sum)
}

/// Job id and its energy per segment in kWh.
pub type PodEnergy = (String, Vec<f64>);

/// Each pod's energy per segment in kWh (its series summed), and the resets seen.
pub fn pod_ledgers(store: &(impl SeriesRead + ?Sized), pods: &BTreeMap<String, Vec<Series>>, bounds: &[i64]) -> Result<(Vec<PodEnergy>, u32), ReadError> {
    let mut out = Vec::with_capacity(pods.len());
    let mut resets = 0;
    for (job, series) in pods {
        if let Some((v, r)) = summed_counters(store, series, bounds)? {
            resets += r;
            out.push((job.clone(), v));
        }
    }
    Ok((out, resets))
}

/// How one segment of a CPU-only node splits.
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// Job index and the IT energy (kWh) it is charged.
    pub jobs: Vec<(usize, f64)>,
    pub idle: f64,
    /// The pods read more than the node: scaled down to it.
    pub scaled: bool,
}

/// Segment `s` of a node whose energy there is `node_kwh` (`None`: not metered): each pod's
/// energy goes to the jobs `holders` names for it (equally, if two claim it), scaled down when
/// the pods read more than the node; the node's energy no job takes is idle. Without a node
/// reading, a pod no job holds is idle and the rest is unattributed.
pub fn split_segment(pods: &[PodEnergy], s: usize, node_kwh: Option<f64>, holders: impl Fn(&str) -> Vec<usize>) -> Split {
    let total: f64 = pods.iter().map(|(_, v)| v[s]).sum();
    let mut out = Split::default();
    let scale = match node_kwh {
        Some(n) if total > n => {
            out.scaled = true;
            if total > 0.0 { n / total } else { 0.0 }
        }
        _ => 1.0,
    };
    let mut charged = 0.0;
    for (job, v) in pods {
        let e = v[s] * scale;
        if e == 0.0 {
            continue;
        }
        let h = holders(job);
        if h.is_empty() {
            if node_kwh.is_none() {
                out.idle += e;
            }
            continue;
        }
        let k = h.len() as f64;
        for i in h {
            out.jobs.push((i, e / k));
        }
        charged += e;
    }
    if let Some(n) = node_kwh {
        out.idle += (n - charged).max(0.0);
    }
    out
}

/// Adds to `allocs` one allocation per pod and node from its series' readings in `[from, to]`
/// (first to last, as a `gpu_job` run: gaps up to `max_gap_ns` held), on the nodes without GPU
/// series, unless the job is declared (the jobs API) or already there; the owner and project
/// the receiver recorded for the job.
pub fn with_pod_runs(store: &(impl SeriesRead + ?Sized), js: &(impl JobsRead + ?Sized), allocs: &mut Vec<Allocation>, from: i64, to: i64, max_gap_ns: i64) -> Result<(), ReadError> {
    let pods = pod_series(store)?;
    if pods.is_empty() {
        return Ok(());
    }
    let mut gpu_nodes = std::collections::HashSet::new();
    for f in ["energy_mj", "power_w"] {
        gpu_nodes.extend(store.find_series("gpu", f, &[])?.into_iter().filter_map(|m| m.tag("node").map(str::to_owned)));
    }
    let mut times: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for (node, job, m) in pods {
        if gpu_nodes.contains(&node) {
            continue;
        }
        let t = times.entry((job, node)).or_default();
        t.extend(store.read_f64(m.id, from.saturating_sub(max_gap_ns), to.saturating_add(max_gap_ns))?.into_iter().map(|(t, _)| t));
    }
    for ((job, node), mut t) in times {
        t.sort_unstable();
        let (Some(&start), Some(&end)) = (t.first(), t.last()) else { continue };
        if end <= start || end < from || start > to || allocs.iter().any(|a| a.job == job) || js.declared(&job)? {
            continue;
        }
        let (owner, project) = js.label_owner(&job)?.unwrap_or_default();
        allocs.push(Allocation { job, owner, project, node, gpus: Vec::new(), start, end: Some(end), source: KEPLER.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Vec<PodEnergy> {
        vec![("k8s:a/p".into(), vec![1.0, 3.0]), ("k8s:b/q".into(), vec![2.0, 3.0])]
    }

    #[test]
    fn pods_take_their_own_energy_and_the_node_keeps_the_rest_as_idle() {
        let held = |j: &str| if j == "k8s:a/p" { vec![0] } else { vec![1] };
        let s = split_segment(&pods(), 0, Some(10.0), held);
        assert_eq!(s, Split { jobs: vec![(0, 1.0), (1, 2.0)], idle: 7.0, scaled: false });
        let s = split_segment(&pods(), 1, Some(3.0), held);
        assert_eq!(s, Split { jobs: vec![(0, 1.5), (1, 1.5)], idle: 0.0, scaled: true }, "never more than the node");
        let s = split_segment(&pods(), 0, Some(10.0), |j| if j == "k8s:a/p" { vec![0] } else { vec![] });
        assert_eq!((s.jobs, s.idle), (vec![(0, 1.0)], 9.0), "a pod no job holds is the node's idle");
        let s = split_segment(&pods(), 0, None, |j| if j == "k8s:a/p" { vec![0] } else { vec![] });
        assert_eq!((s.jobs, s.idle), (vec![(0, 1.0)], 2.0), "no node reading: only what pods read");
    }

    #[test]
    fn a_measured_counter_or_power_wins_over_kepler_and_platform_over_package_and_dram() {
        let series = |id: u32, tags: &[(&str, &str)]| Series {
            id,
            measurement: "node".into(),
            field: "energy_j".into(),
            tags: std::iter::once(("node", "n1")).chain(tags.iter().copied()).map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        };
        let k = |id: u32, zone: &str, mode: &str| series(id, &[("source", "kepler"), ("zone", zone), ("mode", mode)]);
        let kepler = vec![k(1, "platform", "dynamic"), k(2, "platform", "idle"), k(3, "package", "dynamic"), k(4, "dram", "idle")];
        let zones = |v: Vec<Series>| {
            let mut z: Vec<String> = v.iter().map(|m| format!("{}/{}", m.tag("zone").unwrap_or("-"), m.tag("mode").unwrap_or("-"))).collect();
            z.sort();
            z
        };
        assert_eq!(zones(node_energy(kepler.clone(), false)), ["platform/dynamic", "platform/idle"]);
        assert!(node_energy(kepler.clone(), true).is_empty(), "a BMC's power wins over Kepler");
        let no_platform: Vec<Series> = kepler.iter().filter(|m| m.tag("zone") != Some("platform")).cloned().collect();
        assert_eq!(zones(node_energy(no_platform, false)), ["dram/idle", "package/dynamic"]);
        let mut with_collector = kepler;
        with_collector.push(series(5, &[]));
        assert_eq!(zones(node_energy(with_collector, false)), ["-/-"], "the collector's counter wins");
    }
}
