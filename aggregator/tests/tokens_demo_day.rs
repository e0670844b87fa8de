//! A demo day: the simulated DC5 with its inference fleet and reporting training jobs,
//! backfilled by the demo's own code into a real server's store and job ledger, then read
//! through `GET /api/v1/models`: serving and training in the mix, the ledger still adds up
//! (jobs + idle + unattributed = E_IT to 1e-9), and the figures land where the published
//! measurements the simulator is calibrated on put them.

mod common;

use std::time::Duration;

use common::{READ, Server};
use kilowatch_aggregator::demo::backfill_with_jobs;
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::jobs::JobStore;
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_day_of_serving_and_training_adds_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // Tuesday 2026-10-06, local midnight (UTC+2), with an hour before it backfilled too.
    let day = Timestamp::parse_rfc3339("2026-10-05T22:00:00Z").expect("t").0;
    let start = Timestamp(day - 3_600_000_000_000);
    let until = Timestamp(day + 86_400_000_000_000);
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let jobs = JobStore::beside(&store).expect("jobs");
        let mut site = Site::new(SimConfig { start, inference: true, ..SimConfig::default() });
        backfill_with_jobs(&store, Some(&jobs), &mut site, until, Duration::from_secs(900)).expect("backfill");
    })
    .await
    .expect("backfill task");

    let r = reqwest::Client::new()
        .get(s.url("/api/v1/models"))
        .query(&[("from", Timestamp(day).to_rfc3339()), ("to", until.to_rfc3339())])
        .header("Authorization", format!("Token {READ}"))
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");

    let it = f(&v["it_energy_kwh"]);
    let sum = f(&v["jobs_it_energy_kwh"]) + f(&v["idle_kwh"]) + f(&v["unattributed_kwh"]);
    assert!((sum - it).abs() <= 1e-9 * it, "jobs + idle + unattributed = {sum}, E_IT = {it}");
    let serving = f(&v["serving_it_energy_kwh"]);
    assert!(serving > 0.0 && f(&v["jobs_it_energy_kwh"]) > 5.0 * serving, "serving {serving} kWh among jobs {}", v["jobs_it_energy_kwh"]);

    let models = v["models"].as_array().expect("models");
    assert_eq!(models.len(), 5, "{}", models.iter().map(|m| m["model"].to_string()).collect::<Vec<_>>().join(", "));
    let model = |name: &str| models.iter().find(|m| m["model"] == name).unwrap_or_else(|| panic!("no {name}"));
    // A whole day of a busy fleet: plenty of tokens, nothing shared with the scheduler's jobs.
    for m in models {
        assert_eq!(m["confidence"], "high", "{}: {}", m["model"], m["low_confidence_reasons"]);
        assert_eq!(m["hours"].as_array().map(Vec::len), Some(24));
        let hours_facility: f64 = m["hours"].as_array().expect("hours").iter().map(|h| f(&h["energy_kwh"]["facility"])).sum();
        assert!((hours_facility - f(&m["energy_kwh"]["facility"])).abs() <= 1e-9 * hours_facility);
    }
    for m in models {
        let p = &m["per_token"];
        eprintln!(
            "{:<42} {:>6.3} GPU J/gen token, {:>6.3} facility J/token, {:>6.3} Wh/request, {:>6.2} L and {:>6.1} g CO2 per Mtok",
            m["model"].as_str().unwrap_or(""),
            f(&p["j_per_generated_token"]["gpu"]),
            f(&p["j_per_token"]["facility"]),
            f(&p["wh_per_request"]),
            p["water_l_per_mtok"].as_f64().unwrap_or(f64::NAN),
            f(&p["co2_g_per_mtok"])
        );
    }
    // GPU J per generated token over a day (full-load anchors 0.15 and 2.8 J, more off-peak).
    let small = f(&model("meta-llama/Llama-3.1-8B-Instruct")["per_token"]["j_per_generated_token"]["gpu"]);
    let large = f(&model("meta-llama/Llama-3.1-405B-Instruct-FP8")["per_token"]["j_per_generated_token"]["gpu"]);
    assert!((0.15..0.45).contains(&small), "8B: {small} J");
    assert!((2.8..8.0).contains(&large), "405B: {large} J");
    assert_eq!(model("meta-llama/Llama-3.1-70B-Instruct")["tenant"], "h-company/agents");
    // The facility share follows the hour's PUE: above the GPU share, by 1.1–1.3.
    let m = model("meta-llama/Llama-3.1-70B-Instruct");
    let ratio = f(&m["energy_kwh"]["facility"]) / f(&m["energy_kwh"]["it"]);
    assert!((1.05..1.4).contains(&ratio), "facility / IT = {ratio}");

    let training = v["training"].as_array().expect("training");
    assert!(!training.is_empty(), "no training job reported progress");
    for t in training {
        assert!(f(&t["steps"]) > 0.0 && t["job"].as_str().is_some_and(|j| j.starts_with("sim:")));
        let per_step = f(&t["kwh_per_step"]["it"]);
        let per_btok = f(&t["kwh_per_billion_tokens"]["it"]);
        assert!(per_step > 0.0 && per_btok > 0.0, "{t:#}");
        eprintln!("training {}: {} steps, {:.3} kWh IT per step, {:.1} kWh IT per billion tokens", t["job"], t["steps"], per_step, per_btok);
    }

    // The monthly report and a tenant's statement carry the section, in every format.
    let get = |path: String| {
        let url = s.url(&path);
        async move {
            let r = reqwest::Client::new().get(url).header("Authorization", format!("Token {READ}")).timeout(Duration::from_secs(300)).send().await.expect("send");
            assert_eq!(r.status(), 200, "{path}");
            r.bytes().await.expect("body")
        }
    };
    let report: Value = serde_json::from_slice(&get("/api/v1/reports/2026-10.json".into()).await).expect("json");
    assert_eq!(report["tokens"]["models"].as_array().map(Vec::len), Some(5), "{:#}", report["tokens"]);
    assert!(!report["tokens"]["training"].as_array().expect("training").is_empty());
    let html = String::from_utf8(get("/api/v1/reports/2026-10.html".into()).await.to_vec()).expect("utf-8");
    assert!(html.contains("Energy per token and per training step") && html.contains("Llama-3.1-405B"), "no section in the report's HTML");
    let pdf = get("/api/v1/reports/2026-10.pdf".into()).await;
    assert!(pdf.starts_with(b"%PDF"));
    let st: Value = serde_json::from_slice(&get("/api/v1/statements/h-company/2026-10.json".into()).await).expect("json");
    let ms = st["tokens"]["models"].as_array().expect("models");
    assert_eq!(ms.len(), 1, "{ms:#?}");
    assert_eq!(ms[0]["model"], "meta-llama/Llama-3.1-70B-Instruct");
    // The serving deployment is one of the tenant's jobs in its statement, and the model's
    // energy is that job's.
    let serve_it: f64 = st["jobs"].as_array().expect("jobs").iter().filter(|j| j["job"].as_str().is_some_and(|x| x.starts_with("serve:"))).map(|j| f(&j["it_energy_kwh"])).sum();
    assert!((serve_it - f(&ms[0]["energy_kwh"]["it"])).abs() <= 1e-9 * serve_it, "{serve_it} vs {}", ms[0]["energy_kwh"]["it"]);
    let st_html = String::from_utf8(get("/api/v1/statements/h-company/2026-10.html".into()).await.to_vec()).expect("utf-8");
    assert!(st_html.contains("Energy per token and per training step"));
    s.stop().await;
}
