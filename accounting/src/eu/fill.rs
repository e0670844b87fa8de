//! Filling the shorter of EDC's and EIT's metered spans, so that the filed PUE is the filed
//! EDC / the filed EIT (Annex III (a): the database computes PUE from the two totals, so the
//! pack must not file a PUE that disagrees with them). The method, stated in the pack: over
//! every hour where one side (grid supplies, or the IT meters at the filed category) has
//! readings and the other has fewer, the short side's missing seconds are filled at its own
//! mean power over the seconds it covers. Generators are not a side of their own: they report
//! only while they run.

use kilowatch_model::metric::role;
use serde::Serialize;

use super::evidence::{Inventory, MeterRecord};

pub const METHOD: &str = "the side's mean power over the seconds it covers × the seconds it lacks where the other side has readings";

/// Missing time below this is the meters' reading phase at the data's edges, not a gap.
const ALLOWANCE_S: f64 = 300.0;

/// What was added to one side.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    pub method: &'static str,
    pub hours_filled: f64,
    pub kwh_filled: f64,
}

/// The estimate for each side; none where the side covers what the other does.
#[derive(Debug, Clone, Default)]
pub struct Fill {
    pub edc: Option<Estimate>,
    pub eit: Option<Estimate>,
}

/// Seconds covered per hour by any of `ms` (a side is covered while one of its meters reads),
/// and the side's energy.
fn side(inv: &Inventory, ms: &[&MeterRecord]) -> (Vec<f64>, f64) {
    let hours = inv.bounds.len().saturating_sub(1);
    let cov = (0..hours).map(|h| ms.iter().filter_map(|m| m.covered_s.get(h)).fold(0.0, |a: f64, c| a.max(*c))).collect();
    (cov, ms.iter().map(|m| m.total).sum())
}

fn estimate(cov: &[f64], total: f64, other: &[f64]) -> Option<Estimate> {
    let lacking: f64 = cov.iter().zip(other).map(|(c, o)| (o - c).max(0.0)).sum();
    let covered: f64 = cov.iter().sum();
    (lacking > ALLOWANCE_S && covered > 0.0).then(|| Estimate { method: METHOD, hours_filled: lacking / 3600.0, kwh_filled: total / covered * lacking })
}

/// The fill of EDC's grid side and of EIT at `it_category`.
pub fn fill(inv: &Inventory, it_category: Option<u8>) -> Fill {
    let grid: Vec<&MeterRecord> = inv.meters.iter().filter(|m| m.measurement == "meter" && m.role == role::FACILITY && m.has_data()).collect();
    let it: Vec<&MeterRecord> = inv.meters.iter().filter(|m| m.measurement == "meter" && m.role == role::IT && m.category == it_category && m.has_data()).collect();
    if grid.is_empty() || it.is_empty() {
        return Fill::default();
    }
    let (g_cov, g_total) = side(inv, &grid);
    let (i_cov, i_total) = side(inv, &it);
    Fill { edc: estimate(&g_cov, g_total, &i_cov), eit: estimate(&i_cov, i_total, &g_cov) }
}
