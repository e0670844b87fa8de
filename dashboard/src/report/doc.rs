//! The document model: a document (the monthly report, a customer's statement) as a list of
//! blocks (headings, paragraphs, tables, charts) with its running head and metadata, which both
//! the HTML and the PDF render, so the two say the same things in the same order. Figures are
//! formatted for reading here; the exact numbers are in the JSON and CSV.

use super::MonthlyReport;
use super::charts;

#[derive(Debug, Clone)]
pub enum Block {
    Title(String),
    /// Small grey text: periods, sources, caveats.
    Meta(String),
    Heading(String),
    Para(String),
    /// A paragraph to stand out (the PUE label on the summary).
    Strong(String),
    /// First column is a label (left-aligned), the others figures (right-aligned).
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    List(Vec<String>),
    /// Index into `charts::all`.
    Chart(usize),
    PageBreak,
}

/// A document ready to lay out: what the PDF's running head, footer and metadata say, and
/// its blocks.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The title, also the PDF's metadata title.
    pub title: String,
    /// Top left of every PDF page, e.g. "dc5 · sustainability report 2026-10".
    pub running_head: String,
    /// Top right of every PDF page: the period's label.
    pub period: String,
    pub version: &'static str,
    pub generated_at: String,
    /// The PDF's document id: the same document over the same data gets the same bytes.
    pub document_id: String,
    pub blocks: Vec<Block>,
}

/// Whether column `c` holds figures (right-aligned) rather than names (left-aligned): every
/// cell that is not a dash starts like a number.
pub fn numeric_column(rows: &[Vec<String>], c: usize) -> bool {
    rows.iter().filter_map(|r| r.get(c)).filter(|s| s.as_str() != "–").all(|s| s.starts_with(|ch: char| ch.is_ascii_digit() || "+−-".contains(ch)))
}

/// Thousands separated by thin spaces, the decimals chosen by size so ratios keep 3 digits.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if !x.is_finite() => "–".into(),
        Some(x) => {
            let decimals = if x.abs() >= 1000.0 {
                0
            } else if x.abs() >= 10.0 {
                1
            } else {
                3
            };
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

/// A count ("GPUs …") without decimals, any other figure as [`num`].
fn count_or_num(label: &str, v: Option<f64>) -> String {
    match v {
        Some(c) if label.starts_with("GPUs") => format!("{c:.0}"),
        _ => num(v),
    }
}

pub(super) fn n(v: f64) -> String {
    num(Some(v))
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{}{:.1} %", if x >= 0.0 { "+" } else { "−" }, x.abs())).unwrap_or_else(|| "–".into())
}

pub(super) fn share(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1} %")).unwrap_or_else(|| "–".into())
}

pub(super) fn with_unit(label: &str, u: &str) -> String {
    if u.is_empty() { label.to_owned() } else { format!("{label} ({u})") }
}

pub(super) fn strings<const N: usize>(a: [&str; N]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// The monthly report as a document.
pub fn report(r: &MonthlyReport) -> Doc {
    Doc {
        title: format!("{} — sustainability report {}", r.meta.site, r.meta.month),
        running_head: format!("{} · sustainability report {}", r.meta.site, r.meta.month),
        period: r.meta.period.clone(),
        version: r.meta.kilowatch_version,
        generated_at: r.generated_at.clone(),
        document_id: format!("kilowatch-report-{}-{}", r.meta.site, r.meta.month),
        blocks: blocks(r),
    }
}

fn blocks(r: &MonthlyReport) -> Vec<Block> {
    use Block::*;
    let m = &r.meta;
    let mut b = vec![
        Title(format!("{} — sustainability report {}", m.site, m.month)),
        Meta(format!("{} · {} to {} · {} h · time zone {} · Kilowatch {} · generated {}", m.period, m.from, m.to, n(m.hours), m.timezone, m.kilowatch_version, r.generated_at)),
        Heading("Summary".into()),
        Strong(r.summary.pue_label.clone()),
        Table {
            head: strings(["figure", "this month", "last month", "change", "same month last year", "change"]),
            rows: r
                .summary
                .headlines
                .iter()
                .map(|h| vec![with_unit(h.label, h.unit), num(h.value), num(h.previous_month), pct(h.change_vs_previous_month_pct), num(h.same_month_last_year), pct(h.change_vs_last_year_pct)])
                .collect(),
        },
        Meta(format!("Changes are shown only against months at least {} % covered with an IT meter.", super::MIN_COMPARE_COVERAGE_PCT)),
        Chart(charts::PUE),
        PageBreak,
        Heading("KPIs: month, year to date, rolling 12 months".into()),
        Table {
            head: vec!["indicator".into(), covered("month", &r.windows.month), covered("year to date", &r.windows.ytd), covered("rolling 12 months", &r.windows.rolling12)],
            rows: r
                .kpi_table
                .iter()
                .map(|row| {
                    let f = |v: Option<f64>| if row.key == "pue_category" { v.map(|c| format!("{c:.0}")).unwrap_or_else(|| "–".into()) } else { num(v) };
                    vec![with_unit(&row.label, row.unit), f(row.month), f(row.ytd), f(row.rolling12)]
                })
                .collect(),
        },
        Meta(format!("Periods: {} · {} · {}. CO2 factor: {}.", r.windows.month.window, r.windows.ytd.window, r.windows.rolling12.window, r.methodology.carbon_factor)),
        Meta(official_note(r)),
        Heading("Daily energy, PUE and WUE".into()),
        Chart(charts::ENERGY),
        Chart(charts::WUE),
        Meta("Daily PUE and WUE are operational indicators; \"other\" is E_DC − IT − cooling − power losses.".into()),
    ];

    let c = &r.climate;
    let modes: Vec<String> = c.mode_hours.iter().map(|(k, v)| format!("{k} {} h", n(*v))).collect();
    b.extend([
        Heading("Cooling and climate".into()),
        Para(format!("Hours per cooling mode (averaged over {} units): {}.", c.units, if modes.is_empty() { "no cooling data".into() } else { modes.join(" · ") })),
        Strong(format!("Hours outside the ASHRAE recommended envelope: {} h (unit average).", n(c.hours_outside_ashrae))),
        Chart(charts::MODES),
        Chart(charts::WATER),
        Table {
            head: strings(["unit", "h outside", "too cold", "too hot", "too humid", "too dry", "h known"]),
            rows: c
                .ashrae_units
                .iter()
                .map(|u| vec![u.unit.clone(), n(u.hours_outside), n(u.hours_too_cold), n(u.hours_too_hot), n(u.hours_too_humid), n(u.hours_too_dry), n(u.hours_known)])
                .collect(),
        },
        Meta(c.envelope.into()),
    ]);

    let j = &r.jobs;
    b.extend([
        Heading("Who used the energy".into()),
        Para(format!(
            "E_IT {} kWh = jobs {} kWh ({}) + idle GPUs {} kWh ({}) + unattributed {} kWh ({}); {} jobs, {} with low-confidence attribution.",
            n(j.it_energy_kwh),
            n(j.jobs_it_energy_kwh),
            share(j.jobs_share_pct),
            n(j.idle_kwh),
            share(j.idle_share_pct),
            n(j.unattributed_kwh),
            share(j.unattributed_share_pct),
            j.job_count,
            j.low_confidence_jobs
        )),
    ]);
    if let Some(why) = &j.unavailable {
        b.push(Para(why.clone()));
    }
    b.push(Table {
        head: strings(["top jobs", "owner", "IT kWh", "facility kWh", "water L", "CO2 kg"]),
        rows: j
            .top_jobs
            .iter()
            .map(|x| vec![x.job.clone(), x.owner.clone(), n(x.it_energy_kwh), n(x.facility_energy_kwh), x.water_l.map(n).unwrap_or_else(|| "not metered".into()), n(x.co2_kg)])
            .collect(),
    });
    for (title, list) in [("top owners", &j.top_owners), ("top projects", &j.top_projects)] {
        b.push(Table {
            head: strings([title, "jobs", "IT kWh", "facility kWh", "water L", "share of E_IT"]),
            rows: list
                .iter()
                .map(|(k, v)| {
                    vec![
                        k.clone(),
                        v.jobs.to_string(),
                        n(v.it_energy_kwh),
                        n(v.facility_energy_kwh),
                        v.water_l.map(n).unwrap_or_else(|| "not metered".into()),
                        share(super::share(v.it_energy_kwh, j.it_energy_kwh)),
                    ]
                })
                .collect(),
        });
    }

    let g = &r.gpu_efficiency;
    b.push(Heading("GPU-aware IT efficiency (voluntary indicators)".into()));
    match (&g.month, &g.year_to_date) {
        (Some(m), Some(y)) => {
            type Get = fn(&kilowatch_accounting::gpu_efficiency::GpuEfficiency) -> Option<f64>;
            let rows: [(&str, Get); 8] = [
                ("GPUs with power readings", |x| Some(x.gpus as f64)),
                ("GPU-hours powered", |x| Some(x.gpu_hours_powered)),
                ("GPU-hours allocated to jobs", |x| Some(x.gpu_hours_allocated)),
                ("GPU-hours busy (mean utilization)", |x| x.gpu_hours_busy),
                ("allocated / powered (%)", |x| x.allocated_pct),
                ("busy / powered (%)", |x| x.busy_pct),
                ("idle energy share of E_IT (%)", |x| x.idle_energy_share_pct),
                ("IT energy per busy GPU-hour (kWh)", |x| x.it_kwh_per_busy_gpu_hour),
            ];
            b.push(Table {
                head: strings(["indicator", "month", "year to date"]),
                rows: rows.iter().map(|(l, get)| vec![(*l).to_owned(), count_or_num(l, get(m)), count_or_num(l, get(y))]).collect(),
            });
            b.push(Meta("No standard covers accelerator servers (ISO/IEC 30134-5 excludes them): these are Kilowatch's indicators, defined in docs/report.md. Busy = each hour's mean GPU utilization × the hour.".into()));
        }
        _ => b.push(Para(g.unavailable.clone().unwrap_or_else(|| "not available".into()))),
    }

    b.extend(super::tokens::blocks(&r.tokens));
    b.push(Heading("Alerts".into()));
    match &r.alerts.unavailable {
        Some(why) => b.push(Para(why.clone())),
        None => {
            b.push(Para(format!("{} alerts fired during the month.", r.alerts.total)));
            b.push(Table { head: strings(["severity", "alerts fired"]), rows: r.alerts.fired_by_severity.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect() });
            b.push(Meta(format!("Source: {}.", r.alerts.source)));
        }
    }

    let value = |i: &kilowatch_accounting::eu::Indicator| i.value.as_ref().map(|v| v.as_f64().map(|f| num(Some(f))).unwrap_or_else(|| v.to_string())).unwrap_or_else(|| "–".into());
    b.extend([
        Heading(format!("EU indicators (Delegated Regulation 2024/1364), {}", r.eu.period)),
        Table {
            head: strings(["Annex II indicator", "value", "unit", "status"]),
            rows: r.eu.annex_ii.iter().map(|i| vec![i.name.to_owned(), value(i), i.unit.to_owned(), i.status.to_owned()]).collect(),
        },
        Table { head: strings(["Annex III KPI", "value", "unit", "status"]), rows: r.eu.annex_iii.iter().map(|i| vec![i.name.to_owned(), value(i), i.unit.to_owned(), i.status.to_owned()]).collect() },
        Meta("Year to date: 1 January to the end of the report's month. The yearly filing uses the whole calendar year.".into()),
    ]);

    b.extend(data_quality(&r.data_quality));

    let me = &r.methodology;
    b.extend([
        Heading("Methodology".into()),
        List(me.formulas.iter().map(|f| (*f).to_owned()).collect()),
        Para(format!("PUE category {} · time zone {} · carbon factor {}.", me.pue_category.map(|c| c.to_string()).unwrap_or_else(|| "–".into()), me.timezone, me.carbon_factor)),
        Para(format!("{}; {}.", me.psychrometrics, me.daily_figures)),
        Meta(format!("Measurement points: {}", me.measurement_points.join("; "))),
    ]);
    b
}

/// A KPI column's heading, with the share of its window that was metered when under 100 %.
fn covered(name: &str, k: &kilowatch_accounting::kpi::Kpi) -> String {
    let c = k.data_quality.coverage_pct;
    if c < 100.0 { format!("{name} ({} % metered)", num(Some(c))) } else { name.to_owned() }
}

/// Whether the rolling 12 months is the official annual figure: only when metered at least
/// `accounting.official_min_coverage_pct` of its window.
fn official_note(r: &MonthlyReport) -> String {
    let (c, min) = (r.windows.rolling12.data_quality.coverage_pct, r.methodology.official_min_coverage_pct);
    if r.windows.rolling12.official_at(min) {
        format!("The rolling 12 months is the official annual figure (EN 50600-4-2): {} % of its window metered.", num(Some(c)))
    } else {
        format!(
            "The rolling 12 months is not an official annual figure: only {} % of its window was metered (official needs {} %, accounting.official_min_coverage_pct). The year to date covers {} %.",
            num(Some(c)),
            num(Some(min)),
            num(Some(r.windows.ytd.data_quality.coverage_pct))
        )
    }
}

/// The data-quality section of a document over a window: coverage, every meter, the faults.
pub(super) fn data_quality(q: &kilowatch_accounting::kpi::DataQuality) -> Vec<Block> {
    let mut b = vec![
        Block::Heading("Data quality".into()),
        Block::Para(format!(
            "Coverage {} % (lowest key meter) · estimated meters {} · counter resets {} · missing meters: {}",
            n(q.coverage_pct),
            q.estimated_meters,
            q.counter_resets,
            if q.missing_meters.is_empty() { "none".into() } else { q.missing_meters.join(", ") }
        )),
        Block::Table {
            head: strings(["meter", "role", "value", "coverage %", "readings", "resets", "max gap s"]),
            rows: q
                .meters
                .iter()
                .map(|m| vec![m.meter.clone(), m.role.clone(), format!("{} {}", n(m.value), m.unit), n(m.coverage_pct), m.readings.to_string(), m.counter_resets.to_string(), n(m.max_gap_s)])
                .collect(),
        },
    ];
    b.extend(q.faults.iter().map(|f| Block::Para(format!("⚠ {f}"))));
    b
}
