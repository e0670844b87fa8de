//! A prefill/decode-disaggregated deployment (vLLM's disaggregated prefill, SGLang PD, NVIDIA
//! Dynamo) through the real binaries (issue 29 item 10): `kilowatch serve` on loopback, the real
//! `kilowatch-collector` over two fake NVML GPUs and two vLLM pages, a prefill server on GPU 0
//! (`role = "prefill"`) and a decode server on GPU 1 (`role = "decode"`). Both pages report every
//! request and its prompt; the models API counts each once, charges both GPUs' energy to the
//! model, and shows the prefill side's energy on its own.

mod common;
#[path = "../../collector/tests/nvml_support/mod.rs"]
mod nvml_support;
#[path = "../../collector/tests/peers/mod.rs"]
mod peers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{READ, WRITE};
use kilowatch_model::Timestamp;
use kilowatch_store::Store;
use kilowatch_store::rollup::EnergyKind;
use nvml_support::{FakeNvml, fixtures_proc};
use serde_json::Value;

const NS: i64 = 1_000_000_000;

/// The `kilowatch-collector` binary: `KILOWATCH_COLLECTOR_BIN` where set (a copy taken right
/// after building, on a machine whose target folder several checkouts share), else built into
/// this test's target folder.
fn collector_bin() -> PathBuf {
    match std::env::var_os("KILOWATCH_COLLECTOR_BIN") {
        Some(p) => PathBuf::from(p),
        None => nvml_support::cargo_build(&["-p", "kilowatch-collector", "--bin", "kilowatch-collector"]).join("kilowatch-collector"),
    }
}

/// Energy counters rising by `step_mj` a frame, for 10,000 frames.
fn energy(step_mj: u64) -> String {
    let v: Vec<String> = (0..10_000u64).map(|k| (5_000_000_000 + k * step_mj).to_string()).collect();
    format!("[{}]", v.join(","))
}

/// A vLLM page whose counters grow with the requests finished since `start` (one every 10 ms):
/// each request a 300-token prompt. The prefill side computes 240 of them (60 are its prefix
/// cache's) and generates one token; the decode side receives all 300 as KV
/// (`external_kv_transfer`) and generates 40.
fn page(prefill: bool, start: Instant) -> String {
    let k = start.elapsed().as_millis() as u64 / 10;
    let l = "engine=\"0\",model_name=\"llama-70b\"";
    let (generated, sources) = if prefill { (k, [("local_compute", 240 * k), ("local_cache_hit", 60 * k)]) } else { (40 * k, [("local_compute", 0), ("external_kv_transfer", 300 * k)]) };
    let mut p = format!(
        "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{{{l}}} {}\n# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{{{l}}} {generated}\n\
         # TYPE vllm:request_success_total counter\nvllm:request_success_total{{{l},finished_reason=\"length\"}} {k}\n# TYPE vllm:prompt_tokens_by_source_total counter\n",
        300 * k
    );
    for (source, v) in sources {
        p.push_str(&format!("vllm:prompt_tokens_by_source_total{{{l},source=\"{source}\"}} {v}\n"));
    }
    p
}

async fn serve_counters(prefill: bool, start: Instant) -> SocketAddr {
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || std::future::ready(page(prefill, start))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn close(got: &Value, want: f64, what: &str) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!((g - want).abs() <= 1e-9 * want.abs().max(1e-12), "{what}: got {g}, want {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefill_and_a_decode_server_count_each_request_and_prompt_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let start = Instant::now();
    let prefill = serve_counters(true, start).await;
    let decode = serve_counters(false, start).await;
    let fake = FakeNvml::new(&format!("[[gpu]]\nenergy_mj = {}\npower_mw = 500000\n[[gpu]]\nenergy_mj = {}\npower_mw = 300000\n", energy(50_000), energy(30_000)));

    let port = peers::free_port();
    let data = dir.path().join("data");
    let server_cfg = dir.path().join("kilowatch.toml");
    std::fs::write(&server_cfg, format!("[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n[alerts]\nenabled = false\n", data.display().to_string())).expect("config");
    let server_log = dir.path().join("kilowatch.log");
    let server = common::serve_process(&server_cfg, &server_log);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "kilowatch did not listen: {}", std::fs::read_to_string(&server_log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let collector_cfg = dir.path().join("collector.toml");
    std::fs::write(
        &collector_cfg,
        format!(
            "interval_s = 0.2\nsite = \"dc5\"\nnode = \"dgx-001\"\n[aggregator]\nurl = \"http://127.0.0.1:{port}\"\ntoken = \"{WRITE}\"\n[spool]\ndir = {spool:?}\nfsync = \"never\"\n\
             [nvml]\nlib_path = {lib:?}\nproc_root = {proc:?}\n\
             [[inference]]\nname = \"llama-prefill\"\nengine = \"vllm\"\nrole = \"prefill\"\ntenant = \"acme\"\nurl = \"http://{prefill}/metrics\"\ngpus = [0]\n\
             [[inference]]\nname = \"llama-decode\"\nengine = \"vllm\"\nrole = \"decode\"\ntenant = \"acme\"\nurl = \"http://{decode}/metrics\"\ngpus = [1]\n",
            spool = dir.path().join("spool").display().to_string(),
            lib = fake.lib.display().to_string(),
            proc = fixtures_proc().display().to_string(),
        ),
    )
    .expect("config");
    let collector_log = dir.path().join("collector.log");
    let collector = common::collector_process(&collector_bin(), &collector_cfg, &collector_log);
    // Four seconds of samples (about twenty a server), the window the whole seconds inside them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = (Timestamp::now().0 / NS + 1) * NS;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let to = Timestamp::now().0 / NS * NS;
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(collector);
    let log = || std::fs::read_to_string(&collector_log).unwrap_or_default();

    // Everything the collector sent is stored by now (its spool sends a batch each interval).
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/models"))
        .query(&[("from", Timestamp(from).to_rfc3339()), ("to", Timestamp(to).to_rfc3339())])
        .header("Authorization", format!("Token {READ}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    drop(server);

    // What the store holds, independently of the attribution.
    let store = Store::open(&data).expect("reopen");
    let ledger = |measurement: &str, field: &str, tags: &[(&str, &str)]| -> f64 {
        let series = store.find_series(measurement, field, tags).expect("find");
        assert_eq!(series.len(), 1, "{measurement}.{field} {tags:?}: {series:?}\n{}", log());
        store.ledger(series[0].id, EnergyKind::Counter, &[from, to]).expect("ledger").total()
    };
    let (p, d) = ([("server", "llama-prefill"), ("role", "prefill")], [("server", "llama-decode"), ("role", "decode")]);
    let gpu_kwh = |g: &str| ledger("gpu", "energy_mj", &[("gpu", g)]) / 1000.0 / 3.6e6;
    let prefill_computed = ledger("inference", "prompt_tokens", &p) - ledger("inference", "prompt_cached_tokens", &p);
    let decode_prompt = ledger("inference", "prompt_tokens", &d);
    let decode_requests = ledger("inference", "requests", &d);
    let decode_generated = ledger("inference", "generation_tokens", &d);
    assert!(decode_requests >= 100.0 && ledger("inference", "requests", &p) >= 100.0, "both servers served: {decode_requests}\n{}", log());
    assert!(prefill_computed > 0.0 && gpu_kwh("0") > 0.0 && gpu_kwh("1") > 0.0);

    let models = v["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "one model, one tenant: {v:#}");
    let m = &models[0];
    assert_eq!((m["model"].as_str(), m["tenant"].as_str()), (Some("llama-70b"), Some("acme")));
    // Each request and prompt once: the decode side's (summing both servers counts them twice).
    close(&m["requests"], decode_requests, "requests");
    close(&m["prompt_tokens"], decode_prompt, "prompt tokens");
    close(&m["generation_tokens"], decode_generated, "generated tokens");
    // Of the prompts, the prefill server computed 240 in 300; the rest were its prefix cache's.
    // The KV the decode server received was computed, on the prefill server: not a cache hit.
    close(&m["prompt_cached_tokens"], decode_prompt - prefill_computed, "cache hits");
    // Both sides' energy goes to the model; the prefill side's is shown on its own.
    close(&m["energy_kwh"]["gpu"], gpu_kwh("0") + gpu_kwh("1"), "both GPUs' energy");
    close(&m["prefill_energy_kwh"]["gpu"], gpu_kwh("0"), "the prefill server's energy");
    close(&m["per_token"]["j_per_generated_token"]["gpu"], (gpu_kwh("0") + gpu_kwh("1")) * 3.6e6 / decode_generated, "J per generated token");
    assert_eq!(m["servers"], serde_json::json!(["dgx-001/llama-decode", "dgx-001/llama-prefill"]));
    assert!(!m["low_confidence_reasons"].to_string().contains("prefill"), "{m:#}");
}
