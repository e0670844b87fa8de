//! Charts for the HTML report as inline SVG: daily PUE and WUE, stacked daily energy, hours per
//! cooling mode against outside temperature, water per day against wet bulb.
//!
//! Drawn by hand for now (plain SVG, deterministic text, DejaVu Sans named for print); moving
//! to `plotters` with the shipped font is listed as open work in docs/report.md.

use std::fmt::Write as _;

use super::MonthlyReport;

const W: f64 = 680.0;
const H: f64 = 230.0;
const L: f64 = 56.0; // left margin (axis labels)
const R: f64 = 56.0; // right margin (overlay axis)
const T: f64 = 28.0;
const B: f64 = 40.0;
const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f"];

struct Overlay<'a> {
    name: &'a str,
    unit: &'a str,
    values: Vec<Option<f64>>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|m| *m >= v).unwrap_or(10.0 * p)
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.01).max(1e-6);
    // Quantities that cannot be negative keep a floor at 0 rather than a "-0.1" tick.
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    ((lo - pad).max(floor), hi + pad)
}

fn head(s: &mut String, title: &str) {
    let _ = write!(s, "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"10\"><text x=\"{L}\" y=\"16\" font-size=\"12\" font-weight=\"bold\">{}</text>", esc(title));
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// x axis with day-of-month ticks every few days, and the frame.
fn x_axis(s: &mut String, labels: &[String]) {
    let n = labels.len().max(1) as f64;
    let bw = (W - L - R) / n;
    let _ = write!(s, "<rect x=\"{L}\" y=\"{T}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>", W - L - R, H - T - B);
    for (i, l) in labels.iter().enumerate() {
        if i % 5 == 0 || i + 1 == labels.len() {
            let x = L + bw * (i as f64 + 0.5);
            let _ = write!(s, "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", H - B + 14.0, esc(l.get(8..).unwrap_or(l)));
        }
    }
    let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">day of month</text>", L + (W - L - R) / 2.0, H - 6.0);
}

fn y_axis(s: &mut String, lo: f64, hi: f64, unit: &str, right: bool) {
    let x = if right { W - R + 4.0 } else { L - 4.0 };
    let anchor = if right { "start" } else { "end" };
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = H - B - (H - T - B) * k as f64 / 4.0;
        let decimals = if (hi - lo) < 0.5 { 3 } else if (hi - lo) < 20.0 { 1 } else { 0 };
        let _ = write!(s, "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{v:.*}</text>", y + 3.0, decimals);
        if !right {
            let _ = write!(s, "<line x1=\"{L}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>", W - R);
        }
    }
    let _ = write!(s, "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>", T - 4.0, esc(unit));
}

fn polyline(s: &mut String, values: &[Option<f64>], lo: f64, hi: f64, color: &str) {
    let n = values.len().max(1) as f64;
    let bw = (W - L - R) / n;
    let mut pts = String::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => {
                let y = H - B - (H - T - B) * (v - lo) / (hi - lo);
                let _ = write!(pts, "{:.1},{y:.1} ", L + bw * (i as f64 + 0.5));
            }
            // A day without a value breaks the line rather than drawing through it.
            _ if !pts.is_empty() => {
                let _ = write!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>", pts.trim_end());
                pts.clear();
            }
            _ => {}
        }
    }
    if !pts.is_empty() {
        let _ = write!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>", pts.trim_end());
    }
}

fn legend(s: &mut String, items: &[(&str, &str)]) {
    let mut x = W - R;
    for (name, color) in items.iter().rev() {
        x -= 8.0 + 6.2 * name.chars().count() as f64 + 14.0;
        let _ = write!(s, "<rect x=\"{x:.1}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"17\">{}</text>", x + 13.0, esc(name));
    }
}

fn line_chart(title: &str, unit: &str, labels: &[String], values: Vec<Option<f64>>) -> String {
    let mut s = String::new();
    head(&mut s, title);
    let (lo, hi) = range(values.iter().flatten().copied());
    y_axis(&mut s, lo, hi, unit, false);
    x_axis(&mut s, labels);
    polyline(&mut s, &values, lo, hi, COLORS[0]);
    s.push_str("</svg>\n");
    s
}

fn stacked_chart(title: &str, unit: &str, labels: &[String], series: &[(&str, Vec<f64>)], overlay: Option<Overlay>) -> String {
    let mut s = String::new();
    head(&mut s, title);
    let totals: Vec<f64> = (0..labels.len()).map(|i| series.iter().map(|(_, v)| v.get(i).copied().unwrap_or(0.0).max(0.0)).sum()).collect();
    let hi = nice_max(totals.iter().copied().fold(0.0, f64::max));
    y_axis(&mut s, 0.0, hi, unit, false);
    let bw = (W - L - R) / labels.len().max(1) as f64;
    for i in 0..labels.len() {
        let mut y = H - B;
        for (k, (_, v)) in series.iter().enumerate() {
            let h = (H - T - B) * v.get(i).copied().unwrap_or(0.0).max(0.0) / hi;
            y -= h;
            let _ = write!(s, "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>", L + bw * i as f64 + 1.0, (bw - 2.0).max(0.5), COLORS[k % COLORS.len()]);
        }
    }
    let mut items: Vec<(&str, &str)> = series.iter().enumerate().map(|(k, (n, _))| (*n, COLORS[k % COLORS.len()])).collect();
    if let Some(o) = &overlay {
        let (lo, ohi) = range(o.values.iter().flatten().copied());
        y_axis(&mut s, lo, ohi, o.unit, true);
        polyline(&mut s, &o.values, lo, ohi, "#d62728");
        items.push((o.name, "#d62728"));
    }
    legend(&mut s, &items);
    x_axis(&mut s, labels);
    s.push_str("</svg>\n");
    s
}

fn day_labels(r: &MonthlyReport) -> Vec<String> {
    r.daily.iter().map(|d| d.date.clone()).collect()
}

pub fn summary_charts(r: &MonthlyReport) -> Vec<String> {
    vec![line_chart("Daily PUE (operational indicator)", "PUE", &day_labels(r), r.daily.iter().map(|d| d.pue).collect())]
}

pub fn daily_charts(r: &MonthlyReport) -> Vec<String> {
    let labels = day_labels(r);
    let col = |f: fn(&super::Day) -> f64| r.daily.iter().map(f).collect::<Vec<f64>>();
    vec![
        stacked_chart("Daily energy E_DC", "kWh", &labels, &[("IT", col(|d| d.it_energy_kwh)), ("cooling", col(|d| d.cooling_kwh)), ("losses", col(|d| d.power_losses_kwh)), ("other", col(|d| d.other_kwh))], None),
        line_chart("Daily WUE (operational indicator)", "L/kWh", &labels, r.daily.iter().map(|d| d.wue_l_per_kwh).collect()),
    ]
}

pub fn climate_charts(r: &MonthlyReport) -> Vec<String> {
    let c = &r.climate;
    let labels: Vec<String> = c.days.iter().map(|d| d.date.clone()).collect();
    let modes: Vec<&String> = c.mode_hours.keys().collect();
    let series: Vec<(&str, Vec<f64>)> = modes.iter().map(|m| (m.as_str(), c.days.iter().map(|d| d.mode_hours.get(*m).copied().unwrap_or(0.0)).collect())).collect();
    let temp = Overlay { name: "outside °C", unit: "°C", values: c.days.iter().map(|d| d.outside_temp_mean_c).collect() };
    let water: Vec<(&str, Vec<f64>)> = vec![("water", r.daily.iter().map(|d| d.water_m3).collect())];
    let wb = Overlay { name: "wet bulb °C", unit: "°C", values: c.days.iter().map(|d| d.wet_bulb_mean_c).collect() };
    vec![stacked_chart("Hours per cooling mode and outside temperature", "h", &labels, &series, Some(temp)), stacked_chart("Water per day and wet bulb", "m³", &labels, &water, Some(wb))]
}
