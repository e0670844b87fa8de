//! Inference pages a tenant's server (or an unlucky one) may serve, and a server that serves
//! them, for the collector's and the aggregator's tests.
#![allow(dead_code)]

use std::net::SocketAddr;

/// A vLLM page whose `model_name` labels are an empty string, a tab, a line break, a trailing
/// backslash and 100 kB, beside one ordinary model (`llama-ok`, 100 prompt tokens).
pub fn hostile_vllm_page() -> String {
    let huge = "x".repeat(100_000);
    let mut page = String::from("# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n# TYPE vllm:prompt_tokens_total counter\n");
    for (i, model) in ["llama-ok", "", "tab\there", "line\\nbreak", "trailing\\\\", huge.as_str()].iter().enumerate() {
        page.push_str(&format!("vllm:prompt_tokens_total{{engine=\"0\",model_name=\"{model}\"}} {}\n", 100 * (i + 1)));
    }
    page
}

/// Serves `page` at `/metrics` on loopback until the runtime ends; returns its address.
pub async fn serve_page(page: String) -> SocketAddr {
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || std::future::ready(page.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
