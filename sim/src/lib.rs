//! A deterministic DC5-like site: 127 DGX H100 nodes (1,016 H100 GPUs) cooled by outside air
//! and evaporation, with its meters, weather and job stream. Pure computation: no I/O, no
//! threads, no wall clock. The same seed gives the same numbers, byte for byte.
//!
//! Instantaneous values (weather, GPU and node power, plant state, meter powers) are pure
//! functions of the time and of the job schedule, which itself is generated from its own RNG
//! independently of the step. Counters integrate those powers with the trapezoid rule over the
//! steps between `advance_to` calls, so energy balances exactly whatever the step.
//!
//! For backfills, prefer [`Site::fill_points`] with one [`PointBuf`] over [`Site::points`]:
//! it rewrites values in place instead of allocating ~20 strings per point (a month of the
//! whole site at 60 s: ~5 s instead of ~65 s in release).

mod gpu;
mod jobs;
pub mod live;
mod meters;
mod noise;
mod outlook;
mod plant;
mod points;
mod psy;
mod scenario;
pub mod serving;
mod weather;

use std::collections::BTreeMap;

use kilowatch_model::{JobAllocation, Timestamp};

pub use gpu::{MEM_CLOCK_MHZ, MEM_TOTAL_BYTES, NODE_MAX_W, POWER_LIMIT_W, SM_CLOCK_MAX_MHZ};
pub use jobs::OWNERS;
pub use meters::METERS;
pub use outlook::temp_error_sd;
pub use plant::Mode;
pub use points::PointBuf;
pub use scenario::{CoolingFailure, HeatWave, Scenario};
pub use weather::OutsideAir;

use gpu::{GpuReading, GpuStatic};
use jobs::{JobProfile, SchedEvent, Scheduler};
use meters::{MeterPowers, N_METERS};
use plant::PlantState;

/// Which points [`Site::points`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Emit {
    pub gpus: bool,
    pub nodes: bool,
    pub facility: bool,
}

impl Default for Emit {
    fn default() -> Self {
        Emit { gpus: true, nodes: true, facility: true }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    pub site: String,
    /// How many nodes this instance reports, from `first_node` on.
    pub nodes: usize,
    /// First reported node, 1-based: `first_node: 17, nodes: 16` reports dgx-017..dgx-032.
    pub first_node: usize,
    /// Nodes the whole site has. The job scheduler and the facility (plant, meters) always see
    /// the whole site, so collectors that each simulate a slice of it agree with each other and
    /// with one simulator of the whole site. Raised to cover the reported slice if needed.
    pub site_nodes: usize,
    pub gpus_per_node: usize,
    pub cooling_units: usize,
    pub emit: Emit,
    pub start: Timestamp,
    /// Injected events (heat wave, cooling unit failure); none by default.
    pub scenario: Scenario,
    /// An inference fleet on the site's last nodes ([`serving`]) and training jobs that report
    /// their steps ([`Site::take_progress`]); off by default, on in the demo.
    pub inference: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 5,
            site: "dc5".into(),
            nodes: 127,
            first_node: 1,
            site_nodes: 127,
            gpus_per_node: 8,
            cooling_units: 8,
            emit: Emit::default(),
            // 2025-01-01T00:00:00Z
            start: Timestamp::from_secs(1_735_689_600),
            scenario: Scenario::none(),
            inference: false,
        }
    }
}

/// A training step a job finished (what `POST /api/v1/progress` records).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressStep {
    pub job: String,
    pub step: u64,
    pub t: Timestamp,
    pub tokens: f64,
    pub samples: f64,
}

/// Owners whose training jobs report their steps in the demo.
pub const PROGRESS_OWNERS: &[&str] = &["mistral-ai/pretrain", "inria/bigscience", "poolside/code"];
/// A reporting job's step: one every minute after a 10-minute start-up, of 1,000 tokens per GPU
/// and second (a 70B dense model at ~40 % MFU on H100), sequences of 4,096 tokens.
const STEP_S: i64 = 60;
const STEP_RAMP_S: i64 = 600;
const TOKENS_PER_GPU_S: f64 = 1_000.0;
const SEQ_LEN: f64 = 4_096.0;

#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Start(JobAllocation),
    End { job: String, node: String, end: Timestamp },
}

/// Cumulative ground truth since the simulation start. Facility figures are for the whole
/// site; `gpu_energy_j` and `node_energy_j` for the reported nodes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Truth {
    /// Grid + generator.
    pub facility_kwh: f64,
    pub grid_kwh: f64,
    pub generator_kwh: f64,
    /// UPS outputs (PUE category 1).
    pub it_kwh: f64,
    pub cooling_kwh: f64,
    pub losses_kwh: f64,
    pub other_kwh: f64,
    pub water_m3: f64,
    pub gpu_energy_j: f64,
    pub node_energy_j: f64,
}

/// Everything instantaneous at one time.
#[derive(Debug, Clone)]
struct Snapshot {
    t_s: f64,
    air: OutsideAir,
    plant: PlantState,
    gpus: Vec<GpuReading>,
    node_w: Vec<f64>,
    meters: MeterPowers,
    /// Each inference server's rates.
    serving: Vec<serving::Rates>,
}

/// Warm-up of the job schedule before the start, so the site starts busy rather than empty.
const WARMUP_S: i64 = 4 * 86_400;
const WEEK_S: i64 = 7 * 86_400;
const J_PER_KWH: f64 = 3.6e6;
/// Initial reading of the make-up water totaliser, m³.
const WATER_INITIAL_M3: f64 = 4_512.3;

pub struct Site {
    cfg: SimConfig,
    site_nodes: usize,
    /// Reported node indices (0-based, site-wide): `lo..hi`.
    lo: usize,
    hi: usize,
    scale: f64,
    weather: weather::Weather,
    sched: Scheduler,
    gpu_static: Vec<GpuStatic>,
    node_platform: Vec<f64>,
    node_unit: Vec<usize>,
    unit_offset_c: Vec<f64>,
    unit_share: Vec<f64>,
    profiles: Vec<Option<JobProfile>>,
    active: BTreeMap<(u64, usize), JobAllocation>,
    pending: Vec<JobEvent>,
    now: Timestamp,
    snap: Snapshot,
    next: Snapshot,
    gpu_energy_mj: Vec<f64>,
    node_energy_j: Vec<f64>,
    meter_kwh: [f64; N_METERS],
    water_m3: f64,
    truth: Truth,
    servers: Vec<serving::Server>,
    /// The server running on each GPU (site-wide GPU index).
    serving_of: Vec<Option<usize>>,
    server_counters: Vec<serving::Counters>,
    progress: Vec<ProgressStep>,
}

pub(crate) fn node_name(idx: usize) -> String {
    format!("dgx-{:03}", idx + 1)
}

impl Site {
    pub fn new(cfg: SimConfig) -> Site {
        let g = cfg.gpus_per_node.max(1);
        let lo = cfg.first_node.max(1) - 1;
        let hi = lo + cfg.nodes;
        let site_nodes = cfg.site_nodes.max(hi).max(1);
        let scale = site_nodes as f64 / 127.0;
        let seed = cfg.seed;
        let start_s = cfg.start.0.div_euclid(1_000_000_000);
        // Anchor the schedule to a week boundary so collectors started at different moments of
        // the same week (same seed) agree on every job.
        let origin = (start_s - WARMUP_S).div_euclid(WEEK_S) * WEEK_S;
        let gpu_static: Vec<GpuStatic> = (0..site_nodes * g).map(|i| GpuStatic::new(seed, i / g, i % g)).collect();
        let units = cfg.cooling_units.max(1);
        let unit_offset_c = (0..units).map(|u| 0.6 * (noise::u01(seed, 0xC0, u as u64) - 0.5)).collect();
        let raw: Vec<f64> = (0..units).map(|u| 0.9 + 0.2 * noise::u01(seed, 0xC1, u as u64)).collect();
        let sum: f64 = raw.iter().sum();
        let unit_share = raw.iter().map(|r| r / sum).collect();
        let mild = OutsideAir { temp_c: 15.0, rh_pct: 70.0, dew_point_c: 9.6, wet_bulb_c: 12.0 };
        let empty = Snapshot {
            t_s: 0.0,
            air: mild,
            plant: plant::plant_at(&mild, plant::air_path(&mild), 0.0, scale),
            gpus: vec![GpuReading::default(); site_nodes * g],
            node_w: vec![0.0; site_nodes],
            meters: MeterPowers::default(),
            serving: Vec::new(),
        };
        let servers = if cfg.inference { serving::layout(site_nodes, g) } else { Vec::new() };
        let mut serving_of = vec![None; site_nodes * g];
        for (i, sv) in servers.iter().enumerate() {
            for &k in &sv.gpus {
                serving_of[sv.node * g + k as usize] = Some(i);
            }
        }
        // The scheduler places jobs on the nodes the fleet leaves.
        let job_nodes = if cfg.inference { site_nodes - serving::serving_nodes(site_nodes) } else { site_nodes };
        let mut site = Site {
            weather: weather::Weather::new(seed),
            sched: Scheduler::new(seed, job_nodes, g, origin),
            gpu_energy_mj: gpu_static.iter().map(|s| s.energy_offset_mj).collect(),
            gpu_static,
            node_platform: (0..site_nodes).map(|n| 0.97 + 0.06 * noise::u01(seed, 0xB0, n as u64)).collect(),
            node_unit: (0..site_nodes).map(|n| n * units / site_nodes).collect(),
            unit_offset_c,
            unit_share,
            profiles: vec![None; site_nodes * g],
            active: BTreeMap::new(),
            pending: Vec::new(),
            now: cfg.start,
            snap: empty.clone(),
            next: empty,
            node_energy_j: (0..site_nodes).map(|n| (noise::u01(seed, 0xB1, n as u64) * 1e12).floor()).collect(),
            meter_kwh: meters::initial_kwh(seed),
            water_m3: WATER_INITIAL_M3,
            truth: Truth::default(),
            server_counters: vec![serving::Counters::default(); servers.len()],
            servers,
            serving_of,
            progress: Vec::new(),
            site_nodes,
            lo,
            hi,
            scale,
            cfg,
        };
        site.apply_jobs(start_s, false);
        let t = site.now;
        site.compute(t);
        std::mem::swap(&mut site.snap, &mut site.next);
        site
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Integrates from `now()` to `t`. Earlier times are ignored (time does not run back).
    pub fn advance_to(&mut self, t: Timestamp) {
        if t <= self.now {
            return;
        }
        self.apply_jobs(t.0.div_euclid(1_000_000_000), true);
        self.compute(t);
        let dt = (t.0 - self.now.0) as f64 / 1e9;
        let (a, b) = (&self.snap, &self.next);
        let half = 0.5 * dt;
        for (i, e) in self.gpu_energy_mj.iter_mut().enumerate() {
            *e += half * (a.gpus[i].power_w + b.gpus[i].power_w) * 1000.0;
        }
        let g = self.cfg.gpus_per_node.max(1);
        let mut gpu_j = 0.0;
        let mut node_j = 0.0;
        for (n, e) in self.node_energy_j.iter_mut().enumerate() {
            let d = half * (a.node_w[n] + b.node_w[n]);
            *e += d;
            if (self.lo..self.hi).contains(&n) {
                node_j += d;
                gpu_j += (n * g..(n + 1) * g).map(|i| half * (a.gpus[i].power_w + b.gpus[i].power_w)).sum::<f64>();
            }
        }
        let mut d_kwh = [0.0; N_METERS];
        for (i, d) in d_kwh.iter_mut().enumerate() {
            *d = half * (a.meters.w[i] + b.meters.w[i]) / J_PER_KWH;
            self.meter_kwh[i] += *d;
        }
        for (c, (ra, rb)) in self.server_counters.iter_mut().zip(a.serving.iter().zip(&b.serving)) {
            c.add(ra, rb, dt);
        }
        let water = half * (a.plant.water_m3_s + b.plant.water_m3_s);
        self.water_m3 += water;
        let tr = &mut self.truth;
        tr.grid_kwh += d_kwh[0] + d_kwh[1];
        tr.generator_kwh += d_kwh[2];
        tr.facility_kwh += d_kwh[0] + d_kwh[1] + d_kwh[2];
        tr.it_kwh += d_kwh[3] + d_kwh[4];
        tr.cooling_kwh += d_kwh[5];
        tr.losses_kwh += d_kwh[6];
        tr.other_kwh += d_kwh[7];
        tr.water_m3 += water;
        tr.gpu_energy_j += gpu_j;
        tr.node_energy_j += node_j;
        std::mem::swap(&mut self.snap, &mut self.next);
        if self.cfg.inference {
            self.record_progress(self.now.0.div_euclid(1_000_000_000), t.0.div_euclid(1_000_000_000));
        }
        self.now = t;
    }

    /// Steps the reporting training jobs finished in `(from_s, to_s]`.
    fn record_progress(&mut self, from_s: i64, to_s: i64) {
        let mut jobs: BTreeMap<u64, (i64, usize)> = BTreeMap::new();
        for ((id, _), a) in &self.active {
            if PROGRESS_OWNERS.contains(&a.owner.as_str()) {
                let e = jobs.entry(*id).or_insert((a.start.0.div_euclid(1_000_000_000), 0));
                e.1 += a.gpus.len();
            }
        }
        for (id, (start, gpus)) in jobs {
            let first = (from_s - start - STEP_RAMP_S).div_euclid(STEP_S) + 1;
            let last = (to_s - start - STEP_RAMP_S).div_euclid(STEP_S);
            let tokens = gpus as f64 * TOKENS_PER_GPU_S * STEP_S as f64;
            for k in first.max(1)..=last {
                self.progress.push(ProgressStep { job: id.to_string(), step: k as u64, t: Timestamp::from_secs(start + STEP_RAMP_S + k * STEP_S), tokens, samples: tokens / SEQ_LEN });
            }
        }
    }

    /// Training steps finished since the last call (none unless `inference` is set).
    pub fn take_progress(&mut self) -> Vec<ProgressStep> {
        std::mem::take(&mut self.progress)
    }

    /// The inference servers on the reported nodes.
    pub fn servers(&self) -> impl Iterator<Item = &serving::Server> {
        self.servers.iter().filter(|s| (self.lo..self.hi).contains(&s.node))
    }

    pub fn take_job_events(&mut self) -> Vec<JobEvent> {
        std::mem::take(&mut self.pending)
    }

    pub fn truth(&self) -> Truth {
        self.truth
    }

    /// Allocations running now on the reported nodes, one per (job, node), by job then node.
    pub fn active_jobs(&self) -> Vec<JobAllocation> {
        self.active.values().cloned().collect()
    }

    /// The outside air now.
    pub fn outside_air(&self) -> OutsideAir {
        self.snap.air
    }

    /// The outside air at `t` (heat wave included), whatever `now()` is.
    pub fn air_at(&self, t: Timestamp) -> OutsideAir {
        let t_s = t.0 as f64 / 1e9;
        let air = self.weather.at(t_s);
        self.cfg.scenario.air(&air, t_s).unwrap_or(air)
    }

    /// The weather forecast for `target` issued at `issued`: the air that will be there (a
    /// scheduled heat wave included: forecasters see those coming) plus a forecast's error
    /// that grows with the lead time ([`temp_error_sd`]).
    pub fn forecast_air(&self, issued: Timestamp, target: Timestamp) -> OutsideAir {
        outlook::forecast_air(self.cfg.seed, &self.air_at(target), issued.0 as f64 / 1e9, target.0 as f64 / 1e9)
    }

    /// The grid's carbon intensity at `t`, g CO2eq/kWh (a France-like daily curve).
    pub fn grid_intensity(&self, t: Timestamp) -> f64 {
        outlook::grid_intensity(self.cfg.seed, t.0 as f64 / 1e9)
    }

    /// The grid intensity forecast for `target` issued at `issued`, g CO2eq/kWh.
    pub fn forecast_grid_intensity(&self, issued: Timestamp, target: Timestamp) -> f64 {
        outlook::forecast_grid_intensity(self.cfg.seed, issued.0 as f64 / 1e9, target.0 as f64 / 1e9)
    }

    /// The cooling mode now.
    pub fn cooling_mode(&self) -> Mode {
        self.snap.plant.path.mode
    }

    /// Applies scheduler events up to `t_s`, recording them for `take_job_events` when
    /// `report` (not during the warm-up before the start).
    fn apply_jobs(&mut self, t_s: i64, report: bool) {
        let g = self.cfg.gpus_per_node.max(1);
        while let Some((time, ev)) = self.sched.pop_until(t_s) {
            let ts = Timestamp::from_secs(time);
            match ev {
                SchedEvent::Start(job) => {
                    for (node, gpus) in &job.placement {
                        for &k in gpus {
                            self.profiles[node * g + k as usize] = Some(job.profile);
                        }
                        if (self.lo..self.hi).contains(node) {
                            let alloc = JobAllocation { job: job.id.to_string(), owner: job.owner.to_owned(), node: node_name(*node), gpus: gpus.clone(), start: ts, end: None };
                            if report {
                                self.pending.push(JobEvent::Start(alloc.clone()));
                            }
                            self.active.insert((job.id, *node), alloc);
                        }
                    }
                }
                SchedEvent::End(job) => {
                    for (node, gpus) in &job.placement {
                        for &k in gpus {
                            self.profiles[node * g + k as usize] = None;
                        }
                        if self.active.remove(&(job.id, *node)).is_some() && report {
                            self.pending.push(JobEvent::End { job: job.id.to_string(), node: node_name(*node), end: ts });
                        }
                    }
                }
            }
        }
    }

    /// Fills `self.next` with the instantaneous state at `t`.
    fn compute(&mut self, t: Timestamp) {
        let t_s = t.0 as f64 / 1e9;
        let g = self.cfg.gpus_per_node.max(1);
        let mut air = self.weather.at(t_s);
        if let Some(hot) = self.cfg.scenario.air(&air, t_s) {
            air = hot;
        }
        let path = plant::air_path(&air);
        self.next.serving = self.servers.iter().map(|sv| serving::rates(sv, serving::load(sv, t_s))).collect();
        let next = &mut self.next;
        let mut nodes_w = 0.0;
        for n in 0..self.site_nodes {
            let mut inlet = path.supply_c + self.unit_offset_c[self.node_unit[n]];
            if let Some(rise) = self.cfg.scenario.unit_failed(self.node_unit[n], t) {
                inlet += rise;
            }
            let range = n * g..(n + 1) * g;
            for i in range.clone() {
                next.gpus[i] = match self.serving_of[i] {
                    Some(sv) => gpu::gpu_serving(&self.gpu_static[i], &serving::rates(&self.servers[sv], serving::load(&self.servers[sv], t_s)), t_s, inlet),
                    None => gpu::gpu_at(&self.gpu_static[i], self.profiles[i].as_ref(), t_s, inlet),
                };
            }
            let w = gpu::node_power_w(&next.gpus[range], inlet, self.node_platform[n]);
            next.node_w[n] = w;
            nodes_w += w;
        }
        let storage_net = meters::balance(nodes_w, 0.0, 0.0, false, self.scale).storage_net_w;
        let plant = plant::plant_at(&air, path, nodes_w + storage_net, self.scale);
        let other = meters::other_w(t_s, air.temp_c, self.scale);
        let gen_test = meters::generator_test(self.cfg.seed, t_s);
        next.meters = meters::balance(nodes_w, plant.total_w, other, gen_test, self.scale);
        next.plant = plant;
        next.air = air;
        next.t_s = t_s;
    }
}
