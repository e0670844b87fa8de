//! The energy-per-token section of the monthly report and of customers' statements: the models
//! served (per million tokens, per request) and the training jobs that reported progress (per
//! step, per billion tokens). Nothing when neither is there.

use kilowatch_accounting::tokens::TokensSection;

use super::doc::{Block, num, strings};

pub(super) fn blocks(t: &TokensSection) -> Vec<Block> {
    if t.models.is_empty() && t.training.is_empty() {
        return Vec::new();
    }
    let mut b = vec![Block::Heading("Energy per token and per training step".into())];
    if !t.models.is_empty() {
        b.push(Block::Table {
            head: strings(["model (tenant)", "M out", "kWh", "kWh / M", "GPU J / out", "Wh / req.", "L / M", "g CO2 / M"]),
            rows: t
                .models
                .iter()
                .map(|m| {
                    let p = &m.per_token;
                    let tenant = if m.tenant.is_empty() { "shared".to_owned() } else { m.tenant.clone() };
                    let flag = if m.confidence == "low" { " *" } else { "" };
                    // The repository's organisation is left out: the table is A4-wide.
                    let name = m.model.rsplit('/').next().unwrap_or(&m.model);
                    vec![
                        format!("{name} ({tenant}){flag}"),
                        num(Some(m.generation_tokens / 1e6)),
                        num(m.energy_kwh.facility),
                        num(p.j_per_token.and_then(|e| e.facility).map(|fac| fac * 1e6 / 3.6e6)),
                        num(p.j_per_generated_token.map(|e| e.gpu)),
                        num(p.wh_per_request),
                        num(p.water_l_per_mtok),
                        num(p.co2_g_per_mtok),
                    ]
                })
                .collect(),
        });
        b.push(Block::Meta(weight_sensitivity(t)));
    }
    if !t.training.is_empty() {
        b.push(Block::Table {
            head: strings(["training job", "owner", "steps", "B tokens", "kWh / step", "L / step", "kg CO2 / step", "kWh / B tokens"]),
            rows: t
                .training
                .iter()
                .map(|j| {
                    let flag = if j.confidence == "low" { " *" } else { "" };
                    vec![
                        format!("{}{flag}", j.job),
                        j.owner.clone(),
                        j.steps.to_string(),
                        num(Some(j.tokens / 1e9)),
                        num(j.kwh_per_step.and_then(|e| e.facility)),
                        num(j.water_l_per_step),
                        num(j.co2_kg_per_step),
                        num(j.kwh_per_billion_tokens.and_then(|e| e.facility)),
                    ]
                })
                .collect(),
        });
    }
    b.push(Block::Meta(format!(
        "M out: million generated tokens; kWh: facility energy; / M: per million tokens, prompt and generated together; GPU J / out: GPU joules per generated token; Wh / req.: facility Wh per request; training kWh: facility. * low confidence (a server sharing GPUs, few tokens or steps). {}",
        t.method
    )));
    b
}

/// How much the rows' energy moves over the prompt weight's stated range (issue 29 item 10): the
/// weight is an assumption, so the reader sees what it is worth.
fn weight_sensitivity(t: &TokensSection) -> String {
    let pct = |p: Option<f64>| p.map_or("–".to_owned(), |p| format!("{p:+.1} %"));
    let s = &t.prompt_weight_sensitivity;
    let [lo, hi] = s.prompt_token_weight;
    let rows: Vec<String> = t
        .models
        .iter()
        .map(|m| {
            let name = m.model.rsplit('/').next().unwrap_or(&m.model);
            let [a, b] = m.prompt_weight_sensitivity.it_change_pct;
            format!("{name} {} / {}", pct(a), pct(b))
        })
        .collect();
    let [a, b] = s.it_change_pct;
    format!("With a prompt token weighed {lo} and {hi} of a generated one instead of the stated weight, the energy above moves by {} / {} in all ({}).", pct(a), pct(b), rows.join("; "))
}
