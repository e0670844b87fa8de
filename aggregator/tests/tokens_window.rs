//! `GET /api/v1/models` for real sites (issue 29, items 12, 9 and 8), through the real server:
//! a window lists only the models and tenants that served in it; a site without a facility
//! meter gets facility energy and CO2 per token as null with the reason, never 0; a server
//! inside a Slurm job or a Kubernetes pod is nested in it, not beside it.

mod common;

use common::{READ, Server, WRITE, assert_close};
use serde_json::Value;

const T0: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z
const H: i64 = 3600;

fn ts(t: i64) -> String {
    kilowatch_model::Timestamp::from_secs(t).to_rfc3339()
}

async fn models(s: &Server, from: i64, to: i64) -> Value {
    let r = reqwest::Client::new().get(s.url("/api/v1/models")).query(&[("from", ts(from)), ("to", ts(to))]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// GPUs 0 and 1 of node n1 at 500 W each from `T0` to `T0 + hours`, read every 30 minutes; an
/// IT meter at 100 kW; a grid meter at 120 kW when `facility`.
fn site(hours: i64, facility: bool) -> String {
    let mut b = String::new();
    for k in 0..=hours {
        let t = T0 + k * H;
        b.push_str(&format!("meter,meter=u,role=it,category=1 energy_kwh={} {t}\n", 100 * k));
        if facility {
            b.push_str(&format!("meter,meter=g,role=facility energy_kwh={} {t}\n", 120 * k));
        }
    }
    for k in 0..=2 * hours {
        let t = T0 + k * 1800;
        for gpu in 0..4 {
            b.push_str(&format!("gpu,node=n1,gpu={gpu} energy_mj={}i {t}\n", 500 * 1800 * 1000 * k));
        }
    }
    b
}

/// A vLLM server's counters every 15 minutes from `from_h` to `to_h` (hours after `T0`).
fn server(server: &str, model: &str, tenant: &str, gpus: &str, from_h: i64, to_h: i64) -> String {
    let mut b = String::new();
    for k in 0..=(to_h - from_h) * 4 {
        let t = T0 + from_h * H + k * 900;
        let n = k as f64;
        b.push_str(&format!(
            "inference,node=n1,server={server},engine=vllm,model={model},tenant={tenant} prompt_tokens={},generation_tokens={},requests={},gpus=\"{gpus}\" {t}\n",
            n * 40_000.0,
            n * 10_000.0,
            n * 20.0
        ));
    }
    b
}

/// Item 12: model `late` (tenant `beta`) first serves at 03:00. The window 00:00–02:00 lists
/// only `early` (tenant `acme`), not `late` with zero tokens and zero energy; 03:00–05:00 lists
/// only `late`.
#[tokio::test]
async fn a_window_lists_only_the_models_that_served_in_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = site(5, true) + &server("s1", "early", "acme", "0", 0, 2) + &server("s2", "late", "beta", "1", 3, 5);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let names = |v: &Value| -> Vec<(String, String)> {
        v["models"].as_array().expect("models").iter().map(|m| (m["model"].as_str().unwrap_or("").to_owned(), m["tenant"].as_str().unwrap_or("").to_owned())).collect()
    };
    let first = models(&s, T0, T0 + 2 * H).await;
    assert_eq!(names(&first), [("early".to_owned(), "acme".to_owned())], "{first:#}");
    let later = models(&s, T0 + 3 * H, T0 + 5 * H).await;
    assert_eq!(names(&later), [("late".to_owned(), "beta".to_owned())], "{later:#}");
    assert!(later["models"][0]["generation_tokens"].as_f64().expect("tokens") > 0.0);
    s.stop().await;
}

/// Item 9: an IT meter but no facility meter. GPU and IT energy per token stand; facility
/// energy and CO2 (totals and per token) are null, with the reason, never 0.
#[tokio::test]
async fn without_a_facility_meter_facility_and_co2_per_token_are_null() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = site(2, false) + &server("s1", "m", "acme", "0", 0, 2);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let v = models(&s, T0, T0 + 2 * H).await;
    let m = &v["models"][0];
    assert_close(&m["energy_kwh"]["gpu"], 1.0, &format!("GPU 0 at 500 W for two hours: {m:#}"));
    assert!(m["energy_kwh"]["it"].as_f64().is_some_and(|x| x > 0.0), "{m:#}");
    assert!(m["per_token"]["j_per_token"]["gpu"].as_f64().is_some_and(|x| x > 0.0), "{m:#}");
    for (what, x) in [
        ("facility energy", &m["energy_kwh"]["facility"]),
        ("CO2", &m["co2_kg"]),
        ("facility J per token", &m["per_token"]["j_per_token"]["facility"]),
        ("facility J per generated token", &m["per_token"]["j_per_generated_token"]["facility"]),
        ("split per generated token", &m["per_token"]["split_j_per_generated_token"]),
        ("Wh per request", &m["per_token"]["wh_per_request"]),
        ("g CO2 per million tokens", &m["per_token"]["co2_g_per_mtok"]),
        ("an hour's facility energy", &m["hours"][0]["energy_kwh"]["facility"]),
        ("an hour's CO2", &m["hours"][0]["co2_kg"]),
    ] {
        assert!(x.is_null(), "{what} is unknown, not {x}: {m:#}");
    }
    assert!(v["facility_unavailable"].as_str().is_some_and(|r| r.contains("role=facility")), "the reason: {v:#}");

    // With a grid meter the same figures are numbers and no reason is given.
    let dir2 = tempfile::tempdir().expect("tmp");
    let s2 = Server::start(dir2.path()).await;
    assert_eq!(s2.write(&(site(2, true) + &server("s1", "m", "acme", "0", 0, 2)), "s", WRITE).await.status(), 204);
    let v2 = models(&s2, T0, T0 + 2 * H).await;
    let m2 = &v2["models"][0];
    assert!(m2["energy_kwh"]["facility"].as_f64().is_some_and(|x| x > 0.0) && m2["co2_kg"].as_f64().is_some_and(|x| x > 0.0), "{m2:#}");
    assert!(v2.get("facility_unavailable").is_none(), "{v2:#}");
    s.stop().await;
    s2.stop().await;
}

async fn jobs(s: &Server, from: i64, to: i64) -> Value {
    let r = reqwest::Client::new().get(s.url("/api/v1/jobs")).query(&[("from", ts(from)), ("to", ts(to))]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// Item 8: vLLM inside a Slurm job (GPU 0, `slurm-42`) and inside a Kubernetes pod (GPU 1, seen
/// in `gpu_job` points as `k8s:<uid>`), each GPU at 500 W for two hours. Each job keeps its
/// whole 1 kWh of GPU energy (before: halved, split with its own server), no `serve:` job
/// stands beside it, and each model's energy is its job's, divided by its tokens.
#[tokio::test]
async fn a_server_inside_a_slurm_job_or_a_pod_is_nested_in_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut body = site(2, true) + &server("s1", "m-slurm", "acme", "0", 0, 2) + &server("s2", "m-pod", "beta", "1", 0, 2);
    for k in 0..=8 {
        body.push_str(&format!("gpu_job,node=n1,gpu=1 job=\"k8s:0f1e2d3c\",pids=\"4242\" {}\n", T0 + k * 900));
    }
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let post = reqwest::Client::new()
        .post(s.url("/api/v1/jobs"))
        .header("Authorization", format!("Token {WRITE}"))
        .json(&serde_json::json!({"job":"slurm-42","owner":"acme","node":"n1","gpus":[0],"start":ts(T0),"end":ts(T0 + 2 * H)}))
        .send()
        .await
        .expect("send");
    assert_eq!(post.status(), 200);

    let j = jobs(&s, T0, T0 + 2 * H).await;
    let list = j["jobs"].as_array().expect("jobs");
    let job = |id: &str| list.iter().find(|x| x["job"] == id).cloned().unwrap_or_else(|| panic!("{id} in {j:#}"));
    assert_close(&job("slurm-42")["gpu_energy_kwh"], 1.0, "the Slurm job keeps GPU 0's whole energy");
    assert_close(&job("k8s:0f1e2d3c")["gpu_energy_kwh"], 1.0, "the pod keeps GPU 1's whole energy");
    assert!(!list.iter().any(|x| x["job"].as_str().is_some_and(|id| id.starts_with("serve:"))), "no server beside its job: {j:#}");

    let v = models(&s, T0, T0 + 2 * H).await;
    let m = |name: &str| v["models"].as_array().expect("models").iter().find(|x| x["model"] == name).cloned().unwrap_or_else(|| panic!("{name} in {v:#}"));
    for (name, parent) in [("m-slurm", "slurm-42"), ("m-pod", "k8s:0f1e2d3c")] {
        let x = m(name);
        assert_close(&x["energy_kwh"]["gpu"], 1.0, &format!("{name}: its job's energy on its GPU"));
        assert_eq!(x["nested_in"], serde_json::json!([parent]), "{x:#}");
        assert_eq!(x["confidence"], "high", "nested, not sharing GPUs: {x:#}");
    }
    // Conservation: jobs + idle + unattributed = E_IT, the servers counted once, inside their jobs.
    let sum = v["jobs_it_energy_kwh"].as_f64().expect("jobs") + v["idle_kwh"].as_f64().expect("idle") + v["unattributed_kwh"].as_f64().expect("unattributed");
    assert_close(&v["it_energy_kwh"], sum, "conservation");
    s.stop().await;
}
