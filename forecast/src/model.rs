//! The site model: hourly PUE and WUE as functions of the outside air and the IT load, fitted
//! by ridge least squares on a fixed set of hinge features. Transparent on purpose: every
//! coefficient is a slope over a named temperature band, so an operator can read what the
//! model learnt ("above 26 °C each kelvin of wet-bulb depression costs 0.0x L/kWh").
//!
//! Why hinges and not a library: the plant's response is piecewise (mixing below ~23 °C, free
//! cooling, media wetted above ~25 °C, humidifying in dry cold), so a linear model on hinge
//! functions at those bands captures it and extrapolates linearly past the hottest hour seen,
//! which a heat wave needs. Twenty coefficients solve in microseconds with normal equations;
//! `linfa-linear` and `smartcore` would bring ndarray and a dozen crates for the same solve.

use serde::Serialize;

/// One hour of the site's own ledger and the outside air in that hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HourRecord {
    /// Start of the hour, Unix seconds.
    pub t: i64,
    pub it_kwh: f64,
    pub facility_kwh: f64,
    /// Water into the boundary, litres; `None` where no water meter covers the hour.
    pub water_l: Option<f64>,
    pub dry_bulb_c: f64,
    pub wet_bulb_c: f64,
    /// The cooling mode the plant ran most of the hour (the `cooling` series' `mode` field);
    /// `None` where no unit reported one.
    pub mode: Option<CoolingMode>,
}

/// The plant's modes, as the `cooling` series' `mode` field names them (ARCHITECTURE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoolingMode {
    /// Outside air mixed with hot return air (cold weather).
    Mix,
    /// Dry cold air humidified on the media.
    Humidify,
    /// Outside air as it is.
    Free,
    /// Water over the media.
    Evaporative,
}

impl CoolingMode {
    pub fn parse(s: &str) -> Option<CoolingMode> {
        match s {
            "mix" => Some(CoolingMode::Mix),
            "humidify" => Some(CoolingMode::Humidify),
            "free" => Some(CoolingMode::Free),
            "evaporative" => Some(CoolingMode::Evaporative),
            _ => None,
        }
    }
}

/// The outside dry bulbs at which the plant changes mode: from mixing (or humidifying) to free
/// cooling, and from free cooling to wetting the media. Learnt from the site's own cooling-mode
/// history where it holds enough hours on both sides of a switch; else the simulated DC5
/// plant's constants, and `note` says so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwitchPoints {
    pub free_above_c: f64,
    pub evaporative_above_c: f64,
    /// Whether each came from the site's history (else from the constants).
    pub free_learnt: bool,
    pub evaporative_learnt: bool,
    /// Where a switch point is the constants', why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The simulated DC5 plant's switch points (sim/src/plant.rs): the fallback.
pub const DEFAULT_FREE_ABOVE_C: f64 = 23.0;
pub const DEFAULT_EVAPORATIVE_ABOVE_C: f64 = 25.0;
/// Fewer hours than this on either side of a switch: the switch is not learnt.
pub const MIN_MODE_HOURS: usize = 24;

impl Default for SwitchPoints {
    fn default() -> Self {
        SwitchPoints { free_above_c: DEFAULT_FREE_ABOVE_C, evaporative_above_c: DEFAULT_EVAPORATIVE_ABOVE_C, free_learnt: false, evaporative_learnt: false, note: None }
    }
}

/// The dry bulb that best separates the hours in `below` modes from those in `above` modes
/// (fewest hours on the wrong side; the midpoint between the two hours around it), or `None`
/// with fewer than [`MIN_MODE_HOURS`] on either side.
fn separating_temperature(rs: &[&HourRecord], below: &[CoolingMode], above: &[CoolingMode]) -> Option<f64> {
    let mut pts: Vec<(f64, bool)> = rs.iter().filter_map(|r| r.mode.filter(|m| below.contains(m) || above.contains(m)).map(|m| (r.dry_bulb_c, above.contains(&m)))).collect();
    let n_above = pts.iter().filter(|p| p.1).count();
    if n_above < MIN_MODE_HOURS || pts.len() - n_above < MIN_MODE_HOURS {
        return None;
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Wrong with the threshold below every hour: every "below" hour.
    let mut wrong = pts.len() - n_above;
    let (mut best, mut at) = (wrong, pts[0].0 - 0.5);
    for i in 0..pts.len() {
        if pts[i].1 {
            wrong += 1
        } else {
            wrong -= 1
        }
        let next = pts.get(i + 1).map_or(pts[i].0 + 0.5, |p| p.0);
        if wrong < best && next > pts[i].0 {
            (best, at) = (wrong, 0.5 * (pts[i].0 + next));
        }
    }
    Some(at)
}

/// The switch points of `rs`'s cooling-mode history, each falling back to the constants.
pub fn learn_switch_points(rs: &[&HourRecord]) -> SwitchPoints {
    use CoolingMode::*;
    let free = separating_temperature(rs, &[Mix, Humidify], &[Free, Evaporative]);
    let evap = separating_temperature(rs, &[Mix, Humidify, Free], &[Evaporative]);
    let mut sp = SwitchPoints { free_learnt: free.is_some(), evaporative_learnt: evap.is_some(), ..SwitchPoints::default() };
    sp.free_above_c = free.unwrap_or(DEFAULT_FREE_ABOVE_C);
    sp.evaporative_above_c = evap.unwrap_or(DEFAULT_EVAPORATIVE_ABOVE_C).max(sp.free_above_c);
    let fallback: Vec<String> = [
        (!sp.free_learnt).then(|| format!("mix to free cooling ({DEFAULT_FREE_ABOVE_C} °C)")),
        (!sp.evaporative_learnt).then(|| format!("free cooling to evaporative ({DEFAULT_EVAPORATIVE_ABOVE_C} °C)")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !fallback.is_empty() {
        sp.note =
            Some(format!("switch points from the simulated plant's constants, not the site's: {}; the cooling-mode history holds fewer than {MIN_MODE_HOURS} hours on each side", fallback.join(", ")));
    }
    sp
}

/// What the model needs to predict one hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Conditions {
    pub dry_bulb_c: f64,
    pub wet_bulb_c: f64,
    pub it_kw: f64,
}

/// Dry-bulb knots, °C: the plant's bands (heating the mix, mixing, free cooling from the first
/// switch, media from the second) and a few more for the hot tail; with the simulated plant's
/// switches, 0, 8, 16, 20, 23, 25, 27, 30, 34.
fn knots(sp: &SwitchPoints) -> [f64; 9] {
    let (f, e) = (sp.free_above_c, sp.evaporative_above_c);
    [0.0, 8.0, 16.0, f - 3.0, f, e, e + 2.0, e + 5.0, e + 9.0]
}

/// Names of the features, in order, for the model's report.
pub fn feature_names(sp: &SwitchPoints) -> Vec<String> {
    let mut v = vec!["dry_bulb_c".to_string()];
    v.extend(knots(sp).iter().map(|k| format!("max(0, dry_bulb_c - {k})")));
    v.extend(
        [
            "depression_k",
            "depression_k * wet_media",
            "max(0, 2 - wet_bulb_c)",
            "dry_g",
            "dry_g * humidify",
            "dry_g * humidify * max(0, dry_bulb_c + 10) / 10",
            "it_ref / it_kw",
            "it_kw / it_ref",
            "(it_kw / it_ref)^2",
        ]
        .map(String::from),
    );
    v
}

/// Share of the hour with the media wetted, as a ramp around the plant's switch (the hour mean
/// blurs the switch).
fn wet_media(t: f64, evaporative_above_c: f64) -> f64 {
    ((t - evaporative_above_c + 1.5) / 3.0).clamp(0.0, 1.0)
}

/// Outside humidity ratio, g/kg, from dry and wet bulb (the psychrometer equation, ASHRAE
/// Fundamentals 2017 ch. 1 eq. 33, with Magnus saturation pressure at sea level).
pub fn humidity_ratio_g_per_kg(dry_bulb_c: f64, wet_bulb_c: f64) -> f64 {
    let ps = kilowatch_model::psychro::saturation_pressure_kpa(wet_bulb_c);
    let ws = 0.621_945 * ps / (101.325 - ps);
    let (t, tw) = (dry_bulb_c, wet_bulb_c.min(dry_bulb_c));
    let w = ((2501.0 - 2.326 * tw) * ws - 1.006 * (t - tw)) / (2501.0 + 1.86 * t - 4.186 * tw);
    1000.0 * w.max(0.0)
}

/// Wet bulb, °C, from dry bulb and relative humidity, as the wet bulb that gives the air's
/// humidity ratio (Magnus vapour pressure) through [`humidity_ratio_g_per_kg`]: the model's
/// humidity features then read back exactly the moisture the RH said, which Stull's fit
/// (±0.3 °C) would blur right where the plant's humidifying switches on.
pub fn wet_bulb_from_rh(dry_bulb_c: f64, rh_pct: f64) -> f64 {
    let pv = rh_pct.clamp(0.1, 100.0) / 100.0 * kilowatch_model::psychro::saturation_pressure_kpa(dry_bulb_c);
    let w = 1000.0 * 0.621_945 * pv / (101.325 - pv);
    let (mut lo, mut hi) = (dry_bulb_c - 40.0, dry_bulb_c);
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if humidity_ratio_g_per_kg(dry_bulb_c, mid) < w { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// Humidity ratio the plant humidifies up to (24 °C, 45 % RH), g/kg, and below which it starts
/// (supply RH under 25 % at 24 °C, or a dew point under −5 °C).
const HUMIDIFY_TARGET_G: f64 = 8.4;
const HUMIDIFY_BELOW_G: f64 = 4.7;

fn features(c: &Conditions, it_ref_kw: f64, sp: &SwitchPoints) -> Vec<f64> {
    let t = c.dry_bulb_c;
    let d = (t - c.wet_bulb_c).max(0.0);
    let u = (c.it_kw / it_ref_kw.max(1e-9)).clamp(0.05, 2.0);
    let w = humidity_ratio_g_per_kg(t, c.wet_bulb_c);
    // Water the supply lacks, g/kg, and whether the plant would add it: the mixing dampers
    // admit less outside air the colder it is, so the water follows temperature too.
    let dry_g = (HUMIDIFY_TARGET_G - w).max(0.0);
    let on = ((HUMIDIFY_BELOW_G + 0.5 - w) / 1.0).clamp(0.0, 1.0) * if t < sp.free_above_c { 1.0 } else { 0.0 };
    let ks = knots(sp);
    let mut v = Vec::with_capacity(ks.len() + 10);
    v.push(t);
    v.extend(ks.iter().map(|k| (t - k).max(0.0)));
    v.extend([d, d * wet_media(t, sp.evaporative_above_c), (2.0 - c.wet_bulb_c).max(0.0), dry_g, dry_g * on, dry_g * on * (t + 10.0).max(0.0) / 10.0, 1.0 / u, u, u * u]);
    v
}

/// A fitted linear model over standardised features.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Linear {
    pub intercept: f64,
    /// One per feature, on the standardised scale.
    pub coef: Vec<f64>,
    #[serde(skip)]
    mean: Vec<f64>,
    #[serde(skip)]
    scale: Vec<f64>,
}

impl Linear {
    fn predict(&self, x: &[f64]) -> f64 {
        self.intercept + x.iter().enumerate().map(|(j, v)| self.coef[j] * (v - self.mean[j]) / self.scale[j]).sum::<f64>()
    }
}

/// Ridge least squares: standardise, then solve (XᵀX + λn I) β = Xᵀy; the intercept is the
/// target's mean and is not shrunk. λ keeps bands the history never visited (no hour above
/// 30 °C in a mild spring) from taking wild slopes.
fn ridge(xs: &[Vec<f64>], ys: &[f64], lambda: f64) -> Option<Linear> {
    let n = xs.len();
    let p = xs.first()?.len();
    if n < p + 2 {
        return None;
    }
    let nf = n as f64;
    let mean: Vec<f64> = (0..p).map(|j| xs.iter().map(|x| x[j]).sum::<f64>() / nf).collect();
    let scale: Vec<f64> = (0..p)
        .map(|j| {
            let s = (xs.iter().map(|x| (x[j] - mean[j]).powi(2)).sum::<f64>() / nf).sqrt();
            if s > 1e-9 { s } else { 1.0 }
        })
        .collect();
    let y_mean = ys.iter().sum::<f64>() / nf;
    let mut a = vec![vec![0.0; p + 1]; p];
    for (x, y) in xs.iter().zip(ys) {
        let z: Vec<f64> = (0..p).map(|j| (x[j] - mean[j]) / scale[j]).collect();
        for i in 0..p {
            for j in 0..p {
                a[i][j] += z[i] * z[j];
            }
            a[i][p] += z[i] * (y - y_mean);
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += lambda * nf;
    }
    let coef = solve(a)?;
    Some(Linear { intercept: y_mean, coef, mean, scale })
}

/// Gaussian elimination with partial pivoting on an augmented matrix `[A | b]`.
fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let p = a.len();
    for c in 0..p {
        let piv = (c..p).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, piv);
        let pivot_row = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            let f = row[c] / pivot_row[c];
            if r != c && f != 0.0 {
                for (x, y) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *x -= f * y;
                }
            }
        }
    }
    Some((0..p).map(|i| a[i][p] / a[i][i]).collect())
}

/// How the model is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Fewer usable hours than this: "too little history" (default a week).
    pub min_hours: usize,
    /// The most recent days held back to measure the error before the final refit on all.
    pub holdout_days: usize,
    pub ridge: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { min_hours: 7 * 24, holdout_days: 3, ridge: 1e-3 }
    }
}

/// A prediction interval from the held-back days' residuals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// 10th and 90th percentile of (actual − predicted), hourly.
    pub p10: f64,
    pub p90: f64,
    /// Mean absolute error of hourly and of daily (energy-weighted) values.
    pub mae_hourly: f64,
    pub mae_daily: f64,
}

/// What the fit reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    /// Hours used in the final fit.
    pub hours: usize,
    pub first_hour_s: i64,
    pub last_hour_s: i64,
    pub holdout_days: usize,
    pub pue: Spread,
    /// `None` when no hour had water metered.
    pub wue: Option<Spread>,
    /// The IT load the load features are relative to, kW (the history's median).
    pub it_ref_kw: f64,
    /// Where the plant changes mode, from the site's cooling-mode history (or the constants).
    pub switch_points: SwitchPoints,
    /// The hottest hour's dry bulb in the history: beyond it the forecast continues the last
    /// segment's slope.
    pub hottest_c: f64,
    pub features: Vec<String>,
}

/// A model ready to predict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteModel {
    pub pue: Linear,
    pub wue: Option<Linear>,
    pub report: FitReport,
}

/// The outcome of a fit: a model, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    Ready(Box<SiteModel>),
    TooLittleHistory { hours: usize, needed: usize },
}

/// One prediction for one hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    pub pue: f64,
    pub wue_l_per_kwh: Option<f64>,
}

/// The shortest stretch below the hottest hour the tail's slope is measured over, K: the few
/// hottest hours alone are too few for a slope (a handful of them read low, and the forecast
/// of a heat wave would fall).
const MIN_TAIL_K: f64 = 3.0;

impl SiteModel {
    pub fn predict(&self, c: &Conditions) -> Prediction {
        let r = &self.report;
        let at = |m: &Linear, c: &Conditions| m.predict(&features(c, r.it_ref_kw, &r.switch_points));
        // Beyond the hottest hour seen, the hinges above it were never fitted (ridge keeps them
        // near 0, so the fit goes flat or bends down): continue the last segment's slope, from
        // the knot below the hottest hour to it, at the same wet-bulb depression. A plant does
        // not get cheaper to run as it gets hotter, so the slope is never negative.
        let beyond = c.dry_bulb_c - r.hottest_c;
        let value = |m: &Linear| {
            if beyond <= 0.0 {
                return at(m, c);
            }
            let step = (r.hottest_c - knots(&r.switch_points).into_iter().filter(|k| *k < r.hottest_c - 0.5).fold(f64::MIN, f64::max)).clamp(MIN_TAIL_K, 5.0);
            let shifted = |dt: f64| Conditions { dry_bulb_c: c.dry_bulb_c - dt, wet_bulb_c: c.wet_bulb_c - dt, it_kw: c.it_kw };
            let (top, below) = (at(m, &shifted(beyond)), at(m, &shifted(beyond + step)));
            top + ((top - below) / step).max(0.0) * beyond
        };
        // A PUE under 1 is a data fault, never a result; WUE is never negative.
        Prediction { pue: value(&self.pue).max(1.0), wue_l_per_kwh: self.wue.as_ref().map(|m| value(m).max(0.0)) }
    }
}

fn usable(r: &HourRecord) -> bool {
    r.it_kwh > 0.0 && r.facility_kwh >= r.it_kwh && r.dry_bulb_c.is_finite() && r.wet_bulb_c.is_finite() && r.facility_kwh / r.it_kwh < 3.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Residual spread of `m` on `test` for `target` (PUE or WUE of a record), hourly and daily.
fn spread(m: &Linear, test: &[&HourRecord], it_ref: f64, sp: &SwitchPoints, target: impl Fn(&HourRecord) -> Option<f64>) -> Spread {
    let mut res = Vec::new();
    let mut days: std::collections::BTreeMap<i64, (f64, f64, f64)> = Default::default();
    for r in test {
        let Some(y) = target(r) else { continue };
        let c = Conditions { dry_bulb_c: r.dry_bulb_c, wet_bulb_c: r.wet_bulb_c, it_kw: r.it_kwh };
        let p = m.predict(&features(&c, it_ref, sp));
        res.push(y - p);
        let d = days.entry(r.t.div_euclid(86_400)).or_default();
        d.0 += y * r.it_kwh;
        d.1 += p * r.it_kwh;
        d.2 += r.it_kwh;
    }
    let mae_hourly = if res.is_empty() { 0.0 } else { res.iter().map(|e| e.abs()).sum::<f64>() / res.len() as f64 };
    let mae_daily = if days.is_empty() { 0.0 } else { days.values().map(|(a, p, w)| ((a - p) / w).abs()).sum::<f64>() / days.len() as f64 };
    res.sort_by(f64::total_cmp);
    Spread { p10: quantile(&res, 0.1), p90: quantile(&res, 0.9), mae_hourly, mae_daily }
}

/// Fits the model on `records` (any order): the last `holdout_days` are held back to measure
/// the error, then the model is refitted on everything.
pub fn fit(records: &[HourRecord], opts: &FitOptions) -> ModelState {
    let mut rs: Vec<&HourRecord> = records.iter().filter(|r| usable(r)).collect();
    rs.sort_by_key(|r| r.t);
    let needed = opts.min_hours.max(48);
    if rs.len() < needed {
        return ModelState::TooLittleHistory { hours: rs.len(), needed };
    }
    let mut loads: Vec<f64> = rs.iter().map(|r| r.it_kwh).collect();
    loads.sort_by(f64::total_cmp);
    let it_ref = quantile(&loads, 0.5);
    let last = rs.last().map_or(0, |r| r.t);
    let cut = last - (opts.holdout_days as i64 * 86_400) + 3600;
    let (train, test): (Vec<&HourRecord>, Vec<&HourRecord>) = rs.iter().partition(|r| r.t < cut);
    let sp = learn_switch_points(&rs);
    let hottest_c = rs.iter().map(|r| r.dry_bulb_c).fold(f64::MIN, f64::max);
    let pue_of = |r: &HourRecord| Some(r.facility_kwh / r.it_kwh);
    let wue_of = |r: &HourRecord| r.water_l.map(|w| w / r.it_kwh);
    let fit_one = |set: &[&HourRecord], target: &dyn Fn(&HourRecord) -> Option<f64>| {
        let (xs, ys): (Vec<Vec<f64>>, Vec<f64>) =
            set.iter().filter_map(|r| target(r).map(|y| (features(&Conditions { dry_bulb_c: r.dry_bulb_c, wet_bulb_c: r.wet_bulb_c, it_kw: r.it_kwh }, it_ref, &sp), y))).unzip();
        ridge(&xs, &ys, opts.ridge)
    };
    let (Some(pue_train), Some(pue)) = (fit_one(&train, &pue_of), fit_one(&rs, &pue_of)) else {
        return ModelState::TooLittleHistory { hours: train.len(), needed };
    };
    let pue_spread = spread(&pue_train, &test, it_ref, &sp, pue_of);
    let (wue, wue_spread) = match (fit_one(&train, &wue_of), fit_one(&rs, &wue_of)) {
        (Some(t), Some(all)) => (Some(all), Some(spread(&t, &test, it_ref, &sp, wue_of))),
        _ => (None, None),
    };
    let report = FitReport {
        hours: rs.len(),
        first_hour_s: rs.first().map_or(0, |r| r.t),
        last_hour_s: last,
        holdout_days: opts.holdout_days,
        pue: pue_spread,
        wue: wue_spread,
        it_ref_kw: it_ref,
        features: feature_names(&sp),
        switch_points: sp,
        hottest_c,
    };
    ModelState::Ready(Box::new(SiteModel { pue, wue, report }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plant whose PUE rises by 0.01 per kelvin above 20 °C and whose water is 0.1 L/kWh per
    /// kelvin of depression above 25 °C: the fit recovers both within the held-back error.
    #[test]
    fn learns_a_piecewise_plant_and_reports_too_little_history() {
        let mut rs = Vec::new();
        for h in 0..(30 * 24) {
            let t = 5.0 + 25.0 * (((h as f64) * 0.37).sin() * 0.5 + 0.5);
            let wb = t - 4.0 - 3.0 * ((h as f64) * 0.11).cos().abs();
            let pue = 1.1 + 0.01 * (t - 20.0).max(0.0);
            let wue = if t > 25.0 { 0.1 * (t - wb) } else { 0.0 };
            rs.push(HourRecord { t: h * 3600, it_kwh: 1000.0, facility_kwh: 1000.0 * pue, water_l: Some(1000.0 * wue), dry_bulb_c: t, wet_bulb_c: wb, mode: None });
        }
        let ModelState::Ready(m) = fit(&rs, &FitOptions::default()) else { panic!("enough history") };
        assert!(m.report.pue.mae_hourly < 0.003, "{:?}", m.report.pue);
        let p = m.predict(&Conditions { dry_bulb_c: 28.0, wet_bulb_c: 21.0, it_kw: 1000.0 });
        assert!((p.pue - 1.18).abs() < 0.01, "{p:?}");
        assert!((p.wue_l_per_kwh.unwrap_or(0.0) - 0.7).abs() < 0.15, "{p:?}");
        match fit(&rs[..100], &FitOptions::default()) {
            ModelState::TooLittleHistory { hours, needed } => assert_eq!((hours, needed), (100, 168)),
            ModelState::Ready(_) => panic!("100 hours is too little"),
        }
    }
}
