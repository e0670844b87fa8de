//! The job stream: a deterministic sequence of submissions (own RNG, independent of the step
//! the site is advanced with) placed in arrival order on the GPUs that free up earliest.
//! No backfilling into holes: a job takes the earliest-free resources and starts when all of
//! them are free, which is how a plain FIFO queue behaves and keeps allocations disjoint by
//! construction (a GPU's free time only ever moves forward).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Customers and projects sharing the cluster, with relative submission weights.
pub const OWNERS: &[(&str, f64)] = &[
    ("mistral-ai/pretrain", 1.5),
    ("mistral-ai/finetune", 1.2),
    ("kyutai/moshi", 1.0),
    ("h-company/agents", 1.0),
    ("poolside/code", 1.0),
    ("photoroom/diffusion", 0.8),
    ("lighton/rag", 0.7),
    ("owkin/pathology", 0.6),
    ("inria/bigscience", 0.8),
    ("cnrs/climate-emulator", 0.5),
    ("nabla/med-asr", 0.5),
    ("scaleway/inference", 0.9),
];

/// Mean time between submissions for a 127-node site, seconds. Tuned so that, with the size
/// and duration mixes below and the queueing gaps of a no-backfill FIFO, about 80 % of the GPUs
/// are allocated (see the crate's job-stream test). Scaled by site size.
const MEAN_INTERARRIVAL_S: f64 = 1_900.0;
/// Users give up on (or never submit) a job that would queue longer than this; without it a
/// FIFO with 64-node jobs can build an unbounded queue.
const MAX_WAIT_S: i64 = 12 * 3600;
const MIN_DURATION_S: f64 = 600.0;
const MAX_DURATION_S: f64 = 3.0 * 86_400.0;
/// Share of submissions that are fractional single-node jobs (1, 2 or 4 GPUs).
const FRACTIONAL_SHARE: f64 = 0.35;

/// How a job drives its GPUs: everything the GPU model needs, small and `Copy` so each GPU can
/// hold its own copy (no lookup in the hot loop).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobProfile {
    pub start_s: f64,
    /// Per-GPU power the job reaches at 100 % utilization, W (450–700).
    pub level_w: f64,
    /// Steady utilization between checkpoints, 0.85–0.98.
    pub util_base: f64,
    /// Data loading / compilation before the first steps, s.
    pub ramp_s: f64,
    pub ckpt_period_s: f64,
    pub ckpt_len_s: f64,
    pub ckpt_phase_s: f64,
    /// Utilization while writing a checkpoint.
    pub ckpt_util: f64,
    /// Share of the 80 GiB of HBM the job uses.
    pub mem_frac: f64,
    /// How much of the compute utilization shows as memory-controller utilization.
    pub mem_intensity: f64,
    /// Host CPU load per busy GPU (data pipeline), 0–1.
    pub cpu_load: f64,
    pub key: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub id: u64,
    pub owner: &'static str,
    pub start_s: i64,
    pub end_s: i64,
    /// (site node index from 0, GPU indices on it).
    pub placement: Vec<(usize, Vec<u32>)>,
    pub profile: JobProfile,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchedEvent {
    Start(JobSpec),
    End(JobSpec),
}

pub struct Scheduler {
    rng: ChaCha8Rng,
    nodes: usize,
    gpus_per_node: usize,
    /// Per GPU (node-major), the second at which it is next free.
    gpu_free: Vec<i64>,
    next_arrival_s: f64,
    mean_interarrival_s: f64,
    next_id: u64,
    /// (time, 0 = end / 1 = start, job id): ends before starts at the same second, so a GPU
    /// handed from one job to the next is never held twice.
    events: BinaryHeap<Reverse<(i64, u8, u64)>>,
    jobs: BTreeMap<u64, JobSpec>,
    owner_total: f64,
}

impl Scheduler {
    pub fn new(seed: u64, nodes: usize, gpus_per_node: usize, origin_s: i64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x10B5_u64);
        let next_id = 1_000_000 + rng.random_range(0..100_000u64);
        let mean_interarrival_s = MEAN_INTERARRIVAL_S * 127.0 / nodes.max(1) as f64;
        Scheduler {
            rng,
            nodes,
            gpus_per_node,
            gpu_free: vec![origin_s; nodes * gpus_per_node],
            next_arrival_s: origin_s as f64,
            mean_interarrival_s,
            next_id,
            events: BinaryHeap::new(),
            jobs: BTreeMap::new(),
            owner_total: OWNERS.iter().map(|o| o.1).sum(),
        }
    }

    /// The next start or end at or before `t_s`, in time order.
    pub fn pop_until(&mut self, t_s: i64) -> Option<(i64, SchedEvent)> {
        // A job starts no earlier than it arrives, so once every arrival up to `t_s` is placed
        // the heap holds every event up to `t_s`.
        while self.next_arrival_s <= t_s as f64 {
            self.submit();
        }
        let &Reverse((time, kind, id)) = self.events.peek()?;
        if time > t_s {
            return None;
        }
        self.events.pop();
        let ev = if kind == 1 { SchedEvent::Start(self.jobs.get(&id)?.clone()) } else { SchedEvent::End(self.jobs.remove(&id)?) };
        Some((time, ev))
    }

    fn submit(&mut self) {
        let arrival = self.next_arrival_s.ceil() as i64;
        // Exponential inter-arrival times: independent submissions.
        let u: f64 = self.rng.random();
        self.next_arrival_s += -self.mean_interarrival_s * (1.0 - u).ln();
        let id = self.next_id;
        self.next_id += 1;

        let mut pick = self.rng.random::<f64>() * self.owner_total;
        let mut owner = OWNERS[0].0;
        for &(name, w) in OWNERS {
            owner = name;
            if pick < w {
                break;
            }
            pick -= w;
        }
        let fractional = self.rng.random::<f64>() < FRACTIONAL_SHARE;
        let size_u: f64 = self.rng.random();
        // Log-uniform durations: as many 10–30 min debug runs as multi-day trainings.
        let d_u: f64 = self.rng.random();
        let duration = (MIN_DURATION_S.ln() + d_u * (MAX_DURATION_S / MIN_DURATION_S).ln()).exp().round() as i64;
        let profile = self.profile();

        let g = self.gpus_per_node;
        let (start, placement) = if fractional {
            let want = [1usize, 2, 4][((size_u * 3.0) as usize).min(2)].min(g);
            self.place_fraction(arrival, want)
        } else {
            // 1–64 nodes, skewed to small: 2^(6·u^1.8) puts ~45 % of jobs on 1–2 nodes and ~2 % on
            // 48+.
            let n = (2f64.powf(6.0 * size_u.powf(1.8)).floor() as usize).clamp(1, 64).min(self.nodes);
            self.place_nodes(arrival, n)
        };
        if start - arrival > MAX_WAIT_S {
            return;
        }
        let end = start + duration;
        for (node, gpus) in &placement {
            for &k in gpus {
                self.gpu_free[node * g + k as usize] = end;
            }
        }
        let profile = JobProfile { start_s: start as f64, ..profile };
        self.events.push(Reverse((start, 1, id)));
        self.events.push(Reverse((end, 0, id)));
        self.jobs.insert(id, JobSpec { id, owner, start_s: start, end_s: end, placement, profile });
    }

    fn profile(&mut self) -> JobProfile {
        let r = &mut self.rng;
        JobProfile {
            start_s: 0.0,
            // Skewed high: most trainings run near the limit, inference and small fine-tunes
            // lower.
            level_w: 450.0 + 250.0 * r.random::<f64>().powf(0.6),
            util_base: r.random_range(0.85..0.98),
            ramp_s: r.random_range(60.0..900.0),
            ckpt_period_s: r.random_range(1_200.0..3_600.0),
            ckpt_len_s: r.random_range(60.0..240.0),
            ckpt_phase_s: r.random_range(0.0..1_200.0),
            ckpt_util: r.random_range(0.05..0.3),
            mem_frac: r.random_range(0.45..0.95),
            mem_intensity: r.random_range(0.25..0.65),
            cpu_load: r.random_range(0.2..0.6),
            key: r.random(),
        }
    }

    /// Whole nodes: the `n` nodes that free up first (ties to the lowest index).
    fn place_nodes(&self, arrival: i64, n: usize) -> (i64, Vec<(usize, Vec<u32>)>) {
        let g = self.gpus_per_node;
        let mut free: Vec<(i64, usize)> = (0..self.nodes).map(|i| (self.gpu_free[i * g..(i + 1) * g].iter().copied().max().unwrap_or(arrival), i)).collect();
        free.sort_unstable();
        free.truncate(n);
        let start = free.iter().map(|f| f.0).max().unwrap_or(arrival).max(arrival);
        let mut nodes: Vec<usize> = free.into_iter().map(|f| f.1).collect();
        nodes.sort_unstable();
        let all: Vec<u32> = (0..g as u32).collect();
        (start, nodes.into_iter().map(|i| (i, all.clone())).collect())
    }

    /// Part of one node: the node whose `k`-th GPU frees up first; among equals, the one with
    /// the fewest spare GPUs (best fit, so small jobs pack instead of fragmenting every node).
    fn place_fraction(&self, arrival: i64, k: usize) -> (i64, Vec<(usize, Vec<u32>)>) {
        let g = self.gpus_per_node;
        let mut best: Option<(i64, usize, usize)> = None;
        let mut times = vec![0i64; g];
        for i in 0..self.nodes {
            times.copy_from_slice(&self.gpu_free[i * g..(i + 1) * g]);
            times.sort_unstable();
            let start = times[k - 1].max(arrival);
            let spare = times.iter().filter(|&&t| t <= start).count();
            let key = (start, spare, i);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        let (start, _, node) = best.unwrap_or((arrival, 0, 0));
        let mut order: Vec<(i64, u32)> = (0..g).map(|j| (self.gpu_free[node * g + j], j as u32)).collect();
        order.sort_unstable();
        let mut gpus: Vec<u32> = order.into_iter().take(k).map(|o| o.1).collect();
        gpus.sort_unstable();
        (start, vec![(node, gpus)])
    }
}

/// Utilization (0–1) of a GPU running `p` at `t_s`, and whether the job is past its ramp.
/// Pure in (profile, GPU, time): ramp-up, steady with noise, periodic checkpoint dips.
#[inline]
pub fn utilization(p: &JobProfile, gpu_key: u64, t_s: f64) -> f64 {
    let e = t_s - p.start_s;
    if e < 0.0 {
        return 0.0;
    }
    let wobble = 0.025 * crate::noise::value_noise(p.key ^ gpu_key, 0x07, t_s / 20.0);
    if e < p.ramp_s {
        // Setup runs mostly on the host; the GPUs come up over the last part of the ramp.
        let x = e / p.ramp_s;
        return (p.util_base * x * x * x + wobble.abs()).clamp(0.0, 1.0);
    }
    let phase = (e - p.ramp_s + p.ckpt_phase_s).rem_euclid(p.ckpt_period_s);
    if phase < p.ckpt_len_s {
        return (p.ckpt_util + wobble).clamp(0.0, 1.0);
    }
    (p.util_base + wobble).clamp(0.0, 1.0)
}
