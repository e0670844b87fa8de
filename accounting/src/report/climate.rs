//! Cooling and climate for the report: hours per cooling mode, outside dry and wet bulb per
//! day, and hours the cooling units' supply air spent outside the ASHRAE recommended envelope
//! (18–27 °C, dew point −9…15 °C, RH ≤ 70 %).
//!
//! Readings are held from one sample to the next (what the unit reported stays true until it
//! reports again), except across gaps longer than twice the series' usual step: a silent unit
//! is counted as unknown, never as its last state.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use kilowatch_model::psychro::{dew_point_c, wet_bulb_c};
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::ledger::read_f64;
use crate::read::{ReadError, Series, SeriesRead};

const COOLING: &str = "cooling";

#[derive(Debug, Clone, Serialize)]
pub struct ClimateDay {
    pub date: String,
    pub outside_temp_mean_c: Option<f64>,
    pub wet_bulb_mean_c: Option<f64>,
    /// Hours per cooling mode, averaged over the cooling units (a day adds up to ≤ 24 h).
    pub mode_hours: BTreeMap<String, f64>,
    /// Hours outside the recommended envelope, averaged over the units.
    pub hours_outside_ashrae: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AshraeUnit {
    pub unit: String,
    pub hours_outside: f64,
    pub hours_too_cold: f64,
    pub hours_too_hot: f64,
    pub hours_too_humid: f64,
    pub hours_too_dry: f64,
    pub hours_known: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Climate {
    pub units: usize,
    pub days: Vec<ClimateDay>,
    /// Month totals per mode, averaged over units.
    pub mode_hours: BTreeMap<String, f64>,
    pub ashrae_units: Vec<AshraeUnit>,
    /// Month total, averaged over units.
    pub hours_outside_ashrae: f64,
    pub envelope: &'static str,
}

fn median_step(s: &[(i64, f64)]) -> i64 {
    let mut d: Vec<i64> = s.windows(2).map(|w| w[1].0 - w[0].0).filter(|d| *d > 0).collect();
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or(0)
}

/// Calls `f(lo, hi, i)` for each held span `[lo, hi)` inside `r` where reading `i` applies.
fn held<F: FnMut(i64, i64, usize)>(times: &[i64], r: TimeRange, max_gap: i64, mut f: F) {
    for (i, w) in times.windows(2).enumerate() {
        if w[1] - w[0] > max_gap {
            continue;
        }
        let (lo, hi) = (w[0].max(r.from.0), w[1].min(r.to.0));
        if hi > lo {
            f(lo, hi, i);
        }
    }
}

/// Splits `[lo, hi)` at the local day boundaries and adds hours per day index.
fn add_by_day(day_starts: &[i64], lo: i64, hi: i64, mut add: impl FnMut(usize, f64)) {
    for (d, w) in day_starts.windows(2).enumerate() {
        let (a, b) = (lo.max(w[0]), hi.min(w[1]));
        if b > a {
            add(d, (b - a) as f64 / 3.6e12);
        }
    }
}

fn by_unit(store: &(impl SeriesRead + ?Sized), field: &str) -> Result<BTreeMap<String, Series>, ReadError> {
    Ok(store.find_series(COOLING, field, &[])?.into_iter().map(|m| (m.tag("unit").unwrap_or("?").to_owned(), m)).collect())
}

/// The local day starts covering `r`, last one = `r.to`.
fn day_starts(tz: Tz, r: TimeRange) -> Result<Vec<i64>, crate::periods::PeriodError> {
    let mut v = vec![r.from.0];
    let mut t = r.from;
    while t < r.to {
        let p = crate::periods::resolve("day", Some(t), None, None, tz, t)?;
        t = p.range.to.min(r.to);
        v.push(t.0);
    }
    Ok(v)
}

pub fn build(store: &(impl SeriesRead + ?Sized), tz: Tz, r: TimeRange) -> Result<Climate, super::ReportError> {
    let starts = day_starts(tz, r)?;
    let ndays = starts.len() - 1;
    let mut days: Vec<ClimateDay> = starts[..ndays]
        .iter()
        .map(|t| ClimateDay {
            date: Timestamp(*t).to_datetime().with_timezone(&tz).format("%Y-%m-%d").to_string(),
            outside_temp_mean_c: None,
            wet_bulb_mean_c: None,
            mode_hours: BTreeMap::new(),
            hours_outside_ashrae: 0.0,
        })
        .collect();
    let modes = by_unit(store, "mode")?;
    let supply_t = by_unit(store, "supply_temp_c")?;
    let supply_rh = by_unit(store, "supply_rh_pct")?;
    let units = modes.len().max(supply_t.len());
    let per_unit = if units > 0 { 1.0 / units as f64 } else { 0.0 };

    for m in modes.values() {
        let s: Vec<(i64, String)> = store.read_text(m.id, r.from.0, r.to.0)?;
        let times: Vec<i64> = s.iter().map(|x| x.0).collect();
        let gap = 2 * median_step(&times.iter().map(|t| (*t, 0.0)).collect::<Vec<_>>());
        held(&times, r, gap, |lo, hi, i| add_by_day(&starts, lo, hi, |d, h| *days[d].mode_hours.entry(s[i].1.clone()).or_insert(0.0) += h * per_unit));
    }

    let mut ashrae_units = Vec::new();
    for (unit, tm) in &supply_t {
        let t = read_f64(store, tm.id, r.from.0, r.to.0)?;
        let rh: BTreeMap<i64, f64> = match supply_rh.get(unit) {
            Some(h) => read_f64(store, h.id, r.from.0, r.to.0)?.into_iter().collect(),
            None => BTreeMap::new(),
        };
        let times: Vec<i64> = t.iter().map(|x| x.0).collect();
        let gap = 2 * median_step(&t);
        let mut u = AshraeUnit { unit: unit.clone(), hours_outside: 0.0, hours_too_cold: 0.0, hours_too_hot: 0.0, hours_too_humid: 0.0, hours_too_dry: 0.0, hours_known: 0.0 };
        held(&times, r, gap, |lo, hi, i| {
            let h = (hi - lo) as f64 / 3.6e12;
            let temp = t[i].1;
            let (cold, hot) = (temp < 18.0, temp > 27.0);
            let (humid, dry) = match rh.get(&t[i].0) {
                Some(&rh) => {
                    // No dew point means no water (RH ≤ 0): as dry as air gets.
                    let dp = dew_point_c(temp, rh);
                    (dp.is_some_and(|d| d > 15.0) || rh > 70.0, dp.is_none_or(|d| d < -9.0))
                }
                None => (false, false),
            };
            u.hours_known += h;
            u.hours_too_cold += if cold { h } else { 0.0 };
            u.hours_too_hot += if hot { h } else { 0.0 };
            u.hours_too_humid += if humid { h } else { 0.0 };
            u.hours_too_dry += if dry { h } else { 0.0 };
            if cold || hot || humid || dry {
                u.hours_outside += h;
                add_by_day(&starts, lo, hi, |d, h| days[d].hours_outside_ashrae += h * per_unit);
            }
        });
        ashrae_units.push(u);
    }

    // Outside air is the same for every unit: the first unit's readings describe the site.
    if let (Some(ot), Some(orh)) = (by_unit(store, "outside_temp_c")?.into_values().next(), by_unit(store, "outside_rh_pct")?.into_values().next()) {
        let t = read_f64(store, ot.id, r.from.0, r.to.0)?;
        let rh: BTreeMap<i64, f64> = read_f64(store, orh.id, r.from.0, r.to.0)?.into_iter().collect();
        let mut acc = vec![(0.0, 0usize, 0.0, 0usize); ndays];
        for (ts, temp) in t.into_iter().filter(|(ts, _)| *ts >= r.from.0 && *ts < r.to.0) {
            let d = starts.partition_point(|s| *s <= ts).saturating_sub(1).min(ndays.saturating_sub(1));
            acc[d].0 += temp;
            acc[d].1 += 1;
            if let Some(h) = rh.get(&ts) {
                acc[d].2 += wet_bulb_c(temp, *h);
                acc[d].3 += 1;
            }
        }
        for (day, (st, nt, sw, nw)) in days.iter_mut().zip(acc) {
            day.outside_temp_mean_c = (nt > 0).then(|| st / nt as f64);
            day.wet_bulb_mean_c = (nw > 0).then(|| sw / nw as f64);
        }
    }

    let mut mode_hours = BTreeMap::new();
    for d in &days {
        for (k, v) in &d.mode_hours {
            *mode_hours.entry(k.clone()).or_insert(0.0) += v;
        }
    }
    Ok(Climate {
        units,
        hours_outside_ashrae: ashrae_units.iter().map(|u| u.hours_outside).sum::<f64>() * per_unit,
        days,
        mode_hours,
        ashrae_units,
        envelope: "ASHRAE TC 9.9 (2021) recommended, at the supply air: 18–27 °C, dew point −9 to 15 °C, RH ≤ 70 %",
    })
}
