//! Carbon factors per interval: an ingested hourly grid-intensity series
//! (`carbon,site=… intensity_g_per_kwh=…`) where there is one, else the configured factor with
//! its source and year. Every CO2 figure carries where its factor came from.

use serde::{Deserialize, Serialize};

use crate::ledger::read_f64;
use crate::read::{ReadError, SeriesRead};
use crate::settings::CarbonConfig;

pub const MEASUREMENT: &str = "carbon";
pub const FIELD: &str = "intensity_g_per_kwh";

/// Where a CO2 figure's factor came from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FactorSource {
    /// "configured" or "ingested hourly series".
    pub kind: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    /// The configured factor, kg/kWh (also what fills hours the series does not cover).
    pub configured_kg_per_kwh: f64,
    /// Segments that fell back to the configured factor although a series exists.
    pub fallback_intervals: usize,
}

/// The carbon factor of back-up generator energy (EDC-BG), which burns fuel on site and so does
/// not take the grid's factor (`[carbon.generator]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorFactor {
    /// kg CO2eq per kWh of electricity generated. Default 0.72: diesel at 2.68 kg CO2 per litre
    /// and 10 kWh per litre, converted at 37 % electrical efficiency (a typical standby set).
    #[serde(default = "default_generator_factor")]
    pub factor_kg_per_kwh: f64,
    /// The fuel burnt ("diesel", "HVO", …).
    #[serde(default = "default_generator_fuel")]
    pub fuel: String,
    #[serde(default = "default_generator_source")]
    pub source: String,
    #[serde(default)]
    pub year: Option<i32>,
}

fn default_generator_factor() -> f64 {
    0.72
}
fn default_generator_fuel() -> String {
    "diesel".into()
}
fn default_generator_source() -> String {
    "derived: diesel 2.68 kg CO2/L, 10 kWh/L, 37 % electrical efficiency".into()
}

impl Default for GeneratorFactor {
    fn default() -> Self {
        GeneratorFactor { factor_kg_per_kwh: default_generator_factor(), fuel: default_generator_fuel(), source: default_generator_source(), year: None }
    }
}

/// One factor (kg/kWh) per segment of `bounds`. A segment takes the newest reading at or before
/// its start, or failing that the first reading inside it.
pub fn factors(store: &(impl SeriesRead + ?Sized), bounds: &[i64], cfg: &CarbonConfig) -> Result<(Vec<f64>, FactorSource), ReadError> {
    let n = bounds.len().saturating_sub(1);
    let series = store.find_series(MEASUREMENT, FIELD, &[])?;
    let configured = FactorSource { kind: "configured".into(), source: cfg.source.clone(), year: Some(cfg.year), configured_kg_per_kwh: cfg.factor_kg_per_kwh, fallback_intervals: 0 };
    let Some(meta) = series.first() else {
        return Ok((vec![cfg.factor_kg_per_kwh; n], configured));
    };
    let (Some(first), Some(last)) = (bounds.first(), bounds.last()) else {
        return Ok((Vec::new(), configured));
    };
    let samples = read_f64(store, meta.id, *first, *last)?;
    if samples.is_empty() {
        return Ok((vec![cfg.factor_kg_per_kwh; n], configured));
    }
    let mut out = Vec::with_capacity(n);
    let mut fallback = 0;
    let mut i = 0usize;
    for w in bounds.windows(2) {
        while i + 1 < samples.len() && samples[i + 1].0 <= w[0] {
            i += 1;
        }
        let pick = if samples[i].0 <= w[0] && samples.get(i + 1).is_none_or(|s| s.0 > w[0]) {
            // An hourly series more than two hours stale no longer describes this hour.
            (w[0] - samples[i].0 <= 2 * 3_600_000_000_000).then_some(samples[i].1)
        } else {
            samples[i..].iter().find(|s| s.0 >= w[0] && s.0 < w[1]).map(|s| s.1)
        };
        match pick {
            Some(g) => out.push(g / 1000.0),
            None => {
                fallback += 1;
                out.push(cfg.factor_kg_per_kwh);
            }
        }
    }
    let source = meta.tag("source").map(str::to_owned).unwrap_or_else(|| "ingested carbon series".into());
    Ok((out, FactorSource { kind: "ingested hourly series".into(), source, year: None, configured_kg_per_kwh: cfg.factor_kg_per_kwh, fallback_intervals: fallback }))
}

/// Market-based CO2 (GHG Protocol scope 2 guidance, DOMAIN.md): guarantees of origin, PPAs and
/// on-site renewables cover purchased grid electricity only, so they offset at most the grid
/// energy; what back-up generators burn on site is scope 1 and keeps its own factor whatever
/// the certificates. kg.
pub fn market_co2_kg(grid_kwh: f64, generator_kwh: f64, renewable_kwh: f64, residual_kg_per_kwh: f64, generator_kg_per_kwh: f64) -> f64 {
    (grid_kwh - renewable_kwh).max(0.0) * residual_kg_per_kwh + generator_kwh * generator_kg_per_kwh
}

#[cfg(test)]
mod tests {
    use super::market_co2_kg;

    #[test]
    fn certificates_never_offset_the_generators_fuel() {
        // Grid 1,240 kWh fully covered by 1,300 kWh of PPA, 10 kWh of diesel at 0.72 kg/kWh.
        let kg = market_co2_kg(1240.0, 10.0, 1300.0, 0.4, 0.72);
        assert!((kg - 7.2).abs() < 1e-9, "{kg}");
        assert!((market_co2_kg(1240.0, 0.0, 1000.0, 0.5, 0.72) - 120.0).abs() < 1e-9);
    }
}
