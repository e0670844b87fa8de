//! Sums of hourly ledgers: a site's figures over a window are the sum of its hours in it, the
//! fleet's the sum of its sites'. PUE and WUE are ratios of the sums (energy-weighted, never
//! an average of the sites' ratios); a PUE over sites metered at different categories is
//! flagged, never labelled with one category.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use kilowatch_accounting::attribution::Rollup;
use kilowatch_accounting::kpi;

use crate::ledger_api::{HOUR_NS, Hour};

/// Energy and water of a set of hours.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub facility_energy_kwh: f64,
    pub generator_energy_kwh: f64,
    pub it_energy_kwh: f64,
    /// Null when no hour had a water meter ("not metered"), never 0.
    pub water_m3: Option<f64>,
    /// E_IT of the hours with water metered: WUE's denominator.
    #[serde(skip)]
    pub it_with_water_kwh: f64,
    #[serde(skip)]
    pub categories: BTreeSet<u8>,
    /// Hours of the window up to now that were fetched with readings, and that there are.
    pub hours_covered: usize,
    pub hours_expected: usize,
}

impl Totals {
    /// The hours of `hours` in `[from, to)`; hours expected are those started before `now`.
    pub fn over(hours: &BTreeMap<i64, Hour>, from: i64, to: i64, now: i64) -> Totals {
        let mut t = Totals::default();
        for h in hours.range(from..to).map(|(_, h)| h) {
            t.facility_energy_kwh += h.facility_kwh;
            t.generator_energy_kwh += h.generator_kwh;
            t.it_energy_kwh += h.it_kwh;
            if let Some(w) = h.water_m3 {
                *t.water_m3.get_or_insert(0.0) += w;
                t.it_with_water_kwh += h.it_kwh;
            }
            if let Some(c) = h.it_category
                && h.it_kwh > 0.0
            {
                t.categories.insert(c);
            }
            t.hours_covered += usize::from(h.metered_s > 0.0);
        }
        let first = from.div_euclid(HOUR_NS) * HOUR_NS;
        let end = to.min(now);
        t.hours_expected = usize::try_from((end - first).max(0).div_euclid(HOUR_NS) + i64::from((end - first).rem_euclid(HOUR_NS) > 0)).unwrap_or(0);
        t
    }

    pub fn add(&mut self, o: &Totals) {
        self.facility_energy_kwh += o.facility_energy_kwh;
        self.generator_energy_kwh += o.generator_energy_kwh;
        self.it_energy_kwh += o.it_energy_kwh;
        if let Some(w) = o.water_m3 {
            *self.water_m3.get_or_insert(0.0) += w;
        }
        self.it_with_water_kwh += o.it_with_water_kwh;
        self.categories.extend(&o.categories);
        self.hours_covered += o.hours_covered;
        self.hours_expected += o.hours_expected;
    }

    /// The figures as the API shows them: energies, PUE with its category (or flagged mixed),
    /// water and WUE, coverage.
    pub fn kpi(&self) -> Value {
        let (fac, it) = (self.facility_energy_kwh, self.it_energy_kwh);
        let pue = kpi::pue(fac, it);
        let mixed = self.categories.len() > 1;
        let category = if mixed { None } else { self.categories.iter().next().copied() };
        let cats: Vec<String> = self.categories.iter().map(|c| format!("Cat {c}")).collect();
        let label = match (pue, mixed) {
            (None, _) => "PUE not available (no IT energy, or E_DC below E_IT)".to_owned(),
            (Some(p), true) => format!("PUE {p:.3} over sites metered at mixed categories ({}): not one ISO/IEC 30134-2 category", cats.join(", ")),
            (Some(p), false) => format!("PUE{} {p:.3}", category.map(|c| format!(" (Cat {c})")).unwrap_or_default()),
        };
        let wue = self.water_m3.and_then(|w| kpi::wue(w, self.it_with_water_kwh));
        json!({
            "facility_energy_kwh": fac,
            "grid_energy_kwh": fac - self.generator_energy_kwh,
            "generator_energy_kwh": self.generator_energy_kwh,
            "it_energy_kwh": it,
            "pue": pue,
            "pue_category": category,
            "pue_categories": self.categories,
            "mixed_categories": mixed,
            "pue_label": label,
            "water_m3": self.water_m3,
            "wue_l_per_kwh": wue,
            "hours_covered": self.hours_covered,
            "hours_expected": self.hours_expected,
            "coverage_pct": if self.hours_expected == 0 { 100.0 } else { (self.hours_covered as f64 * 100.0 / self.hours_expected as f64).min(100.0) },
        })
    }
}

/// One job's figures over a window, at one site.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobTotal {
    pub site: String,
    pub job: String,
    pub owner: String,
    pub project: String,
    pub gpu_energy_kwh: f64,
    pub it_energy_kwh: f64,
    pub facility_energy_kwh: f64,
    pub water_l: Option<f64>,
    pub co2_kg: f64,
    pub hours: usize,
}

/// A site's jobs over `[from, to)`, and its idle energy there.
pub fn jobs_over(site: &str, hours: &BTreeMap<i64, Hour>, from: i64, to: i64) -> (Vec<JobTotal>, f64) {
    let mut jobs: BTreeMap<&str, JobTotal> = BTreeMap::new();
    let mut idle = 0.0;
    for h in hours.range(from..to).map(|(_, h)| h) {
        idle += h.idle_kwh;
        for j in &h.jobs {
            let t = jobs.entry(&j.job).or_insert_with(|| JobTotal { site: site.to_owned(), job: j.job.clone(), owner: j.owner.clone(), project: j.project.clone(), ..JobTotal::default() });
            t.gpu_energy_kwh += j.gpu_kwh;
            t.it_energy_kwh += j.it_kwh;
            t.facility_energy_kwh += j.facility_kwh;
            if let Some(w) = j.water_l {
                *t.water_l.get_or_insert(0.0) += w;
            }
            t.co2_kg += j.co2_kg;
            t.hours += 1;
        }
    }
    (jobs.into_values().collect(), idle)
}

/// Per-owner roll-ups of `jobs`, an empty owner as "(unknown)" as the jobs API does.
pub fn by_owner<'a>(jobs: impl IntoIterator<Item = &'a JobTotal>) -> BTreeMap<String, Rollup> {
    let mut m: BTreeMap<String, Rollup> = BTreeMap::new();
    for j in jobs {
        m.entry(if j.owner.is_empty() { "(unknown)".to_owned() } else { j.owner.clone() }).or_default().add_job(j.gpu_energy_kwh, j.it_energy_kwh, j.facility_energy_kwh, j.water_l, j.co2_kg);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(t: i64, fac: f64, it: f64, cat: u8, water: Option<f64>) -> Hour {
        Hour { t, facility_kwh: fac, generator_kwh: 0.0, it_kwh: it, it_category: Some(cat), water_m3: water, idle_kwh: 0.0, metered_s: 3600.0, jobs: Vec::new() }
    }

    #[test]
    fn fleet_pue_and_wue_are_energy_weighted_and_mixed_categories_are_flagged() {
        let a: BTreeMap<i64, Hour> = [(0, hour(0, 120.0, 100.0, 1, Some(0.2)))].into();
        let b: BTreeMap<i64, Hour> = [(0, hour(0, 1500.0, 1000.0, 2, None))].into();
        let mut f = Totals::over(&a, 0, HOUR_NS, HOUR_NS);
        f.add(&Totals::over(&b, 0, HOUR_NS, HOUR_NS));
        let k = f.kpi();
        // (120 + 1500) / (100 + 1000), not the mean of 1.2 and 1.5.
        assert!((k["pue"].as_f64().unwrap_or(0.0) - 1620.0 / 1100.0).abs() < 1e-12, "{k}");
        assert_eq!(k["mixed_categories"], true);
        assert!(k["pue_category"].is_null());
        // WUE over the E_IT that had a water meter: 0.2 m3 over 100 kWh = 2 L/kWh.
        assert!((k["wue_l_per_kwh"].as_f64().unwrap_or(0.0) - 2.0).abs() < 1e-12, "{k}");
        // No water meter anywhere: null, not 0.
        assert!(Totals::over(&b, 0, HOUR_NS, HOUR_NS).kpi()["water_m3"].is_null());
    }

    #[test]
    fn missing_hours_lower_the_coverage() {
        let a: BTreeMap<i64, Hour> = [(0, hour(0, 1.2, 1.0, 1, None))].into();
        let t = Totals::over(&a, 0, 4 * HOUR_NS, 2 * HOUR_NS + 1);
        assert_eq!((t.hours_covered, t.hours_expected), (1, 3));
    }
}
