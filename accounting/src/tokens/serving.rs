//! What the `inference` points say: which GPUs each server held and when (serving allocations,
//! attributed through the same ledger as jobs), and its token and request counters per hour.

use std::collections::BTreeMap;

use crate::read::EnergyKind;
use crate::read::{Allocation, GPU_JOB_MAX_GAP_NS};
use crate::read::{ReadError, SeriesRead};
use kilowatch_model::metric::{INFERENCE, ServingRole};

/// The `source` of allocations derived from `inference` points.
pub const INFERENCE_SOURCE: &str = "inference";

/// The job id a server's energy is attributed under: `serve:<node>/<server>`.
pub fn serving_job(node: &str, server: &str) -> String {
    format!("serve:{node}/{server}")
}

/// One (node, server, model, tenant) row of `inference` series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    pub node: String,
    pub server: String,
    pub model: String,
    pub tenant: String,
}

/// A row's counters per hour, with the resets its ledgers met.
#[derive(Debug, Clone, Default)]
pub struct RowTokens {
    pub engine: String,
    pub prompt: Vec<f64>,
    /// Prompt tokens the server did not compute: prefix-cache hits, and KV blocks a prefill
    /// instance computed and transferred (vLLM's `prompt_tokens_by_source`, SGLang's cached
    /// tokens). A subset of `prompt`.
    pub prompt_cached: Vec<f64>,
    pub generated: Vec<f64>,
    pub requests: Vec<f64>,
    pub ttft_sum_s: Vec<f64>,
    pub ttft_count: Vec<f64>,
    pub resets: u32,
    /// The server's part in a prefill/decode-disaggregated deployment (its `role` tag).
    pub role: ServingRole,
    /// Whether the server ships `prompt_cached_tokens` at all (a decode server that does not is
    /// taken to have received every prompt's KV from its prefill server).
    pub reports_cached: bool,
    /// Seconds of the window its counters' readings cover: 0 for a row that did not serve in
    /// the window (first seen later, or gone before).
    pub covered_s: f64,
}

fn row_key(m: &crate::read::Series) -> Option<RowKey> {
    Some(RowKey { node: m.tag("node")?.to_owned(), server: m.tag("server")?.to_owned(), model: m.tag("model").unwrap_or("unknown").to_owned(), tenant: m.tag("tenant").unwrap_or("").to_owned() })
}

/// Every row's counters over `bounds` (hour steps), counters increased with resets resolved
/// like every other counter's (the interval holding a reset counts from the new reading).
pub fn token_ledgers(store: &(impl SeriesRead + ?Sized), bounds: &[i64]) -> Result<BTreeMap<RowKey, RowTokens>, ReadError> {
    let n = bounds.len().saturating_sub(1);
    let mut out: BTreeMap<RowKey, RowTokens> = BTreeMap::new();
    for field in ["prompt_tokens", "prompt_cached_tokens", "generation_tokens", "requests", "ttft_sum_s", "ttft_count"] {
        for m in store.find_series(INFERENCE, field, &[])? {
            let Some(key) = row_key(&m) else { continue };
            let l = store.ledger(m.id, EnergyKind::Counter, bounds)?;
            let row = out.entry(key).or_insert_with(|| RowTokens {
                engine: m.tag("engine").unwrap_or("").to_owned(),
                prompt: vec![0.0; n],
                prompt_cached: vec![0.0; n],
                generated: vec![0.0; n],
                requests: vec![0.0; n],
                ttft_sum_s: vec![0.0; n],
                ttft_count: vec![0.0; n],
                resets: 0,
                role: ServingRole::from_tag(m.tag("role")),
                reports_cached: false,
                covered_s: 0.0,
            });
            row.reports_cached |= field == "prompt_cached_tokens";
            row.resets += l.resets;
            row.covered_s += l.total_covered_s();
            let dst = match field {
                "prompt_tokens" => &mut row.prompt,
                "prompt_cached_tokens" => &mut row.prompt_cached,
                "generation_tokens" => &mut row.generated,
                "requests" => &mut row.requests,
                "ttft_sum_s" => &mut row.ttft_sum_s,
                _ => &mut row.ttft_count,
            };
            for (d, v) in dst.iter_mut().zip(&l.values) {
                *d += v;
            }
        }
    }
    Ok(out)
}

/// The GPUs each server held in `[from, to]`, from the `gpus` field of its `inference` points:
/// a run of points naming the same GPUs, without a gap longer than the `gpu_job` points' (20
/// minutes), holds them from its first point to its last. One allocation per run, under
/// [`serving_job`]; the owner is the server's tenant when all its rows name the same one.
pub fn serving_allocations(store: &(impl SeriesRead + ?Sized), from: i64, to: i64) -> Result<Vec<Allocation>, ReadError> {
    let gap = GPU_JOB_MAX_GAP_NS;
    // Per (node, server): every (time, gpus) reading of any of its rows, and its tenants.
    type Readings = (Vec<(i64, String)>, Vec<String>);
    let mut readings: BTreeMap<(String, String), Readings> = BTreeMap::new();
    for m in store.find_series(INFERENCE, "gpus", &[])? {
        let Some(key) = row_key(&m) else { continue };
        let ent = readings.entry((key.node, key.server)).or_default();
        if !ent.1.contains(&key.tenant) {
            ent.1.push(key.tenant);
        }
        for (t, g) in store.read_text(m.id, from.saturating_sub(gap), to.saturating_add(gap))? {
            if !g.is_empty() {
                ent.0.push((t, g));
            }
        }
    }
    let mut out = Vec::new();
    for ((node, server), (mut rs, tenants)) in readings {
        rs.sort();
        rs.dedup_by(|a, b| a.0 == b.0);
        let owner = match tenants.as_slice() {
            [one] => one.clone(),
            _ => String::new(),
        };
        let mut push = |gpus: &str, s: i64, e: i64| {
            if e > s && e >= from && s <= to {
                out.push(Allocation {
                    job: serving_job(&node, &server),
                    owner: owner.clone(),
                    project: "inference".into(),
                    node: node.clone(),
                    gpus: gpus.split(',').filter_map(|g| g.trim().parse().ok()).collect(),
                    start: s,
                    end: Some(e),
                    source: INFERENCE_SOURCE.into(),
                });
            }
        };
        let mut cur: Option<(String, i64, i64)> = None;
        for (t, g) in rs {
            cur = match cur.take() {
                Some((cg, s, e)) if cg == g && t.saturating_sub(e) <= gap => Some((cg, s, t)),
                Some((cg, s, e)) => {
                    push(&cg, s, e);
                    Some((g, t, t))
                }
                None => Some((g, t, t)),
            };
        }
        if let Some((g, s, e)) = cur {
            push(&g, s, e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryReader;

    #[test]
    fn runs_of_gpus_become_serving_allocations() {
        let mut store = MemoryReader::new();
        let s = 1_000_000_000i64;
        let tags = [("model", "m"), ("node", "n1"), ("server", "a")];
        for (i, t) in [0, 60, 120, 3000, 3060].iter().enumerate() {
            store.push(INFERENCE, "generation_tokens", &tags, t * s, 1.0).push_text(INFERENCE, "gpus", &tags, t * s, if i < 3 { "0,1" } else { "2" });
        }
        let a = serving_allocations(&store, 0, 4000 * s).expect("read");
        assert_eq!(a.iter().map(|a| (a.gpus.clone(), a.start / s, a.end.map(|e| e / s))).collect::<Vec<_>>(), vec![(vec![0, 1], 0, Some(120)), (vec![2], 3000, Some(3060))]);
        assert_eq!(a[0].job, "serve:n1/a");
    }
}

impl RowTokens {
    /// Prompt tokens of hour `h` that cost prefill compute on this server: all of them less the
    /// cache hits and transferred ones (never below 0: the two counters are read at slightly
    /// different instants). A decode server that does not say which of its prompts arrived as
    /// KV from a prefill server computed none of them: that is what disaggregation means.
    pub fn prompt_computed(&self, h: usize) -> f64 {
        if self.role == ServingRole::Decode && !self.reports_cached {
            return 0.0;
        }
        (self.prompt[h] - self.prompt_cached.get(h).copied().unwrap_or(0.0)).max(0.0)
    }

    /// Whether this row's requests, prompts and generated tokens are the deployment's. A prefill
    /// server sees every request and prompt its decode server also reports (and generates the
    /// first token, which the decode server generates again for the client): those are counted
    /// once, on the decode side; the prefill server contributes the prompt compute only.
    pub fn counts_requests(&self) -> bool {
        self.role != ServingRole::Prefill
    }

    /// The row's share of its server's energy in hour `h`, before normalising: generated +
    /// `w` × computed prompt tokens; on a prefill server, which does nothing but prompt compute,
    /// its computed prompt tokens alone (`w` would cancel out).
    pub fn weight(&self, h: usize, w: f64) -> f64 {
        match self.role {
            ServingRole::Prefill => self.prompt_computed(h),
            _ => self.generated[h] + w * self.prompt_computed(h),
        }
    }
}
