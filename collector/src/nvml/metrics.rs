//! The latest GPU values as Prometheus text exposition, under dcgm-exporter's metric names
//! and labels (`gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname`), so Grafana
//! dashboards built for dcgm-exporter work unchanged. Units follow dcgm-exporter, not the wire
//! schema: framebuffer in MiB, energy in mJ, power in W.
//!
//! Which job holds a GPU is its own series, `kilowatch_gpu_job_info{gpu,UUID,Hostname,hpc_job} 1`,
//! rather than a label on every series: job churn would otherwise start new series for every
//! metric of the GPU. The label is `hpc_job` (dcgm-exporter's name for it), not `job`, which
//! Prometheus reserves for the scrape job and would rename to `exported_job`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{GpuEventKind, GpuReading, GpuSampleSet, GpuStatic, jobs_of};

#[derive(Clone, Copy)]
enum Type {
    Gauge,
    Counter,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Gauge => "gauge",
            Type::Counter => "counter",
        }
    }
}

type Getter = fn(&GpuReading, &GpuStatic) -> Option<f64>;

const MIB: f64 = 1024.0 * 1024.0;

/// (name, type, help, value). Help texts are dcgm-exporter's where it has the metric.
const SERIES: &[(&str, Type, &str, Getter)] = &[
    ("DCGM_FI_DEV_SM_CLOCK", Type::Gauge, "SM clock frequency (in MHz).", |r, _| r.sm_clock_mhz.map(f64::from)),
    ("DCGM_FI_DEV_MEM_CLOCK", Type::Gauge, "Memory clock frequency (in MHz).", |r, _| r.mem_clock_mhz.map(f64::from)),
    ("DCGM_FI_DEV_MEMORY_TEMP", Type::Gauge, "Memory temperature (in C).", |r, _| r.mem_temp_c.map(f64::from)),
    ("DCGM_FI_DEV_GPU_TEMP", Type::Gauge, "GPU temperature (in C).", |r, _| r.temp_c.map(f64::from)),
    ("DCGM_FI_DEV_SLOWDOWN_TEMP", Type::Gauge, "Slowdown temperature for the device (in C).", |_, s| s.slowdown_temp_c.map(f64::from)),
    ("DCGM_FI_DEV_SHUTDOWN_TEMP", Type::Gauge, "Shutdown temperature for the device (in C).", |_, s| s.shutdown_temp_c.map(f64::from)),
    ("DCGM_FI_DEV_POWER_USAGE", Type::Gauge, "Power draw (in W).", |r, _| r.power_w),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", Type::Counter, "Total energy consumption since boot (in mJ).", |r, _| r.energy_mj.map(|v| v as f64)),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", Type::Gauge, "Current power limit for the device (in W).", |r, _| r.power_limit_w),
    ("DCGM_FI_DEV_GPU_UTIL", Type::Gauge, "GPU utilization (in %).", |r, _| r.util_pct.map(f64::from)),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", Type::Gauge, "Memory utilization (in %).", |r, _| r.mem_util_pct.map(f64::from)),
    ("DCGM_FI_DEV_FB_FREE", Type::Gauge, "Framebuffer memory free (in MiB).", |r, _| Some((r.mem_total_bytes?.saturating_sub(r.mem_used_bytes?) as f64 / MIB).floor())),
    ("DCGM_FI_DEV_FB_USED", Type::Gauge, "Framebuffer memory used (in MiB).", |r, _| r.mem_used_bytes.map(|b| (b as f64 / MIB).floor())),
    ("DCGM_FI_DEV_FB_TOTAL", Type::Gauge, "Framebuffer memory total (in MiB).", |r, _| r.mem_total_bytes.map(|b| (b as f64 / MIB).floor())),
    ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", Type::Gauge, "Current clock throttle reasons (NVML clock event reasons bitmask).", |r, _| r.throttle_reasons.map(|v| v as f64)),
    ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", Type::Counter, "Total number of single-bit volatile ECC errors.", |r, _| r.ecc_corrected.map(|v| v as f64)),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", Type::Counter, "Total number of double-bit volatile ECC errors.", |r, _| r.ecc_uncorrected.map(|v| v as f64)),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", Type::Counter, "Total number of PCIe retries.", |r, _| r.pcie_replays.map(|v| v as f64)),
    ("DCGM_FI_DEV_MIG_MODE", Type::Gauge, "MIG mode for the device (1 enabled, 0 disabled).", |_, s| s.mig.map(|m| if m.current { 1.0 } else { 0.0 })),
];

/// Keeps what `/metrics` shows between scrapes: the statics, the latest sample, the last XID
/// per GPU (dcgm-exporter's `DCGM_FI_DEV_XID_ERRORS` is "the value of the last XID").
#[derive(Debug, Clone, Default)]
pub struct DcgmMetrics {
    hostname: String,
    statics: Vec<GpuStatic>,
    latest: GpuSampleSet,
    last_xid: BTreeMap<u32, u64>,
}

impl DcgmMetrics {
    pub fn new(hostname: impl Into<String>, statics: Vec<GpuStatic>) -> Self {
        DcgmMetrics { hostname: hostname.into(), statics, ..Default::default() }
    }

    /// Replaces the static facts (a GPU that was down at start has been read since).
    pub fn set_statics(&mut self, statics: Vec<GpuStatic>) {
        self.statics = statics;
    }

    /// Records a sample; call after every `GpuBackend::sample()`.
    pub fn update(&mut self, sample: &GpuSampleSet) {
        for e in &sample.events {
            if let GpuEventKind::Xid { code } = e.kind {
                self.last_xid.insert(e.gpu, code);
            }
        }
        self.latest = sample.clone();
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        self.render_into(&mut out);
        out
    }

    /// Appends the exposition to `out`, so the collector can add its own health metrics to
    /// the same page.
    pub fn render_into(&self, out: &mut String) {
        let labels: BTreeMap<u32, String> = self.statics.iter().map(|s| (s.index, self.labels(s))).collect();
        let empty = GpuStatic::default();
        for (name, ty, help, get) in SERIES {
            let rows: Vec<(&str, f64)> = self
                .latest
                .readings
                .iter()
                .filter_map(|r| {
                    let st = self.statics.iter().find(|s| s.index == r.index).unwrap_or(&empty);
                    let v = get(r, st)?;
                    Some((labels.get(&r.index)?.as_str(), v))
                })
                .collect();
            write_family(out, name, *ty, help, &rows);
        }
        let xids: Vec<(&str, f64)> = self.latest.readings.iter().filter_map(|r| Some((labels.get(&r.index)?.as_str(), self.last_xid.get(&r.index).copied().unwrap_or(0) as f64))).collect();
        write_family(out, "DCGM_FI_DEV_XID_ERRORS", Type::Gauge, "Value of the last XID error encountered.", &xids);

        let up: Vec<(&str, f64)> = self
            .statics
            .iter()
            .filter_map(|s| {
                let down = self.latest.down.contains(&s.index);
                Some((labels.get(&s.index)?.as_str(), if down { 0.0 } else { 1.0 }))
            })
            .collect();
        write_family(out, "kilowatch_gpu_up", Type::Gauge, "Whether the GPU answered NVML in the latest cycle (0 while it is lost and retried).", &up);

        let _ = writeln!(out, "# HELP kilowatch_gpu_job_info A job holding the GPU (processes in its cgroup use it); one series per GPU and job.");
        let _ = writeln!(out, "# TYPE kilowatch_gpu_job_info gauge");
        for r in &self.latest.readings {
            let st = self.statics.iter().find(|s| s.index == r.index).unwrap_or(&empty);
            for job in jobs_of(r).keys() {
                let _ = writeln!(
                    out,
                    "kilowatch_gpu_job_info{{gpu=\"{}\",UUID=\"{}\",Hostname=\"{}\",hpc_job=\"{}\"}} 1",
                    r.index,
                    escape(st.uuid.as_deref().unwrap_or("")),
                    escape(&self.hostname),
                    escape(job)
                );
            }
        }
    }

    fn labels(&self, s: &GpuStatic) -> String {
        format!(
            "gpu=\"{}\",UUID=\"{}\",pci_bus_id=\"{}\",device=\"nvidia{}\",modelName=\"{}\",Hostname=\"{}\"",
            s.index,
            escape(s.uuid.as_deref().unwrap_or("")),
            escape(s.pci_bus_id.as_deref().unwrap_or("")),
            s.index,
            escape(s.name.as_deref().unwrap_or("")),
            escape(&self.hostname)
        )
    }
}

fn write_family(out: &mut String, name: &str, ty: Type, help: &str, rows: &[(&str, f64)]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", ty.as_str());
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {}", fmt_value(*v));
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// Label values escape backslash, double quote and newline (text format 0.0.4).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_and_skips_absent() {
        let st = GpuStatic { index: 0, uuid: Some("GPU-a".into()), name: Some("H\"100".into()), ..Default::default() };
        let mut m = DcgmMetrics::new("n1", vec![st]);
        m.update(&GpuSampleSet { readings: vec![GpuReading { index: 0, power_w: Some(512.5), mem_used_bytes: Some(3 * 1024 * 1024), ..Default::default() }], ..Default::default() });
        let text = m.render();
        assert!(text.contains("DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-a\",pci_bus_id=\"\",device=\"nvidia0\",modelName=\"H\\\"100\",Hostname=\"n1\"} 512.5\n"));
        assert!(text.contains("DCGM_FI_DEV_FB_USED{gpu=\"0\"") && text.contains("} 3\n"));
        assert!(!text.contains("DCGM_FI_DEV_GPU_TEMP"));
        assert!(text.contains("DCGM_FI_DEV_XID_ERRORS{gpu=\"0\""));
    }
}
