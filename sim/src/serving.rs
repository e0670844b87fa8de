//! An inference fleet on the site's last nodes (when [`crate::SimConfig::inference`] is set):
//! models of several sizes served by vLLM and SGLang, each server on its GPUs, with a daily
//! request curve. The scheduler never places jobs on these nodes.
//!
//! Energy per generated token at full load (GPU boundary, H100 SXM), the anchor of each model's
//! power and throughput (docs/inference.md cites the measurements): Llama 3.1 8B 0.15 J (ML.ENERGY
//! Leaderboard v3.0, H100, vLLM 0.11: 0.12 J at batch 64, 0.20 J with v2's vLLM 0.5), Mixtral 8x7B
//! on 2 GPUs 0.35 J, Llama 3.1 70B and Qwen 2.5 72B on 4 GPUs 1.0–1.1 J, Llama 3.1 405B FP8 on 8
//! GPUs 2.8 J (Samsi et al. 2023 measured 3–4 J per token for LLaMA 65B on A100s). Below full load
//! a GPU holding a model still draws its base power, so J per token rises as the load falls.

use crate::noise::value_noise;

/// One model as served on the fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServedModel {
    pub model: &'static str,
    /// The customer of a dedicated deployment; empty for a shared endpoint.
    pub tenant: &'static str,
    pub engine: &'static str,
    pub gpus_per_server: usize,
    /// J per generated token over the server's GPUs at full load.
    pub j_per_token_full: f64,
    /// Prompt tokens per generated token (chat ~3, retrieval-augmented ~8).
    pub prompt_ratio: f64,
    pub tokens_per_request: f64,
    /// Share of the daily peak this model's traffic reaches.
    pub peak: f64,
}

/// Per-GPU power of a GPU holding a model with no request in flight, and at full load, W.
pub const BASE_W: f64 = 150.0;
pub const FULL_W: f64 = 620.0;

/// The fleet, one entry per node from the first serving node on: (model, servers on the node).
pub const FLEET: &[(ServedModel, usize)] = &[
    (ServedModel { model: "meta-llama/Llama-3.1-8B-Instruct", tenant: "", engine: "vllm", gpus_per_server: 1, j_per_token_full: 0.15, prompt_ratio: 3.0, tokens_per_request: 350.0, peak: 0.9 }, 8),
    (
        ServedModel {
            model: "mistralai/Mixtral-8x7B-Instruct-v0.1",
            tenant: "lighton/rag",
            engine: "vllm",
            gpus_per_server: 2,
            j_per_token_full: 0.35,
            prompt_ratio: 8.0,
            tokens_per_request: 250.0,
            peak: 0.8,
        },
        4,
    ),
    (
        ServedModel {
            model: "meta-llama/Llama-3.1-70B-Instruct",
            tenant: "h-company/agents",
            engine: "vllm",
            gpus_per_server: 4,
            j_per_token_full: 1.0,
            prompt_ratio: 4.0,
            tokens_per_request: 400.0,
            peak: 0.85,
        },
        2,
    ),
    (ServedModel { model: "Qwen/Qwen2.5-72B-Instruct", tenant: "", engine: "sglang", gpus_per_server: 4, j_per_token_full: 1.1, prompt_ratio: 3.0, tokens_per_request: 450.0, peak: 0.7 }, 2),
    (
        ServedModel {
            model: "meta-llama/Llama-3.1-405B-Instruct-FP8",
            tenant: "scaleway/inference",
            engine: "vllm",
            gpus_per_server: 8,
            j_per_token_full: 2.8,
            prompt_ratio: 3.0,
            tokens_per_request: 500.0,
            peak: 0.75,
        },
        1,
    ),
    (
        ServedModel {
            model: "meta-llama/Llama-3.1-405B-Instruct-FP8",
            tenant: "scaleway/inference",
            engine: "vllm",
            gpus_per_server: 8,
            j_per_token_full: 2.8,
            prompt_ratio: 3.0,
            tokens_per_request: 500.0,
            peak: 0.75,
        },
        1,
    ),
];

/// Nodes the fleet takes at the end of the site (none on a site too small to spare them).
pub fn serving_nodes(site_nodes: usize) -> usize {
    if site_nodes >= 4 * FLEET.len() { FLEET.len() } else { 0 }
}

/// One server: its model, node (site index), GPUs and name.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub model: ServedModel,
    pub node: usize,
    pub gpus: Vec<u32>,
    pub name: String,
    /// A stand-in for the PID of the process listening on its port.
    pub pid: u32,
    /// Decorrelates the servers' noise.
    pub key: u64,
}

pub fn layout(site_nodes: usize, gpus_per_node: usize) -> Vec<Server> {
    let n = serving_nodes(site_nodes);
    let first = site_nodes - n;
    let mut out = Vec::new();
    for (i, (m, servers)) in FLEET.iter().enumerate().take(n) {
        for s in 0..*servers {
            let lo = s * m.gpus_per_server;
            if lo + m.gpus_per_server > gpus_per_node {
                break;
            }
            let short = m.model.rsplit('/').next().unwrap_or(m.model).to_lowercase();
            out.push(Server {
                model: *m,
                node: first + i,
                gpus: (lo as u32..(lo + m.gpus_per_server) as u32).collect(),
                name: format!("{}-{}", short.split('-').take(3).collect::<Vec<_>>().join("-"), s),
                pid: 40_000 + (i * 8 + s) as u32,
                key: 0x5e57_0000 + (i * 8 + s) as u64,
            });
        }
    }
    out
}

/// The share of a model's full throughput in use at `t_s` (UTC seconds): a daily curve with
/// its trough near 04:00 and its peak in the early afternoon (Paris, UTC+1), lower at weekends,
/// with slow noise. 0.05–1.
pub fn load(s: &Server, t_s: f64) -> f64 {
    let day = 86_400.0;
    let local_h = ((t_s + 3600.0).rem_euclid(day)) / 3600.0;
    // Raised cosine from 04:00 (0) to 15:00 (1) and back.
    let phase = if (4.0..15.0).contains(&local_h) { (local_h - 4.0) / 11.0 } else { 1.0 - ((local_h - 15.0).rem_euclid(24.0)) / 13.0 };
    let shape = 0.5 - 0.5 * (std::f64::consts::PI * phase).cos();
    // 1970-01-01 was a Thursday: days 2 and 3 of the week (from Thursday) are the weekend.
    let weekday = ((t_s + 3600.0).div_euclid(day) as i64).rem_euclid(7);
    let week = if weekday == 2 || weekday == 3 { 0.6 } else { 1.0 };
    let noise = 1.0 + 0.08 * value_noise(s.key, 0x77, t_s / 600.0);
    (s.model.peak * week * (0.12 + 0.88 * shape) * noise).clamp(0.05, 1.0)
}

/// What one server does at a load: per-GPU power and rates per second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub gpu_w: f64,
    pub generated_per_s: f64,
    pub prompt_per_s: f64,
    pub requests_per_s: f64,
    /// Mean time to first token at this load, s.
    pub ttft_s: f64,
    /// GPU utilization, 0–1.
    pub util: f64,
}

pub fn rates(s: &Server, u: f64) -> Rates {
    let m = &s.model;
    let peak_tps = m.gpus_per_server as f64 * FULL_W / m.j_per_token_full;
    let generated = peak_tps * u;
    Rates {
        gpu_w: BASE_W + (FULL_W - BASE_W) * u,
        generated_per_s: generated,
        prompt_per_s: generated * m.prompt_ratio,
        requests_per_s: generated / m.tokens_per_request,
        ttft_s: 0.08 + 0.5 * u * u * (m.gpus_per_server as f64).sqrt(),
        util: (0.25 + 0.75 * u).min(1.0),
    }
}

/// A server's counters since the simulation start (its "process start").
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counters {
    pub prompt: f64,
    pub generated: f64,
    pub requests: f64,
    pub ttft_sum_s: f64,
}

impl Counters {
    /// Adds `dt` seconds between two rates (trapezoid, as the GPUs' energy).
    pub fn add(&mut self, a: &Rates, b: &Rates, dt: f64) {
        let h = 0.5 * dt;
        self.prompt += h * (a.prompt_per_s + b.prompt_per_s);
        self.generated += h * (a.generated_per_s + b.generated_per_s);
        self.requests += h * (a.requests_per_s + b.requests_per_s);
        self.ttft_sum_s += h * (a.requests_per_s * a.ttft_s + b.requests_per_s * b.ttft_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_fits_and_j_per_token_falls_with_load() {
        let servers = layout(127, 8);
        assert_eq!(servers.len(), 18);
        assert!(servers.iter().all(|s| s.node >= 121 && s.gpus.iter().all(|&g| g < 8)));
        assert!(layout(8, 8).is_empty(), "small test sites keep every node for jobs");
        let s = &servers[0];
        let full = rates(s, 1.0);
        assert!((full.gpu_w / full.generated_per_s - 0.15).abs() < 1e-12);
        let low = rates(s, 0.2);
        assert!(low.gpu_w / low.generated_per_s > 1.5 * 0.15, "the base power weighs more at low load");
        let day: Vec<f64> = (0..24).map(|h| load(s, 1_735_776_000.0 + h as f64 * 3600.0)).collect();
        let (lo, hi) = day.iter().fold((f64::MAX, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(hi > 2.5 * lo, "a daily curve: {day:?}");
    }
}
