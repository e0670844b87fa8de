//! Temporary stand-in with the simulator's public API; replaced by the real crate on merge.
use kilowatch_model::{JobAllocation, Point, Timestamp};

#[derive(Debug, Clone)]
pub struct Emit { pub gpus: bool, pub nodes: bool, pub facility: bool }
impl Default for Emit { fn default() -> Self { Emit { gpus: true, nodes: true, facility: true } } }
#[derive(Debug, Clone)]
pub struct SimConfig { pub seed: u64, pub site: String, pub nodes: usize, pub first_node: usize, pub gpus_per_node: usize, pub cooling_units: usize, pub emit: Emit, pub start: Timestamp }
impl Default for SimConfig { fn default() -> Self { SimConfig { seed: 5, site: "dc5".into(), nodes: 127, first_node: 1, gpus_per_node: 8, cooling_units: 8, emit: Emit::default(), start: Timestamp(0) } } }
pub enum JobEvent { Start(JobAllocation), End { job: String, node: String, end: Timestamp } }
pub struct Site { cfg: SimConfig, now: Timestamp, grid: f64, it: f64, water: f64 }
impl Site {
    pub fn new(cfg: SimConfig) -> Site { let now = cfg.start; Site { cfg, now, grid: 1000.0, it: 500.0, water: 4512.3 } }
    pub fn now(&self) -> Timestamp { self.now }
    pub fn advance_to(&mut self, t: Timestamp) { let h = (t.0 - self.now.0) as f64 / 3.6e12; self.grid += 1160.0 * h; self.it += 1000.0 * h; self.water += 0.214 * h; self.now = t; }
    pub fn points(&self) -> Vec<Point> {
        let s = self.cfg.site.clone();
        vec![
            Point::new("meter", self.now).tag("site", s.clone()).tag("meter", "grid-a").tag("role", "facility").field("energy_kwh", self.grid).field("power_w", 1_160_000.0),
            Point::new("meter", self.now).tag("site", s.clone()).tag("meter", "ups-a-out").tag("role", "it").tag("category", "1").field("energy_kwh", self.it).field("power_w", 1_000_000.0),
            Point::new("water", self.now).tag("site", s).tag("meter", "makeup-1").tag("potable", "true").field("volume_m3", self.water),
        ]
    }
    pub fn take_job_events(&mut self) -> Vec<JobEvent> { Vec::new() }
}
