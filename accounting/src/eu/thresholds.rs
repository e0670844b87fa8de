//! Thresholds a jurisdiction sets on the yearly KPIs, as presets (`[eu] thresholds =
//! "de-enefg"`) and custom rules (`[[eu.threshold]]`), checked against the filing's Annex III
//! figures: each rule is "pass", "fail", "not applicable" (not in force that year, or not for
//! this site's commissioning date) or "missing" (the figure or the date it depends on is
//! absent), always with the figure it was judged on. Sources in docs/filing.md.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::config::EuConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kpi {
    Pue,
    Wue,
    Erf,
    Ref,
}

impl Kpi {
    pub fn code(self) -> &'static str {
        match self {
            Kpi::Pue => "PUE",
            Kpi::Wue => "WUE",
            Kpi::Erf => "ERF",
            Kpi::Ref => "REF",
        }
    }
}

/// Which sites a rule binds, by the date they entered operation (`eu.entry_into_operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applies {
    #[default]
    All,
    /// In operation before `cutoff`.
    Existing,
    /// In operation from `cutoff` on.
    New,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// What the pack calls it, e.g. "EnEfG §11(1) PUE, existing sites, from 1 July 2027".
    pub name: String,
    pub kpi: Kpi,
    /// The figure must be at most this (PUE, WUE)…
    #[serde(default)]
    pub max: Option<f64>,
    /// …or at least this (ERF, REF, as a fraction: 0.1 = 10 %).
    #[serde(default)]
    pub min: Option<f64>,
    /// In force from this date, YYYY-MM-DD: it binds every calendar year it is in force in.
    pub from: String,
    #[serde(default)]
    pub applies_to: Applies,
    /// The commissioning date that splits existing from new sites, YYYY-MM-DD.
    #[serde(default)]
    pub cutoff: Option<String>,
    /// Whole calendar years after entry into operation before the rule binds (EnEfG gives
    /// new sites two years).
    #[serde(default)]
    pub after_entry_years: Option<u32>,
    /// The rule binds only sites that entered operation on or after this date, YYYY-MM-DD
    /// (a commissioning cohort: EnEfG §11(2)'s ERF share depends on when the site started,
    /// not on the calendar year).
    #[serde(default)]
    pub entry_from: Option<String>,
    /// …and before this date, YYYY-MM-DD.
    #[serde(default)]
    pub entry_before: Option<String>,
    /// The law or contract it comes from.
    #[serde(default)]
    pub source: Option<String>,
}

/// One rule judged for the year.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub kpi: &'static str,
    /// "≤ 1.5" or "≥ 0.1".
    pub limit: String,
    pub figure: Option<f64>,
    /// "pass", "fail", "not applicable" or "missing".
    pub status: &'static str,
    pub reason: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub preset: Option<String>,
    pub checks: Vec<Check>,
}

const ENEFG: &str = "Germany, Energieeffizienzgesetz (EnEfG) of 13 November 2023, §11";
const PRESETS: &[&str] = &["de-enefg"];

fn rule(name: &str, kpi: Kpi, max: Option<f64>, min: Option<f64>, from: &str, applies_to: Applies, after_entry_years: Option<u32>) -> ThresholdRule {
    let cutoff = (applies_to != Applies::All).then(|| "2026-07-01".to_owned());
    ThresholdRule { name: name.into(), kpi, max, min, from: from.into(), applies_to, cutoff, after_entry_years, entry_from: None, entry_before: None, source: Some(ENEFG.into()) }
}

/// An EnEfG §11(2) ERF share for the sites commissioned in `[entry_from, entry_before)`, binding
/// two years after their entry into operation.
fn erf_cohort(name: &str, min: f64, entry_from: &str, entry_before: Option<&str>) -> ThresholdRule {
    ThresholdRule { entry_from: Some(entry_from.into()), entry_before: entry_before.map(str::to_owned), ..rule(name, Kpi::Erf, None, Some(min), entry_from, Applies::All, Some(2)) }
}

/// The rules of a preset; None for an unknown name.
pub fn preset(name: &str) -> Option<Vec<ThresholdRule>> {
    use Applies::*;
    match name {
        // §11(1): PUE as an annual average; §11(2): share of reused energy (ERF) for sites
        // entering operation from 1 July 2026; §11(5): share of electricity from renewables.
        "de-enefg" => Some(vec![
            rule("EnEfG §11(1) PUE, sites in operation before 1 July 2026, from 1 July 2027", Kpi::Pue, Some(1.5), None, "2027-07-01", Existing, None),
            rule("EnEfG §11(1) PUE, sites in operation before 1 July 2026, from 1 July 2030", Kpi::Pue, Some(1.3), None, "2030-07-01", Existing, None),
            rule("EnEfG §11(2) PUE, sites from 1 July 2026, two years after entry into operation", Kpi::Pue, Some(1.2), None, "2026-07-01", New, Some(2)),
            // The ERF share is set by the site's commissioning cohort, and binds two years
            // after its entry into operation, not by the calendar year filed.
            erf_cohort("EnEfG §11(2) ERF ≥ 10 %, sites commissioned 1 July 2026 to 30 June 2027, two years after entry into operation", 0.10, "2026-07-01", Some("2027-07-01")),
            erf_cohort("EnEfG §11(2) ERF ≥ 15 %, sites commissioned 1 July 2027 to 30 June 2028, two years after entry into operation", 0.15, "2027-07-01", Some("2028-07-01")),
            erf_cohort("EnEfG §11(2) ERF ≥ 20 %, sites commissioned from 1 July 2028, two years after entry into operation", 0.20, "2028-07-01", None),
            rule("EnEfG §11(5) renewable electricity ≥ 50 %, from 1 January 2024", Kpi::Ref, None, Some(0.5), "2024-01-01", All, None),
            rule("EnEfG §11(5) renewable electricity 100 %, from 1 January 2027", Kpi::Ref, None, Some(1.0), "2027-01-01", All, None),
        ]),
        _ => None,
    }
}

fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Refuses an unknown preset and malformed custom rules, naming the key.
pub fn check_config(cfg: &EuConfig) -> Result<(), (&'static str, String)> {
    if let Some(p) = &cfg.thresholds
        && preset(p).is_none()
    {
        return Err(("eu.thresholds", format!("unknown preset {p:?} (known: {})", PRESETS.join(", "))));
    }
    for (i, r) in cfg.custom_thresholds.iter().enumerate() {
        let bad = |m: String| Err(("eu.threshold", format!("entry {} ({:?}): {m}", i + 1, r.name)));
        if r.max.is_some() == r.min.is_some() {
            return bad("give exactly one of max or min".into());
        }
        if let Some(v) = r.max.or(r.min)
            && !v.is_finite()
        {
            return bad(format!("{v} is not a finite number"));
        }
        if date(&r.from).is_none() {
            return bad(format!("from = {:?}: expected YYYY-MM-DD", r.from));
        }
        match (&r.cutoff, r.applies_to) {
            (None, Applies::Existing | Applies::New) => return bad("applies_to existing or new needs a cutoff date".into()),
            (Some(c), _) if date(c).is_none() => return bad(format!("cutoff = {c:?}: expected YYYY-MM-DD")),
            _ => {}
        }
        for (key, d) in [("entry_from", &r.entry_from), ("entry_before", &r.entry_before)] {
            if let Some(d) = d
                && date(d).is_none()
            {
                return bad(format!("{key} = {d:?}: expected YYYY-MM-DD"));
            }
        }
        if let (Some(a), Some(b)) = (r.entry_from.as_deref().and_then(date), r.entry_before.as_deref().and_then(date))
            && a >= b
        {
            return bad(format!("entry_from {a} is not before entry_before {b}"));
        }
    }
    Ok(())
}

/// Judges every rule (the preset's, then the custom ones) for calendar year `year`, with
/// `figure` giving each KPI's yearly value (None where the filing lists it missing).
pub fn check(cfg: &EuConfig, year: i32, figure: impl Fn(Kpi) -> Option<f64>) -> Thresholds {
    let rules: Vec<ThresholdRule> = cfg.thresholds.as_deref().and_then(preset).unwrap_or_default().into_iter().chain(cfg.custom_thresholds.iter().cloned()).collect();
    let entry = cfg.entry_date();
    let checks = rules.iter().map(|r| judge(r, year, entry, figure(r.kpi))).collect();
    Thresholds { preset: cfg.thresholds.clone(), checks }
}

fn judge(r: &ThresholdRule, year: i32, entry: Option<NaiveDate>, fig: Option<f64>) -> Check {
    let limit = match (r.max, r.min) {
        (Some(m), _) => format!("≤ {m}"),
        (_, Some(m)) => format!("≥ {m}"),
        _ => String::new(),
    };
    let out = |status: &'static str, reason: String| Check {
        name: r.name.clone(),
        kpi: r.kpi.code(),
        limit: limit.clone(),
        figure: fig,
        status,
        reason,
        source: r.source.clone().unwrap_or_else(|| "custom threshold ([[eu.threshold]])".into()),
    };
    let year_end = NaiveDate::from_ymd_opt(year, 12, 31);
    let year_start = NaiveDate::from_ymd_opt(year, 1, 1);
    let (Some(from), Some(year_end), Some(year_start)) = (date(&r.from), year_end, year_start) else { return out("missing", "the rule's dates do not parse".into()) };
    if from > year_end {
        return out("not applicable", format!("in force from {from}, after {year}"));
    }
    if r.applies_to != Applies::All || r.after_entry_years.is_some() || r.entry_from.is_some() || r.entry_before.is_some() {
        let Some(entry) = entry else { return out("missing", "eu.entry_into_operation is not declared: which sites this binds cannot be decided".into()) };
        if let Some(a) = r.entry_from.as_deref().and_then(date)
            && entry < a
        {
            return out("not applicable", format!("binds sites entering operation from {a}; this one entered operation {entry}"));
        }
        if let Some(b) = r.entry_before.as_deref().and_then(date)
            && entry >= b
        {
            return out("not applicable", format!("binds sites entering operation before {b}; this one entered operation {entry}"));
        }
        if let Some(cutoff) = r.cutoff.as_deref().and_then(date) {
            let new = entry >= cutoff;
            match r.applies_to {
                Applies::Existing if new => return out("not applicable", format!("binds sites in operation before {cutoff}; this one entered operation {entry}")),
                Applies::New if !new => return out("not applicable", format!("binds sites entering operation from {cutoff}; this one entered operation {entry}")),
                _ => {}
            }
        }
        if let Some(n) = r.after_entry_years
            && entry.with_year(entry.year() + n as i32).is_none_or(|d| d > year_start)
        {
            return out("not applicable", format!("binds from {n} years after entry into operation ({entry})"));
        }
    }
    let Some(v) = fig else { return out("missing", format!("{} is missing for {year}", r.kpi.code())) };
    let pass = match (r.max, r.min) {
        (Some(m), _) => v <= m,
        (_, Some(m)) => v >= m,
        _ => false,
    };
    if pass { out("pass", format!("{} {v:.4} {limit}", r.kpi.code())) } else { out("fail", format!("{} {v:.4} is not {limit}", r.kpi.code())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(entry: Option<&str>) -> EuConfig {
        EuConfig { thresholds: Some("de-enefg".into()), entry_into_operation: entry.map(str::to_owned), ..EuConfig::default() }
    }

    fn status(t: &Thresholds, prefix: &str) -> Vec<&'static str> {
        t.checks.iter().filter(|c| c.name.starts_with(prefix)).map(|c| c.status).collect()
    }

    #[test]
    fn enefg_binds_by_year_and_commissioning_date() {
        // An existing site (2019) in 2027: PUE 1.4 passes ≤ 1.5; ≤ 1.3 (2030) and the new-site
        // rules do not apply; renewables 60 % pass 50 % and fail 100 %.
        let fig = |k: Kpi| match k {
            Kpi::Pue => Some(1.4),
            Kpi::Ref => Some(0.6),
            _ => None,
        };
        let t = check(&cfg(Some("2019-03-01")), 2027, fig);
        assert_eq!(status(&t, "EnEfG §11(1) PUE"), ["pass", "not applicable"]);
        assert_eq!(status(&t, "EnEfG §11(2)"), ["not applicable"; 4]);
        assert_eq!(status(&t, "EnEfG §11(5)"), ["pass", "fail"]);
        // A new site (September 2026): PUE ≤ 1.2 binds from 2029 (two full years). Its ERF
        // share is its cohort's (10 %, commissioned 1 July 2026 to 30 June 2027), after the
        // same two-year grace; the 15 % and 20 % cohorts never bind it, whatever the year.
        let t = check(&cfg(Some("2026-09-01")), 2027, fig);
        assert_eq!(status(&t, "EnEfG §11(2) PUE"), ["not applicable"]);
        assert_eq!(status(&t, "EnEfG §11(2) ERF"), ["not applicable"; 3], "{:#?}", t.checks);
        let t = check(&cfg(Some("2026-09-01")), 2029, fig);
        assert_eq!(status(&t, "EnEfG §11(2) PUE"), ["fail"]);
        assert_eq!(status(&t, "EnEfG §11(2) ERF"), ["missing", "not applicable", "not applicable"], "{:#?}", t.checks);
        // A site commissioned in August 2028 is in the 20 % cohort from 2031.
        let t = check(&cfg(Some("2028-08-01")), 2031, |k| (k == Kpi::Erf).then_some(0.18));
        assert_eq!(status(&t, "EnEfG §11(2) ERF"), ["not applicable", "not applicable", "fail"], "{:#?}", t.checks);
        // Without a commissioning date the split cannot be decided: missing, not a pass.
        let t = check(&cfg(None), 2031, fig);
        assert_eq!(status(&t, "EnEfG §11(1) PUE"), ["missing", "missing"]);
        assert_eq!(status(&t, "EnEfG §11(5)"), ["pass", "fail"]);
        // 2025 for an existing site: nothing about PUE is in force yet.
        let t = check(&cfg(Some("2019-03-01")), 2025, fig);
        assert_eq!(status(&t, "EnEfG §11(1) PUE"), ["not applicable", "not applicable"]);
    }

    #[test]
    fn bad_rules_are_refused_with_the_key() {
        let mut c = EuConfig { thresholds: Some("fr-xyz".into()), ..EuConfig::default() };
        assert_eq!(check_config(&c).err().map(|e| e.0), Some("eu.thresholds"));
        c.thresholds = None;
        c.custom_thresholds = vec![ThresholdRule {
            name: "x".into(),
            kpi: Kpi::Pue,
            max: Some(1.3),
            min: Some(1.0),
            from: "2025-01-01".into(),
            applies_to: Applies::All,
            cutoff: None,
            after_entry_years: None,
            entry_from: None,
            entry_before: None,
            source: None,
        }];
        assert_eq!(check_config(&c).err().map(|e| e.0), Some("eu.threshold"));
    }
}
