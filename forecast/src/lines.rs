//! The `forecast` measurement: how polled inputs are stored, and how any script can feed the
//! forecast through the ingest API instead of a configured provider.
//!
//! ```text
//! forecast,site=dc5,input=weather,provider=open-meteo,lead_h=5 dry_bulb_c=31.2,wet_bulb_c=21.4 <issue time>
//! forecast,site=dc5,input=weather,provider=my-script,lead_h=5 dry_bulb_c=31.2,rh_pct=40 <issue time>
//! forecast,site=dc5,input=carbon,provider=electricity-maps,lead_h=5 intensity_g_per_kwh=48 <issue time>
//! ```
//! Each line is stamped with the time the forecast was issued (never a future time: the store
//! refuses those) and says which hour it is for by `lead_h`, hours after the issue hour
//! (negative for recent observations). The newest issue of each input wins.
//!
//! Issued forecasts are kept as `forecast_issued` lines stamped at the issue time, one per
//! lead hour, so they can be scored against the ledger later.

use std::collections::BTreeMap;

use crate::forecast::Forecast;
use crate::inputs::{Air, Parsed, Series};

pub const MEASUREMENT: &str = "forecast";
pub const ISSUED_MEASUREMENT: &str = "forecast_issued";
/// Observations older than this before the issue are not stored.
const KEEP_PAST_H: i64 = 48;
const KEEP_AHEAD_H: i64 = 72;

fn escape_tag(s: &str) -> String {
    s.chars().flat_map(|c| if matches!(c, ',' | '=' | ' ' | '\\') { vec!['\\', c] } else { vec![c] }).collect()
}

/// Line protocol (ns precision) for what an adapter parsed, stamped `issued_s`.
pub fn input_lines(site: &str, parsed: &Parsed, stamp_s: i64) -> String {
    let hour0 = stamp_s.div_euclid(3600) * 3600;
    let mut out = String::new();
    let mut line = |input: &str, provider: &str, issued: i64, t: i64, fields: String| {
        let lead = (t - hour0) / 3600;
        if (-KEEP_PAST_H..=KEEP_AHEAD_H).contains(&lead) {
            out.push_str(&format!(
                "{MEASUREMENT},site={},input={input},provider={},lead_h={lead} {fields},issued_s={issued}i {}\n",
                escape_tag(site),
                escape_tag(provider),
                stamp_s as i128 * 1_000_000_000
            ));
        }
    };
    match parsed {
        Parsed::Weather(s) => {
            for (t, a) in &s.hours {
                line("weather", &s.provider, s.issued_s, *t, format!("dry_bulb_c={},wet_bulb_c={}", a.dry_bulb_c, a.wet_bulb_c));
            }
        }
        Parsed::Carbon(s) => {
            for (t, g) in &s.hours {
                line("carbon", &s.provider, s.issued_s, *t, format!("intensity_g_per_kwh={g}"));
            }
        }
    }
    out
}

/// One stored `forecast` value, as read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue {
    pub input: String,
    pub provider: String,
    pub lead_h: i64,
    /// The line's timestamp, Unix s.
    pub stamp_s: i64,
    pub field: String,
    pub value: f64,
}

/// The newest issue of each input, rebuilt from stored values: a weather series and a carbon
/// series (either may be absent). Rows of an issue are those stamped within 30 minutes of its
/// newest stamp.
pub fn series_from_stored(rows: &[StoredValue], now_s: i64) -> (Option<Series<Air>>, Option<Series<f64>>) {
    let newest = |input: &str| rows.iter().filter(|r| r.input == input).map(|r| r.stamp_s).max();
    let pick = |input: &str| -> Vec<&StoredValue> {
        let Some(n) = newest(input) else { return Vec::new() };
        rows.iter().filter(|r| r.input == input && r.stamp_s >= n - 1800).collect()
    };
    let target = |r: &StoredValue| r.stamp_s.div_euclid(3600) * 3600 + r.lead_h * 3600;
    let issued = |rs: &[&StoredValue]| {
        let stamp = rs.iter().map(|r| r.stamp_s).max().unwrap_or(0);
        rs.iter().filter(|r| r.field == "issued_s").map(|r| r.value as i64).max().unwrap_or(stamp)
    };
    let provider = |rs: &[&StoredValue]| rs.first().map(|r| r.provider.clone()).unwrap_or_default();

    let w = pick("weather");
    let weather = (!w.is_empty()).then(|| {
        let mut by: BTreeMap<i64, BTreeMap<&str, f64>> = BTreeMap::new();
        for r in &w {
            by.entry(target(r)).or_default().insert(r.field.as_str(), r.value);
        }
        let hours = by
            .into_iter()
            .filter_map(|(t, f)| {
                let db = *f.get("dry_bulb_c")?;
                let air = match (f.get("wet_bulb_c"), f.get("rh_pct")) {
                    (Some(wb), _) => Air { dry_bulb_c: db, wet_bulb_c: wb.min(db) },
                    (None, Some(rh)) => Air::from_rh(db, *rh),
                    (None, None) => return None,
                };
                Some((t, air))
            })
            .collect();
        Series { provider: provider(&w), issued_s: issued(&w), ahead: true, hours }
    });
    let c = pick("carbon");
    let carbon = (!c.is_empty()).then(|| {
        let hours: Vec<(i64, f64)> = c.iter().filter(|r| r.field == "intensity_g_per_kwh").map(|r| (target(r), r.value)).collect::<BTreeMap<_, _>>().into_iter().collect();
        let ahead = hours.last().is_some_and(|(t, _)| *t >= now_s.div_euclid(3600) * 3600 + 3600);
        Series { provider: provider(&c), issued_s: issued(&c), ahead, hours }
    });
    (weather, carbon)
}

/// Line protocol keeping an issued forecast, stamped at its issue time.
pub fn issued_lines(f: &Forecast) -> String {
    let mut out = String::new();
    for h in &f.hours {
        let mut fields = format!(
            "pue={},pue_low={},pue_high={},co2_g_per_it_kwh={},grid_g_per_kwh={},it_kw={},dry_bulb_c={},wet_bulb_c={}",
            h.pue.value, h.pue.low, h.pue.high, h.co2_g_per_it_kwh.value, h.grid_g_per_kwh, h.it_kw, h.dry_bulb_c, h.wet_bulb_c
        );
        if let Some(w) = h.wue_l_per_kwh {
            fields.push_str(&format!(",wue_l_per_kwh={},wue_low={},wue_high={}", w.value, w.low, w.high));
        }
        out.push_str(&format!("{ISSUED_MEASUREMENT},site={},lead_h={} {fields} {}\n", escape_tag(&f.site), h.lead_h, f.issued_s as i128 * 1_000_000_000));
    }
    out
}
