//! Site KPIs over a window, from the meters' counters: E_DC (grid and generator), E_IT with its
//! ISO/IEC 30134-2 category, PUE, partial PUE per sub-meter, WIN, WIN-POT and WUE. Always energy
//! over the same window divided, never an average of instantaneous ratios.

use std::collections::BTreeMap;

use kilowatch_model::metric::{METER, WATER, role};
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::counter::{CounterDelta, counter_delta, trapezoid_joules};
use crate::store::{SeriesMeta, Store, StoreError};

/// One meter's contribution and how far it can be trusted.
#[derive(Debug, Clone, Serialize)]
pub struct MeterQuality {
    pub meter: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<u8>,
    pub value: f64,
    pub unit: &'static str,
    pub coverage_pct: f64,
    pub readings: usize,
    pub counter_resets: u32,
    pub max_gap_s: f64,
    /// True when the figure comes from integrating power because the meter has no counter.
    pub estimated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subsystem {
    pub energy_kwh: f64,
    pub ppue: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataQuality {
    /// The lowest coverage among the meters that make PUE and WUE.
    pub coverage_pct: f64,
    pub counter_resets: u32,
    pub estimated_meters: usize,
    pub meters: Vec<MeterQuality>,
    /// Reasons a figure is withheld or suspect (PUE below 1, no IT meter, …).
    pub faults: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kpi {
    pub from: String,
    pub to: String,
    pub window: String,
    pub facility_energy_kwh: f64,
    pub grid_energy_kwh: f64,
    pub generator_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub pue: Option<f64>,
    pub pue_category: Option<u8>,
    pub pue_label: String,
    pub subsystems: BTreeMap<String, Subsystem>,
    pub water_m3: f64,
    pub water_potable_m3: f64,
    pub wue_l_per_kwh: Option<f64>,
    pub data_quality: DataQuality,
}

fn series_delta(store: &Store, meta: &SeriesMeta, r: TimeRange) -> Result<CounterDelta, StoreError> {
    let samples: Vec<(i64, f64)> = store
        .read_with_neighbours(meta.id, r.from.0, r.to.0)?
        .into_iter()
        .filter_map(|(t, v)| v.as_f64().map(|f| (t, f)))
        .collect();
    Ok(counter_delta(&samples, r.from.0, r.to.0))
}

fn quality(meta: &SeriesMeta, d: &CounterDelta, value: f64, unit: &'static str, r: TimeRange, estimated: bool) -> MeterQuality {
    let dur = r.duration_secs();
    MeterQuality {
        meter: meta.tag("meter").unwrap_or("?").to_owned(),
        role: meta.tag("role").unwrap_or("").to_owned(),
        category: meta.tag("category").and_then(|c| c.parse().ok()),
        value,
        unit,
        coverage_pct: if dur > 0.0 { (d.covered_s / dur * 100.0).min(100.0) } else { 0.0 },
        readings: d.readings,
        counter_resets: d.resets,
        max_gap_s: d.max_gap_s,
        estimated,
    }
}

/// Energy of every meter over the window: from its kWh counter, or, for a meter that only
/// reports power, by the trapezoid rule (flagged as estimated).
fn meter_energies(store: &Store, r: TimeRange) -> Result<Vec<MeterQuality>, StoreError> {
    let mut out = Vec::new();
    let counters = store.find_series(METER, "energy_kwh", &[])?;
    for m in &counters {
        let d = series_delta(store, m, r)?;
        out.push(quality(m, &d, d.delta, "kWh", r, false));
    }
    for m in store.find_series(METER, "power_w", &[])? {
        if counters.iter().any(|c| c.tags == m.tags) {
            continue;
        }
        let samples: Vec<(i64, f64)> = store
            .read_with_neighbours(m.id, r.from.0, r.to.0)?
            .into_iter()
            .filter_map(|(t, v)| v.as_f64().map(|f| (t, f)))
            .collect();
        let coverage = counter_delta(&samples, r.from.0, r.to.0);
        let kwh = trapezoid_joules(&samples, r.from.0, r.to.0) / 3.6e6;
        out.push(quality(&m, &CounterDelta { resets: 0, ..coverage }, kwh, "kWh", r, true));
    }
    Ok(out)
}

pub fn compute(store: &Store, r: TimeRange, window: &str) -> Result<Kpi, StoreError> {
    let meters = meter_energies(store, r)?;
    let mut faults = Vec::new();
    let sum = |pred: &dyn Fn(&MeterQuality) -> bool| meters.iter().filter(|m| pred(m)).map(|m| m.value).sum::<f64>();
    let grid = sum(&|m| m.role == role::FACILITY);
    let generator = sum(&|m| m.role == role::GENERATOR);
    let facility = grid + generator;

    // E_IT is taken at the best category present: UPS outputs (1) before PDU outputs (2)
    // before IT inputs (3). Mixing categories would count the same energy twice.
    let category = meters.iter().filter(|m| m.role == role::IT).map(|m| m.category.unwrap_or(1)).min();
    let it = match category {
        Some(c) => sum(&|m| m.role == role::IT && m.category.unwrap_or(1) == c),
        None => {
            faults.push("no meter with role=it: E_IT, PUE and WUE cannot be computed".into());
            0.0
        }
    };
    if !meters.iter().any(|m| m.role == role::FACILITY || m.role == role::GENERATOR) {
        faults.push("no meter with role=facility or role=generator: E_DC is unknown".into());
    }
    let pue = ratio(facility, it).and_then(|p| {
        if p < 1.0 {
            faults.push(format!("PUE computes to {p:.4}, below 1: a data fault (meter roles, coverage or a counter), not a result"));
            None
        } else {
            Some(p)
        }
    });

    let mut subsystems = BTreeMap::new();
    for role_name in [role::COOLING, role::POWER_LOSSES, role::OTHER] {
        if meters.iter().any(|m| m.role == role_name) {
            let e = sum(&|m| m.role == role_name);
            subsystems.insert(role_name.to_owned(), Subsystem { energy_kwh: e, ppue: ratio(it + e, it) });
        }
    }

    let mut water = 0.0;
    let mut potable = 0.0;
    let mut water_q = Vec::new();
    for m in store.find_series(WATER, "volume_m3", &[])? {
        let d = series_delta(store, &m, r)?;
        water += d.delta;
        if m.tag("potable") == Some("true") {
            potable += d.delta;
        }
        water_q.push(quality(&m, &d, d.delta, "m3", r, false));
    }
    let wue = if it > 0.0 && category.is_some() { Some(water * 1000.0 / it) } else { None };

    let key_meters = meters.iter().filter(|m| matches!(m.role.as_str(), role::FACILITY | role::GENERATOR | role::IT));
    let coverage_pct = key_meters.chain(water_q.iter()).map(|m| m.coverage_pct).fold(f64::NAN, f64::min);
    let mut all_q = meters;
    all_q.extend(water_q);
    let from = r.from.to_rfc3339();
    let to = r.to.to_rfc3339();
    let pue_label = match (pue, category) {
        (Some(p), Some(c)) => format!("PUE (Cat {c}), {window}, {from} to {to}: {p:.3}"),
        _ => format!("PUE, {window}, {from} to {to}: not available"),
    };
    Ok(Kpi {
        from,
        to,
        window: window.to_owned(),
        facility_energy_kwh: facility,
        grid_energy_kwh: grid,
        generator_energy_kwh: generator,
        it_energy_kwh: it,
        pue,
        pue_category: category,
        pue_label,
        subsystems,
        water_m3: water,
        water_potable_m3: potable,
        wue_l_per_kwh: wue,
        data_quality: DataQuality {
            coverage_pct: if coverage_pct.is_nan() { 0.0 } else { coverage_pct },
            counter_resets: all_q.iter().map(|m| m.counter_resets).sum(),
            estimated_meters: all_q.iter().filter(|m| m.estimated).count(),
            meters: all_q,
            faults,
        },
    })
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// The live window: the last five minutes up to the newest data the store holds (which runs
/// ahead of the wall clock when the demo runs faster than real time).
pub fn live_range(store: &Store) -> Result<TimeRange, StoreError> {
    let now = store.stats()?.newest_ts.map(Timestamp).unwrap_or_else(Timestamp::now);
    Ok(TimeRange::new(Timestamp(now.0 - 300 * kilowatch_model::time::NANOS_PER_SEC), now))
}
