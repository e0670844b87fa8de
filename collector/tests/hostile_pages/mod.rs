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

/// A vLLM page of `n` models, each its own row.
pub fn many_series_page(n: usize) -> String {
    let mut page = String::with_capacity(n * 64);
    page.push_str("# TYPE vllm:prompt_tokens_total counter\n");
    for i in 0..n {
        page.push_str(&format!("vllm:prompt_tokens_total{{engine=\"0\",model_name=\"model-{i}\"}} {i}\n"));
    }
    page
}

/// How a raw server misbehaves.
#[derive(Clone, Copy)]
pub enum Misbehaviour {
    /// Answers 200 and streams rows for ever (until the client hangs up).
    Endless,
    /// Accepts the connection and never answers (for a minute at most).
    Silent,
}

/// A server on loopback that misbehaves on every connection; returns its address.
pub async fn serve_raw(how: Misbehaviour) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                match how {
                    Misbehaviour::Silent => tokio::time::sleep(std::time::Duration::from_secs(60)).await,
                    Misbehaviour::Endless => {
                        // No length: the body ends when the connection does, which is never.
                        if sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n# TYPE vllm:prompt_tokens_total counter\n").await.is_err() {
                            return;
                        }
                        let row = b"vllm:prompt_tokens_total{engine=\"0\",model_name=\"again\"} 1\n".repeat(64);
                        let started = std::time::Instant::now();
                        while started.elapsed() < std::time::Duration::from_secs(60) && sock.write_all(&row).await.is_ok() {}
                    }
                }
            });
        }
    });
    addr
}
