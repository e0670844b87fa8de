//! A GPU-aware IT-efficiency indicator: no standard covers accelerator servers (ISO/IEC
//! 30134-5's ITEE/ITEU exclude them), so Kilowatch reports, per window, how much of the GPU
//! time the site powered was allocated to jobs and how much was busy, how much of E_IT went to
//! idle GPUs, and the IT energy per busy GPU-hour. Voluntary indicators, labelled so; formulas
//! in docs/report.md ("GPU-aware IT efficiency"):
//!
//! - GPU-hours powered = Σ over GPUs of the hours their power readings cover;
//! - GPU-hours allocated = Σ over allocations of GPUs × hours inside the window;
//! - GPU-hours busy = Σ over GPUs and clock hours of the hour's mean `util_pct` / 100 (the mean
//!   of its readings, which hour roll-ups keep) × 1 h;
//! - idle energy share = idle energy (GPUs no job held, with their node share) / metered E_IT;
//! - IT energy per busy GPU-hour = metered E_IT / GPU-hours busy.

use std::collections::BTreeMap;

use kilowatch_model::TimeRange;
use serde::Serialize;

use crate::attribution::Attribution;
use crate::read::{Allocation, EnergyKind, ReadError, SeriesRead};

const HOUR_NS: i64 = 3_600_000_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct GpuEfficiency {
    /// The KPI API's label of the window.
    pub window: String,
    /// GPUs with power readings in the window.
    pub gpus: usize,
    pub gpu_hours_powered: f64,
    pub gpu_hours_allocated: f64,
    /// Null where no GPU reports `util_pct`.
    pub gpu_hours_busy: Option<f64>,
    /// Allocated / powered, percent.
    pub allocated_pct: Option<f64>,
    /// Busy / powered, percent.
    pub busy_pct: Option<f64>,
    pub it_energy_kwh: f64,
    pub idle_kwh: f64,
    /// Idle / metered E_IT, percent.
    pub idle_energy_share_pct: Option<f64>,
    /// Metered E_IT / GPU-hours busy.
    pub it_kwh_per_busy_gpu_hour: Option<f64>,
}

/// Σ over clock hours of the series' mean reading in the hour: hour roll-ups up to where they
/// reach, raw readings after.
fn hour_means_sum(store: &(impl SeriesRead + ?Sized), id: crate::read::SeriesId, from: i64, to: i64) -> Result<(f64, bool), ReadError> {
    let means = store.hour_means(id, from, to)?;
    let rolled = means.rolled_to;
    let mut sum = 0.0;
    let mut any = false;
    for (_, mean, _) in means.hours {
        sum += mean;
        any = true;
    }
    let mut hours: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for (t, v) in means.raw {
        if t >= rolled && t < to {
            let e = hours.entry(t.div_euclid(HOUR_NS)).or_default();
            e.0 += v;
            e.1 += 1.0;
        }
    }
    for (s, n) in hours.values() {
        sum += s / n;
        any = true;
    }
    Ok((sum, any))
}

/// The indicators over `r`, from the GPU series, the allocations attributed over `r` and their
/// attribution (for idle energy and E_IT).
pub fn compute(store: &(impl SeriesRead + ?Sized), allocs: &[Allocation], att: &Attribution, r: TimeRange, window: &str) -> Result<GpuEfficiency, ReadError> {
    let (from, to) = (r.from.0, r.to.0);
    let mut powered_s = 0.0;
    let mut gpus = 0;
    for m in store.find_series("gpu", "power_w", &[])? {
        let l = store.ledger(m.id, EnergyKind::Power, &[from, to])?;
        let c = l.total_covered_s();
        if c > 0.0 {
            gpus += 1;
            powered_s += c;
        }
    }
    let mut busy = None;
    for m in store.find_series("gpu", "util_pct", &[])? {
        let (s, any) = hour_means_sum(store, m.id, from, to)?;
        if any {
            *busy.get_or_insert(0.0) += s / 100.0;
        }
    }
    // A job still open runs to the newest data, not to the window's end: a year asked in
    // January must not count its open jobs through December.
    let open_end = store.live_now()?.min(to);
    let allocated: f64 = allocs.iter().map(|a| a.gpus.len() as f64 * (a.end.unwrap_or(open_end).min(to) - a.start.max(from)).max(0) as f64 / HOUR_NS as f64).sum();
    let powered = powered_s / 3600.0;
    let pct = |x: f64, of: f64| (of > 0.0).then(|| x / of * 100.0);
    let it = att.it_energy_kwh;
    Ok(GpuEfficiency {
        window: window.to_owned(),
        gpus,
        gpu_hours_powered: powered,
        gpu_hours_allocated: allocated,
        gpu_hours_busy: busy,
        allocated_pct: pct(allocated, powered),
        busy_pct: busy.and_then(|b| pct(b, powered)),
        it_energy_kwh: it,
        idle_kwh: att.idle_kwh,
        idle_energy_share_pct: pct(att.idle_kwh, it),
        it_kwh_per_busy_gpu_hour: busy.filter(|b| *b > 0.0).map(|b| it / b),
    })
}
