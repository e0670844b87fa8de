//! A customer's statement as a document of the one model (`doc::Doc`): the same renderers as
//! the monthly report lay it out. The hourly table (each hour's PUE, WUE and carbon factor) is
//! in the JSON and CSV; the PDF and HTML show it summed per day (a month) or month (a year).

use super::Statement;
use super::charts;
use super::doc::{Block, Doc, n, num, share, strings};

fn opt(v: Option<f64>, absent: &str) -> String {
    v.map(n).unwrap_or_else(|| absent.to_owned())
}

pub fn doc(s: &Statement) -> Doc {
    use Block::*;
    let m = &s.meta;
    let t = &s.totals;
    let site = &s.site;
    let title = format!("{} — energy statement for {}, {}", m.site, m.owner, m.period_key);
    let mut b = vec![
        Title(title.clone()),
        Meta(format!("{} · {} to {} · {} h · time zone {} · Kilowatch {} · generated {}", m.period, m.from, m.to, n(m.hours), m.timezone, m.kilowatch_version, s.generated_at)),
        Heading("Your footprint".into()),
        Para(format!(
            "{} jobs used {} kWh of IT energy ({} of the site's metered IT energy), {} kWh with the facility's share (cooling, power conversion), {} of water and {} kg CO2 (location-based).",
            t.rollup.jobs,
            n(t.rollup.it_energy_kwh),
            share(t.share_of_site_it_pct),
            n(t.rollup.facility_energy_kwh),
            t.rollup.water_l.map(|w| format!("{} L", n(w))).unwrap_or_else(|| "an unmetered amount".into()),
            n(t.rollup.co2_kg)
        )),
        Table {
            head: strings(["figure", "value", "unit"]),
            rows: vec![
                vec!["GPU energy".into(), n(t.rollup.gpu_energy_kwh), "kWh".into()],
                vec!["IT energy (GPUs + share of node)".into(), n(t.rollup.it_energy_kwh), "kWh".into()],
                vec!["facility energy (IT × each hour's PUE)".into(), n(t.rollup.facility_energy_kwh), "kWh".into()],
                vec!["water (IT × each hour's WUE)".into(), opt(t.rollup.water_l, "not metered"), "L".into()],
                vec!["CO2, location-based".into(), n(t.rollup.co2_kg), "kg".into()],
                vec!["CO2, market-based".into(), opt(t.co2_market_kg, "not available"), "kg".into()],
            ],
        },
        Heading("The site's figures for the period".into()),
        Strong(site.pue_label.clone()),
        Table {
            head: strings(["site figure", "value", "unit"]),
            rows: vec![
                vec![format!("PUE{}", site.pue_category.map(|c| format!(" (category {c})")).unwrap_or_default()), num(site.pue), String::new()],
                vec!["WUE".into(), num(site.wue_l_per_kwh), "L/kWh".into()],
                vec!["metered IT energy E_IT".into(), n(site.it_energy_kwh), "kWh".into()],
                vec!["facility energy E_DC".into(), n(site.facility_energy_kwh), "kWh".into()],
                vec!["water WIN".into(), opt(site.water_m3, "not metered"), "m3".into()],
                vec!["market-based factor".into(), opt(site.market_factor_kg_per_kwh, "not available"), "kg/kWh".into()],
            ],
        },
        Meta(format!(
            "{} Carbon factor: {}.",
            if site.official { "A calendar year: the official PUE and WUE period." } else { "A month: PUE and WUE are operational indicators; the official figures are the calendar year's." },
            s.methodology.carbon_factor
        )),
        Heading(format!("Per {}", s.breakdown_unit)),
        Chart(0),
        Table {
            head: strings([s.breakdown_unit, "IT kWh", "facility kWh", "PUE", "water L", "WUE L/kWh", "CO2 kg"]),
            rows: s.breakdown.iter().map(|d| vec![d.label.clone(), n(d.it_energy_kwh), n(d.facility_energy_kwh), num(d.pue), opt(d.water_l, "–"), num(d.wue_l_per_kwh), n(d.co2_location_kg)]).collect(),
        },
        Meta(format!("PUE and WUE here are your facility energy and water over your IT energy: each hour's figure weighted by your energy in it. The hourly table ({} hours with energy of yours, each with its PUE, WUE and carbon factor) is in the CSV and JSON.", s.hourly.len())),
        Heading("Per project".into()),
        Table {
            head: strings(["project", "jobs", "GPU kWh", "IT kWh", "facility kWh", "water L", "CO2 kg", "CO2 market kg"]),
            rows: s
                .projects
                .iter()
                .map(|(p, x)| vec![p.clone(), x.rollup.jobs.to_string(), n(x.rollup.gpu_energy_kwh), n(x.rollup.it_energy_kwh), n(x.rollup.facility_energy_kwh), opt(x.rollup.water_l, "not metered"), n(x.rollup.co2_kg), opt(x.co2_market_kg, "–")])
                .collect(),
        },
        Heading("Per job".into()),
        Table {
            head: strings(["job", "project", "start (UTC)", "GPUs", "GPU kWh", "IT kWh", "facility kWh", "water L", "CO2 kg"]),
            rows: s
                .jobs
                .iter()
                .map(|j| {
                    let x = &j.job;
                    let project = if x.project.is_empty() { x.owner.clone() } else { x.project.clone() };
                    let flag = if x.confidence == "low" { " *" } else { "" };
                    vec![
                        format!("{}{flag}", x.job),
                        project,
                        x.start.get(5..16).unwrap_or(&x.start).replace('T', " "),
                        x.gpus.len().to_string(),
                        n(x.gpu_energy_kwh),
                        n(x.it_energy_kwh),
                        n(x.facility_energy_kwh),
                        opt(x.water_l, "–"),
                        n(x.co2_kg),
                    ]
                })
                .collect(),
        },
        Meta("* low confidence: shorter than its GPU counters' update period, or integrated from power. Start times are month-day hour:minute in UTC. Each job's figures equal GET /api/v1/jobs for the same period; its market-based CO2 and GPU list are in the CSV and JSON.".into()),
    ];
    b.extend(super::tokens::blocks(&s.tokens));
    let q = &s.data_quality;
    b.extend([
        Heading("Data quality".into()),
        Para(format!(
            "Coverage {} % (lowest key meter of the site) · IT energy category {} · estimated meters {} · counter resets {} · missing meters: {} · low-confidence jobs {} · estimated jobs {}",
            n(q.coverage_pct),
            q.it_category.map(|c| c.to_string()).unwrap_or_else(|| "–".into()),
            q.estimated_meters,
            q.counter_resets,
            if q.missing_meters.is_empty() { "none".into() } else { q.missing_meters.join(", ") },
            q.low_confidence_jobs,
            q.estimated_jobs
        )),
    ]);
    if q.notes.is_empty() {
        b.push(Para("No data faults over the period.".into()));
    }
    b.extend(q.notes.iter().map(|f| Para(format!("⚠ {f}"))));
    let me = &s.methodology;
    b.extend([
        Heading("Methodology".into()),
        List(me.formulas.iter().map(|f| (*f).to_owned()).collect()),
        Para(format!("Location-based factor: {}. Market-based: {}. Time zone {}.", me.carbon_factor, me.market_based, me.timezone)),
    ]);
    Doc {
        title,
        running_head: format!("{} · energy statement · {}", m.site, m.owner),
        period: m.period.clone(),
        version: m.kilowatch_version,
        generated_at: s.generated_at.clone(),
        document_id: format!("kilowatch-statement-{}-{}-{}", m.site, m.owner, m.period_key),
        blocks: b,
    }
}

/// The statement's one chart, per day or month: IT energy and the facility's share stacked,
/// the PUE they imply as a line.
pub fn chart(s: &Statement) -> Result<Vec<charts::Chart>, super::ReportError> {
    charts::stacked_with_line(
        &format!("Your energy per {} and its PUE", s.breakdown_unit),
        if s.breakdown_unit == "month" { "month of the year" } else { "day of month" },
        s.breakdown.len(),
        "kWh",
        vec![("IT", s.breakdown.iter().map(|d| d.it_energy_kwh).collect()), ("facility share", s.breakdown.iter().map(|d| (d.facility_energy_kwh - d.it_energy_kwh).max(0.0)).collect())],
        ("PUE", "PUE", s.breakdown.iter().map(|d| d.pue).collect()),
    )
    .map(|c| vec![c])
}
