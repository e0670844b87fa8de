//! Energy, water and CO2 per token, per request and per training step (docs/inference.md).
//!
//! Serving: each inference server's GPUs are an allocation (`serve:<node>/<server>`, from its
//! `inference` points) attributed by [`crate::attribution`] together with every job, so serving +
//! other jobs + idle + unattributed = E_IT for any window, and the server's IT energy carries its
//! node's non-GPU share like a job's. Each hour's energy of a server is divided among its
//! (model, tenant) rows by their weighted tokens in that hour (generated + w × computed prompt,
//! w = `[accounting] prompt_token_weight`, default [`PROMPT_TOKEN_WEIGHT`]), or equally in an
//! hour with no tokens; facility energy, water and CO2 follow with that hour's PUE, WUE and
//! carbon factor. In a prefill/decode-disaggregated deployment (servers tagged `role`), each
//! request and prompt is counted once, from the decode servers; a prefill server's energy is
//! divided by the prompts it computed (docs/inference.md).
//!
//! Per token: the energy over all tokens (prompt + generated), and over generated tokens only
//! (all the energy charged to output, the usual "J per output token"). J per prompt token and
//! per generated token *separately* use a stated split: a prompt token costs
//! [`PROMPT_TOKEN_WEIGHT`] of a generated one. The split moves energy between the two, never the
//! totals.
//!
//! Training: the steps a job reported (`POST /api/v1/progress`) in the window, against the job's
//! attributed energy in the same window.

pub mod serving;

use std::collections::BTreeMap;

use kilowatch_model::metric::ServingRole;
use kilowatch_model::{TimeRange, Timestamp};
use serde::Serialize;

use crate::attribution::{self, Attribution, JobEnergy};
use crate::read::{Allocation, JobsRead, ReadError, SeriesRead};
use crate::settings::{AccountingConfig, CarbonConfig};
use kilowatch_model::energy::step_bounds;
pub use serving::{INFERENCE_SOURCE, RowKey, RowTokens, serving_allocations, serving_job, token_ledgers};

const HOUR_NS: i64 = 3_600_000_000_000;
const J_PER_KWH: f64 = 3.6e6;

/// A prompt token's energy relative to a generated one's, for the split (a stated assumption,
/// docs/inference.md): prefill runs a whole prompt through the GPUs in one compute-bound pass,
/// while decoding reads every weight once per generated token; published H100 measurements put
/// a prefill token at roughly a tenth of a decode token's energy or less.
pub const PROMPT_TOKEN_WEIGHT: f64 = 0.1;

/// The range over which the statement shows each row's energy moving with the prompt weight
/// (issue 29 item 10): from a twentieth of a decode token (long prompts on a saturated
/// compute-bound prefill) to nearly a third (short prompts, where prefill is latency-bound).
pub const PROMPT_WEIGHT_RANGE: [f64; 2] = [0.05, 0.3];

/// The prompt weight and the range the statement shows it over, from `[accounting]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptWeights {
    pub weight: f64,
    pub range: [f64; 2],
}

impl Default for PromptWeights {
    fn default() -> Self {
        PromptWeights { weight: PROMPT_TOKEN_WEIGHT, range: PROMPT_WEIGHT_RANGE }
    }
}

impl From<&AccountingConfig> for PromptWeights {
    fn from(c: &AccountingConfig) -> Self {
        PromptWeights { weight: c.prompt_token_weight, range: c.prompt_weight_range }
    }
}

/// Fewer generated tokens than this in a window make its per-token figures low confidence.
pub const MIN_TOKENS: f64 = 10_000.0;
/// Fewer steps than this make a training job's per-step figures low confidence (a job's start-up
/// or end falls on a handful of steps).
pub const MIN_STEPS: u64 = 10;

/// An energy in three boundaries: the GPUs, IT (GPUs plus the node's non-GPU share) and the
/// facility (IT × the hour's PUE). The facility's is null where the window has no valid PUE
/// (no facility meter): unknown, never 0 (`ModelsAnswer::facility_unavailable` says why).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Energies {
    pub gpu: f64,
    pub it: f64,
    pub facility: Option<f64>,
}

impl Default for Energies {
    fn default() -> Self {
        Energies { gpu: 0.0, it: 0.0, facility: Some(0.0) }
    }
}

impl Energies {
    fn scaled(self, k: f64) -> Energies {
        Energies { gpu: self.gpu * k, it: self.it * k, facility: self.facility.map(|f| f * k) }
    }
    fn add(&mut self, o: Energies) {
        self.gpu += o.gpu;
        self.it += o.it;
        self.facility = self.facility.zip(o.facility).map(|(a, b)| a + b);
    }
}

/// One hour of a model (and tenant).
#[derive(Debug, Clone, Serialize, Default)]
pub struct ModelHour {
    pub t: String,
    pub prompt_tokens: f64,
    /// Of which prefix-cache hits or KV transferred from a prefill instance: served, not computed.
    pub prompt_cached_tokens: f64,
    pub generation_tokens: f64,
    pub requests: f64,
    pub energy_kwh: Energies,
    pub water_l: Option<f64>,
    /// Null where the facility energy is unknown.
    pub co2_kg: Option<f64>,
    pub pue: Option<f64>,
    /// Prompt tokens computed on any of its servers (prefill servers' included): what
    /// `prompt_cached_tokens` is the rest of.
    #[serde(skip)]
    prompt_computed_tokens: f64,
    /// Generated tokens per second and mean IT power over the hour (the part of it in the window).
    pub tokens_per_s: f64,
    pub it_power_w: f64,
    /// Facility energy per million generated tokens, kWh (null in an hour without tokens).
    pub facility_kwh_per_mtok: Option<f64>,
}

/// Per-token figures over a window; null where there are no tokens to divide by.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PerToken {
    /// Joules per token, prompt and generated together.
    pub j_per_token: Option<Energies>,
    /// Joules per generated token, all the energy charged to output.
    pub j_per_generated_token: Option<Energies>,
    /// The stated split: joules per computed prompt token (cache hits excluded) and per
    /// generated token (facility boundary).
    pub split_j_per_prompt_token: Option<f64>,
    pub split_j_per_generated_token: Option<f64>,
    pub prompt_token_weight: f64,
    /// Facility Wh per finished request.
    pub wh_per_request: Option<f64>,
    /// Litres of water and grams of CO2 per million tokens (prompt and generated).
    pub water_l_per_mtok: Option<f64>,
    pub co2_g_per_mtok: Option<f64>,
}

/// A row's energy at the two ends of [`PROMPT_WEIGHT_RANGE`]: the weight only divides a
/// server's energy among its rows, so a server with one row does not move.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WeightSensitivity {
    pub prompt_token_weight: [f64; 2],
    pub energy_kwh: [Energies; 2],
    /// The IT energy's change against the stated weight's, % (null where that is 0).
    pub it_change_pct: [Option<f64>; 2],
}

impl WeightSensitivity {
    /// `energy_kwh` at the range's ends against `it_kwh`, the IT energy at the stated weight.
    fn new(range: [f64; 2], energy_kwh: [Energies; 2], it_kwh: f64) -> WeightSensitivity {
        WeightSensitivity { prompt_token_weight: range, it_change_pct: energy_kwh.map(|e| div((e.it - it_kwh) * 100.0, it_kwh)), energy_kwh }
    }

    /// Several rows together (a tenant's, in its statement).
    fn total(models: &[ModelFootprint]) -> WeightSensitivity {
        let Some(first) = models.first() else { return WeightSensitivity::default() };
        let mut ends = [Energies::default(); 2];
        let mut it = 0.0;
        for m in models {
            for (end, e) in ends.iter_mut().zip(m.prompt_weight_sensitivity.energy_kwh) {
                end.add(e);
            }
            it += m.energy_kwh.it;
        }
        WeightSensitivity::new(first.prompt_weight_sensitivity.prompt_token_weight, ends, it)
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ModelFootprint {
    pub model: String,
    /// Empty where the servers name no tenant.
    pub tenant: String,
    pub engines: Vec<String>,
    /// `node/server` of every server that served it in the window.
    pub servers: Vec<String>,
    /// The jobs (Slurm jobs, Kubernetes pods) its servers ran inside: their energy on the
    /// servers' GPUs is divided by these tokens; the jobs keep it whole in the jobs ledger.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nested_in: Vec<String>,
    pub gpus: Vec<String>,
    /// Requests, prompt and generated tokens are counted once per request: in a
    /// prefill/decode-disaggregated deployment, from the decode servers (a prefill server
    /// reports the same requests and prompts).
    pub prompt_tokens: f64,
    /// Of which prefix-cache hits or KV transferred from a prefill instance: not charged as
    /// prompt compute in the split or in dividing a server's energy among its rows.
    pub prompt_cached_tokens: f64,
    pub generation_tokens: f64,
    pub requests: f64,
    pub ttft_mean_s: Option<f64>,
    pub energy_kwh: Energies,
    /// Of which the prefill servers' (a disaggregated deployment's measured prompt compute);
    /// absent where no prefill server served it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_energy_kwh: Option<Energies>,
    pub water_l: Option<f64>,
    /// Null where the facility energy is unknown.
    pub co2_kg: Option<f64>,
    pub per_token: PerToken,
    pub prompt_weight_sensitivity: WeightSensitivity,
    pub counter_resets: u32,
    /// "high", or "low" with its reasons.
    pub confidence: &'static str,
    pub low_confidence_reasons: Vec<String>,
    pub hours: Vec<ModelHour>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct TrainingFootprint {
    pub job: String,
    pub owner: String,
    pub steps: u64,
    pub first_step: u64,
    pub last_step: u64,
    pub tokens: f64,
    pub samples: f64,
    pub energy_kwh: Energies,
    pub water_l: Option<f64>,
    pub co2_kg: Option<f64>,
    pub kwh_per_step: Option<Energies>,
    pub water_l_per_step: Option<f64>,
    pub co2_kg_per_step: Option<f64>,
    pub kwh_per_billion_tokens: Option<Energies>,
    pub water_l_per_billion_tokens: Option<f64>,
    pub co2_kg_per_billion_tokens: Option<f64>,
    pub confidence: &'static str,
}

/// The answer of `GET /api/v1/models`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ModelsAnswer {
    pub from: String,
    pub to: String,
    pub models: Vec<ModelFootprint>,
    pub training: Vec<TrainingFootprint>,
    /// The site's ledger over the window, serving included: jobs (serving among them) + idle +
    /// unattributed = E_IT.
    pub it_energy_kwh: f64,
    pub jobs_it_energy_kwh: f64,
    pub serving_it_energy_kwh: f64,
    pub idle_kwh: f64,
    pub unattributed_kwh: f64,
    /// Why facility energy and CO2 are null (no valid PUE over the window: no facility meter, or
    /// E_DC below E_IT); absent when they are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_unavailable: Option<String>,
    pub method: String,
}

fn method(w: PromptWeights) -> String {
    let PromptWeights { weight, range: [lo, hi] } = w;
    format!(
        "GPU energy from NVML counters of the GPUs each server ran on (its processes on NVML), attributed with the jobs ledger (a server's IT energy includes its node's non-GPU share per GPU); each hour's energy split among a server's models and tenants by generated + {weight} x computed prompt tokens (prefix-cache hits and transferred KV excluded; each row also shown at weights {lo} and {hi}); prefill/decode-disaggregated deployments count each request and prompt once (decode side), a prefill server's energy divided by the prompts it computed; facility energy, water and CO2 at each hour's PUE, WUE and carbon factor; the per-prompt/per-generated split weighs a prompt token {weight} of a generated one."
    )
}

fn div(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The serving and training footprint of `[r.from, r.to)`.
pub fn models(store: &(impl SeriesRead + ?Sized), js: &(impl JobsRead + ?Sized), r: TimeRange, carbon: &CarbonConfig, weights: PromptWeights) -> Result<ModelsAnswer, ReadError> {
    let allocs = attribution::allocations(store, js, r)?;
    let att = attribution::attribute(store, &allocs, r, Some(HOUR_NS), carbon)?;
    models_from(store, js, r, &allocs, &att, weights)
}

/// [`models`] from an attribution already made over `r` at one-hour series steps (a customer's
/// statement has one).
pub fn models_from(
    store: &(impl SeriesRead + ?Sized),
    js: &(impl JobsRead + ?Sized),
    r: TimeRange,
    allocs: &[Allocation],
    att: &Attribution,
    weights: PromptWeights,
) -> Result<ModelsAnswer, ReadError> {
    let bounds = step_bounds(r.from.0, r.to.0, HOUR_NS);
    let mut rows = token_ledgers(store, &bounds)?;
    // Only what served in the window: a model or tenant first seen later, or gone before,
    // has no readings here and is not a row of zero tokens and zero energy.
    rows.retain(|_, r| r.covered_s > 0.0 || r.generated.iter().chain(&r.prompt).chain(&r.requests).any(|v| *v > 0.0));
    let mut out = ModelsAnswer {
        from: r.from.to_rfc3339(),
        to: r.to.to_rfc3339(),
        it_energy_kwh: att.it_energy_kwh,
        jobs_it_energy_kwh: att.jobs_it_energy_kwh,
        idle_kwh: att.idle_kwh,
        unattributed_kwh: att.unattributed_kwh,
        method: method(weights),
        ..Default::default()
    };
    out.serving_it_energy_kwh = att.jobs.iter().filter(|j| j.source == INFERENCE_SOURCE).map(|j| j.it_energy_kwh).sum();
    // Without a valid PUE for the window the ledger's facility energy (IT × 0) and its CO2 are
    // not figures: they are null with the reason, never 0.
    let facility_known = att.pue.is_some();
    if !facility_known {
        out.facility_unavailable = Some(
            "no valid PUE over the window (no meter with role=facility, or E_DC below E_IT): facility energy and CO2 are unknown; GPU and IT energy (and water, which follows IT energy) stand".into(),
        );
    }
    let servers = serving_allocations(store, r.from.0, r.to.0)?;
    out.models = serving_footprints(att, allocs, &servers, &rows, &bounds, facility_known, weights.weight);
    let ends = weights.range.map(|w| serving_footprints(att, allocs, &servers, &rows, &bounds, facility_known, w));
    for m in &mut out.models {
        let at = |i: usize| ends[i].iter().find(|x| x.model == m.model && x.tenant == m.tenant).map(|x| x.energy_kwh).unwrap_or_default();
        let energy_kwh = [at(0), at(1)];
        let it = m.energy_kwh.it;
        m.prompt_weight_sensitivity = WeightSensitivity::new(weights.range, energy_kwh, it);
    }
    out.training = training_footprints(js, att, r, facility_known)?;
    Ok(out)
}

/// A month's or a year's section for the report and the statements: the models (and training
/// jobs) that `keep` selects, without their hourly rows, the largest energy first.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TokensSection {
    pub models: Vec<ModelFootprint>,
    /// The selected models' serving energy together at the prompt weight's two ends: how much a
    /// customer's statement moves with the stated assumption (its IT energy's change in %).
    pub prompt_weight_sensitivity: WeightSensitivity,
    pub training: Vec<TrainingFootprint>,
    pub method: String,
}

impl TokensSection {
    pub fn of(a: ModelsAnswer, keep: impl Fn(&str) -> bool, max_training: usize) -> TokensSection {
        let mut models: Vec<ModelFootprint> = a.models.into_iter().filter(|m| keep(&m.tenant)).collect();
        models.iter_mut().for_each(|m| m.hours.clear());
        let prompt_weight_sensitivity = WeightSensitivity::total(&models);
        models.sort_by(|x, y| size(&y.energy_kwh).total_cmp(&size(&x.energy_kwh)).then_with(|| x.model.cmp(&y.model)));
        let mut training: Vec<TrainingFootprint> = a.training.into_iter().filter(|t| keep(&t.owner)).collect();
        training.sort_by(|x, y| size(&y.energy_kwh).total_cmp(&size(&x.energy_kwh)).then_with(|| x.job.cmp(&y.job)));
        training.truncate(max_training);
        TokensSection { models, prompt_weight_sensitivity, training, method: a.method }
    }
}

/// What orders the report's rows: facility energy, or IT energy where the facility's is unknown.
fn size(e: &Energies) -> f64 {
    e.facility.unwrap_or(e.it)
}

/// A serving job's energy per hour, from its series (one point per hour it used energy in).
fn job_hours(j: &JobEnergy, att: &Attribution, n: usize) -> Vec<(f64, f64)> {
    let index: BTreeMap<&str, usize> = att.steps.iter().enumerate().map(|(i, s)| (s.t.as_str(), i)).collect();
    let mut v = vec![(0.0, 0.0); n];
    for p in &j.series {
        if let Some(&i) = index.get(p.t.as_str()) {
            v[i].0 += p.gpu_energy_kwh;
            v[i].1 += p.it_energy_kwh;
        }
    }
    v
}

/// The jobs (not servers) that hold one of the server allocation `s`'s GPUs while it runs: a
/// server inside them is nested in them.
pub fn enclosing<'a>(s: &Allocation, jobs: &'a [Allocation]) -> Vec<&'a Allocation> {
    jobs.iter()
        .filter(|j| j.source != INFERENCE_SOURCE && j.node == s.node && j.gpus.iter().any(|g| s.gpus.contains(g)) && j.start < s.end.unwrap_or(i64::MAX) && s.start < j.end.unwrap_or(i64::MAX))
        .collect()
}

/// A nested server's energy per hour: each enclosing job's, for the share of its GPUs the server
/// runs on, in the hours the server runs.
fn nested_hours(server: &[Allocation], allocs: &[Allocation], att: &Attribution, bounds: &[i64]) -> (Vec<(f64, f64)>, Vec<String>) {
    let n = bounds.len().saturating_sub(1);
    let jobs: BTreeMap<&str, &JobEnergy> = att.jobs.iter().map(|j| (j.job.as_str(), j)).collect();
    let mut v = vec![(0.0, 0.0); n];
    let mut parents = Vec::new();
    for s in server {
        for p in enclosing(s, allocs) {
            push_unique(&mut parents, &p.job);
            let Some(j) = jobs.get(p.job.as_str()) else { continue };
            let share = p.gpus.iter().filter(|g| s.gpus.contains(g)).count() as f64 / p.gpus.len().max(1) as f64;
            for (h, (gpu, it)) in job_hours(j, att, n).into_iter().enumerate() {
                // Only the hours the server ran in.
                if bounds[h] < s.end.unwrap_or(i64::MAX) && s.start < bounds[h + 1] {
                    v[h].0 += gpu * share;
                    v[h].1 += it * share;
                }
            }
        }
    }
    (v, parents)
}

/// Whether another allocation held one of `a`'s GPUs at the same time.
fn shares_gpus(a: &Allocation, all: &[Allocation]) -> bool {
    all.iter()
        .any(|o| !(o.job == a.job && o.start == a.start) && o.node == a.node && o.gpus.iter().any(|g| a.gpus.contains(g)) && o.start < a.end.unwrap_or(i64::MAX) && a.start < o.end.unwrap_or(i64::MAX))
}

/// `w` is the prompt token weight dividing each server's energy among its rows.
fn serving_footprints(att: &Attribution, allocs: &[Allocation], servers: &[Allocation], rows: &BTreeMap<RowKey, RowTokens>, bounds: &[i64], facility_known: bool, w: f64) -> Vec<ModelFootprint> {
    let n = bounds.len().saturating_sub(1);
    let jobs: BTreeMap<&str, &JobEnergy> = att.jobs.iter().map(|j| (j.job.as_str(), j)).collect();
    // The rows of each server, to split its energy.
    let mut by_server: BTreeMap<(String, String), Vec<&RowKey>> = BTreeMap::new();
    for k in rows.keys() {
        by_server.entry((k.node.clone(), k.server.clone())).or_default().push(k);
    }
    let mut models: BTreeMap<(String, String), ModelFootprint> = BTreeMap::new();
    let mut ttft: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    // Whether every server of a (model, tenant) was a prefill server: its requests and prompts
    // are then nowhere counted (the decode servers are not scraped).
    let mut prefill_only: BTreeMap<(String, String), bool> = BTreeMap::new();
    for ((node, server), keys) in &by_server {
        let job = serving_job(node, server);
        // A server nested in a job (not an allocation of its own) takes the job's energy on its
        // GPUs; one on its own GPUs, its own allocation's.
        let nested: Vec<Allocation> = servers.iter().filter(|a| a.job == job && !enclosing(a, allocs).is_empty()).cloned().collect();
        let (hours, parents) =
            if nested.is_empty() { (jobs.get(job.as_str()).map(|j| job_hours(j, att, n)).unwrap_or_else(|| vec![(0.0, 0.0); n]), Vec::new()) } else { nested_hours(&nested, allocs, att, bounds) };
        let server_allocs: Vec<&Allocation> = allocs.iter().filter(|a| a.job == job).chain(nested.iter()).collect();
        let shared = server_allocs.iter().any(|a| a.source == INFERENCE_SOURCE && enclosing(a, allocs).is_empty() && shares_gpus(a, allocs));
        for k in keys {
            let row = &rows[*k];
            let m = models.entry((k.model.clone(), k.tenant.clone())).or_insert_with(|| ModelFootprint {
                model: k.model.clone(),
                tenant: k.tenant.clone(),
                confidence: "high",
                hours: (0..n).map(|h| ModelHour { t: Timestamp(bounds[h]).to_rfc3339(), co2_kg: Some(0.0), ..Default::default() }).collect(),
                co2_kg: Some(0.0),
                ..Default::default()
            });
            push_unique(&mut m.engines, &row.engine);
            for p in &parents {
                push_unique(&mut m.nested_in, p);
            }
            push_unique(&mut m.servers, &format!("{node}/{server}"));
            for a in &server_allocs {
                for g in &a.gpus {
                    push_unique(&mut m.gpus, &format!("{node}:{g}"));
                }
            }
            if shared {
                push_unique(&mut m.low_confidence_reasons, &format!("{node}/{server} shares GPUs with other work"));
            }
            if server_allocs.is_empty() && row.generated.iter().sum::<f64>() > 0.0 {
                push_unique(&mut m.low_confidence_reasons, &format!("{node}/{server}: no GPUs known (set gpus, or give the collector NVML and /proc)"));
            }
            m.counter_resets += row.resets;
            let counted = row.counts_requests();
            *prefill_only.entry((k.model.clone(), k.tenant.clone())).or_insert(true) &= !counted;
            // The time to first token the client saw is the decode side's (it includes the KV transfer).
            if counted {
                let t = ttft.entry((k.model.clone(), k.tenant.clone())).or_default();
                t.0 += row.ttft_sum_s.iter().sum::<f64>();
                t.1 += row.ttft_count.iter().sum::<f64>();
            }
            for (h, &(gpu, it)) in hours.iter().enumerate() {
                let total: f64 = keys.iter().map(|kk| rows[*kk].weight(h, w)).sum();
                let share = if total > 0.0 { row.weight(h, w) / total } else { 1.0 / keys.len() as f64 };
                let f = att.steps.get(h);
                let pue = f.map(|f| f.pue).filter(|_| facility_known);
                let e = Energies { gpu, it, facility: pue.map(|p| it * p) }.scaled(share);
                if row.role == ServingRole::Prefill {
                    m.prefill_energy_kwh.get_or_insert_default().add(e);
                }
                let mh = &mut m.hours[h];
                mh.prompt_computed_tokens += row.prompt_computed(h);
                if counted {
                    mh.prompt_tokens += row.prompt[h];
                    mh.generation_tokens += row.generated[h];
                    mh.requests += row.requests[h];
                }
                mh.energy_kwh.add(e);
                mh.pue = pue;
                if let Some(w) = f.and_then(|f| f.wue_l_per_kwh) {
                    *mh.water_l.get_or_insert(0.0) += e.it * w;
                }
                mh.co2_kg = mh.co2_kg.zip(e.facility).map(|(c, fac)| c + fac * f.map_or(0.0, |f| f.carbon_factor_kg_per_kwh));
            }
        }
    }
    let mut out: Vec<ModelFootprint> = models.into_values().collect();
    for m in &mut out {
        for (h, mh) in m.hours.iter_mut().enumerate() {
            // Served without computing: prefix-cache hits (KV a decode server received from a
            // prefill server was computed there, and is not among them).
            mh.prompt_cached_tokens = (mh.prompt_tokens - mh.prompt_computed_tokens).max(0.0);
            let secs = (bounds[h + 1] - bounds[h]) as f64 / 1e9;
            mh.tokens_per_s = mh.generation_tokens / secs;
            mh.it_power_w = mh.energy_kwh.it * J_PER_KWH / secs;
            mh.facility_kwh_per_mtok = mh.energy_kwh.facility.and_then(|fac| div(fac * 1e6, mh.generation_tokens));
            m.prompt_tokens += mh.prompt_tokens;
            m.prompt_cached_tokens += mh.prompt_cached_tokens;
            m.generation_tokens += mh.generation_tokens;
            m.requests += mh.requests;
            m.energy_kwh.add(mh.energy_kwh);
            if let Some(w) = mh.water_l {
                *m.water_l.get_or_insert(0.0) += w;
            }
            m.co2_kg = m.co2_kg.zip(mh.co2_kg).map(|(a, b)| a + b);
        }
        let (s, c) = ttft.get(&(m.model.clone(), m.tenant.clone())).copied().unwrap_or_default();
        m.ttft_mean_s = div(s, c);
        m.per_token = per_token(m, w);
        if prefill_only.get(&(m.model.clone(), m.tenant.clone())).copied().unwrap_or(false) {
            m.low_confidence_reasons
                .push("only prefill servers (role = \"prefill\") reported it: its requests, prompts and generated tokens are counted on the decode servers, which were not scraped".into());
        }
        if m.generation_tokens < MIN_TOKENS {
            m.low_confidence_reasons.push(format!("only {:.0} generated tokens in the window (fewer than {MIN_TOKENS:.0})", m.generation_tokens));
        }
        if !m.low_confidence_reasons.is_empty() {
            m.confidence = "low";
        }
    }
    out
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_owned());
    }
}

fn per_token(m: &ModelFootprint, w: f64) -> PerToken {
    let j = m.energy_kwh.scaled(J_PER_KWH);
    let all = m.prompt_tokens + m.generation_tokens;
    // Cache hits are served but not computed: the split charges prefill to computed prompts only.
    let computed = m.prompt_tokens - m.prompt_cached_tokens;
    let weighted = m.generation_tokens + w * computed;
    let per_weighted = j.facility.and_then(|fac| div(fac, weighted));
    PerToken {
        j_per_token: (all > 0.0).then(|| j.scaled(1.0 / all)),
        j_per_generated_token: (m.generation_tokens > 0.0).then(|| j.scaled(1.0 / m.generation_tokens)),
        split_j_per_prompt_token: per_weighted.filter(|_| computed > 0.0).map(|x| x * w),
        split_j_per_generated_token: per_weighted.filter(|_| m.generation_tokens > 0.0),
        prompt_token_weight: w,
        wh_per_request: m.energy_kwh.facility.and_then(|fac| div(fac * 1000.0, m.requests)),
        water_l_per_mtok: m.water_l.and_then(|w| div(w * 1e6, all)),
        co2_g_per_mtok: m.co2_kg.and_then(|c| div(c * 1000.0 * 1e6, all)),
    }
}

fn training_footprints(js: &(impl JobsRead + ?Sized), att: &Attribution, r: TimeRange, facility_known: bool) -> Result<Vec<TrainingFootprint>, ReadError> {
    let steps = js.progress(r.from.0, r.to.0)?;
    let jobs: BTreeMap<&str, &JobEnergy> = att.jobs.iter().map(|j| (j.job.as_str(), j)).collect();
    let mut by_job: BTreeMap<&str, TrainingFootprint> = BTreeMap::new();
    for s in &steps {
        let t = by_job.entry(s.job.as_str()).or_insert_with(|| TrainingFootprint { job: s.job.clone(), first_step: s.step, confidence: "high", ..Default::default() });
        t.steps += 1;
        t.first_step = t.first_step.min(s.step);
        t.last_step = t.last_step.max(s.step);
        t.tokens += s.tokens;
        t.samples += s.samples;
    }
    let mut out = Vec::new();
    for (job, mut t) in by_job {
        match jobs.get(job) {
            Some(j) => {
                t.owner = j.owner.clone();
                t.energy_kwh = Energies { gpu: j.gpu_energy_kwh, it: j.it_energy_kwh, facility: facility_known.then_some(j.facility_energy_kwh) };
                t.water_l = j.water_l;
                t.co2_kg = facility_known.then_some(j.co2_kg);
                if j.confidence == "low" {
                    t.confidence = "low";
                }
            }
            // Progress of a job the ledger does not know: its steps are shown, its energy is not.
            None => t.confidence = "low",
        }
        if t.steps < MIN_STEPS {
            t.confidence = "low";
        }
        let n = t.steps as f64;
        t.kwh_per_step = (n > 0.0).then(|| t.energy_kwh.scaled(1.0 / n));
        t.water_l_per_step = t.water_l.and_then(|w| div(w, n));
        t.co2_kg_per_step = t.co2_kg.and_then(|c| div(c, n));
        t.kwh_per_billion_tokens = (t.tokens > 0.0).then(|| t.energy_kwh.scaled(1e9 / t.tokens));
        t.water_l_per_billion_tokens = t.water_l.and_then(|w| div(w * 1e9, t.tokens));
        t.co2_kg_per_billion_tokens = t.co2_kg.and_then(|c| div(c * 1e9, t.tokens));
        out.push(t);
    }
    Ok(out)
}
