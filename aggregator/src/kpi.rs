//! Site KPIs over a window, from the meters' counters: E_DC (grid and generator), E_IT with its
//! ISO/IEC 30134-2 category, PUE, partial PUE per sub-meter, WIN, WIN-POT and WUE. Always energy
//! over the same window divided, never an average of instantaneous ratios.

use std::collections::BTreeMap;

use kilowatch_model::metric::{METER, WATER, role};
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::carbon::{self, FactorSource};
use crate::config::CarbonConfig;
use crate::counter::{CounterDelta, counter_delta, trapezoid_joules};
use crate::ledger;
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
    /// Meters known to the store that sent nothing covering this window.
    pub missing_meters: Vec<String>,
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
    /// Location-based CO2 of E_DC, kg, with the factor's origin.
    pub co2_location_kg: f64,
    pub carbon_factor: FactorSource,
    /// Market-based CO2, kg: E_DC not covered by renewables (`role=renewable` meters) times the
    /// residual factor. Present only where renewables are metered.
    pub co2_market_kg: Option<f64>,
    /// CUE = location-based CO2 / E_IT, kg/kWh.
    pub cue_kg_per_kwh: Option<f64>,
    pub reuse_energy_kwh: f64,
    pub erf: Option<f64>,
    pub renewable_energy_kwh: f64,
    /// REF = E_RES / E_DC, capped at 1 (`ref_capped` says when the cap applied).
    #[serde(rename = "ref")]
    pub ref_: Option<f64>,
    pub ref_capped: bool,
    pub hours: f64,
    pub data_quality: DataQuality,
}

/// Meter roles outside E_DC and E_IT: heat reused outside the boundary (ERF) and renewable
/// supply (guarantees of origin, PPAs, on-site generation) for REF.
pub const ROLE_REUSE: &str = "reuse";
pub const ROLE_RENEWABLE: &str = "renewable";

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

/// KPIs with the default carbon settings (the dashboard's live tile).
pub fn compute(store: &Store, r: TimeRange, window: &str) -> Result<Kpi, StoreError> {
    compute_with(store, r, window, &CarbonConfig::default())
}

pub fn compute_with(store: &Store, r: TimeRange, window: &str, carbon_cfg: &CarbonConfig) -> Result<Kpi, StoreError> {
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

    let reuse = sum(&|m| m.role == ROLE_REUSE);
    let renewable = sum(&|m| m.role == ROLE_RENEWABLE);
    let has_renewable = meters.iter().any(|m| m.role == ROLE_RENEWABLE);
    let (co2, factor) = location_co2(store, r, carbon_cfg, facility)?;
    let erf = ratio(reuse, facility).filter(|_| meters.iter().any(|m| m.role == ROLE_REUSE));
    let ref_raw = ratio(renewable, facility).filter(|_| has_renewable);
    let ref_capped = ref_raw.is_some_and(|v| v > 1.0);
    if ref_capped {
        faults.push("renewable energy exceeds E_DC: REF capped at 1".into());
    }
    let residual = carbon_cfg.residual_factor_kg_per_kwh.unwrap_or(carbon_cfg.factor_kg_per_kwh);
    let co2_market = has_renewable.then(|| (facility - renewable).max(0.0) * residual);

    let key_meters = meters.iter().filter(|m| matches!(m.role.as_str(), role::FACILITY | role::GENERATOR | role::IT));
    let coverage_pct = key_meters.chain(water_q.iter()).map(|m| m.coverage_pct).fold(f64::NAN, f64::min);
    let mut all_q = meters;
    all_q.extend(water_q);
    let missing_meters: Vec<String> = all_q.iter().filter(|m| m.coverage_pct == 0.0).map(|m| m.meter.clone()).collect();
    if !missing_meters.is_empty() {
        faults.push(format!("no data over this window from: {}", missing_meters.join(", ")));
    }
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
        co2_location_kg: co2,
        carbon_factor: factor,
        co2_market_kg: co2_market,
        cue_kg_per_kwh: if category.is_some() { ratio(co2, it) } else { None },
        reuse_energy_kwh: reuse,
        erf,
        renewable_energy_kwh: renewable,
        ref_: ref_raw.map(|v| v.min(1.0)),
        ref_capped,
        hours: r.duration_secs() / 3600.0,
        data_quality: DataQuality {
            coverage_pct: if coverage_pct.is_nan() { 0.0 } else { coverage_pct },
            counter_resets: all_q.iter().map(|m| m.counter_resets).sum(),
            estimated_meters: all_q.iter().filter(|m| m.estimated).count(),
            meters: all_q,
            faults,
            missing_meters,
        },
    })
}

/// Location-based CO2 of E_DC. With an ingested intensity series, E_DC is split per hour and
/// each hour takes its own intensity; otherwise the configured factor applies to the total.
fn location_co2(store: &Store, r: TimeRange, cfg: &CarbonConfig, facility: f64) -> Result<(f64, FactorSource), StoreError> {
    if store.find_series(carbon::MEASUREMENT, carbon::FIELD, &[])?.is_empty() {
        let (_, src) = carbon::factors(store, &[], cfg)?;
        return Ok((facility * cfg.factor_kg_per_kwh, src));
    }
    let bounds = ledger::hour_bounds(r.from.0, r.to.0);
    let (f, src) = carbon::factors(store, &bounds, cfg)?;
    let mut per_hour = vec![0.0; f.len()];
    for m in store.find_series(METER, "energy_kwh", &[])? {
        if matches!(m.tag("role"), Some(role::FACILITY | role::GENERATOR)) {
            let l = ledger::counter_ledger(&ledger::read_f64(store, m.id, r.from.0, r.to.0)?, &bounds);
            for (acc, v) in per_hour.iter_mut().zip(&l.values) {
                *acc += v;
            }
        }
    }
    Ok((per_hour.iter().zip(&f).map(|(e, k)| e * k).sum(), src))
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// The live window: the last five minutes up to the newest data the store holds (which runs
/// ahead of the wall clock when the demo runs faster than real time).
pub fn live_range(store: &Store) -> Result<TimeRange, StoreError> {
    let now = Timestamp(store.live_now()?);
    Ok(TimeRange::new(now.saturating_add_ns(-300 * kilowatch_model::time::NANOS_PER_SEC), now))
}
