//! The inference source against recorded pages of each supported server release
//! (tests/fixtures/inference: built from each server's metric definitions, see their headers),
//! served over HTTP on loopback and scraped by the real source, including a server restart
//! (its counters drop) in the middle of a window.

mod peers;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::inference::{Engine, InferenceSource, read_page};
use kilowatch_collector::source::Source;
use kilowatch_model::energy::counter_delta;
use kilowatch_model::{Point, Timestamp};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inference").join(name)).expect("fixture")
}

fn one(page: &kilowatch_collector::inference::Page) -> (&(String, String), &kilowatch_collector::inference::ModelCounters) {
    assert_eq!(page.models.len(), 1, "{page:#?}");
    page.models.iter().next().expect("one row")
}

#[test]
fn each_release_parses_to_its_counters() {
    let v = read_page(&fixture("vllm-v1.prom"), Engine::Vllm, None, "", None);
    assert_eq!(v.parse_errors, 0);
    let (k, c) = one(&v);
    assert_eq!(k.0, "meta-llama/Llama-3.1-8B-Instruct");
    assert_eq!((c.prompt_tokens, c.generation_tokens, c.requests), (Some(123_000.0), Some(45_000.0), Some(1000.0)));
    assert_eq!(c.ttft_count, Some(1000.0));
    assert!((c.ttft_sum_s.expect("ttft") - 50.0).abs() < 1e-9);

    let s = read_page(&fixture("sglang.prom"), Engine::Sglang, None, "acme", None);
    assert_eq!(s.parse_errors, 0);
    let (k, c) = one(&s);
    assert_eq!((k.0.as_str(), k.1.as_str()), ("Qwen/Qwen2.5-72B-Instruct", "acme"));
    assert_eq!((c.prompt_tokens, c.generation_tokens, c.requests, c.ttft_count), (Some(80_000.0), Some(24_000.0), Some(400.0), Some(400.0)));

    let t = read_page(&fixture("tgi-3.prom"), Engine::Tgi, Some("mistral-7b"), "", None);
    assert_eq!(t.parse_errors, 0);
    let (k, c) = one(&t);
    assert_eq!(k.0, "mistral-7b");
    assert_eq!((c.prompt_tokens, c.generation_tokens, c.requests, c.ttft_sum_s), (Some(128_000.0), Some(32_000.0), Some(250.0), None));

    // The ensemble's pre- and post-processing steps count requests but no tokens: only the
    // TensorRT-LLM model is a row, with its own requests (not four times them).
    let tr = read_page(&fixture("triton-trtllm.prom"), Engine::Triton, None, "", None);
    assert_eq!(tr.parse_errors, 0);
    let (k, c) = one(&tr);
    assert_eq!(k.0, "tensorrt_llm");
    assert_eq!((c.prompt_tokens, c.generation_tokens, c.requests), (Some(500_000.0), Some(125_000.0), Some(500.0)));
    assert_eq!(c.ttft_count, Some(500.0));
    assert!((c.ttft_sum_s.expect("ttft") - 40.0).abs() < 1e-9, "80 ms × 500 in seconds");
    let named = read_page(&fixture("triton-trtllm.prom"), Engine::Triton, Some("llama-3.1-70b"), "", None);
    assert_eq!(one(&named).1.requests, Some(500.0));

    // A page of another engine holds none of these counters.
    assert!(read_page(&fixture("tgi-3.prom"), Engine::Vllm, None, "", None).models.is_empty());
}

/// Pages served in turn, one per scrape; the last repeats.
#[derive(Clone)]
struct Pages {
    list: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

async fn metrics(State(p): State<Pages>) -> Result<String, axum::http::StatusCode> {
    if p.down.load(Ordering::SeqCst) {
        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let list = p.list.lock().expect("lock");
    let i = p.next.fetch_add(1, Ordering::SeqCst).min(list.len() - 1);
    Ok(list[i].clone())
}

fn counter(points: &[Point], field: &str) -> f64 {
    assert_eq!(points.len(), 1, "{points:#?}");
    points[0].get_f64(field).unwrap_or_else(|| panic!("no {field} in {points:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_window_is_a_reset_not_negative_tokens() {
    let Some(py) = peers::python("a_restart_mid_window_is_a_reset_not_negative_tokens") else { return };
    let page = |n: usize| {
        std::process::Command::new(&py)
            .args(["tests/peers/inference_server.py", "--engine", "vllm", "--dump", &n.to_string(), "--prompt", "100", "--gen", "10"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .ok()
            .filter(|s| s.contains("vllm:"))
    };
    // Pages rendered by the real client library from the servers' declarations (scripts/test
    // installs it in the peers' venv).
    let (Some(a), Some(b), Some(c), Some(d)) = (page(1000), page(1500), page(20), page(70)) else {
        panic!("the peers' venv lacks prometheus_client: scripts/test installs it (PEERS_PINS)");
    };
    let pages = Pages { list: Arc::new(Mutex::new(vec![a, b, c, d])), next: Arc::new(AtomicUsize::new(0)), down: Default::default() };
    let app = axum::Router::new().route("/metrics", get(metrics)).with_state(pages.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let text = format!("node = \"n1\"\n[aggregator]\nurl = \"http://127.0.0.1:1\"\n[[inference]]\nname = \"llama-a\"\nengine = \"vllm\"\nurl = \"http://127.0.0.1:{port}/metrics\"\ngpus = [3, 1]\n");
    let cfg = CollectorConfig::parse(&text, Path::new("c.toml")).expect("config");
    let mut src = InferenceSource::new(&cfg.inference, "dc5", "n1", None).expect("source");
    let mut samples: Vec<(i64, f64)> = Vec::new();
    for k in 0..4i64 {
        let ts = Timestamp(k * 10_000_000_000);
        let points = src.sample(ts).await.expect("sample");
        assert_eq!(points[0].tag_value("server"), Some("llama-a"));
        assert_eq!(points[0].tag_value("engine"), Some("vllm"));
        assert_eq!(points[0].get("gpus").and_then(|v| v.as_str()), Some("1,3"), "configured GPUs, sorted");
        samples.push((ts.0, counter(&points, "generation_tokens")));
    }
    assert_eq!(samples.iter().map(|s| s.1).collect::<Vec<_>>(), vec![10_000.0, 15_000.0, 200.0, 700.0]);
    // Over the window: 5,000 before the restart, nothing for the interval holding it (count
    // from the new reading), 500 after.
    let d = counter_delta(&samples, 0, 30_000_000_000);
    assert_eq!((d.delta, d.resets), (5_500.0, 1));
    assert_eq!(src.scrape_errors, 0);

    // A server that stops answering is counted and the source keeps going.
    pages.down.store(true, Ordering::SeqCst);
    let points = src.sample(Timestamp(50_000_000_000)).await.expect("sample");
    assert!(points.is_empty());
    assert_eq!(src.scrape_errors, 1);
    server.abort();
}
