//! Per-job attribution (DOMAIN.md "Per-job attribution"): over a window cut into steps (hours
//! for the jobs list), each GPU's counter energy goes to the job(s) holding it, plus an equal
//! share per GPU of its node's non-GPU energy (node counter minus its GPUs) where node power is
//! known; energy of GPUs no job holds is idle. Facility energy, water and CO2 follow each job
//! with the PUE, WUE and carbon factor of the step they were used in. Unattributed is metered
//! E_IT minus jobs and idle, so Σ jobs + idle + unattributed = E_IT holds by construction for
//! every window; it is what no node or GPU reading explains (storage, network, unmetered nodes).
//!
//! Speed: every GPU and node series is read once per query and split over its node's
//! boundaries in one pass (`ledger`), never once per job. The jobs holding a GPU are found by
//! sweeping each node's allocations in start order (the set only changes at an allocation's
//! edge), not by scanning them all for every segment; a job's figures are summed as the
//! segments go, and kept per step only when its series is asked for. A long computation
//! stops early when its [`Cancel`] is set (the client went away).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::carbon::{self, FactorSource};
use crate::kpi;
use crate::ledger;
use crate::read::EnergyKind;
use crate::read::{Allocation, JobsRead, ReadError};
use crate::read::{Series, SeriesRead};
use crate::settings::CarbonConfig;
use kilowatch_model::energy::{Ledger, step_bounds};
use kilowatch_model::job::GPU_JOB_MAX_GAP_NS;

const MJ_PER_KWH: f64 = 3.6e9;
const J_PER_KWH: f64 = 3.6e6;
const HOUR_NS: i64 = 3_600_000_000_000;
/// GPUs per node assumed when a node reports power but no GPU series (DGX H100: 8).
pub const DEFAULT_GPUS_PER_NODE: u32 = 8;
/// NVML updates its energy counter every 20–100 ms: nothing shorter can be trusted.
const MIN_UPDATE_S: f64 = 0.1;

#[derive(Debug, Clone, Serialize, Default)]
pub struct JobEnergy {
    pub job: String,
    pub owner: String,
    pub project: String,
    pub source: String,
    pub start: String,
    pub end: Option<String>,
    /// "node:index" of every GPU allocated.
    pub gpus: Vec<String>,
    pub gpu_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub facility_energy_kwh: f64,
    /// Null where no water meter covers the window ("not metered").
    pub water_l: Option<f64>,
    pub co2_kg: f64,
    /// "high", or "low" when the job ran for less than its counters' update period (its energy
    /// is then mostly interpolation) or its GPU energy was integrated from power.
    pub confidence: &'static str,
    pub estimated: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<SeriesPoint>,
    /// GPU and IT energy per chart step, for `series`.
    #[serde(skip)]
    series_steps: HashMap<usize, (f64, f64)>,
    #[serde(skip)]
    min_span_s: f64,
    #[serde(skip)]
    first: i64,
    #[serde(skip)]
    last: Option<i64>,
}

/// One step of a job's series: energies over `[t, t + step)` and the mean power they imply.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    pub t: String,
    pub gpu_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub it_power_w: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Rollup {
    pub jobs: usize,
    pub gpu_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub facility_energy_kwh: f64,
    pub water_l: Option<f64>,
    pub co2_kg: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct AttributionQuality {
    pub gpu_series: usize,
    pub gpu_series_estimated: usize,
    pub node_series: usize,
    pub nodes_without_power: Vec<String>,
    pub counter_resets: u32,
    /// Steps where a node read less than its GPUs (non-GPU share taken as 0).
    pub node_below_gpus_steps: usize,
    /// Segments where a CPU-only node read less than Kepler's pods on it (the pods' energy
    /// scaled down to the node's, so nothing is counted twice).
    #[serde(skip_serializing_if = "is_zero")]
    pub node_below_pods_steps: usize,
    /// Steps with no valid PUE of their own: the window's PUE was used.
    pub steps_without_pue: usize,
    pub it_category: Option<u8>,
    pub it_estimated: bool,
    pub low_confidence_jobs: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Attribution {
    pub from: String,
    pub to: String,
    pub step_s: f64,
    /// Metered E_IT over the window.
    pub it_energy_kwh: f64,
    pub facility_energy_kwh: f64,
    pub jobs_it_energy_kwh: f64,
    pub idle_kwh: f64,
    pub unattributed_kwh: f64,
    pub gpu_energy_kwh: f64,
    pub node_energy_kwh: f64,
    pub pue: Option<f64>,
    pub carbon_factor: Option<FactorSource>,
    pub jobs: Vec<JobEnergy>,
    pub by_owner: BTreeMap<String, Rollup>,
    pub by_project: BTreeMap<String, Rollup>,
    pub data_quality: AttributionQuality,
    /// The PUE, WUE and carbon factor each step's energy was attributed with (customer
    /// statements show them); not part of the jobs API's answer.
    #[serde(skip)]
    pub steps: Vec<StepFactors>,
    /// Idle energy per series step, when a series step was asked for (the site's hourly ledger
    /// for a fleet view); not part of the jobs API's answer.
    #[serde(skip)]
    pub idle_series_kwh: Vec<f64>,
}

/// What one step's (one clock hour's) IT energy was multiplied by.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StepFactors {
    /// The step's start, RFC 3339: the `t` of the jobs' series points at one-hour steps.
    pub t: String,
    pub pue: f64,
    /// L/kWh; none where no water meter covers the window.
    pub wue_l_per_kwh: Option<f64>,
    pub carbon_factor_kg_per_kwh: f64,
    /// The step fell back to the window's PUE (no valid PUE of its own).
    pub window_pue: bool,
}

struct NodeSeries {
    gpus: BTreeMap<u32, (Option<Series>, Option<Series>)>,
    /// The node's energy counters, summed (see [`crate::kepler::node_energy`]): one measured
    /// input, or Kepler's series of one zone group (each mode, each socket).
    energy: Vec<Series>,
    power: Option<Series>,
    /// Kepler's pods on the node: job id → its series (one per container and zone).
    pods: BTreeMap<String, Vec<Series>>,
}

/// A GPU's or node's energy per segment in kWh: its counter where it has readings here, else
/// its power integrated (estimated). `None` when neither covers any of the segments.
fn ledger_of(store: &(impl SeriesRead + ?Sized), counter: Option<&Series>, power: Option<&Series>, bounds: &[i64], counter_per_kwh: f64) -> Result<Option<(Vec<f64>, Ledger)>, ReadError> {
    for (meta, kind, per_kwh) in [(counter, EnergyKind::Counter, counter_per_kwh), (power, EnergyKind::Power, J_PER_KWH)] {
        if let Some(m) = meta {
            let l = store.ledger(m.id, kind, bounds)?;
            if l.total_covered_s() > 0.0 {
                return Ok(Some((l.values.iter().map(|v| v / per_kwh).collect(), l)));
            }
        }
    }
    Ok(None)
}

fn discover(store: &(impl SeriesRead + ?Sized)) -> Result<BTreeMap<String, NodeSeries>, ReadError> {
    let mut nodes: BTreeMap<String, NodeSeries> = BTreeMap::new();
    let entry = |nodes: &mut BTreeMap<String, NodeSeries>, n: &str| {
        if !nodes.contains_key(n) {
            nodes.insert(n.to_owned(), NodeSeries { gpus: BTreeMap::new(), energy: Vec::new(), power: None, pods: BTreeMap::new() });
        }
    };
    for (field, is_counter) in [("energy_mj", true), ("power_w", false)] {
        for m in store.find_series("gpu", field, &[])? {
            let (Some(node), Some(idx)) = (m.tag("node").map(str::to_owned), m.tag("gpu").and_then(|g| g.parse::<u32>().ok())) else { continue };
            entry(&mut nodes, &node);
            if let Some(ns) = nodes.get_mut(&node) {
                let slot = ns.gpus.entry(idx).or_insert((None, None));
                if is_counter { slot.0 = Some(m) } else { slot.1 = Some(m) }
            }
        }
    }
    let mut counters: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for m in store.find_series("node", "energy_j", &[])? {
        let Some(node) = m.tag("node").map(str::to_owned) else { continue };
        entry(&mut nodes, &node);
        counters.entry(node).or_default().push(m);
    }
    for m in store.find_series("node", "power_w", &[])? {
        let Some(node) = m.tag("node").map(str::to_owned) else { continue };
        entry(&mut nodes, &node);
        if let Some(ns) = nodes.get_mut(&node) {
            ns.power = Some(m);
        }
    }
    for (node, series) in counters {
        if let Some(ns) = nodes.get_mut(&node) {
            ns.energy = crate::kepler::node_energy(series, ns.power.is_some());
        }
    }
    for (node, job, m) in crate::kepler::pod_series(store)? {
        // A GPU node's jobs are attributed by GPUs allocated, whatever Kepler says of its pods.
        if let Some(ns) = nodes.get_mut(&node).filter(|ns| ns.gpus.is_empty()) {
            ns.pods.entry(job).or_default().push(m);
        }
    }
    Ok(nodes)
}

/// A node's energy per segment in kWh from its counters (summed, each series' resets and gaps
/// its own) else its power; `None` when nothing covers any segment.
fn node_ledger(store: &(impl SeriesRead + ?Sized), ns: &NodeSeries, bounds: &[i64]) -> Result<Option<(Vec<f64>, u32)>, ReadError> {
    if let [one] = ns.energy.as_slice() {
        return Ok(ledger_of(store, Some(one), ns.power.as_ref(), bounds, J_PER_KWH)?.map(|(v, l)| (v, l.resets)));
    }
    if let Some(sum) = crate::kepler::summed_counters(store, &ns.energy, bounds)? {
        return Ok(Some(sum));
    }
    Ok(ledger_of(store, None, ns.power.as_ref(), bounds, J_PER_KWH)?.map(|(v, l)| (v, l.resets)))
}

/// Set when whoever asked for a computation is gone: the computation checks it and stops.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that sets this flag when dropped (an HTTP handler's future is dropped when its
    /// client disconnects), unless [`CancelOnDrop::disarm`]ed first.
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

pub struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.0.store(true, Ordering::Relaxed);
        }
    }
}

/// The allocations overlapping `r`: the ledger's, plus runs seen only in `gpu_job` points, plus
/// the inference servers' GPUs (`serve:<node>/<server>`, from their `inference` points) that no
/// job holds. A server inside a job (vLLM in a Slurm job or a Kubernetes pod, the usual case) is
/// nested in it, not beside it: the job keeps its whole energy and the server's tokens divide it
/// (`tokens::models`), instead of the two splitting the GPUs. The monthly report,
/// `GET /api/v1/jobs` and `GET /api/v1/models` all attribute over exactly these.
pub fn allocations(store: &(impl SeriesRead + ?Sized), js: &(impl JobsRead + ?Sized), r: TimeRange) -> Result<Vec<Allocation>, ReadError> {
    let mut a = js.allocations(r.from.0, r.to.0)?;
    crate::kepler::with_pod_runs(store, js, &mut a, r.from.0, r.to.0, GPU_JOB_MAX_GAP_NS)?;
    let servers = crate::tokens::serving_allocations(store, r.from.0, r.to.0)?;
    let own: Vec<Allocation> = servers.into_iter().filter(|s| crate::tokens::enclosing(s, &a).is_empty()).collect();
    a.extend(own);
    Ok(a)
}

/// Attributes `[r.from, r.to)` to `allocs`, hour by hour: each job's IT energy of a clock hour
/// takes that whole clock hour's PUE, WUE and carbon factor, whatever the window, so the jobs
/// list and one job's page (`series_step_ns`: its chart step, which keeps a per-step series)
/// give the same figures.
pub fn attribute(store: &(impl SeriesRead + ?Sized), allocs: &[Allocation], r: TimeRange, series_step_ns: Option<i64>, carbon_cfg: &CarbonConfig) -> Result<Attribution, ReadError> {
    // Never cancelled, so always an answer.
    attribute_until(store, allocs, r, series_step_ns, carbon_cfg, &Cancel::default()).map(Option::unwrap_or_default)
}

/// [`attribute`], or `None` as soon as `cancel` is seen set.
pub fn attribute_until(
    store: &(impl SeriesRead + ?Sized),
    allocs: &[Allocation],
    r: TimeRange,
    series_step_ns: Option<i64>,
    carbon_cfg: &CarbonConfig,
    cancel: &Cancel,
) -> Result<Option<Attribution>, ReadError> {
    let (from, to) = (r.from.0, r.to.0);
    let steps = step_bounds(from, to, HOUR_NS);
    let n_steps = steps.len().saturating_sub(1);
    // The site's meters over whole clock hours: the window's steps plus the parts of its first
    // and last clock hours outside it.
    let before = usize::from(from.rem_euclid(HOUR_NS) != 0 && n_steps > 0);
    let after = to.rem_euclid(HOUR_NS) != 0 && n_steps > 0;
    let mut ext = Vec::with_capacity(steps.len() + 2);
    if before == 1 {
        ext.push(from.div_euclid(HOUR_NS) * HOUR_NS);
    }
    ext.extend_from_slice(&steps);
    if after {
        ext.push((to.div_euclid(HOUR_NS) + 1) * HOUR_NS);
    }
    let site = ledger::site_ledgers(store, &ext)?;
    let (grid_cef, factor_src) = carbon::factors(store, &ext, carbon_cfg)?;
    let window = |v: &[f64]| v.iter().skip(before).take(n_steps).sum::<f64>();
    // Step `s` of the window lies in the clock hour made of ext segment `s + before` and, at the
    // window's ends, the segments outside it.
    let clock = |v: &[f64], s: usize| {
        let mut x = v[s + before];
        if s == 0 && before == 1 {
            x += v[0];
        }
        if s + 1 == n_steps && after {
            x += v[s + before + 1];
        }
        x
    };
    let it_total = window(&site.it_kwh);
    let fac_total = window(&site.facility_kwh);
    let water_total = window(&site.water_m3);
    let window_pue = kpi::pue(fac_total, it_total);
    let mut q = AttributionQuality { it_category: site.it_category, it_estimated: site.it_estimated, counter_resets: site.counter_resets, ..Default::default() };
    let mut pue = vec![0.0; n_steps];
    let mut wue = vec![0.0; n_steps];
    // Each hour's E_DC mixes grid energy at the grid's factor and generator energy at its own.
    let mut cef = vec![0.0; n_steps];
    let mut fallback = vec![false; n_steps];
    for s in 0..n_steps {
        let (it, fac, gen_kwh, water) = (clock(&site.it_kwh, s), clock(&site.facility_kwh, s), clock(&site.generator_kwh, s), clock(&site.water_m3, s));
        pue[s] = match kpi::pue(fac, it) {
            Some(p) => p,
            None => {
                q.steps_without_pue += 1;
                fallback[s] = true;
                window_pue.unwrap_or(0.0)
            }
        };
        wue[s] = kpi::wue(water, it).or_else(|| kpi::wue(water_total, it_total)).unwrap_or(0.0);
        let grid_f = grid_cef[if s == 0 { 0 } else { s + before }];
        cef[s] = if fac > 0.0 { ((fac - gen_kwh) * grid_f + gen_kwh * carbon_cfg.generator.factor_kg_per_kwh) / fac } else { grid_f };
    }
    let series_bounds = series_step_ns.map(|st| step_bounds(from, to, st));

    // Jobs are keyed by their id; one job may hold GPUs on several nodes.
    let mut job_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut jobs: Vec<JobEnergy> = Vec::new();
    for a in allocs {
        let i = *job_index.entry(a.job.as_str()).or_insert_with(|| {
            jobs.push(JobEnergy {
                job: a.job.clone(),
                owner: a.owner.clone(),
                project: a.project.clone(),
                source: a.source.clone(),
                confidence: "high",
                min_span_s: f64::INFINITY,
                first: i64::MAX,
                last: Some(i64::MIN),
                ..Default::default()
            });
            jobs.len() - 1
        });
        let j = &mut jobs[i];
        j.gpus.extend(a.gpus.iter().map(|g| format!("{}:{g}", a.node)));
        // Saturating: an allocation posted as started centuries ago spans more than an i64 of ns.
        j.min_span_s = j.min_span_s.min(a.end.unwrap_or(to).saturating_sub(a.start) as f64 / 1e9);
        j.first = j.first.min(a.start);
        // A job is still running while any of its node allocations is open.
        j.last = match (j.last, a.end) {
            (Some(l), Some(e)) => Some(l.max(e)),
            _ => None,
        };
    }
    for j in &mut jobs {
        j.start = Timestamp(j.first).to_rfc3339();
        j.end = j.last.map(|e| Timestamp(e).to_rfc3339());
    }
    let mut by_node: BTreeMap<&str, Vec<(usize, &Allocation)>> = BTreeMap::new();
    for a in allocs {
        if let Some(&i) = job_index.get(a.job.as_str()) {
            by_node.entry(a.node.as_str()).or_default().push((i, a));
        }
    }

    let series = discover(store)?;
    let mut node_names: BTreeSet<&str> = series.keys().map(String::as_str).collect();
    node_names.extend(by_node.keys());
    let mut idle = 0.0;
    let mut idle_series = vec![0.0; series_bounds.as_ref().map_or(0, |sb| sb.len().saturating_sub(1))];
    let (mut gpu_total, mut node_total) = (0.0, 0.0);
    for node in node_names {
        if cancel.is_set() {
            return Ok(None);
        }
        let here = by_node.get(node).map(Vec::as_slice).unwrap_or(&[]);
        // Steps plus every allocation edge on this node: segments where holders do not change.
        let mut b: Vec<i64> = steps.clone();
        if let Some(sb) = &series_bounds {
            b.extend_from_slice(sb);
        }
        for (_, a) in here {
            for t in [Some(a.start), a.end].into_iter().flatten() {
                if t > from && t < to {
                    b.push(t);
                }
            }
        }
        b.sort_unstable();
        b.dedup();
        let nseg = b.len() - 1;
        let ns = series.get(node);
        let mut gpu_e: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
        let mut gpu_step_s: BTreeMap<u32, f64> = BTreeMap::new();
        let mut gpu_est: BTreeMap<u32, bool> = BTreeMap::new();
        if let Some(ns) = ns {
            for (idx, (c, p)) in &ns.gpus {
                q.gpu_series += 1;
                if let Some((v, l)) = ledger_of(store, c.as_ref(), p.as_ref(), &b, MJ_PER_KWH)? {
                    q.counter_resets += l.resets;
                    q.gpu_series_estimated += usize::from(l.estimated);
                    gpu_step_s.insert(*idx, l.median_step_s);
                    gpu_est.insert(*idx, l.estimated);
                    gpu_e.insert(*idx, v);
                }
            }
        }
        let node_e = match ns {
            Some(ns) => {
                q.node_series += usize::from(!ns.energy.is_empty() || ns.power.is_some());
                node_ledger(store, ns, &b)?.map(|(v, resets)| {
                    q.counter_resets += resets;
                    v
                })
            }
            None => None,
        };
        if node_e.is_none() {
            q.nodes_without_power.push(node.to_owned());
        }
        // A CPU-only node with Kepler's pods: each pod's energy is its own counters'.
        let pod_e = match ns {
            Some(ns) if !ns.pods.is_empty() => {
                let (pods, resets) = crate::kepler::pod_ledgers(store, &ns.pods, &b)?;
                q.counter_resets += resets;
                Some(pods)
            }
            _ => None,
        };
        let indices: Vec<u32> = match ns {
            Some(ns) if !ns.gpus.is_empty() => ns.gpus.keys().copied().collect(),
            _ => (0..DEFAULT_GPUS_PER_NODE).collect(),
        };
        let g = indices.len() as f64;
        // This node's allocations by start; `active` holds those running at the segment's
        // middle (segments never straddle an allocation edge).
        let mut by_start: Vec<usize> = (0..here.len()).collect();
        by_start.sort_by_key(|&k| here[k].1.start);
        let mut started = 0usize;
        let mut active: Vec<usize> = Vec::new();
        let mut holders: Vec<usize> = Vec::new();
        let mut hour = 0usize;
        let mut sstep = 0usize;
        for s in 0..nseg {
            if s % 256 == 255 && cancel.is_set() {
                return Ok(None);
            }
            while hour + 1 < n_steps && steps[hour + 1] <= b[s] {
                hour += 1;
            }
            if let Some(sb) = &series_bounds {
                while sstep + 2 < sb.len() && sb[sstep + 1] <= b[s] {
                    sstep += 1;
                }
            }
            let gsum: f64 = gpu_e.values().map(|v| v[s]).sum();
            gpu_total += gsum;
            let non_gpu = match &node_e {
                Some(v) => {
                    node_total += v[s];
                    if v[s] < gsum {
                        q.node_below_gpus_steps += 1;
                    }
                    (v[s] - gsum).max(0.0)
                }
                None => 0.0,
            };
            let mid = b[s].midpoint(b[s + 1]);
            while started < by_start.len() && here[by_start[started]].1.start <= mid {
                active.push(by_start[started]);
                started += 1;
            }
            active.retain(|&k| here[k].1.end.is_none_or(|e| e > mid));
            if let Some(pods) = &pod_e {
                let node_kwh = node_e.as_ref().map(|_| non_gpu);
                let split = crate::kepler::split_segment(pods, s, node_kwh, |job| active.iter().filter(|&&k| here[k].1.job == job).map(|&k| here[k].0).collect());
                q.node_below_pods_steps += usize::from(split.scaled);
                for (i, e) in split.jobs {
                    let j = &mut jobs[i];
                    j.add(0.0, e, pue[hour], site.water_metered.then_some(wue[hour]), cef[hour]);
                    if series_bounds.is_some() {
                        j.series_steps.entry(sstep).or_insert((0.0, 0.0)).1 += e;
                    }
                }
                idle += split.idle;
                if let Some(x) = idle_series.get_mut(sstep) {
                    *x += split.idle;
                }
                continue;
            }
            for idx in &indices {
                let ge = gpu_e.get(idx).map_or(0.0, |v| v[s]);
                let e = ge + non_gpu / g;
                holders.clear();
                holders.extend(active.iter().filter(|&&k| here[k].1.gpus.contains(idx)).map(|&k| here[k].0));
                if holders.is_empty() {
                    idle += e;
                    if let Some(x) = idle_series.get_mut(sstep) {
                        *x += e;
                    }
                    continue;
                }
                // Two jobs claiming one GPU at once (overlapping sources) share it equally, so
                // nothing is counted twice.
                let k = holders.len() as f64;
                for &i in &holders {
                    let j = &mut jobs[i];
                    let (ge_k, e_k) = (ge / k, e / k);
                    j.add(ge_k, e_k, pue[hour], site.water_metered.then_some(wue[hour]), cef[hour]);
                    if series_bounds.is_some() {
                        let st = j.series_steps.entry(sstep).or_insert((0.0, 0.0));
                        st.0 += ge_k;
                        st.1 += e_k;
                    }
                    if gpu_est.get(idx).copied().unwrap_or(false) {
                        j.estimated = true;
                    }
                    if j.min_span_s < gpu_step_s.get(idx).copied().unwrap_or(0.0).max(MIN_UPDATE_S) {
                        j.confidence = "low";
                    }
                }
            }
        }
    }

    let mut jobs_it = 0.0;
    let mut by_owner: BTreeMap<String, Rollup> = BTreeMap::new();
    let mut by_project: BTreeMap<String, Rollup> = BTreeMap::new();
    for j in &mut jobs {
        if let Some(sb) = &series_bounds {
            let mut points: Vec<(&usize, &(f64, f64))> = j.series_steps.iter().collect();
            points.sort_by_key(|(i, _)| **i);
            for (&i, &(ge, ie)) in points {
                let dt = (sb[i + 1] - sb[i]) as f64 / 3.6e12;
                j.series.push(SeriesPoint { t: Timestamp(sb[i]).to_rfc3339(), gpu_energy_kwh: ge, it_energy_kwh: ie, it_power_w: ie * 1000.0 / dt });
            }
        }
        if j.estimated {
            j.confidence = "low";
        }
        q.low_confidence_jobs += usize::from(j.confidence == "low");
        jobs_it += j.it_energy_kwh;
        for (map, key) in [(&mut by_owner, &j.owner), (&mut by_project, &j.project)] {
            add_to_rollup(map.entry(if key.is_empty() { "(unknown)".to_owned() } else { key.clone() }).or_default(), j);
        }
    }
    tracing::debug!(jobs = jobs.len(), it_kwh = it_total, jobs_kwh = jobs_it, idle_kwh = idle, "attributed");
    Ok(Some(Attribution {
        from: r.from.to_rfc3339(),
        to: r.to.to_rfc3339(),
        step_s: series_step_ns.unwrap_or(HOUR_NS) as f64 / 1e9,

        it_energy_kwh: it_total,
        facility_energy_kwh: fac_total,
        jobs_it_energy_kwh: jobs_it,
        idle_kwh: idle,
        unattributed_kwh: it_total - jobs_it - idle,
        gpu_energy_kwh: gpu_total,
        node_energy_kwh: node_total,
        pue: window_pue,
        carbon_factor: Some(factor_src),
        jobs,
        by_owner,
        by_project,
        data_quality: q,
        steps: (0..n_steps)
            .map(|s| StepFactors { t: Timestamp(steps[s]).to_rfc3339(), pue: pue[s], wue_l_per_kwh: site.water_metered.then_some(wue[s]), carbon_factor_kg_per_kwh: cef[s], window_pue: fallback[s] })
            .collect(),
        idle_series_kwh: idle_series,
    }))
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Adds a job's figures to a roll-up (per owner, per project, a customer's statement).
pub fn add_to_rollup(r: &mut Rollup, j: &JobEnergy) {
    r.add_job(j.gpu_energy_kwh, j.it_energy_kwh, j.facility_energy_kwh, j.water_l, j.co2_kg);
}

impl Rollup {
    /// Adds one job's GPU, IT and facility energy, water (`None`: not metered) and CO2.
    pub fn add_job(&mut self, gpu_kwh: f64, it_kwh: f64, facility_kwh: f64, water_l: Option<f64>, co2_kg: f64) {
        self.jobs += 1;
        self.gpu_energy_kwh += gpu_kwh;
        self.it_energy_kwh += it_kwh;
        self.facility_energy_kwh += facility_kwh;
        if let Some(w) = water_l {
            *self.water_l.get_or_insert(0.0) += w;
        }
        self.co2_kg += co2_kg;
    }
}

impl JobEnergy {
    /// Adds GPU energy `ge` and IT energy `ie` used in a clock hour with those PUE, WUE (`None`:
    /// water not metered) and carbon factor: facility energy, water and CO2 follow the hour's
    /// own figures.
    fn add(&mut self, ge: f64, ie: f64, pue: f64, wue: Option<f64>, cef: f64) {
        self.gpu_energy_kwh += ge;
        self.it_energy_kwh += ie;
        let fac = ie * pue;
        self.facility_energy_kwh += fac;
        if let Some(w) = wue {
            *self.water_l.get_or_insert(0.0) += ie * w;
        }
        self.co2_kg += fac * cef;
    }
}
