//! The printable HTML report (A4, print CSS). Figures are formatted for reading here; the exact
//! numbers are in the JSON and CSV.

use std::fmt::Write as _;

use super::MonthlyReport;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Thousands separated by thin spaces, the decimals chosen by size so ratios keep 3 digits.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if !x.is_finite() => "–".into(),
        Some(x) => {
            let decimals = if x.abs() >= 1000.0 { 0 } else if x.abs() >= 10.0 { 1 } else { 3 };
            let s = format!("{:.*}", decimals, x.abs());
            let (int, frac) = s.split_once('.').map(|(a, b)| (a.to_owned(), format!(".{b}"))).unwrap_or((s.clone(), String::new()));
            let mut grouped = String::new();
            for (i, c) in int.chars().enumerate() {
                if i > 0 && (int.len() - i) % 3 == 0 {
                    grouped.push('\u{202f}');
                }
                grouped.push(c);
            }
            format!("{}{grouped}{frac}", if x < 0.0 { "−" } else { "" })
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{}{:.1} %", if x >= 0.0 { "+" } else { "−" }, x.abs())).unwrap_or_else(|| "–".into())
}

const CSS: &str = r#"
@page { size: A4; margin: 18mm 14mm 18mm 14mm; }
body { font-family: "DejaVu Sans", sans-serif; font-size: 10pt; color: #111; max-width: 182mm; margin: auto; }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 12.5pt; border-bottom: 1px solid #888; margin-top: 7mm; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; } th, td { border-bottom: 1px solid #ddd; padding: 1mm 1.5mm; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f0f0f0; }
.meta { color: #444; font-size: 9pt; } .chart { width: 100%; height: auto; page-break-inside: avoid; }
section { page-break-inside: avoid; } .page { page-break-after: always; }
@media print { a { color: inherit; text-decoration: none; } }
"#;

pub fn html(r: &MonthlyReport) -> String {
    let m = &r.meta;
    let mut s = String::new();
    let title = format!("{} — sustainability report {}", esc(&m.site), esc(&m.month));
    let _ = write!(s, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{CSS}</style></head><body>\n");
    let _ = write!(s, "<div class=\"page\"><h1>{title}</h1><p class=\"meta\">{} · {} to {} · {} h · time zone {} · Kilowatch {} · generated {}</p>\n", esc(&m.period), esc(&m.from), esc(&m.to), num(Some(m.hours)), esc(&m.timezone), m.kilowatch_version, esc(&r.generated_at));
    let _ = write!(s, "<h2>Summary</h2><p><b>{}</b></p><table><tr><th>figure</th><th>this month</th><th>last month</th><th>change</th><th>same month last year</th><th>change</th></tr>\n", esc(&r.summary.pue_label));
    for h in &r.summary.headlines {
        let _ = writeln!(s, "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(h.label), unit(h.unit), num(h.value), num(h.previous_month), pct(h.change_vs_previous_month_pct), num(h.same_month_last_year), pct(h.change_vs_last_year_pct));
    }
    s.push_str("</table>\n");
    for chart in super::charts::summary_charts(r) {
        s.push_str(&chart);
    }
    s.push_str("</div>\n");

    let _ = write!(s, "<section><h2>KPIs</h2><table><tr><th>indicator</th><th>month</th><th>year to date</th><th>rolling 12 months</th></tr>\n");
    for row in &r.kpi_table {
        let f = |v: Option<f64>| if row.key == "pue_category" { v.map(|c| format!("{c:.0}")).unwrap_or_else(|| "–".into()) } else { num(v) };
        let _ = writeln!(s, "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&row.label), unit(row.unit), f(row.month), f(row.ytd), f(row.rolling12));
    }
    let _ = write!(s, "</table><p class=\"meta\">Periods: {} · {} · {}. CO2 factor: {}.</p></section>\n", esc(&r.windows.month.window), esc(&r.windows.ytd.window), esc(&r.windows.rolling12.window), esc(&r.methodology.carbon_factor));

    s.push_str("<section><h2>Daily energy, PUE and WUE</h2>");
    for chart in super::charts::daily_charts(r) {
        s.push_str(&chart);
    }
    s.push_str("<p class=\"meta\">Daily PUE and WUE are operational indicators.</p></section>\n");

    let c = &r.climate;
    let _ = write!(s, "<section><h2>Cooling and climate</h2><p>Hours per cooling mode (averaged over {} units): ", c.units);
    let modes: Vec<String> = c.mode_hours.iter().map(|(k, v)| format!("{} {} h", esc(k), num(Some(*v)))).collect();
    s.push_str(&modes.join(" · "));
    let _ = write!(s, ". Hours outside the ASHRAE recommended envelope: <b>{} h</b> (unit average).</p>", num(Some(c.hours_outside_ashrae)));
    for chart in super::charts::climate_charts(r) {
        s.push_str(&chart);
    }
    s.push_str("<table><tr><th>unit</th><th>h outside</th><th>too cold</th><th>too hot</th><th>too humid</th><th>too dry</th><th>h known</th></tr>");
    for u in &c.ashrae_units {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&u.unit), num(Some(u.hours_outside)), num(Some(u.hours_too_cold)), num(Some(u.hours_too_hot)), num(Some(u.hours_too_humid)), num(Some(u.hours_too_dry)), num(Some(u.hours_known)));
    }
    let _ = write!(s, "</table><p class=\"meta\">{}</p></section>\n", esc(c.envelope));

    let j = &r.jobs;
    let _ = write!(s, "<section><h2>Who used the energy</h2><p>E_IT {} kWh = jobs {} kWh ({}) + idle GPUs {} kWh ({}) + unattributed {} kWh ({}); {} jobs.</p>", num(Some(j.it_energy_kwh)), num(Some(j.jobs_it_energy_kwh)), share(j.jobs_share_pct), num(Some(j.idle_kwh)), share(j.idle_share_pct), num(Some(j.unattributed_kwh)), share(j.unattributed_share_pct), j.job_count);
    if let Some(why) = &j.unavailable {
        let _ = write!(s, "<p>{}</p>", esc(why));
    }
    s.push_str("<table><tr><th>job</th><th>owner</th><th>IT kWh</th><th>facility kWh</th><th>water L</th><th>CO2 kg</th></tr>");
    for x in &j.top_jobs {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&x.job), esc(&x.owner), num(Some(x.it_energy_kwh)), num(Some(x.facility_energy_kwh)), num(Some(x.water_l)), num(Some(x.co2_kg)));
    }
    s.push_str("</table>");
    for (title, list) in [("owner", &j.top_owners), ("project", &j.top_projects)] {
        let _ = write!(s, "<table><tr><th>{title}</th><th>jobs</th><th>IT kWh</th><th>facility kWh</th><th>water L</th></tr>");
        for (k, v) in list {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(k), v.jobs, num(Some(v.it_energy_kwh)), num(Some(v.facility_energy_kwh)), num(Some(v.water_l)));
        }
        s.push_str("</table>");
    }
    s.push_str("</section>\n");

    s.push_str("<section><h2>Alerts</h2>");
    match &r.alerts.unavailable {
        Some(why) => {
            let _ = write!(s, "<p>{}</p>", esc(why));
        }
        None => {
            let parts: Vec<String> = r.alerts.fired_by_severity.iter().map(|(k, v)| format!("{} {v}", esc(k))).collect();
            let _ = write!(s, "<p>{} alerts fired: {}</p>", r.alerts.total, if parts.is_empty() { "none".into() } else { parts.join(" · ") });
        }
    }
    s.push_str("</section>\n");

    let _ = write!(s, "<section><h2>EU indicators (Delegated Regulation 2024/1364), {}</h2><table><tr><th>indicator</th><th>value</th><th>unit</th><th>status</th></tr>", esc(&r.eu.period));
    for i in r.eu.annex_ii.iter().chain(&r.eu.annex_iii) {
        let v = i.value.as_ref().map(|v| v.as_f64().map(|f| num(Some(f))).unwrap_or_else(|| esc(&v.to_string()))).unwrap_or_else(|| "–".into());
        let _ = write!(s, "<tr><td>{}</td><td>{v}</td><td>{}</td><td>{}</td></tr>", esc(i.name), esc(i.unit), esc(i.status));
    }
    s.push_str("</table></section>\n");

    let q = &r.data_quality;
    let _ = write!(s, "<section><h2>Data quality</h2><p>Coverage {} % (lowest key meter) · estimated meters {} · counter resets {} · missing meters: {}</p>", num(Some(q.coverage_pct)), q.estimated_meters, q.counter_resets, if q.missing_meters.is_empty() { "none".into() } else { esc(&q.missing_meters.join(", ")) });
    s.push_str("<table><tr><th>meter</th><th>role</th><th>value</th><th>coverage %</th><th>readings</th><th>resets</th><th>max gap s</th></tr>");
    for m in &q.meters {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&m.meter), esc(&m.role), num(Some(m.value)), m.unit, num(Some(m.coverage_pct)), m.readings, m.counter_resets, num(Some(m.max_gap_s)));
    }
    s.push_str("</table>");
    for f in &q.faults {
        let _ = write!(s, "<p>⚠ {}</p>", esc(f));
    }
    s.push_str("</section>\n");

    let me = &r.methodology;
    s.push_str("<section><h2>Methodology</h2><ul>");
    for f in &me.formulas {
        let _ = write!(s, "<li>{}</li>", esc(f));
    }
    let _ = write!(s, "</ul><p>PUE category {} · time zone {} · carbon factor {} · {} · {}</p><p class=\"meta\">Measurement points: {}</p></section>\n", me.pue_category.map(|c| c.to_string()).unwrap_or_else(|| "–".into()), esc(&me.timezone), esc(&me.carbon_factor), esc(me.psychrometrics), esc(me.daily_figures), esc(&me.measurement_points.join("; ")));
    s.push_str("</body></html>\n");
    s
}

fn unit(u: &str) -> String {
    if u.is_empty() { String::new() } else { format!("({})", esc(u)) }
}

fn share(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1} %")).unwrap_or_else(|| "–".into())
}
