//! Site KPIs over a window, from the meters: E_DC (grid and generator), E_IT with its
//! ISO/IEC 30134-2 category, PUE, partial PUE per sub-meter, WIN, WIN-POT and WUE, CO2. Always
//! energy over the same span divided, never an average of instantaneous ratios.
//!
//! Every figure reads through [`Store::ledger`], so it is the same whatever the age of the data
//! (raw samples, minute or hour roll-ups), and power-only meters count like counters. The rules
//! of `../shared/DOMAIN.md` ("Numbers that do not depend on the data's age"):
//! - E_IT's category comes from the IT meters with data in the window;
//! - coverage counts the meters expected in the window: one retired before it (silent for more
//!   than `accounting.retired_after_h` before it starts) or installed after it does not lower
//!   it, one that falls silent during it does; `accounting.expected_meters` are always expected;
//! - PUE divides E_DC by E_IT over the span both cover, with a fault when that span falls short
//!   of the window by more than the tolerance;
//! - what is not metered is absent (null), never zero.

use std::collections::BTreeMap;

use kilowatch_model::energy::{Ledger, hour_bounds};
use kilowatch_model::metric::{WATER, role};
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::carbon::{self, FactorSource};
use crate::ledger;
use crate::read::EnergyKind;
use crate::read::{ReadError, Series, SeriesRead};
use crate::settings::{AccountingConfig, CarbonConfig, Rules, Settings};

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
    /// False for a meter retired before the window or installed after it: it is listed but
    /// does not count in the window's coverage.
    pub expected: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subsystem {
    pub energy_kwh: f64,
    pub ppue: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataQuality {
    /// The lowest coverage among the expected meters that make PUE and WUE.
    pub coverage_pct: f64,
    pub counter_resets: u32,
    pub estimated_meters: usize,
    pub meters: Vec<MeterQuality>,
    /// Reasons a figure is withheld or suspect (PUE below 1, no IT meter, unequal spans, …).
    pub faults: Vec<String>,
    /// Expected meters that sent nothing covering this window.
    pub missing_meters: Vec<String>,
}

/// The part of the window that E_DC and E_IT both cover, over which PUE is computed.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub from: String,
    pub to: String,
    pub hours: f64,
    pub facility_energy_kwh: f64,
    pub it_energy_kwh: f64,
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
    /// Where PUE was computed over less than the whole window: the common span of E_DC and
    /// E_IT and their energies over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pue_span: Option<Span>,
    pub subsystems: BTreeMap<String, Subsystem>,
    /// Null where no water meter covers the window ("not metered"), never 0.
    pub water_m3: Option<f64>,
    pub water_potable_m3: Option<f64>,
    pub wue_l_per_kwh: Option<f64>,
    /// Location-based CO2 of E_DC, kg: grid energy at the grid factor of each hour, generator
    /// energy at the generator's own factor.
    pub co2_location_kg: f64,
    pub carbon_factor: FactorSource,
    pub generator_factor: carbon::GeneratorFactor,
    /// Market-based CO2, kg: E_DC not covered by renewables (metered `role=renewable`, plus
    /// declared guarantees of origin, PPAs and on-site generation where given) times the
    /// residual factor. Present only where renewables are metered or declared.
    pub co2_market_kg: Option<f64>,
    /// CUE = location-based CO2 / E_IT, kg/kWh.
    pub cue_kg_per_kwh: Option<f64>,
    pub reuse_energy_kwh: Option<f64>,
    pub erf: Option<f64>,
    pub renewable_energy_kwh: Option<f64>,
    /// Of `renewable_energy_kwh`, the part declared in configuration rather than metered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewable_declared_kwh: Option<f64>,
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

/// The most of a window a meter read at another phase may leave uncovered without a fault.
const PHASE_ALLOWANCE_S: f64 = 300.0;

/// One meter over the window: its hourly ledger in kWh (or m³) and whether it is expected.
struct Metered {
    meta: Series,
    ledger: Ledger,
    expected: bool,
    estimated: bool,
}

impl Metered {
    fn role(&self) -> &str {
        self.meta.tag("role").unwrap_or("")
    }
    fn category(&self) -> u8 {
        category(&self.meta)
    }
    fn value(&self) -> f64 {
        self.ledger.total()
    }
    fn has_data(&self) -> bool {
        self.ledger.total_covered_s() > 0.0
    }
    fn coverage_pct(&self, r: TimeRange) -> f64 {
        let dur = r.duration_secs();
        if dur > 0.0 { (self.ledger.total_covered_s() / dur * 100.0).min(100.0) } else { 0.0 }
    }
    fn quality(&self, unit: &'static str, r: TimeRange) -> MeterQuality {
        MeterQuality {
            meter: self.meta.tag("meter").unwrap_or("?").to_owned(),
            role: self.role().to_owned(),
            category: crate::meters::category_tag(self.meta.tag("category")),
            value: self.value(),
            unit,
            coverage_pct: self.coverage_pct(r),
            readings: self.ledger.readings,
            counter_resets: self.ledger.resets,
            max_gap_s: self.ledger.max_gap_s,
            estimated: self.estimated,
            expected: self.expected,
        }
    }
}

/// The category an IT meter counts at ([`meters::category`]).
pub fn category(m: &Series) -> u8 {
    crate::meters::category(m.tag("category"))
}

/// Whether a meter with no data in `r` was expected to report in it: it is listed in
/// `expected_meters`, or it was seen before the window's end and has not been silent for longer
/// than `retired_after_h` before the window's start.
fn expected(store: &(impl SeriesRead + ?Sized), m: &Series, l: &Ledger, r: TimeRange, acc: &AccountingConfig) -> Result<bool, ReadError> {
    if l.total_covered_s() > 0.0 || l.readings > 0 {
        return Ok(true);
    }
    if m.tag("meter").is_some_and(|name| acc.expected_meters.iter().any(|e| e == name)) {
        return Ok(true);
    }
    let Some(first) = store.first_seen(m.id)? else { return Ok(false) };
    if first > r.to.0 {
        return Ok(false);
    }
    let newest = store.newest(m.id)?.unwrap_or(i64::MIN);
    let grace = (acc.retired_after_h * 3600.0 * 1e9) as i64;
    Ok(newest >= r.from.0.saturating_sub(grace))
}

/// Every energy meter over the window, hour by hour: its kWh counter, or, for a meter that only
/// reports power, the trapezoid rule (flagged estimated). Then every water meter (m³).
fn meter_ledgers(store: &(impl SeriesRead + ?Sized), r: TimeRange, bounds: &[i64], acc: &AccountingConfig) -> Result<(Vec<Metered>, Vec<Metered>), ReadError> {
    let mut energy = Vec::new();
    for (meta, kind) in ledger::energy_meters(store)? {
        let ledger = ledger::meter_kwh(store, meta.id, kind, bounds)?;
        let expected = expected(store, &meta, &ledger, r, acc)?;
        energy.push(Metered { estimated: kind == EnergyKind::Power, meta, ledger, expected });
    }
    let mut water = Vec::new();
    for meta in store.find_series(WATER, "volume_m3", &[])? {
        let ledger = store.ledger(meta.id, EnergyKind::Counter, bounds)?;
        let expected = expected(store, &meta, &ledger, r, acc)?;
        water.push(Metered { meta, ledger, expected, estimated: false });
    }
    Ok((energy, water))
}

/// KPIs with the default settings (the dashboard's live tile, alert rules).
pub fn compute(store: &(impl SeriesRead + ?Sized), r: TimeRange, window: &str) -> Result<Kpi, ReadError> {
    compute_with(store, r, window, &Rules::default())
}

/// KPIs over `r` with the site's carbon and accounting settings. Declared renewables (`[eu]`
/// `eres_goo_kwh`, `eres_ppa_kwh`, `eres_os_kwh`) are yearly figures: pass them with
/// [`compute_declared`] for a calendar year.
pub fn compute_with(store: &(impl SeriesRead + ?Sized), r: TimeRange, window: &str, cfg: &impl Settings) -> Result<Kpi, ReadError> {
    compute_declared(store, r, window, cfg, None)
}

pub fn compute_declared(store: &(impl SeriesRead + ?Sized), r: TimeRange, window: &str, cfg: &impl Settings, declared_renewable_kwh: Option<f64>) -> Result<Kpi, ReadError> {
    let carbon_cfg = cfg.carbon();
    let acc = cfg.accounting();
    let bounds = hour_bounds(r.from.0, r.to.0);
    let (meters, waters) = meter_ledgers(store, r, &bounds, acc)?;
    let mut faults = Vec::new();
    let sum = |pred: &dyn Fn(&Metered) -> bool| meters.iter().filter(|m| pred(m)).map(Metered::value).sum::<f64>();
    let grid = sum(&|m| m.role() == role::FACILITY);
    let generator = sum(&|m| m.role() == role::GENERATOR);
    let facility = grid + generator;

    // E_IT is taken at the best category with data in the window: UPS outputs (1) before PDU
    // outputs (2) before IT inputs (3). Mixing categories would count the same energy twice.
    let category = crate::meters::best_category(meters.iter().filter(|m| m.role() == role::IT && m.has_data()).map(Metered::category));
    let is_it = |m: &Metered| m.role() == role::IT && Some(m.category()) == category;
    let it = match category {
        Some(_) => sum(&is_it),
        None => {
            faults.push("no meter with role=it has data in this window: E_IT, PUE and WUE cannot be computed".into());
            0.0
        }
    };
    let is_fac = |m: &Metered| matches!(m.role(), role::FACILITY | role::GENERATOR);
    if !meters.iter().any(|m| is_fac(m) && m.has_data()) {
        faults.push("no meter with role=facility or role=generator has data in this window: E_DC is unknown".into());
    }

    // PUE over the span every expected grid and IT meter covers (generators often report only
    // while they run, so they do not narrow it).
    let key: Vec<&Metered> = meters.iter().filter(|m| m.expected && (m.role() == role::FACILITY || is_it(m))).collect();
    let span = key.iter().try_fold(None::<(i64, i64)>, |acc, m| {
        let s = m.ledger.covered_span?;
        Some(Some(match acc {
            Some((a, b)) => (a.max(s.0), b.min(s.1)),
            None => s,
        }))
    });
    let mut pue_span = None;
    let pue_energies = match span {
        Some(Some((a, b))) if b > a && category.is_some() => {
            if a == r.from.0 && b == r.to.0 {
                Some((facility, it))
            } else {
                let (f, i) = span_energies(store, &meters, &is_fac, &is_it, a, b)?;
                let short_s = (r.duration_secs() - (b - a) as f64 / 1e9).max(0.0);
                // Meters read at different phases leave up to a reading interval uncovered at
                // the live edge; that is normal, not a fault, up to five minutes.
                let phase_s = (2.0 * key.iter().map(|m| m.ledger.median_step_s).fold(0.0, f64::max)).min(PHASE_ALLOWANCE_S);
                let allowed_s = (acc.span_tolerance_pct / 100.0 * r.duration_secs()).max(phase_s);
                if short_s > allowed_s {
                    faults.push(format!(
                        "E_DC and E_IT both cover only {} to {} ({:.1} % of the window): PUE is computed over that span",
                        Timestamp(a).to_rfc3339(),
                        Timestamp(b).to_rfc3339(),
                        (b - a) as f64 / 1e9 / r.duration_secs() * 100.0
                    ));
                }
                pue_span = Some(Span { from: Timestamp(a).to_rfc3339(), to: Timestamp(b).to_rfc3339(), hours: (b - a) as f64 / 3.6e12, facility_energy_kwh: f, it_energy_kwh: i });
                Some((f, i))
            }
        }
        _ => {
            if category.is_some() && meters.iter().any(|m| is_fac(m) && m.has_data()) {
                faults.push("E_DC and E_IT cover no common span in this window: PUE cannot be computed".into());
            }
            None
        }
    };
    if let Some(p) = pue_energies.and_then(|(f, i)| ratio(f, i)).filter(|p| *p < 1.0) {
        faults.push(format!("PUE computes to {p:.4}, below 1: a data fault (meter roles, coverage or a counter), not a result"));
    }
    let pue = pue_energies.and_then(|(f, i)| pue(f, i));

    let mut subsystems = BTreeMap::new();
    for role_name in [role::COOLING, role::POWER_LOSSES, role::OTHER] {
        if meters.iter().any(|m| m.role() == role_name && m.has_data()) {
            let e = sum(&|m| m.role() == role_name);
            subsystems.insert(role_name.to_owned(), Subsystem { energy_kwh: e, ppue: ratio(it + e, it) });
        }
    }

    let water_metered = waters.iter().any(|w| w.expected && w.has_data());
    let water = water_metered.then(|| waters.iter().map(Metered::value).sum::<f64>());
    let potable = water_metered.then(|| waters.iter().filter(|w| w.meta.tag("potable") == Some("true")).map(Metered::value).sum::<f64>());
    let wue = water.filter(|_| category.is_some()).and_then(|w| wue(w, it));

    let has = |r: &str| meters.iter().any(|m| m.role() == r && m.has_data());
    let reuse = has(ROLE_REUSE).then(|| sum(&|m| m.role() == ROLE_REUSE));
    let metered_res = has(ROLE_RENEWABLE).then(|| sum(&|m| m.role() == ROLE_RENEWABLE));
    let renewable = match (metered_res, declared_renewable_kwh) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    let (co2, factor, generator_factor) = location_co2(store, &meters, &bounds, carbon_cfg)?;
    let erf = reuse.and_then(|e| ratio(e, facility));
    let ref_raw = renewable.and_then(|e| ratio(e, facility));
    let ref_capped = ref_raw.is_some_and(|v| v > 1.0);
    if ref_capped {
        faults.push("renewable energy exceeds E_DC: REF capped at 1".into());
    }
    let residual = carbon_cfg.residual_factor_kg_per_kwh.unwrap_or(carbon_cfg.factor_kg_per_kwh);
    let co2_market = renewable.map(|e| carbon::market_co2_kg(grid, generator, e, residual, carbon_cfg.generator.factor_kg_per_kwh));

    let key_roles = |m: &&Metered| m.expected && (m.role() == role::FACILITY || m.role() == role::GENERATOR || is_it(m));
    let mut all_q: Vec<MeterQuality> = meters.iter().map(|m| m.quality("kWh", r)).collect();
    let key_cov = meters.iter().filter(key_roles).chain(waters.iter().filter(|w| w.expected)).map(|m| m.coverage_pct(r)).fold(f64::NAN, f64::min);
    all_q.extend(waters.iter().map(|w| w.quality("m3", r)));
    let missing_meters: Vec<String> = all_q.iter().filter(|m| m.expected && m.coverage_pct == 0.0).map(|m| m.meter.clone()).collect();
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
        pue_span,
        subsystems,
        water_m3: water,
        water_potable_m3: potable,
        wue_l_per_kwh: wue,
        co2_location_kg: co2,
        carbon_factor: factor,
        generator_factor,
        co2_market_kg: co2_market,
        cue_kg_per_kwh: if category.is_some() { ratio(co2, it) } else { None },
        reuse_energy_kwh: reuse,
        erf,
        renewable_energy_kwh: renewable,
        renewable_declared_kwh: declared_renewable_kwh,
        ref_: ref_raw.map(|v| v.min(1.0)),
        ref_capped,
        hours: r.duration_secs() / 3600.0,
        data_quality: DataQuality {
            coverage_pct: if key_cov.is_nan() { 0.0 } else { key_cov },
            counter_resets: all_q.iter().map(|m| m.counter_resets).sum(),
            estimated_meters: all_q.iter().filter(|m| m.estimated).count(),
            meters: all_q,
            faults,
            missing_meters,
        },
    })
}

/// E_DC and E_IT over `[a, b]` (the common span), read again for that span.
fn span_energies(store: &(impl SeriesRead + ?Sized), meters: &[Metered], is_fac: &dyn Fn(&Metered) -> bool, is_it: &dyn Fn(&Metered) -> bool, a: i64, b: i64) -> Result<(f64, f64), ReadError> {
    let (mut f, mut i) = (0.0, 0.0);
    for m in meters {
        let (fac, it) = (is_fac(m), is_it(m));
        if !fac && !it {
            continue;
        }
        let kind = if m.estimated { EnergyKind::Power } else { EnergyKind::Counter };
        let v = ledger::meter_kwh(store, m.meta.id, kind, &[a, b])?.total();
        if fac {
            f += v;
        }
        if it {
            i += v;
        }
    }
    Ok((f, i))
}

/// Location-based CO2 of E_DC: each hour's grid energy at that hour's factor (an ingested
/// intensity series, else the configured factor), generator energy at the generator's factor.
fn location_co2(store: &(impl SeriesRead + ?Sized), meters: &[Metered], bounds: &[i64], cfg: &CarbonConfig) -> Result<(f64, FactorSource, carbon::GeneratorFactor), ReadError> {
    let (f, src) = carbon::factors(store, bounds, cfg)?;
    let mut kg = 0.0;
    for m in meters {
        match m.role() {
            role::FACILITY => kg += m.ledger.values.iter().zip(&f).map(|(e, k)| e * k).sum::<f64>(),
            role::GENERATOR => kg += m.value() * cfg.generator.factor_kg_per_kwh,
            _ => {}
        }
    }
    Ok((kg, src, cfg.generator.clone()))
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// PUE = E_DC / E_IT, both kWh over the same span (ISO/IEC 30134-2): the one rule the site's
/// KPIs, each hour of attribution and the fleet's sums use. `None` without IT energy, and for a
/// ratio below 1, which is a data fault, never a result.
pub fn pue(facility_kwh: f64, it_kwh: f64) -> Option<f64> {
    ratio(facility_kwh, it_kwh).filter(|p| *p >= 1.0)
}

/// WUE = WIN / E_IT in L/kWh from m³ and kWh (the EU's m³/MWh, the same number). `None`
/// without IT energy.
pub fn wue(water_m3: f64, it_kwh: f64) -> Option<f64> {
    ratio(water_m3 * 1000.0, it_kwh)
}

impl Kpi {
    /// Whether this figure may be called official: metered over at least
    /// `accounting.official_min_coverage_pct` of its window. That the window is a calendar year
    /// or a rolling 12 months is the period's half of the rule (`periods::Period::official`).
    pub fn official(&self, acc: &AccountingConfig) -> bool {
        self.official_at(acc.official_min_coverage_pct)
    }

    /// [`Kpi::official`] with the minimum coverage as a report carries it
    /// (`Methodology::official_min_coverage_pct`).
    pub fn official_at(&self, min_coverage_pct: f64) -> bool {
        self.data_quality.coverage_pct >= min_coverage_pct
    }
}

/// The live window: the last five minutes up to the newest data the store holds (which runs
/// ahead of the wall clock when the demo runs faster than real time).
pub fn live_range(store: &(impl SeriesRead + ?Sized)) -> Result<TimeRange, ReadError> {
    let now = Timestamp(store.live_now()?);
    Ok(TimeRange::new(now.saturating_add_ns(-300 * kilowatch_model::time::NANOS_PER_SEC), now))
}
