//! The scenario file that drives the fake library (TOML).
//!
//! Time is counted in *frames*, per GPU: frame k is what the getters return after the
//! (k+1)-th `nvmlDeviceGetHandleByIndex_v2` for that GPU. Kilowatch's backend looks each GPU
//! up once when it opens NVML (frame 0) and once per sampling attempt, so the n-th
//! `sample()` that actually queries a GPU sees frame n; a GPU the backend skips while it
//! backs off does not advance. Every dynamic value is a number (constant) or a list indexed
//! by frame whose last element holds for all later frames.
//!
//! ```toml
//! driver_version = "550.54.15"
//! call_log = "/tmp/calls.log"        # optional: one line per NVML call, "<symbol> <gpu>"
//! [[gpu]]
//! name = "NVIDIA H100 80GB HBM3"
//! uuid = "GPU-…"
//! pci_bus_id = "00000000:18:00.0"
//! power_mw = [512500, 600000]
//! energy_mj = [1000000, 1600000, 5000]   # frame 2 goes backwards: a driver reload
//! not_supported = ["mem_temp"]           # these getters answer NVML_ERROR_NOT_SUPPORTED
//! faults = [{ from = 3, until = 6, error = "gpu_lost" }]
//! xids = [{ frame = 2, code = 79 }]
//! processes = [{ pid = 4242, used_memory = 1073741824, from = 1 }]
//! ```

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_driver")]
    pub driver_version: String,
    /// `false` makes `nvmlInit` answer NVML_ERROR_DRIVER_NOT_LOADED.
    #[serde(default = "yes")]
    pub driver_loaded: bool,
    #[serde(default)]
    pub call_log: Option<String>,
    #[serde(default)]
    pub gpu: Vec<Gpu>,
}

fn default_driver() -> String {
    "550.54.15".to_owned()
}
fn yes() -> bool {
    true
}

/// A value per frame; the last one holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Series {
    One(u64),
    Many(Vec<u64>),
}

impl Series {
    pub fn at(&self, frame: usize) -> u64 {
        match self {
            Series::One(v) => *v,
            Series::Many(v) => v.get(frame).or(v.last()).copied().unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub pci_bus_id: Option<String>,
    #[serde(default = "s_85520809984")]
    pub memory_total: Series,
    #[serde(default = "s_0")]
    pub memory_used: Series,
    #[serde(default = "s_350000")]
    pub power_mw: Series,
    #[serde(default = "s_1000000000")]
    pub energy_mj: Series,
    #[serde(default = "s_700000")]
    pub power_limit_mw: Series,
    #[serde(default = "s_45")]
    pub temp_c: Series,
    #[serde(default = "s_50")]
    pub mem_temp_c: Series,
    #[serde(default = "s_87")]
    pub slowdown_c: Series,
    #[serde(default = "s_92")]
    pub shutdown_c: Series,
    #[serde(default = "s_0")]
    pub util_gpu: Series,
    #[serde(default = "s_0")]
    pub util_mem: Series,
    #[serde(default = "s_1980")]
    pub sm_clock: Series,
    #[serde(default = "s_2619")]
    pub mem_clock: Series,
    #[serde(default = "s_0")]
    pub throttle: Series,
    #[serde(default = "s_0")]
    pub ecc_corrected: Series,
    #[serde(default = "s_0")]
    pub ecc_uncorrected: Series,
    #[serde(default)]
    pub mig_current: u32,
    #[serde(default)]
    pub mig_pending: u32,
    /// Getter names (see [`Getter`]) that answer NVML_ERROR_NOT_SUPPORTED.
    #[serde(default)]
    pub not_supported: Vec<String>,
    /// Getter names that answer NVML_ERROR_FUNCTION_NOT_FOUND (an older driver).
    #[serde(default)]
    pub function_not_found: Vec<String>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub xids: Vec<Xid>,
    #[serde(default)]
    pub processes: Vec<Process>,
}

fn default_name() -> String {
    "NVIDIA H100 80GB HBM3".to_owned()
}

// serde's `default = "…"` wants a path; these small functions give each field its H100-ish
// default.
macro_rules! series_defaults {
    ($($name:ident = $v:expr),* $(,)?) => { $( #[allow(non_snake_case)] fn $name() -> Series { Series::One($v) } )* };
}
series_defaults!(
    s_85520809984 = 85_520_809_984,
    s_0 = 0,
    s_350000 = 350_000,
    s_1000000000 = 1_000_000_000,
    s_700000 = 700_000,
    s_45 = 45,
    s_50 = 50,
    s_87 = 87,
    s_92 = 92,
    s_1980 = 1980,
    s_2619 = 2619,
);

/// Every device call answers `error` for frames `from ≤ k < until` (handle lookups excepted:
/// a real lost GPU usually still has a handle and fails on its first query).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub from: usize,
    #[serde(default = "forever")]
    pub until: usize,
    pub error: String,
}

fn forever() -> usize {
    usize::MAX
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Xid {
    pub frame: usize,
    pub code: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: u32,
    #[serde(default)]
    pub used_memory: u64,
    #[serde(default)]
    pub from: usize,
    #[serde(default = "forever")]
    pub until: usize,
}

impl Gpu {
    pub fn fault_at(&self, frame: usize) -> Option<&str> {
        self.faults.iter().find(|f| f.from <= frame && frame < f.until).map(|f| f.error.as_str())
    }
}

pub fn parse(text: &str) -> Result<Scenario, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_hold_their_last_value() {
        let s: Scenario = parse("[[gpu]]\npower_mw = [1, 2, 3]\nfaults = [{ from = 2, error = \"gpu_lost\" }]\n").expect("valid");
        let g = &s.gpu[0];
        assert_eq!(g.power_mw.at(0), 1);
        assert_eq!(g.power_mw.at(9), 3);
        assert_eq!(g.temp_c.at(4), 45);
        assert_eq!(g.fault_at(1), None);
        assert_eq!(g.fault_at(100), Some("gpu_lost"));
        assert!(s.driver_loaded);
    }
}
