//! Energy per token and per training step through the real server over HTTP: `inference`
//! points (as the collector ships them) and GPU counters in, `POST /api/v1/progress` for a
//! training job, then `GET /api/v1/models`, `GET /api/v1/jobs` and the `/metrics` gauges.
//! Figures are worked out by hand below; the ledger must also still add up.

mod common;

use common::{READ, Server, WRITE, assert_close};
use serde_json::{Value, json};

const T0: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z
const H: i64 = 3600;

fn ts(t: i64) -> String {
    kilowatch_model::Timestamp::from_secs(t).to_rfc3339()
}

/// Two hours: PUE 1.2 then 1.3 (facility 120 then 130 kWh over IT 100 then 100); GPUs 0 and 1
/// (500 W and 300 W) serve model `m` for tenant `acme` through server `s1`; GPU 2 (700 W) runs a
/// training job; GPU 3 (100 W) is idle. The server restarts between 01:00 and 01:15.
fn site() -> String {
    let mut b = String::new();
    for (k, (fac, it)) in [(0.0, 0.0), (120.0, 100.0), (250.0, 200.0)].iter().enumerate() {
        let t = T0 + k as i64 * H;
        b.push_str(&format!("meter,meter=g,role=facility energy_kwh={fac} {t}\nmeter,meter=u,role=it,category=1 energy_kwh={it} {t}\n"));
    }
    for k in 0..=4i64 {
        let t = T0 + k * 1800;
        for (gpu, w) in [(0, 500), (1, 300), (2, 700), (3, 100)] {
            b.push_str(&format!("gpu,node=n1,gpu={gpu} energy_mj={}i {t}\n", w * 1800 * 1000 * k));
        }
    }
    // Every 15 minutes (runs of points break on gaps over 20 minutes); the server restarts
    // between 01:00 and 01:15, after which its counters start again from near zero.
    let generated = [0.0, 0.5e6, 1e6, 1.5e6, 2e6, 0.1e6, 0.35e6, 0.6e6, 1.1e6];
    let prompt = [0.0, 2e6, 4e6, 6e6, 8e6, 0.4e6, 1.4e6, 2.4e6, 4.4e6];
    let req = [0.0, 500.0, 1000.0, 1500.0, 2000.0, 100.0, 350.0, 600.0, 1100.0];
    for k in 0..9usize {
        let t = T0 + k as i64 * 900;
        b.push_str(&format!(
            "inference,node=n1,server=s1,engine=vllm,model=m,tenant=acme prompt_tokens={},generation_tokens={},requests={},ttft_sum_s={},ttft_count={},gpus=\"0,1\" {t}\n",
            prompt[k],
            generated[k],
            req[k],
            req[k] * 0.05,
            req[k]
        ));
    }
    b
}

async fn models(s: &Server, from: i64, to: i64) -> Value {
    let r = reqwest::Client::new().get(s.url("/api/v1/models")).query(&[("from", ts(from)), ("to", ts(to))]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

async fn post(s: &Server, path: &str, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(s.url(path)).header("Authorization", format!("Token {token}")).json(&body).send().await.expect("send")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn serving_and_training_footprints_add_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    assert_eq!(s.write(&site(), "s", WRITE).await.status(), 204);
    assert_eq!(post(&s, "/api/v1/jobs", WRITE, json!({"job":"train-1","owner":"acme","node":"n1","gpus":[2],"start":ts(T0),"end":ts(T0 + 2 * H)})).await.status(), 200);

    // Progress: write token only; a step posted again counts once.
    let steps: Vec<Value> = (1..=100).map(|k| json!({"job":"train-1","step":k,"tokens":1e6,"samples":256,"time":ts(T0 + 60 * k)})).collect();
    assert_eq!(post(&s, "/api/v1/progress", READ, json!(steps)).await.status(), 403);
    assert_eq!(reqwest::Client::new().post(s.url("/api/v1/progress")).json(&steps).send().await.expect("send").status(), 401);
    assert_eq!(post(&s, "/api/v1/progress", WRITE, json!(steps)).await.status(), 200);
    assert_eq!(post(&s, "/api/v1/progress", WRITE, json!(steps[10])).await.status(), 200);
    assert_eq!(post(&s, "/api/v1/progress", WRITE, json!({"job":"train-1","step":-1})).await.status().as_u16() / 100, 4);
    assert_eq!(post(&s, "/api/v1/progress", WRITE, json!({"job":"train-1","step":1,"tokens":-5})).await.status(), 400);

    let v = models(&s, T0, T0 + 2 * H).await;
    let ms = v["models"].as_array().expect("models");
    assert_eq!(ms.len(), 1, "{v:#}");
    let m = &ms[0];
    assert_eq!((m["model"].as_str(), m["tenant"].as_str()), (Some("m"), Some("acme")));
    // Hour 0: 8e6 prompt + 2e6 generated; hour 1: the restart's interval counts from the new
    // reading, so 4e6 + 1e6.
    assert_eq!((f(&m["prompt_tokens"]), f(&m["generation_tokens"]), f(&m["requests"])), (12e6, 3e6, 3000.0));
    assert!(m["counter_resets"].as_u64().expect("resets") >= 1);
    let gpu_j = (500.0 + 300.0) * 2.0 * H as f64;
    assert_close(&m["energy_kwh"]["gpu"], gpu_j / 3.6e6, &format!("0.8 kWh an hour {v:#}"));
    assert_close(&m["per_token"]["j_per_token"]["gpu"], gpu_j / 15e6, "GPU J per token");
    assert_close(&m["per_token"]["j_per_generated_token"]["gpu"], gpu_j / 3e6, "GPU J per generated token");
    // The facility share follows each hour's own PUE.
    assert_close(&m["hours"][0]["energy_kwh"]["facility"], 0.8 * 1.2, "hour 0 at PUE 1.2");
    assert_close(&m["hours"][1]["energy_kwh"]["facility"], 0.8 * 1.3, "hour 1 at PUE 1.3");
    assert_close(&m["per_token"]["j_per_token"]["facility"], (0.8 * 1.2 + 0.8 * 1.3) * 3.6e6 / 15e6, "facility J per token");
    assert_close(&m["co2_kg"], (0.8 * 1.2 + 0.8 * 1.3) * 0.056, "CO2 at the configured factor");
    assert_close(&m["per_token"]["wh_per_request"], (0.8 * 1.2 + 0.8 * 1.3) * 1000.0 / 3000.0, "Wh per request");
    // The stated split: facility energy over generated + 0.1 × prompt tokens.
    let per_w = (0.8 * 1.2 + 0.8 * 1.3) * 3.6e6 / (3e6 + 0.1 * 12e6);
    assert_close(&m["per_token"]["split_j_per_generated_token"], per_w, "split, generated");
    assert_close(&m["per_token"]["split_j_per_prompt_token"], per_w * 0.1, "split, prompt");
    assert_close(&m["ttft_mean_s"], 0.05, "TTFT");
    assert_eq!(m["confidence"], "high", "{m:#}");
    assert_eq!(m["gpus"], json!(["n1:0", "n1:1"]));

    let t = &v["training"][0];
    assert_eq!((t["job"].as_str(), t["steps"].as_u64()), (Some("train-1"), Some(100)));
    assert_close(&t["tokens"], 100e6, "tokens once each");
    let train_kwh = 700.0 * 2.0 * H as f64 / 3.6e6;
    assert_close(&t["kwh_per_step"]["it"], train_kwh / 100.0, "IT kWh per step");
    assert_close(&t["kwh_per_step"]["facility"], 700.0 * H as f64 / 3.6e6 * (1.2 + 1.3) / 100.0, "facility kWh per step");
    assert_close(&t["kwh_per_billion_tokens"]["it"], train_kwh * 10.0, "IT kWh per billion tokens");
    assert_close(&t["co2_kg_per_step"], 700.0 * H as f64 / 3.6e6 * (1.2 + 1.3) * 0.056 / 100.0, "CO2 per step");

    // Conservation with serving in the ledger: jobs (serving included) + idle + unattributed = E_IT.
    let it = f(&v["it_energy_kwh"]);
    assert_close(&v["it_energy_kwh"], 200.0, "E_IT");
    assert_close(&v["serving_it_energy_kwh"], 1.6, "serving");
    assert_close(&v["idle_kwh"], 0.2, "GPU 3");
    let sum = f(&v["jobs_it_energy_kwh"]) + f(&v["idle_kwh"]) + f(&v["unattributed_kwh"]);
    assert!((sum - it).abs() <= 1e-9 * it, "{sum} != {it}");

    // The jobs list carries the server as a job of its tenant.
    let r = reqwest::Client::new().get(s.url("/api/v1/jobs")).query(&[("from", ts(T0)), ("to", ts(T0 + 2 * H))]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    let jobs: Value = r.json().await.expect("json");
    let serve = jobs["jobs"].as_array().expect("jobs").iter().find(|j| j["job"] == "serve:n1/s1").unwrap_or_else(|| panic!("{jobs:#}"));
    assert_eq!(serve["owner"], "acme");
    assert_close(&serve["it_energy_kwh"], 1.6, "serving in the jobs list");

    // /metrics: the last complete hour of data (01:00–02:00): 2.88 MJ over 5e6 tokens.
    let text = reqwest::Client::new().get(s.url("/metrics")).header("Authorization", format!("Token {READ}")).send().await.expect("send").text().await.expect("text");
    let line = text
        .lines()
        .find(|l| l.starts_with("kilowatch_model_energy_joules_per_token{") && l.contains("basis=\"gpu\"") && l.contains("tokens=\"all\""))
        .unwrap_or_else(|| panic!("no gauge in:\n{text}"));
    let got: f64 = line.rsplit(' ').next().and_then(|x| x.parse().ok()).expect("value");
    assert!((got - 2.88e6 / 5e6).abs() < 1e-9, "{line}");
    assert!(line.contains("model=\"m\"") && line.contains("tenant=\"acme\""), "{line}");
    s.stop().await;
}

#[tokio::test]
async fn few_tokens_or_shared_gpus_are_low_confidence() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut b = String::new();
    for k in 0..=4i64 {
        let t = T0 + k * 900;
        b.push_str(&format!("gpu,node=n1,gpu=0 energy_mj={}i {t}\n", 400 * 900 * 1000 * k));
        b.push_str(&format!("inference,node=n1,server=small,engine=sglang,model=tiny generation_tokens={},prompt_tokens={},gpus=\"0\" {t}\n", 100 * k, 300 * k));
    }
    assert_eq!(s.write(&b, "s", WRITE).await.status(), 204);
    // A job on the same GPU during the hour: the server runs inside it (issue 29 item 8: nested,
    // not beside it; before, each got half): the server's tokens divide the job's whole GPU.
    assert_eq!(post(&s, "/api/v1/jobs", WRITE, json!({"job":"other","owner":"x","node":"n1","gpus":[0],"start":ts(T0),"end":ts(T0 + H)})).await.status(), 200);
    let v = models(&s, T0, T0 + H).await;
    let m = &v["models"][0];
    assert_eq!(m["confidence"], "low");
    let reasons = m["low_confidence_reasons"].to_string();
    assert!(!reasons.contains("shares GPUs") && reasons.contains("generated tokens"), "{reasons}");
    assert_close(&m["energy_kwh"]["gpu"], 400.0 * H as f64 / 3.6e6, "the job's whole GPU");
    assert_eq!(m["nested_in"], json!(["other"]));
    assert_eq!(m["tenant"], "");
    // Two servers on one GPU, outside any job, still share it and say so.
    let mut b2 = String::new();
    for k in 0..=4i64 {
        let t = T0 + 2 * H + k * 900;
        b2.push_str(&format!("gpu,node=n2,gpu=0 energy_mj={}i {t}\n", 400 * 900 * 1000 * k));
        for srv in ["a", "b"] {
            b2.push_str(&format!("inference,node=n2,server={srv},engine=vllm,model=m-{srv} generation_tokens={},prompt_tokens={},gpus=\"0\" {t}\n", 100_000 * k, 300_000 * k));
        }
    }
    assert_eq!(s.write(&b2, "s", WRITE).await.status(), 204);
    let v2 = models(&s, T0 + 2 * H, T0 + 3 * H).await;
    for m in v2["models"].as_array().expect("models") {
        assert!(m["low_confidence_reasons"].to_string().contains("shares GPUs"), "{m:#}");
        assert_close(&m["energy_kwh"]["gpu"], 400.0 * H as f64 / 3.6e6 / 2.0, "half the GPU each");
    }
    s.stop().await;
}

/// One hour at PUE 1.25; GPU 0 at 500 W holds server s1.
fn cached_site() -> String {
    let mut b = String::new();
    for (k, (fac, it)) in [(0.0, 0.0), (125.0, 100.0)].iter().enumerate() {
        let t = T0 + k as i64 * H;
        b.push_str(&format!("meter,meter=g,role=facility energy_kwh={fac} {t}\nmeter,meter=u,role=it,category=1 energy_kwh={it} {t}\n"));
    }
    for k in 0..=4i64 {
        let t = T0 + k * 900;
        b.push_str(&format!("gpu,node=n1,gpu=0 energy_mj={}i {t}\n", 500 * 900 * 1000 * k));
        let q = k as f64 / 4.0;
        for (tenant, cached) in [("acme", 9e6), ("beta", 0.0)] {
            b.push_str(&format!(
                "inference,node=n1,server=s1,engine=vllm,model=m,tenant={tenant} prompt_tokens={},prompt_cached_tokens={},generation_tokens={},requests={},gpus=\"0\" {t}\n",
                10e6 * q,
                cached * q,
                1e6 * q,
                1000.0 * q
            ));
        }
    }
    b
}

/// Issue 29 item 10 (prefix caching): two tenants share one vLLM server; both send 10 M prompt
/// tokens and get 1 M generated, but 9 M of acme's prompt tokens are cache hits.
#[tokio::test]
async fn prefix_cache_hits_are_not_charged_as_prompt_compute() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    assert_eq!(s.write(&cached_site(), "s", WRITE).await.status(), 204);
    let r = reqwest::Client::new().get(s.url("/api/v1/models")).query(&[("from", ts(T0)), ("to", ts(T0 + H))]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let row = |tenant: &str| v["models"].as_array().expect("models").iter().find(|m| m["tenant"] == tenant).cloned().unwrap_or_else(|| panic!("{tenant} in {v:#}"));
    let (acme, beta) = (row("acme"), row("beta"));
    assert_close(&acme["prompt_cached_tokens"], 9e6, "acme's cache hits");
    assert_eq!(beta["prompt_cached_tokens"].as_f64(), Some(0.0), "{beta:#}");
    assert_close(&acme["prompt_tokens"], 10e6, "served prompt tokens stay in the counts");
    // The server's 0.5 kWh divided by generated + 0.1 × computed prompt tokens: acme 1 M + 0.1 M,
    // beta 1 M + 1 M (charging the cache hits would split it 50/50).
    let (wa, wb) = (1e6 + 0.1 * 1e6, 1e6 + 0.1 * 10e6);
    assert_close(&acme["energy_kwh"]["gpu"], 0.5 * wa / (wa + wb), "acme's share");
    assert_close(&beta["energy_kwh"]["gpu"], 0.5 * wb / (wa + wb), "beta's share");
    // The split charges prefill to computed prompt tokens only.
    let fac_j = 0.5 * wa / (wa + wb) * 1.25 * 3.6e6;
    assert_close(&acme["per_token"]["split_j_per_generated_token"], fac_j / wa, "acme per generated token");
    assert_close(&acme["per_token"]["split_j_per_prompt_token"], fac_j / wa * 0.1, "acme per computed prompt token");
    // How acme's share moves over the stated range of the prompt weight (0.05 to 0.3), in the
    // models API and in acme's own statement.
    let share = |w: f64| 0.5 * (1e6 + w * 1e6) / (1e6 + w * 1e6 + 1e6 + w * 10e6);
    let sens = &acme["prompt_weight_sensitivity"];
    assert_eq!(sens["prompt_token_weight"], serde_json::json!([0.05, 0.3]), "{sens:#}");
    assert_close(&sens["energy_kwh"][0]["gpu"], share(0.05), "acme at 0.05");
    assert_close(&sens["energy_kwh"][1]["gpu"], share(0.3), "acme at 0.3");
    assert_close(&sens["it_change_pct"][1], (share(0.3) / share(0.1) - 1.0) * 100.0, "acme's move at 0.3, %");
    let r = reqwest::Client::new().get(s.url("/api/v1/statements/acme/2026-10.json")).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.expect("json");
    let in_statement = st["tokens"]["models"].as_array().and_then(|ms| ms.iter().find(|m| m["tenant"] == "acme")).unwrap_or_else(|| panic!("{:#}", st["tokens"]));
    assert_close(&in_statement["prompt_weight_sensitivity"]["energy_kwh"][1]["gpu"], share(0.3), "in the statement");
    s.stop().await;
}

/// Issue 29 item 10 (the prompt weight): `[accounting] prompt_token_weight` and
/// `prompt_weight_range` set the weight that divides a server's energy among its tenants and
/// the range the statement shows it over; the tenant's statement gives its total move.
#[tokio::test]
async fn the_prompt_weight_and_its_range_come_from_the_configuration() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = kilowatch_aggregator::config::Config::parse("[accounting]\nprompt_token_weight = 0.2\nprompt_weight_range = [0.1, 0.5]\n", std::path::Path::new("k.toml")).expect("config");
    let s = Server::start_with(dir.path(), "127.0.0.1:0".parse().expect("addr"), cfg, false).await;
    assert_eq!(s.write(&cached_site(), "s", WRITE).await.status(), 204);
    let r = reqwest::Client::new().get(s.url("/api/v1/models")).query(&[("from", ts(T0)), ("to", ts(T0 + H))]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let acme = v["models"].as_array().expect("models").iter().find(|m| m["tenant"] == "acme").cloned().unwrap_or_else(|| panic!("{v:#}"));
    // acme computes 1 M of its 10 M prompt tokens, beta all 10 M; both generate 1 M.
    let share = |w: f64| 0.5 * (1e6 + w * 1e6) / (1e6 + w * 1e6 + 1e6 + w * 10e6);
    assert_close(&acme["energy_kwh"]["gpu"], share(0.2), "acme at the configured weight");
    assert_eq!(acme["per_token"]["prompt_token_weight"].as_f64(), Some(0.2));
    let sens = &acme["prompt_weight_sensitivity"];
    assert_eq!(sens["prompt_token_weight"], json!([0.1, 0.5]), "{sens:#}");
    assert_close(&sens["energy_kwh"][0]["gpu"], share(0.1), "acme at 0.1");
    assert_close(&sens["energy_kwh"][1]["gpu"], share(0.5), "acme at 0.5");
    assert!(v["method"].as_str().is_some_and(|m| m.contains("generated + 0.2 x computed prompt")), "{}", v["method"]);
    let r = reqwest::Client::new().get(s.url("/api/v1/statements/acme/2026-10.json")).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.expect("json");
    let total = &st["tokens"]["prompt_weight_sensitivity"];
    assert_eq!(total["prompt_token_weight"], json!([0.1, 0.5]), "{:#}", st["tokens"]);
    assert_close(&total["it_change_pct"][0], (share(0.1) / share(0.2) - 1.0) * 100.0, "acme's statement at 0.1, %");
    assert_close(&total["it_change_pct"][1], (share(0.5) / share(0.2) - 1.0) * 100.0, "acme's statement at 0.5, %");
    s.stop().await;
}
