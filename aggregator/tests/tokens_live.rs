//! Energy per token live: a real HTTP server process (collector/tests/peers/inference_server.py,
//! vLLM's metric declarations in the real `prometheus_client`) advances its counters under a load
//! loop; the real collector (NVML source over the fake `libnvidia-ml.so`, which places that
//! process on GPUs 0 and 1, and the inference source, which finds the process listening on the
//! port in /proc) ships to a real aggregator over HTTP. The API's J per token must equal the two
//! GPUs' energy over the tokens counted, and the facility share the IT energy times each hour's PUE.

mod common;
#[path = "../../collector/tests/nvml_support/mod.rs"]
mod nvml_support;
#[path = "../../collector/tests/peers/mod.rs"]
mod peers;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{READ, Server, WRITE};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::config::{CollectorConfig, NvmlSourceConfig};
use kilowatch_collector::inference::InferenceSource;
use kilowatch_collector::nvml::NvmlSource;
use kilowatch_collector::source::Source;
use kilowatch_model::Timestamp;
use kilowatch_store::rollup::EnergyKind;
use nvml_support::FakeNvml;
use serde_json::Value;

const HOUR_S: i64 = 3600;
const NS: i64 = 1_000_000_000;

/// Energy counters rising by `step_mj` a frame (one frame per sample), for 2,000 frames.
fn energy(step_mj: u64) -> String {
    let v: Vec<String> = (0..2000u64).map(|k| (5_000_000_000 + k * step_mj).to_string()).collect();
    format!("[{}]", v.join(","))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-9 * want.abs().max(1e-12), "{what}: got {got}, want {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_per_token_is_the_servers_gpu_energy_over_its_tokens() {
    let Some(py) = peers::python("j_per_token_is_the_servers_gpu_energy_over_its_tokens") else { return };
    let port = peers::free_port();
    // peers::script resolves from the including crate: spell the collector's folder out.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/tests/peers/inference_server.py");
    let port_s = port.to_string();
    let mut server =
        peers::spawn(&py, &[script.to_str().expect("path"), "--engine", "vllm", "--port", &port_s, "--model", "llama-8b", "--prompt", "300", "--gen", "40", "--every", "0.02", "--max-seconds", "120"]);
    let pid = server.0.id();
    peers::wait_tcp(port, &mut server);

    // GPUs 0 and 1 run the server's process; GPU 2 runs someone else's; GPU 3 is idle.
    let scenario = format!(
        "[[gpu]]\nenergy_mj = {}\nprocesses = [{{ pid = {pid}, from = 0 }}]\n[[gpu]]\nenergy_mj = {}\nprocesses = [{{ pid = {pid}, from = 0 }}]\n[[gpu]]\nenergy_mj = {}\nprocesses = [{{ pid = 1, from = 0 }}]\n[[gpu]]\nenergy_mj = {}\n",
        energy(140_000),
        energy(90_000),
        energy(120_000),
        energy(20_000)
    );
    let fake = FakeNvml::new(&scenario);
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;

    // Meters around now: IT 100 kWh an hour, PUE 1.25, 1.35, 1.45, 1.55 in consecutive hours.
    let h0 = Timestamp::now().0 / NS / HOUR_S * HOUR_S - HOUR_S;
    let pue = |t_s: i64| [1.25, 1.35, 1.45, 1.55][((t_s - h0) / HOUR_S) as usize];
    let mut meters = String::new();
    let (mut fac, mut it) = (0.0, 0.0);
    for k in 0..=4 {
        let t = h0 + k * HOUR_S;
        meters.push_str(&format!("meter,meter=g,role=facility energy_kwh={fac} {t}\nmeter,meter=u,role=it,category=1 energy_kwh={it} {t}\n"));
        if k < 4 {
            fac += 100.0 * pue(t);
            it += 100.0;
        }
    }
    assert_eq!(s.write(&meters, "s", WRITE).await.status(), 204);

    let nvml = NvmlSourceConfig { lib_path: Some(fake.lib.clone()), optional: false, proc_root: "/proc".into() };
    let gpus = NvmlSource::from_config(&nvml, "dc5", "dgx-007").expect("NVML starts").expect("required");
    let text =
        format!("node = \"dgx-007\"\n[aggregator]\nurl = \"http://127.0.0.1:1\"\n[[inference]]\nname = \"llama-a\"\nengine = \"vllm\"\nurl = \"http://127.0.0.1:{port}/metrics\"\ntenant = \"acme\"\n");
    let cfg = CollectorConfig::parse(&text, std::path::Path::new("c.toml")).expect("config");
    let inference = InferenceSource::new(&cfg.inference, "dc5", "dgx-007", Some(gpus.pids())).expect("source");
    let sources: Vec<Box<dyn Source>> = vec![Box::new(gpus), Box::new(inference)];
    let spool = tempfile::tempdir().expect("tmp");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let (agent, stats) = common::agent(s.addr, sources, Duration::from_millis(150), Clock::Wall, spool.path());
    let task = tokio::spawn(agent.run(rx));
    let started = Instant::now();
    while stats.batches_sent.load(Ordering::Relaxed) < 30 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    task.await.expect("agent");
    drop(server);
    assert!(stats.batches_sent.load(Ordering::Relaxed) >= 30, "{stats:?}");
    assert_eq!(stats.source_errors.load(Ordering::Relaxed), 0);

    // The server's points carry the GPUs NVML saw its process on.
    let gpus_series = s.store.find_series("inference", "gpus", &[("server", "llama-a")]).expect("find");
    assert_eq!(gpus_series.len(), 1, "{gpus_series:?}");
    assert_eq!(gpus_series[0].tag("model"), Some("llama-8b"));
    let readings = s.store.read_with_neighbours(gpus_series[0].id, 0, i64::MAX).expect("read");
    assert!(readings.iter().all(|(_, v)| v.as_text() == Some("0,1")), "{readings:?}");
    // A window of whole seconds inside the server's run (its allocation spans first to last point).
    let (first, last) = (readings[0].0, readings[readings.len() - 1].0);
    let from = (first / NS + 1) * NS;
    let to = last / NS * NS;
    assert!(to - from >= 2 * NS, "the run is too short: {first}..{last}");

    // What the store holds, independently of the attribution: the GPUs' counter energy and the
    // server's counters over the window.
    let ledger = |measurement: &str, field: &str, tags: &[(&str, &str)]| -> f64 {
        let series = s.store.find_series(measurement, field, tags).expect("find");
        assert_eq!(series.len(), 1, "{measurement}.{field} {tags:?}");
        s.store.ledger(series[0].id, EnergyKind::Counter, &[from, to]).expect("ledger").total()
    };
    let gpu_j = (ledger("gpu", "energy_mj", &[("gpu", "0")]) + ledger("gpu", "energy_mj", &[("gpu", "1")])) / 1000.0;
    let prompt = ledger("inference", "prompt_tokens", &[("server", "llama-a")]);
    let generated = ledger("inference", "generation_tokens", &[("server", "llama-a")]);
    assert!(gpu_j > 0.0 && generated > 0.0 && prompt > generated, "{gpu_j} J, {prompt} + {generated} tokens");

    let r = reqwest::Client::new()
        .get(s.url("/api/v1/models"))
        .query(&[("from", Timestamp(from).to_rfc3339()), ("to", Timestamp(to).to_rfc3339())])
        .header("Authorization", format!("Token {READ}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let m = &v["models"][0];
    assert_eq!((m["model"].as_str(), m["tenant"].as_str()), (Some("llama-8b"), Some("acme")), "{v:#}");
    assert_eq!(m["gpus"], serde_json::json!(["dgx-007:0", "dgx-007:1"]));
    close(f(&m["generation_tokens"]), generated, "generated tokens");
    close(f(&m["energy_kwh"]["gpu"]) * 3.6e6, gpu_j, "the two GPUs' energy");
    close(f(&m["per_token"]["j_per_token"]["gpu"]), gpu_j / (prompt + generated), "J per token");
    close(f(&m["per_token"]["j_per_generated_token"]["gpu"]), gpu_j / generated, "J per generated token");
    // No node power here: IT = GPU. The facility share is IT times each hour's own PUE.
    let mut facility = 0.0;
    for h in m["hours"].as_array().expect("hours") {
        let t = Timestamp::parse_rfc3339(h["t"].as_str().expect("t")).expect("t").0 / NS;
        let want_pue = pue(t / HOUR_S * HOUR_S);
        close(f(&h["pue"]), want_pue, "the hour's PUE");
        close(f(&h["energy_kwh"]["facility"]), f(&h["energy_kwh"]["it"]) * want_pue, "facility = IT × PUE");
        facility += f(&h["energy_kwh"]["facility"]);
    }
    close(f(&m["per_token"]["j_per_token"]["facility"]), facility * 3.6e6 / (prompt + generated), "facility J per token");

    // The ledger still adds up: GPU 2 (someone else's process, no job) and GPU 3 are idle.
    let sum = f(&v["jobs_it_energy_kwh"]) + f(&v["idle_kwh"]) + f(&v["unattributed_kwh"]);
    close(sum, f(&v["it_energy_kwh"]), "jobs + idle + unattributed = E_IT");
    close(f(&v["serving_it_energy_kwh"]), gpu_j / 3.6e6, "serving");
    eprintln!(
        "live: {:.0} prompt + {:.0} generated tokens in {:.1} s, {:.1} J on GPUs 0-1: {:.4} J/token, {:.3} J/generated token",
        prompt,
        generated,
        (to - from) as f64 / 1e9,
        gpu_j,
        gpu_j / (prompt + generated),
        gpu_j / generated
    );
    s.stop().await;
}
