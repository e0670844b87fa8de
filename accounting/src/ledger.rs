//! The site's ledgers: E_IT, E_DC and water per segment (hours for the jobs list), read through
//! [`Store::ledger`] so they are the same whatever the age of the data. The counter and
//! trapezoid rules themselves are in `kilowatch_model::energy`.

use kilowatch_model::energy::Ledger;

use kilowatch_store::rollup::EnergyKind;
use kilowatch_store::{SeriesId, Store, StoreError};

/// Numeric samples of a series over `[from, to]` plus the neighbour on each side: readings
/// (temperatures, intensities), not energy, which goes through [`Store::ledger`].
pub fn read_f64(store: &Store, id: SeriesId, from: i64, to: i64) -> Result<Vec<(i64, f64)>, StoreError> {
    Ok(store
        .read_with_neighbours(id, from, to)?
        .into_iter()
        .filter_map(|(t, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (t, f)))
        .collect())
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
}

pub fn site_ledgers(store: &Store, bounds: &[i64]) -> Result<SiteLedgers, StoreError> {
    use kilowatch_model::metric::{METER, WATER, role};
    let n = bounds.len().saturating_sub(1);
    let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else { return Ok(SiteLedgers::default()) };
    let mut out = SiteLedgers { it_kwh: vec![0.0; n], facility_kwh: vec![0.0; n], generator_kwh: vec![0.0; n], water_m3: vec![0.0; n], ..SiteLedgers::default() };
    if to <= from {
        return Ok(out);
    }
    let counters = store.find_series(METER, "energy_kwh", &[])?;
    let powers: Vec<_> = store.find_series(METER, "power_w", &[])?.into_iter().filter(|p| !counters.iter().any(|c| c.tags == p.tags)).collect();
    let add = |acc: &mut Vec<f64>, l: &Ledger, scale: f64| {
        for (a, v) in acc.iter_mut().zip(&l.values) {
            *a += v * scale;
        }
    };
    let mut it_meters: Vec<(u8, Ledger, f64)> = Vec::new();
    for (m, kind) in counters.iter().map(|m| (m, EnergyKind::Counter)).chain(powers.iter().map(|m| (m, EnergyKind::Power))) {
        let role_tag = m.tag("role");
        let is_it = role_tag == Some(role::IT);
        let is_fac = matches!(role_tag, Some(role::FACILITY | role::GENERATOR));
        if !is_it && !is_fac {
            continue;
        }
        let l = store.ledger(m.id, kind, bounds)?;
        let scale = if kind == EnergyKind::Power { 1.0 / 3.6e6 } else { 1.0 };
        out.counter_resets += l.resets;
        if is_it {
            it_meters.push((crate::kpi::category(m), l, scale));
        } else {
            add(&mut out.facility_kwh, &l, scale);
            if role_tag == Some(role::GENERATOR) {
                add(&mut out.generator_kwh, &l, scale);
            }
        }
    }
    // Same rule as the KPIs: E_IT at the best category with data in the window, never mixed.
    out.it_category = it_meters.iter().filter(|(_, l, _)| l.total_covered_s() > 0.0).map(|(c, _, _)| *c).min();
    for (_, l, scale) in it_meters.iter().filter(|(c, _, _)| Some(*c) == out.it_category) {
        out.it_estimated |= l.estimated;
        add(&mut out.it_kwh, l, *scale);
    }
    for m in store.find_series(WATER, "volume_m3", &[])? {
        let l = store.ledger(m.id, EnergyKind::Counter, bounds)?;
        out.counter_resets += l.resets;
        if l.total_covered_s() > 0.0 {
            out.water_metered = true;
        }
        add(&mut out.water_m3, &l, 1.0);
    }
    Ok(out)
}
