//! The site's ledgers: E_IT, E_DC and water per segment (hours for the jobs list), read through
//! [`SeriesRead::ledger`] so they are the same whatever the age of the data. The counter and
//! trapezoid rules themselves are in `kilowatch_model::energy`.

use kilowatch_model::energy::Ledger;

use crate::meters;
use crate::read::{EnergyKind, ReadError, Series, SeriesId, SeriesRead};

/// Numeric samples of a series over `[from, to]` plus the neighbour on each side: readings
/// (temperatures, intensities), not energy, which goes through [`SeriesRead::ledger`].
pub fn read_f64(store: &(impl SeriesRead + ?Sized), id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, ReadError> {
    store.read_f64(id, from, to)
}

/// The site's meters per segment: E_IT (best category present), E_DC (grid + generator) and
/// water, with the quality flags attribution reports.
#[derive(Debug, Clone, Default)]
pub struct SiteLedgers {
    pub it_kwh: Vec<f64>,
    pub facility_kwh: Vec<f64>,
    /// The generator part of `facility_kwh` (EDC-BG), which has its own carbon factor.
    pub generator_kwh: Vec<f64>,
    pub water_m3: Vec<f64>,
    pub it_category: Option<u8>,
    pub it_estimated: bool,
    pub counter_resets: u32,
    /// Whether any water meter covers part of the window (else water is "not metered").
    pub water_metered: bool,
    /// Seconds of each segment that some meter of E_DC, and of E_IT at its category, covers:
    /// a segment with none was not metered (its zeros are no reading, not no energy).
    pub facility_covered_s: Vec<f64>,
    pub it_covered_s: Vec<f64>,
}

/// Every meter's energy series: its kWh counter, or, for a meter that only reports power, its
/// power (integrated by the trapezoid rule, estimated).
pub fn energy_meters(store: &(impl SeriesRead + ?Sized)) -> Result<Vec<(Series, EnergyKind)>, ReadError> {
    use kilowatch_model::metric::METER;
    let counters = store.find_series(METER, "energy_kwh", &[])?;
    let powers: Vec<Series> = store.find_series(METER, "power_w", &[])?.into_iter().filter(|p| !counters.iter().any(|c| c.tags == p.tags)).collect();
    Ok(counters.into_iter().map(|m| (m, EnergyKind::Counter)).chain(powers.into_iter().map(|m| (m, EnergyKind::Power))).collect())
}

/// A meter's ledger over `bounds` in kWh, whichever of [`energy_meters`]' kinds it is.
pub fn meter_kwh(store: &(impl SeriesRead + ?Sized), id: SeriesId, kind: EnergyKind, bounds: &[i64]) -> Result<Ledger, ReadError> {
    let mut l = store.ledger(id, kind, bounds)?;
    if kind == EnergyKind::Power {
        for v in &mut l.values {
            *v /= 3.6e6;
        }
    }
    Ok(l)
}

pub fn site_ledgers(store: &(impl SeriesRead + ?Sized), bounds: &[i64]) -> Result<SiteLedgers, ReadError> {
    use kilowatch_model::metric::WATER;
    let n = bounds.len().saturating_sub(1);
    let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else { return Ok(SiteLedgers::default()) };
    let mut out = SiteLedgers {
        it_kwh: vec![0.0; n],
        facility_kwh: vec![0.0; n],
        generator_kwh: vec![0.0; n],
        water_m3: vec![0.0; n],
        facility_covered_s: vec![0.0; n],
        it_covered_s: vec![0.0; n],
        ..SiteLedgers::default()
    };
    if to <= from {
        return Ok(out);
    }
    let add = |acc: &mut Vec<f64>, l: &Ledger| {
        for (a, v) in acc.iter_mut().zip(&l.values) {
            *a += v;
        }
    };
    let cover = |acc: &mut Vec<f64>, l: &Ledger| {
        for (a, c) in acc.iter_mut().zip(&l.covered_s) {
            *a = a.max(*c);
        }
    };
    let mut it_meters: Vec<(u8, Ledger)> = Vec::new();
    for (m, kind) in energy_meters(store)? {
        let role_tag = m.tag("role");
        let is_it = meters::is_it(role_tag);
        let is_fac = meters::is_facility(role_tag);
        if !is_it && !is_fac {
            continue;
        }
        let l = meter_kwh(store, m.id, kind, bounds)?;
        out.counter_resets += l.resets;
        if is_it {
            it_meters.push((crate::kpi::category(&m), l));
        } else {
            add(&mut out.facility_kwh, &l);
            cover(&mut out.facility_covered_s, &l);
            if meters::is_generator(role_tag) {
                add(&mut out.generator_kwh, &l);
            }
        }
    }
    // Same rule as the KPIs: E_IT at the best category with data in the window, never mixed.
    out.it_category = meters::best_category(it_meters.iter().filter(|(_, l)| l.total_covered_s() > 0.0).map(|(c, _)| *c));
    for (_, l) in it_meters.iter().filter(|(c, _)| Some(*c) == out.it_category) {
        out.it_estimated |= l.estimated;
        add(&mut out.it_kwh, l);
        cover(&mut out.it_covered_s, l);
    }
    for m in store.find_series(WATER, "volume_m3", &[])? {
        let l = store.ledger(m.id, EnergyKind::Counter, bounds)?;
        out.counter_resets += l.resets;
        if l.total_covered_s() > 0.0 {
            out.water_metered = true;
        }
        add(&mut out.water_m3, &l);
    }
    Ok(out)
}
