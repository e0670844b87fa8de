//! What an inference server's `/metrics` page says about tokens and requests, per engine.
//! The text is parsed by `prom_text_format_parser`; this module only knows which families of
//! which engine hold the counters and which label names the model.
//!
//! Supported releases (metric names and labels read from each server's source; the fixtures
//! under `collector/tests/fixtures/inference/` name the file and commit they were built from):
//!
//! | engine | counters used | model label |
//! |---|---|---|
//! | vLLM ≥ 0.8 (V1 engine; `vllm/v1/metrics/loggers.py`) | `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`, `vllm:request_success_total` (all `finished_reason`s), `vllm:time_to_first_token_seconds` sum/count; summed over `engine` (data-parallel ranks) | `model_name` |
//! | SGLang ≥ 0.4 (`python/sglang/srt/metrics/collector.py`) | `sglang:prompt_tokens_total`, `sglang:generation_tokens_total`, `sglang:num_requests_total`, `sglang:time_to_first_token_seconds` | `model_name` |
//! | TGI 2.x–3.x (`router/src/infer/mod.rs`, `router/src/server.rs`) | `tgi_request_input_length` and `tgi_request_generated_tokens` histogram sums, `tgi_request_success` | none: the config's `model` |
//! | Triton 2.x with the TensorRT-LLM backend (`inflight_batcher_llm/src/custom_metrics_reporter`) | `nv_llm_input_token_len` and `nv_llm_output_token_len` histogram sums, `nv_inference_request_success`, `nv_inference_first_response_histogram_ms` (ms) where enabled | `model` (models without token families, such as an ensemble's pre- and post-processing steps, are skipped) |

use std::collections::BTreeMap;

use prom_text_format_parser::{Metric, Type, ValueType};
use serde::Deserialize;

/// Which server speaks on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Vllm,
    Sglang,
    Tgi,
    Triton,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Vllm => "vllm",
            Engine::Sglang => "sglang",
            Engine::Tgi => "tgi",
            Engine::Triton => "triton",
        }
    }
}

/// One (model, tenant)'s cumulative counters as the page shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelCounters {
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    pub requests: Option<f64>,
    pub ttft_sum_s: Option<f64>,
    pub ttft_count: Option<f64>,
    /// Of `prompt_tokens`, those served without prefill compute (issue 29 item 10): vLLM's
    /// `prompt_tokens_by_source` sources `local_cache_hit` and `external_kv_transfer`, SGLang's
    /// `cached_tokens` (every `cache_source`).
    pub prompt_cached_tokens: Option<f64>,
}

impl ModelCounters {
    fn has_tokens(&self) -> bool {
        self.prompt_tokens.is_some() || self.generation_tokens.is_some()
    }
}

/// The key of a row: model name and tenant (empty where none is known).
pub type ModelKey = (String, String);

/// What a page held: the counters per model and tenant, and how many families failed to parse.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub models: BTreeMap<ModelKey, ModelCounters>,
    pub parse_errors: usize,
    /// Samples of rows beyond [`Limits::max_rows`], left out.
    pub rows_over_cap: u64,
    /// Model or tenant labels cut to [`Limits::max_label_bytes`].
    pub labels_cut: u64,
}

/// What one page may cost: a page of a million models must not make a million rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most (model, tenant) rows kept.
    pub max_rows: usize,
    /// Longest model or tenant label kept, bytes (cut at a character boundary).
    pub max_label_bytes: usize,
}

impl Default for Limits {
    /// The `[[inference]]` defaults.
    fn default() -> Self {
        Limits { max_rows: 256, max_label_bytes: 256 }
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Prompt,
    Generation,
    Requests,
    PromptCached,
    /// Histogram sum and count of the time to first token, with the unit's factor to seconds.
    Ttft(f64),
}

/// Where each family of an engine goes: (family, slot, what of it: the sample itself, or a
/// histogram's sum, or its count, and an optional label that must match).
struct Rule {
    family: &'static str,
    slot: Slot,
    part: Part,
    filter: Option<(&'static str, &'static str)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Value,
    Sum,
}

const fn r(family: &'static str, slot: Slot, part: Part) -> Rule {
    Rule { family, slot, part, filter: None }
}

const VLLM: &[Rule] = &[
    r("vllm:prompt_tokens_total", Slot::Prompt, Part::Value),
    r("vllm:generation_tokens_total", Slot::Generation, Part::Value),
    r("vllm:request_success_total", Slot::Requests, Part::Value),
    r("vllm:time_to_first_token_seconds", Slot::Ttft(1.0), Part::Sum),
    Rule { family: "vllm:prompt_tokens_by_source_total", slot: Slot::PromptCached, part: Part::Value, filter: Some(("source", "local_cache_hit")) },
    Rule { family: "vllm:prompt_tokens_by_source_total", slot: Slot::PromptCached, part: Part::Value, filter: Some(("source", "external_kv_transfer")) },
];
const SGLANG: &[Rule] = &[
    r("sglang:prompt_tokens_total", Slot::Prompt, Part::Value),
    r("sglang:generation_tokens_total", Slot::Generation, Part::Value),
    r("sglang:num_requests_total", Slot::Requests, Part::Value),
    r("sglang:time_to_first_token_seconds", Slot::Ttft(1.0), Part::Sum),
    r("sglang:cached_tokens_total", Slot::PromptCached, Part::Value),
];
const TGI: &[Rule] = &[r("tgi_request_input_length", Slot::Prompt, Part::Sum), r("tgi_request_generated_tokens", Slot::Generation, Part::Sum), r("tgi_request_success", Slot::Requests, Part::Value)];
const TRITON: &[Rule] = &[
    Rule { family: "nv_llm_input_token_len", slot: Slot::Prompt, part: Part::Sum, filter: Some(("response_metric_type", "total_input_tokens")) },
    Rule { family: "nv_llm_output_token_len", slot: Slot::Generation, part: Part::Sum, filter: Some(("response_metric_type", "total_output_tokens")) },
    r("nv_inference_request_success", Slot::Requests, Part::Value),
    r("nv_inference_first_response_histogram_ms", Slot::Ttft(1e-3), Part::Sum),
];

fn rules(engine: Engine) -> (&'static [Rule], Option<&'static str>) {
    match engine {
        Engine::Vllm => (VLLM, Some("model_name")),
        Engine::Sglang => (SGLANG, Some("model_name")),
        Engine::Tgi => (TGI, None),
        Engine::Triton => (TRITON, Some("model")),
    }
}

/// A label's value, unescaped: the crate keeps `\\`, `\"` and `\n` as the page spelled them.
fn label(labels: &prom_text_format_parser::Labels, key: &str) -> Option<String> {
    let raw = &labels.iter().find(|l| l.key == key)?.value;
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(e) => out.push(e),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    Some(out)
}

/// Reads a page of `engine`. `model` names the model where the page has no model label (TGI)
/// and replaces the page's names where given (rows of one page under it are summed); `tenant_label`, when set, splits rows by that
/// label's value, else every row has `tenant` (empty: none).
pub fn read_page(text: &str, engine: Engine, model: Option<&str>, tenant: &str, tenant_label: Option<&str>) -> Page {
    read_page_within(text, engine, model, tenant, tenant_label, Limits::default())
}

/// [`read_page`] within `limits`.
pub fn read_page_within(text: &str, engine: Engine, model: Option<&str>, tenant: &str, tenant_label: Option<&str>, limits: Limits) -> Page {
    let (metrics, errors) = prom_text_format_parser::parse_scrape(text);
    let parse_errors = match errors {
        None => 0,
        // The whole page failed the grammar: nothing of it is used.
        Some(prom_text_format_parser::ScrapeParseError::Parse(_)) => 1,
        Some(prom_text_format_parser::ScrapeParseError::Collect(e)) => e.len(),
    };
    let mut page = Page { parse_errors, ..Page::default() };
    let (rules, model_label) = rules(engine);
    for m in &metrics {
        for rule in rules.iter().filter(|r| r.family == m.name) {
            add_family(&mut page, m, rule, model_label, tenant, tenant_label, limits);
        }
    }
    // A Triton ensemble lists every step as a model; only those with token counters serve tokens.
    page.models.retain(|_, c| c.has_tokens());
    // The configured name replaces the page's only after that, so the steps are not summed in.
    if let Some(name) = model {
        let mut renamed: BTreeMap<ModelKey, ModelCounters> = BTreeMap::new();
        for ((_, tenant), c) in std::mem::take(&mut page.models) {
            let r = renamed.entry((name.to_owned(), tenant)).or_default();
            for (dst, src) in [
                (&mut r.prompt_tokens, c.prompt_tokens),
                (&mut r.generation_tokens, c.generation_tokens),
                (&mut r.requests, c.requests),
                (&mut r.ttft_sum_s, c.ttft_sum_s),
                (&mut r.ttft_count, c.ttft_count),
                (&mut r.prompt_cached_tokens, c.prompt_cached_tokens),
            ] {
                if let Some(v) = src {
                    *dst = Some(dst.unwrap_or(0.0) + v);
                }
            }
        }
        page.models = renamed;
    }
    page
}

fn add_family(page: &mut Page, m: &Metric, rule: &Rule, model_label: Option<&str>, tenant: &str, tenant_label: Option<&str>, limits: Limits) {
    for s in &m.samples {
        if let Some((k, v)) = rule.filter
            && label(&s.labels, k).as_deref() != Some(v)
        {
            continue;
        }
        let wanted = match (rule.part, m.kind, s.value.value_type) {
            (Part::Value, Type::Histogram | Type::Summary, _) => false,
            (Part::Value, _, ValueType::Sample) => true,
            (Part::Sum, Type::Histogram | Type::Summary, ValueType::Sum | ValueType::Count) => true,
            _ => false,
        };
        if !wanted {
            continue;
        }
        // The crate keeps the number as the page spelled it; `+Inf`, `NaN` and garbage are skipped.
        let Some(v) = s.value.value.parse::<f64>().ok().filter(|v| v.is_finite()) else { continue };
        let mut name = model_label.and_then(|l| label(&s.labels, l)).unwrap_or_else(|| "unknown".to_owned());
        let mut ten = tenant_label.and_then(|l| label(&s.labels, l)).unwrap_or_else(|| tenant.to_owned());
        for l in [&mut name, &mut ten] {
            if l.len() > limits.max_label_bytes {
                let mut end = limits.max_label_bytes;
                while !l.is_char_boundary(end) {
                    end -= 1;
                }
                l.truncate(end);
                page.labels_cut += 1;
            }
        }
        let key = (name, ten);
        if page.models.len() >= limits.max_rows && !page.models.contains_key(&key) {
            page.rows_over_cap += 1;
            continue;
        }
        let c = page.models.entry(key).or_default();
        let add = |slot: &mut Option<f64>, v: f64| *slot = Some(slot.unwrap_or(0.0) + v);
        match (rule.slot, s.value.value_type) {
            (Slot::Prompt, ValueType::Count) | (Slot::Generation, ValueType::Count) => {}
            (Slot::Prompt, _) => add(&mut c.prompt_tokens, v),
            (Slot::Generation, _) => add(&mut c.generation_tokens, v),
            (Slot::Requests, _) => add(&mut c.requests, v),
            (Slot::PromptCached, _) => add(&mut c.prompt_cached_tokens, v),
            (Slot::Ttft(f), ValueType::Sum) => add(&mut c.ttft_sum_s, v * f),
            (Slot::Ttft(_), ValueType::Count) => add(&mut c.ttft_count, v),
            (Slot::Ttft(_), ValueType::Sample) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_names_escaped_labels_and_data_parallel_engines_sum() {
        let text = "# HELP vllm:generation_tokens_total Number of generation tokens processed.\n\
                    # TYPE vllm:generation_tokens_total counter\n\
                    vllm:generation_tokens_total{engine=\"0\",model_name=\"a \\\"b\\\", c\"} 10.0\n\
                    vllm:generation_tokens_total{engine=\"1\",model_name=\"a \\\"b\\\", c\"} 5.0\n";
        let page = read_page(text, Engine::Vllm, None, "", None);
        assert_eq!(page.parse_errors, 0);
        let (key, c) = page.models.iter().next().expect("one model");
        assert_eq!(key.0, "a \"b\", c");
        assert_eq!(c.generation_tokens, Some(15.0));
        assert_eq!(c.prompt_tokens, None);
    }

    #[test]
    fn configured_model_and_tenant_label() {
        let text = "# TYPE tgi_request_generated_tokens histogram\n\
                    tgi_request_generated_tokens_bucket{le=\"+Inf\"} 2\n\
                    tgi_request_generated_tokens_sum 300\n\
                    tgi_request_generated_tokens_count 2\n";
        let page = read_page(text, Engine::Tgi, Some("m"), "acme", None);
        let c = &page.models[&("m".to_owned(), "acme".to_owned())];
        assert_eq!((c.generation_tokens, c.requests), (Some(300.0), None));
    }
}
