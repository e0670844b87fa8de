//! The one table of what Kilowatch measures: measurement, field, unit, and whether the value
//! is a gauge (a reading) or a counter (cumulative, taken as deltas). Look a name up here
//! before inventing one.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A reading at an instant: power, temperature, utilization.
    Gauge,
    /// Cumulative since some origin: energy and water totals. Only differences mean anything;
    /// a decrease is a reset or rollover, never negative energy.
    Counter,
    /// A name or state, such as the cooling mode.
    Label,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    #[serde(rename = "W")]
    Watt,
    #[serde(rename = "mJ")]
    Millijoule,
    #[serde(rename = "J")]
    Joule,
    #[serde(rename = "kWh")]
    KilowattHour,
    #[serde(rename = "m3")]
    CubicMetre,
    #[serde(rename = "degC")]
    Celsius,
    #[serde(rename = "%")]
    Percent,
    #[serde(rename = "MHz")]
    Megahertz,
    #[serde(rename = "B")]
    Byte,
    #[serde(rename = "1")]
    Dimensionless,
    /// A count of occurrences (errors, events).
    #[serde(rename = "count")]
    Count,
    #[serde(rename = "s")]
    Second,
    /// Tokens of a language model (prompt or generated).
    #[serde(rename = "tokens")]
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricDef {
    pub measurement: &'static str,
    pub field: &'static str,
    pub unit: Unit,
    pub kind: Kind,
    pub help: &'static str,
}

const fn m(measurement: &'static str, field: &'static str, unit: Unit, kind: Kind, help: &'static str) -> MetricDef {
    MetricDef { measurement, field, unit, kind, help }
}

use Kind::{Counter, Gauge, Label};
use Unit::*;

pub const GPU: &str = "gpu";
/// Which job holds a GPU: one line per (GPU, job) each interval, from the processes' cgroups.
pub const GPU_JOB: &str = "gpu_job";
/// Something that happened to a GPU: an XID, a counter reset, lost, recovered.
pub const GPU_EVENT: &str = "gpu_event";
pub const NODE: &str = "node";
pub const METER: &str = "meter";
pub const WATER: &str = "water";
pub const COOLING: &str = "cooling";
/// An inference server's counters (vLLM, SGLang, TGI, Triton), one line per (server, model,
/// tenant) each interval, tagged `server`, `engine` (its kind), `model` and `tenant` where known.
pub const INFERENCE: &str = "inference";
/// A Kubernetes pod's (or one of its containers') energy as Kepler attributes it, tagged
/// `node`, `namespace`, `pod` (and `container`, `zone`): what a CPU-only node's pods are charged.
pub const POD: &str = "pod";

/// The job id of a Kubernetes pod, as `POST /api/v1/jobs`, dcgm-exporter's labels and Kepler's
/// `pod` series name it.
pub fn pod_job_id(namespace: &str, pod: &str) -> String {
    format!("k8s:{namespace}/{pod}")
}

/// What an inference server does in a prefill/decode-disaggregated deployment (vLLM's
/// disaggregated prefill, SGLang PD, NVIDIA Dynamo): the `role` tag of its `inference` points,
/// absent for a server that does both (docs/inference.md). A prefill server computes prompts and
/// hands their KV to a decode server; both report the same request and prompt, which the
/// aggregator counts once, from the decode side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServingRole {
    #[default]
    Both,
    Prefill,
    Decode,
}

impl ServingRole {
    /// The `role` tag's value; `None` for [`ServingRole::Both`], so an ordinary server's series
    /// keep the identity they had before the tag existed.
    pub fn tag(self) -> Option<&'static str> {
        match self {
            ServingRole::Both => None,
            ServingRole::Prefill => Some("prefill"),
            ServingRole::Decode => Some("decode"),
        }
    }

    /// The role a point's `role` tag names; an absent or unknown one is [`ServingRole::Both`]
    /// (counted as before: every request, prompt and generated token).
    pub fn from_tag(tag: Option<&str>) -> ServingRole {
        match tag {
            Some("prefill") => ServingRole::Prefill,
            Some("decode") => ServingRole::Decode,
            _ => ServingRole::Both,
        }
    }
}

/// Every metric of the wire schema (see ARCHITECTURE.md, "The wire schema").
pub const METRICS: &[MetricDef] = &[
    m(GPU, "power_w", Watt, Gauge, "GPU board power draw (NVML: 1 s average on H100)"),
    m(GPU, "energy_mj", Millijoule, Counter, "GPU energy since driver load (NVML total energy consumption)"),
    m(GPU, "power_limit_w", Watt, Gauge, "enforced power limit"),
    m(GPU, "temp_c", Celsius, Gauge, "GPU core temperature"),
    m(GPU, "temp_margin_c", Celsius, Gauge, "degrees left before thermal slowdown"),
    m(GPU, "mem_temp_c", Celsius, Gauge, "HBM temperature"),
    m(GPU, "util_pct", Percent, Gauge, "GPU utilization"),
    m(GPU, "mem_util_pct", Percent, Gauge, "memory controller utilization"),
    m(GPU, "sm_clock_mhz", Megahertz, Gauge, "SM clock"),
    m(GPU, "mem_clock_mhz", Megahertz, Gauge, "memory clock"),
    m(GPU, "mem_used_bytes", Byte, Gauge, "framebuffer memory used"),
    m(GPU, "mem_total_bytes", Byte, Gauge, "framebuffer memory total"),
    m(GPU, "throttle_reasons", Dimensionless, Gauge, "NVML clock event reasons bitmask"),
    m(GPU, "ecc_corrected", Count, Counter, "corrected (single-bit) ECC errors since driver load, volatile"),
    m(GPU, "ecc_uncorrected", Count, Counter, "uncorrected (double-bit) ECC errors since driver load, volatile"),
    m(GPU_JOB, "job", Dimensionless, Label, "job holding the GPU: `slurm:<id>` or `k8s:<pod uid>`"),
    m(GPU_JOB, "pids", Dimensionless, Label, "the job's processes on the GPU, comma-separated ascending"),
    m(GPU_EVENT, "kind", Dimensionless, Label, "xid, counter_reset, lost or recovered"),
    m(GPU_EVENT, "xid", Dimensionless, Label, "the XID code (kind=xid)"),
    m(GPU_EVENT, "previous_mj", Millijoule, Gauge, "energy counter before it went backwards (kind=counter_reset)"),
    m(GPU_EVENT, "current_mj", Millijoule, Gauge, "energy counter after it went backwards (kind=counter_reset)"),
    m(GPU_EVENT, "error", Dimensionless, Label, "the NVML error that made the GPU lost (kind=lost)"),
    m(NODE, "power_w", Watt, Gauge, "node input power (PSU input, BMC)"),
    m(NODE, "energy_j", Joule, Counter, "node input energy"),
    m(POD, "energy_j", Joule, Counter, "a pod's (container's) energy as Kepler attributes it (its dynamic share)"),
    m(METER, "power_w", Watt, Gauge, "meter active power"),
    m(METER, "energy_kwh", KilowattHour, Counter, "meter active energy import"),
    m(WATER, "volume_m3", CubicMetre, Counter, "water totaliser"),
    m(COOLING, "outside_temp_c", Celsius, Gauge, "outside air dry bulb"),
    m(COOLING, "outside_rh_pct", Percent, Gauge, "outside air relative humidity"),
    m(COOLING, "supply_temp_c", Celsius, Gauge, "supply air to the IT intake"),
    m(COOLING, "supply_rh_pct", Percent, Gauge, "supply air relative humidity"),
    m(COOLING, "return_temp_c", Celsius, Gauge, "hot-aisle return air"),
    m(COOLING, "fan_power_w", Watt, Gauge, "unit fan power"),
    m(COOLING, "pump_power_w", Watt, Gauge, "unit pump power"),
    m(COOLING, "mode", Dimensionless, Label, "cooling mode: mix, free, evaporative, humidify"),
    m(INFERENCE, "prompt_tokens", Token, Counter, "prompt (prefill) tokens processed since the server started"),
    m(INFERENCE, "generation_tokens", Token, Counter, "tokens generated since the server started"),
    m(INFERENCE, "requests", Count, Counter, "requests finished since the server started"),
    m(INFERENCE, "ttft_sum_s", Second, Counter, "sum of the times to first token since the server started"),
    m(INFERENCE, "ttft_count", Count, Counter, "requests counted in ttft_sum_s"),
    m(INFERENCE, "gpus", Dimensionless, Label, "the node's GPU indices the server runs on, comma-separated ascending"),
    m(INFERENCE, "pid", Dimensionless, Label, "the server's process (the one listening on its port)"),
];

pub fn lookup_metric(measurement: &str, field: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|d| d.measurement == measurement && d.field == field)
}

/// Meter roles of the wire schema: which meters make E_DC, E_IT and the pPUE sub-meters.
pub mod role {
    pub const FACILITY: &str = "facility";
    pub const GENERATOR: &str = "generator";
    pub const IT: &str = "it";
    pub const COOLING: &str = "cooling";
    /// An inference server's counters (vLLM, SGLang, TGI, Triton), one line per (server, model,
    /// tenant) each interval, tagged `server`, `engine` (its kind), `model` and `tenant` where known.
    pub const INFERENCE: &str = "inference";
    pub const POWER_LOSSES: &str = "power_losses";
    pub const OTHER: &str = "other";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_unique_names() {
        for (i, a) in METRICS.iter().enumerate() {
            for b in &METRICS[i + 1..] {
                assert!(!(a.measurement == b.measurement && a.field == b.field), "{a:?} twice");
            }
        }
        assert_eq!(lookup_metric("gpu", "energy_mj").map(|d| d.kind), Some(Kind::Counter));
        assert_eq!(lookup_metric(GPU, "ecc_uncorrected").map(|d| d.kind), Some(Kind::Counter));
        assert!(lookup_metric(GPU_JOB, "job").is_some() && lookup_metric(GPU_EVENT, "kind").is_some());
    }
}
