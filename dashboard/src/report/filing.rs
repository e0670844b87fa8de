//! The yearly EU filing as a document of the one model (`doc::Doc`): the same renderers as the
//! monthly report and the statements lay it out. Every item of Annexes I–III with its value,
//! unit, status and source; the voluntary GPU indicators; the thresholds judged; data quality.

use kilowatch_accounting::eu::filing::{Filing, Items, Status, status_counts};

use super::doc::{Block, Doc, n, num, strings};

fn value(i: &kilowatch_accounting::eu::filing::Item) -> String {
    match &i.value {
        None => "missing".into(),
        Some(serde_json::Value::Array(a)) if a.is_empty() => "none".into(),
        Some(serde_json::Value::Array(a)) => a.iter().map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join(", "),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.as_f64().map(|f| num(Some(f))).unwrap_or_else(|| v.to_string()),
    }
}

fn table(items: &Items, with_unit: bool) -> Block {
    let mut head = strings(["code", "item", "value"]);
    if with_unit {
        head.push("unit".into());
    }
    head.extend(strings(["status", "% of year metered"]));
    Block::Table {
        head,
        rows: items
            .0
            .iter()
            .map(|i| {
                let mut r = vec![i.code.to_owned(), i.name.to_owned(), if i.status == Status::Missing { "–".into() } else { value(i) }];
                if with_unit {
                    r.push(i.unit.to_owned());
                }
                r.push(i.status.as_str().to_owned());
                r.push(if i.coverage_pct.is_some() { num(i.coverage_pct) } else { "–".into() });
                r
            })
            .collect(),
    }
}

/// Where each item comes from: meters, configuration key or what is missing.
fn sources(items: &Items) -> Block {
    Block::List(items.0.iter().map(|i| format!("{}: {}{}", i.code, i.source, if i.meters.is_empty() { String::new() } else { format!(" [{}]", i.meters.join(", ")) })).collect())
}

pub fn doc(f: &Filing) -> Doc {
    use Block::*;
    let m = &f.meta;
    let title = format!("{} — EU data centre filing {}", m.site, m.year);
    let counts = status_counts(f);
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let mut b = vec![
        Title(title.clone()),
        Meta(format!("{} · {} to {} · {} h · time zone {} · Kilowatch {} · generated {}", m.period, m.from, m.to, n(m.hours), m.timezone, m.kilowatch_version, f.generated_at)),
        Para(format!("{}. Due by {}.", m.regulation, m.due)),
        Strong(format!(
            "{} items metered, {} estimated, {} partial, {} declared, {} missing. Metered coverage of the year: {} %{}.",
            count("metered"),
            count("estimated"),
            count("partial"),
            count("declared"),
            count("missing"),
            n(m.coverage_pct),
            if m.complete { "" } else { " — the year is not wholly metered: figures cover its metered part only" }
        )),
        Heading("Annex I — the data centre".into()),
        table(&f.annex_i, false),
        Heading("Annex II — key performance indicators".into()),
        table(&f.annex_ii, true),
        Meta("Missing items are absent, never zero: the sources below say what would give each.".into()),
        Heading("Annex III — sustainability indicators".into()),
        table(&f.annex_iii, true),
        Meta(format!("PUE category {} (1 = IT energy at UPS outputs).", m.pue_category.map(|c| c.to_string()).unwrap_or_else(|| "–".into()))),
        Heading("Beside the annexes (not filed)".into()),
        table(&f.outside_annexes, true),
        Heading("Thresholds".into()),
    ];
    if f.thresholds.checks.is_empty() {
        b.push(Para("No jurisdiction's thresholds configured (eu.thresholds, [[eu.threshold]]).".into()));
    } else {
        let checks = &f.thresholds.checks;
        b.push(Table {
            head: strings(["#", "rule", "limit", "figure", "result"]),
            rows: checks.iter().enumerate().map(|(k, c)| vec![format!("{}", k + 1), c.name.clone(), c.limit.clone(), num(c.figure), c.status.to_owned()]).collect(),
        });
        b.push(List(checks.iter().enumerate().map(|(k, c)| format!("{}: {}", k + 1, c.reason)).collect()));
        let mut sources: Vec<&str> = checks.iter().map(|c| c.source.as_str()).collect();
        sources.dedup();
        b.push(Meta(format!("Sources: {}. Details and what is not modelled: docs/filing.md.", sources.join("; "))));
    }
    b.push(Heading("Annex of voluntary indicators: GPU-aware IT efficiency".into()));
    match &f.voluntary.gpu_efficiency {
        Some(g) => {
            let rows: [(&str, Option<f64>); 8] = [
                ("GPUs with power readings", Some(g.gpus as f64)),
                ("GPU-hours powered", Some(g.gpu_hours_powered)),
                ("GPU-hours allocated to jobs", Some(g.gpu_hours_allocated)),
                ("GPU-hours busy (mean utilization)", g.gpu_hours_busy),
                ("allocated / powered (%)", g.allocated_pct),
                ("busy / powered (%)", g.busy_pct),
                ("idle energy share of EIT (%)", g.idle_energy_share_pct),
                ("IT energy per busy GPU-hour (kWh)", g.it_kwh_per_busy_gpu_hour),
            ];
            b.push(Table {
                head: strings(["indicator", "year"]),
                rows: rows.iter().map(|(l, v)| vec![(*l).to_owned(), if l.starts_with("GPUs") { v.map(|c| format!("{c:.0}")).unwrap_or_else(|| "–".into()) } else { num(*v) }]).collect(),
            });
        }
        None => b.push(Para(f.voluntary.unavailable.clone().unwrap_or_else(|| "not available".into()))),
    }
    b.push(Meta(f.voluntary.note.into()));
    b.extend([Heading("Sources of every item".into()), sources(&f.annex_i), sources(&f.annex_ii), sources(&f.annex_iii)]);
    b.extend(super::doc::data_quality(&f.data_quality));
    if !f.notes.is_empty() {
        b.extend([Heading("Notes on the filed figures".into()), List(f.notes.clone())]);
    }
    b.extend([
        Heading("Methodology and evidence".into()),
        List(f.methodology.iter().map(|x| (*x).to_owned()).collect()),
        Meta(format!("Evidence bundle: {} (GET /api/v1/eu-filing/{}/evidence.tar, or kilowatch eu-filing --year {} --out DIR).", f.evidence_files.join(", "), m.year, m.year)),
    ]);
    Doc {
        title,
        running_head: format!("{} · EU filing {}", m.site, m.year),
        period: m.period.clone(),
        version: m.kilowatch_version,
        generated_at: f.generated_at.clone(),
        document_id: format!("kilowatch-eu-filing-{}-{}", m.site, m.year),
        blocks: b,
    }
}
