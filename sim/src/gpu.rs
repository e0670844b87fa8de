//! NVIDIA H100 SXM GPUs and the DGX H100 node around them. Readings are pure functions of
//! (static per-device traits, the job on the GPU, time, inlet air): no thermal or electrical
//! state, so a 1 s step and a 15 min step see the same instantaneous values.

use crate::jobs::{JobProfile, utilization};
use crate::noise::{gauss, hash3, u01, value_noise};

/// H100 SXM enforced power limit (default and maximum), W.
pub const POWER_LIMIT_W: f64 = 700.0;
/// Slowdown threshold; NVML's margin is reported against it.
const SLOWDOWN_C: f64 = 87.0;
/// Junction-to-inlet thermal resistance of an H100 SXM with its DGX heat sink, °C/W:
/// ~38 °C above inlet at 700 W.
const THETA_C_PER_W: f64 = 0.055;
pub const SM_CLOCK_MAX_MHZ: i64 = 1980;
const SM_CLOCK_IDLE_MHZ: i64 = 345;
/// HBM3 on H100 SXM runs at a single clock.
pub const MEM_CLOCK_MHZ: i64 = 2619;
pub const MEM_TOTAL_BYTES: i64 = 80 * 1024 * 1024 * 1024;
/// What the driver and CUDA context reserve before a job allocates anything.
const MEM_RESERVED_BYTES: i64 = 531 * 1024 * 1024;
/// NVML clock-event reason: software power cap.
pub const THROTTLE_SW_POWER_CAP: i64 = 0x4;
/// DGX H100 nameplate maximum; a BMC power cap keeps the node under it.
pub const NODE_MAX_W: f64 = 10_200.0;

/// What makes one GPU differ from its neighbours (silicon lottery, position in the chassis).
#[derive(Debug, Clone)]
pub struct GpuStatic {
    pub key: u64,
    pub idle_w: f64,
    /// Power at a given utilization relative to the fleet (leakage, binning), ±4 %.
    pub power_scale: f64,
    /// Hotter or cooler spot in the chassis airflow, °C.
    pub temp_offset_c: f64,
    pub uuid: String,
    /// NVML energy counter at simulation start, mJ ("since driver load").
    pub energy_offset_mj: f64,
}

impl GpuStatic {
    pub fn new(seed: u64, node: usize, gpu: usize) -> Self {
        let key = hash3(seed, 0x6770_0000 + node as u64, gpu as u64);
        let h = |i: u64| u01(key, 0x51, i);
        let a = hash3(key, 0x52, 0);
        let b = hash3(key, 0x52, 1);
        let uuid = format!("GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", a >> 32, (a >> 16) & 0xFFFF, 0x4000 | (a & 0x0FFF), 0x8000 | (b >> 48 & 0x3FFF), b & 0xFFFF_FFFF_FFFF);
        GpuStatic {
            key,
            // H100 SXM idles at ~60–75 W with the driver persistent and clocks parked.
            idle_w: 60.0 + 15.0 * h(0),
            power_scale: 0.96 + 0.08 * h(1),
            temp_offset_c: -1.0 + 4.0 * h(2),
            uuid,
            // Up to ~30 days of uptime at a few hundred watts before the simulation starts.
            energy_offset_mj: (h(3) * 30.0 * 86_400.0 * 350.0 * 1000.0).floor(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GpuReading {
    pub power_w: f64,
    pub temp_c: f64,
    pub mem_temp_c: f64,
    pub util_pct: f64,
    pub mem_util_pct: f64,
    pub sm_clock_mhz: i64,
    pub mem_used_bytes: i64,
    pub throttle_reasons: i64,
    /// Host CPU load this GPU's work causes (0–1 of one socket's share), for the node model.
    pub cpu_load: f64,
}

#[inline]
pub fn gpu_at(g: &GpuStatic, job: Option<&JobProfile>, t_s: f64, inlet_c: f64) -> GpuReading {
    // Sub-watt sensor jitter that is the same whatever the step.
    let jitter = gauss(g.key, 0x10, (t_s / 5.0).floor() as i64 as u64);
    let (power_w, util, mem_util, sm_clock, mem_used, throttle, cpu_load) = match job {
        None => {
            // 0 rather than NVML's "GPU idle" bit (0x1): downstream alerts read non-zero as a
            // throttle.
            (g.idle_w + 0.8 * jitter, 0.0, 0.0, SM_CLOCK_IDLE_MHZ, MEM_RESERVED_BYTES, 0, 0.0)
        }
        Some(p) => {
            let u = utilization(p, g.key, t_s);
            let noise = 1.0 + 0.02 * value_noise(g.key ^ p.key, 0x11, t_s / 7.0);
            let demanded = g.idle_w + (p.level_w * g.power_scale - g.idle_w) * u * noise;
            let capped = demanded >= POWER_LIMIT_W;
            let power = demanded.min(POWER_LIMIT_W - 0.3 * jitter.abs());
            // Under the cap the driver trades clock for power: P ~ f·V² with V tracking f, so
            // f scales roughly with the square root of the power ratio at the top of the curve.
            let sm = if capped {
                ((SM_CLOCK_MAX_MHZ as f64 * (POWER_LIMIT_W / demanded).sqrt() / 15.0).round() * 15.0) as i64
            } else if u > 0.02 {
                SM_CLOCK_MAX_MHZ
            } else {
                SM_CLOCK_IDLE_MHZ
            };
            let e = t_s - p.start_s;
            let fill = (e / p.ramp_s).clamp(0.0, 1.0);
            let mem = MEM_RESERVED_BYTES + (p.mem_frac * fill * (MEM_TOTAL_BYTES - MEM_RESERVED_BYTES) as f64) as i64;
            let throttle = if capped { THROTTLE_SW_POWER_CAP } else { 0 };
            (power, u, u * p.mem_intensity, sm, mem, throttle, p.cpu_load * u.max(0.3))
        }
    };
    let temp_c = inlet_c + g.temp_offset_c + THETA_C_PER_W * power_w;
    GpuReading {
        power_w,
        temp_c,
        // HBM stacks sit beside the die and run a few degrees hotter under load.
        mem_temp_c: temp_c + 3.0 + 0.006 * power_w,
        util_pct: 100.0 * util,
        mem_util_pct: 100.0 * mem_util,
        sm_clock_mhz: sm_clock,
        mem_used_bytes: mem_used,
        throttle_reasons: throttle,
        cpu_load,
    }
}

/// A GPU of an inference server: its power and utilization follow the server's load.
pub fn gpu_serving(g: &GpuStatic, r: &crate::serving::Rates, t_s: f64, inlet_c: f64) -> GpuReading {
    let jitter = gauss(g.key, 0x10, (t_s / 5.0).floor() as i64 as u64);
    let power_w = (r.gpu_w * g.power_scale + 0.8 * jitter).min(POWER_LIMIT_W);
    let temp_c = inlet_c + g.temp_offset_c + THETA_C_PER_W * power_w;
    GpuReading {
        power_w,
        temp_c,
        mem_temp_c: temp_c + 3.0 + 0.006 * power_w,
        util_pct: 100.0 * r.util,
        // Decoding is memory-bound: the memory controller is busier than the SMs.
        mem_util_pct: 100.0 * (r.util * 1.1).min(1.0),
        sm_clock_mhz: SM_CLOCK_MAX_MHZ,
        // Weights plus the KV cache vLLM preallocates (90 % of HBM by default).
        mem_used_bytes: (0.9 * MEM_TOTAL_BYTES as f64) as i64,
        throttle_reasons: 0,
        cpu_load: 0.1,
    }
}

pub fn temp_margin_c(r: &GpuReading) -> f64 {
    SLOWDOWN_C - r.temp_c
}

/// DGX H100 input power (PSU input, what the BMC reports) from its eight GPUs and inlet air.
/// Idle ≈ 2.1 kW, sustained training ≈ 9–9.8 kW, bounded below the 10.2 kW nameplate.
pub fn node_power_w(gpus: &[GpuReading], inlet_c: f64, platform_scale: f64) -> f64 {
    let n = gpus.len().max(1) as f64;
    let gpu_w: f64 = gpus.iter().map(|g| g.power_w).sum();
    let cpu_load = gpus.iter().map(|g| g.cpu_load).sum::<f64>() / n;
    // GPU load share above idle, 0–1, normalised to eight GPUs.
    let load = ((gpu_w - 67.0 * n) / (633.0 * n)).clamp(0.0, 1.0);
    // Two Xeon 8480C (350 W TDP): ~130 W each idle, up to ~330 W feeding a busy data pipeline.
    let cpu_w = 2.0 * (130.0 + 200.0 * (0.03 + cpu_load).min(1.0));
    // 2 TB DDR5, four NVSwitch chips, ten ConnectX-7, NVMe, BMC: ~0.9 kW idle, more with
    // NVLink and InfiniBand traffic.
    let platform_w = platform_scale * (900.0 + 400.0 * load);
    // Twelve chassis fans: speed follows GPU heat and rises with a warm inlet; fan power goes
    // with the cube of speed, hence the steep curve.
    let fan_w = (300.0 + 1_200.0 * load.powf(1.5) * (1.0 + 0.03 * (inlet_c - 24.0))).clamp(250.0, 1_700.0);
    let dc_w = gpu_w + cpu_w + platform_w + fan_w;
    // PSU efficiency (80 PLUS Titanium-class, 4+2 sharing): ~92.5 % at light load, ~94 %
    // loaded.
    let eff = 0.94 - 0.05 * (-dc_w / 1_500.0).exp();
    (dc_w / eff).min(NODE_MAX_W - 50.0)
}
