//! The collector's `GET /metrics`: the GPUs under dcgm-exporter's names (from the NVML
//! source's latest sample, never a fresh NVML call) and the collector's own health from
//! [`AgentStats`]. A bare axum router on one listener: the node agent links nothing of the
//! aggregator's web UI.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::agent::AgentStats;
use crate::nvml::SharedGpuMetrics;

/// Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("cannot listen for /metrics on {addr}: {source} (change [metrics] listen, or stop what holds the port)")]
    Bind { addr: String, source: std::io::Error },
    #[error("the /metrics listener failed: {0}")]
    Serve(std::io::Error),
}

/// What one scrape shows.
#[derive(Debug, Clone)]
pub struct Exposition {
    /// Sampling counters; with no `endpoints`, the shipping ones too.
    pub stats: Arc<AgentStats>,
    /// Each endpoint's name and shipping counters. With several, shipping metrics carry an
    /// `endpoint` label; with one, they are written without it, as before.
    pub endpoints: Vec<(String, Arc<AgentStats>)>,
    /// `None` when this collector has no GPU source (or its optional NVML did not start).
    pub gpus: Option<SharedGpuMetrics>,
}

/// (name, help, type, reader). Counters end in `_total`, as Prometheus expects.
type Reader = fn(&AgentStats) -> f64;
const HEALTH: &[(&str, &str, &str, Reader)] = &[
    ("kilowatch_collector_cycles_total", "Sampling cycles run.", "counter", |s| count(&s.cycles)),
    ("kilowatch_collector_samples_total", "Points sampled from all sources.", "counter", |s| count(&s.points)),
    ("kilowatch_collector_source_errors_total", "Source samplings that failed.", "counter", |s| count(&s.source_errors)),
    ("kilowatch_collector_batches_sent_total", "Batches accepted by the aggregator.", "counter", |s| count(&s.batches_sent)),
    ("kilowatch_collector_send_errors_total", "Send attempts that failed and will be retried.", "counter", |s| count(&s.send_errors)),
    ("kilowatch_collector_batches_rejected_total", "Batches the aggregator refused as invalid (dropped).", "counter", |s| count(&s.batches_rejected)),
    ("kilowatch_collector_lines_refused_total", "Lines the aggregator refused (a clock ahead, a limit) while storing the rest of their batch.", "counter", |s| count(&s.lines_refused)),
    ("kilowatch_collector_values_repaired_total", "Names and string values from outside (inference labels, device strings) repaired so that the aggregator takes their line.", "counter", |s| {
        count(&s.values_repaired)
    }),
    ("kilowatch_collector_values_dropped_total", "Tags, fields and points from outside left out: empty, or nothing sendable left.", "counter", |s| count(&s.values_dropped)),
    (
        "kilowatch_collector_inference_pages_over_cap_total",
        "Inference pages abandoned for an interval: larger than max_page_bytes (or endless), or not whole by the sample's deadline.",
        "counter",
        |s| count(&s.inference_pages_over_cap),
    ),
    ("kilowatch_collector_inference_rows_over_cap_total", "Inference page rows left out past max_rows, and labels cut to max_label_bytes.", "counter", |s| count(&s.inference_rows_over_cap)),
    ("kilowatch_collector_batches_dropped_total", "Unsent batches lost: dropped from a full spool, or not written because the disk failed.", "counter", |s| count(&s.batches_dropped)),
    ("kilowatch_collector_spool_bytes", "Bytes of line protocol in the spool, waiting to be sent.", "gauge", |s| count(&s.spool_bytes)),
    ("kilowatch_collector_spool_batches", "Batches in the spool, waiting to be sent.", "gauge", |s| count(&s.spool_batches)),
    ("kilowatch_collector_spool_errors_total", "Spool reads or writes that failed.", "counter", |s| count(&s.spool_errors)),
    ("kilowatch_collector_spool_corrupt_total", "Corrupt or torn batches found in the spool and skipped (lost).", "counter", |s| count(&s.spool_corrupt)),
    ("kilowatch_collector_last_cycle_seconds", "Wall time of the latest cycle: sampling, encoding and sending.", "gauge", |s| count(&s.last_cycle_us) / 1e6),
];

/// The metrics of sampling, which no endpoint owns.
const SAMPLING: &[&str] = &[
    "kilowatch_collector_cycles_total",
    "kilowatch_collector_samples_total",
    "kilowatch_collector_source_errors_total",
    "kilowatch_collector_last_cycle_seconds",
    "kilowatch_collector_values_repaired_total",
    "kilowatch_collector_values_dropped_total",
    "kilowatch_collector_inference_pages_over_cap_total",
    "kilowatch_collector_inference_rows_over_cap_total",
];

fn count(a: &std::sync::atomic::AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

impl Exposition {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Some(g) = &self.gpus {
            g.render_into(&mut out);
        }
        for (name, help, ty, read) in HEALTH {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
            let per_endpoint = !SAMPLING.contains(name);
            match &self.endpoints[..] {
                [_, _, ..] if per_endpoint => {
                    for (ep, stats) in &self.endpoints {
                        let _ = writeln!(out, "{name}{{endpoint=\"{}\"}} {}", ep.replace(['\\', '"'], "_"), read(stats));
                    }
                }
                [(_, stats)] if per_endpoint => {
                    let _ = writeln!(out, "{name} {}", read(stats));
                }
                _ => {
                    let _ = writeln!(out, "{name} {}", read(&self.stats));
                }
            }
        }
        let _ =
            writeln!(out, "# HELP kilowatch_collector_info The collector's version.\n# TYPE kilowatch_collector_info gauge\nkilowatch_collector_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        out
    }
}

/// `GET /metrics`, and nothing else.
pub fn router(expo: Arc<Exposition>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(expo)
}

async fn metrics(State(expo): State<Arc<Exposition>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], expo.render())
}

/// Binds `addr` now, so that a taken port is a startup error rather than a log line later.
pub async fn bind(addr: &str) -> Result<TcpListener, MetricsServerError> {
    TcpListener::bind(addr).await.map_err(|source| MetricsServerError::Bind { addr: addr.to_owned(), source })
}

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, expo: Arc<Exposition>, mut shutdown: watch::Receiver<bool>) -> Result<(), MetricsServerError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics");
    }
    axum::serve(listener, router(expo))
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .map_err(MetricsServerError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_without_gpus() {
        let stats = Arc::new(AgentStats::default());
        stats.cycles.store(3, Ordering::Relaxed);
        stats.last_cycle_us.store(1500, Ordering::Relaxed);
        let text = Exposition { stats: stats.clone(), endpoints: Vec::new(), gpus: None }.render();
        assert!(text.contains("\nkilowatch_collector_cycles_total 3\n"), "{text}");
        assert!(text.contains("\nkilowatch_collector_last_cycle_seconds 0.0015\n"), "{text}");
        assert!(!text.contains("DCGM_"));
    }

    /// Two endpoints: shipping figures per endpoint, sampling figures once.
    #[test]
    fn shipping_metrics_per_endpoint() {
        let stats = Arc::new(AgentStats::default());
        stats.cycles.store(7, Ordering::Relaxed);
        let (a, b) = (Arc::new(AgentStats::default()), Arc::new(AgentStats::default()));
        a.batches_sent.store(7, Ordering::Relaxed);
        b.spool_batches.store(5, Ordering::Relaxed);
        let text = Exposition { stats, endpoints: vec![("kw-a".into(), a), ("kw-b".into(), b)], gpus: None }.render();
        assert!(text.contains("\nkilowatch_collector_cycles_total 7\n"), "{text}");
        assert!(text.contains("\nkilowatch_collector_batches_sent_total{endpoint=\"kw-a\"} 7\n"), "{text}");
        assert!(text.contains("\nkilowatch_collector_batches_sent_total{endpoint=\"kw-b\"} 0\n"), "{text}");
        assert!(text.contains("\nkilowatch_collector_spool_batches{endpoint=\"kw-b\"} 5\n"), "{text}");
    }
}
