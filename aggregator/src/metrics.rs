//! The aggregator's own `GET /metrics`, in Prometheus text format 0.0.4 (what `promtool check
//! metrics` and every Prometheus read), from a `prometheus-client` registry.
//!
//! Two kinds of figures: counters, gauges and histograms that the code moves as things happen
//! (through the typed events of [`crate::events`], which log and count together), and the
//! store's and the InfluxDB queue's state, read once per scrape by [`Scraped`]. The metric
//! list, with units and labels, is in docs/api.md (`GET /metrics`).

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{AppState, error};
use crate::auth::Auth;
use crate::sink::SinkHealth;
use kilowatch_store::StoreStats;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Labels of a family: a fixed set of keys, each with a value from a bounded set (a route
/// pattern, a status class, a reason named by a config key), never a raw URI or a token.
type Labels<const N: usize> = [(&'static str, String); N];
type Histograms<const N: usize> = Family<Labels<N>, Histogram, fn() -> Histogram>;

/// Request durations: 1 ms to about 24 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 12))
}

/// Waits for the store's lock: 10 µs to about 10 s (a checkpoint holds it for seconds).
fn lock_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 4.0, 11))
}

/// Checkpoints and maintenance passes: 10 ms to about 10 min.
fn pass_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 3.0, 13))
}

/// Every figure the code moves. Cloning a metric clones a handle to the same value.
pub struct Metrics {
    registry: Registry,
    scraped: Arc<Scraped>,
    pub(crate) ingest_requests: Family<Labels<1>, Counter>,
    pub(crate) ingest_bytes: Counter,
    pub(crate) ingest_lines_accepted: Counter,
    pub(crate) ingest_lines_refused: Family<Labels<1>, Counter>,
    pub(crate) ingest_values_accepted: Counter,
    pub(crate) ingest_new_series: Counter,
    pub(crate) remote_write_requests: Family<Labels<1>, Counter>,
    pub(crate) remote_write_samples: Family<Labels<1>, Counter>,
    /// Unix seconds of the last write each ingest path stored (`source`: line_protocol, remote_write).
    pub(crate) last_write: Family<Labels<1>, Gauge>,
    pub(crate) writes_over_budget: Counter,
    pub(crate) request_duration: Histograms<3>,
    pub(crate) requests_in_progress: Gauge,
    pub(crate) request_bytes_in_progress: Gauge,
    pub(crate) requests_refused: Family<Labels<1>, Counter>,
    pub(crate) connections_open: Gauge,
    pub(crate) connections_accepted: Counter,
    pub(crate) connections_refused: Counter,
    pub(crate) cache_lookups: Family<Labels<1>, Counter>,
    pub(crate) lock_wait: Histogram,
    pub(crate) checkpoint_duration: Histogram,
    pub(crate) checkpoint_failures: Counter,
    pub(crate) checkpoint_samples: Counter,
    pub(crate) maintenance_duration: Histogram,
    pub(crate) maintenance_failures: Counter,
    pub(crate) fleet_fetch_errors: Family<Labels<1>, Counter>,
    pub(crate) fleet_site_age: Family<Labels<1>, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Energy per token of each model over the last complete hour (crate::tokens_api).
    pub(crate) model_j_per_token: Family<Labels<4>, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub(crate) model_gauges_at: Mutex<Option<std::time::Instant>>,
    /// 1 while a starting aggregator holds its alerts for its data to catch up (crate::alerting).
    pub(crate) alerts_catching_up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// The last stored write of ingest path `source` (RFC 3339), if any since start.
    pub fn last_write(&self, source: &str) -> Option<String> {
        let s = self.last_write.get_or_create(&[("source", source.to_owned())]).get();
        (s > 0).then(|| kilowatch_model::Timestamp::from_secs(s).to_rfc3339())
    }

    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            scraped: Arc::new(Scraped::default()),
            ingest_requests: Family::default(),
            ingest_bytes: Counter::default(),
            ingest_lines_accepted: Counter::default(),
            ingest_lines_refused: Family::default(),
            ingest_values_accepted: Counter::default(),
            ingest_new_series: Counter::default(),
            remote_write_requests: Family::default(),
            remote_write_samples: Family::default(),
            last_write: Family::default(),
            writes_over_budget: Counter::default(),
            request_duration: Family::new_with_constructor(request_buckets),
            requests_in_progress: Gauge::default(),
            request_bytes_in_progress: Gauge::default(),
            requests_refused: Family::default(),
            connections_open: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            cache_lookups: Family::default(),
            lock_wait: lock_buckets(),
            checkpoint_duration: pass_buckets(),
            checkpoint_failures: Counter::default(),
            checkpoint_samples: Counter::default(),
            maintenance_duration: pass_buckets(),
            maintenance_failures: Counter::default(),
            fleet_fetch_errors: Family::default(),
            fleet_site_age: Family::default(),
            model_j_per_token: Family::default(),
            model_gauges_at: Mutex::new(None),
            alerts_catching_up: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "kilowatch_ingest_requests",
            "Write requests (POST /api/v2/write) by outcome: stored, partial (some lines refused, 422), invalid (400), unauthorized (401), forbidden (403), timeout (408), too_large (413), unavailable (503), error (other)",
            m.ingest_requests.clone(),
        );
        r.register("kilowatch_ingest_bytes", "Bytes of line protocol received by the write handler, after gzip is inflated", m.ingest_bytes.clone());
        r.register("kilowatch_ingest_lines_accepted", "Lines of line protocol stored", m.ingest_lines_accepted.clone());
        r.register(
            "kilowatch_ingest_lines_refused",
            "Lines refused while the rest of their request was stored, by reason (the [store] key that refused them, or `unparsable` for a line that is not line protocol)",
            m.ingest_lines_refused.clone(),
        );
        r.register("kilowatch_ingest_values_accepted", "Field values (samples) stored", m.ingest_values_accepted.clone());
        r.register("kilowatch_ingest_new_series", "Series created by writes", m.ingest_new_series.clone());
        r.register(
            "kilowatch_remote_write_requests",
            "Prometheus remote-write requests (POST /api/v1/write) by outcome: stored, throttled (429), invalid (400: a corrupt body or refused series), unauthorized, forbidden, timeout, too_large, unavailable, error",
            m.remote_write_requests.clone(),
        );
        r.register(
            "kilowatch_remote_write_samples",
            "Remote-write samples by outcome: mapped (into the wire schema, then stored unless the store refused its line), unmapped (no [prometheus] rule; dropped unless unmapped = \"store\"), refused (400), stale (Prometheus staleness markers), shadowed (a GPU the collector reports too, kept apart)",
            m.remote_write_samples.clone(),
        );
        r.register(
            "kilowatch_ingest_last_write_timestamp_seconds",
            "When each ingest path last stored a write, Unix seconds, by source: line_protocol (the collector, Telegraf, any InfluxDB client), remote_write (Prometheus, vmagent, Alloy)",
            m.last_write.clone(),
        );
        r.register("kilowatch_store_writes_over_budget", "Writes refused whole (503) because the store held more than [store] memory_budget_mb", m.writes_over_budget.clone());
        r.register(
            "kilowatch_http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route (the matched path pattern), method and status class",
            m.request_duration.clone(),
        );
        r.register("kilowatch_http_requests_in_progress", "Requests admitted and not yet answered (server.max_concurrent_requests caps them)", m.requests_in_progress.clone());
        r.register(
            "kilowatch_http_request_body_bytes_in_progress",
            "Request body bytes read and held by requests not yet answered (server.max_inflight_bytes caps them)",
            m.request_bytes_in_progress.clone(),
        );
        r.register(
            "kilowatch_http_requests_refused",
            "Requests refused by admission, by reason: max_concurrent_requests (503), max_inflight_bytes (503), body_timeout (408)",
            m.requests_refused.clone(),
        );
        r.register("kilowatch_connections_open", "Open client connections", m.connections_open.clone());
        r.register("kilowatch_connections_accepted", "Client connections accepted and served", m.connections_accepted.clone());
        r.register("kilowatch_connections_refused", "Client connections closed at once because server.max_connections were open", m.connections_refused.clone());
        r.register("kilowatch_api_cache_lookups", "Lookups in the cache of computed API answers, by result: hit, stale (served while it is computed again), miss", m.cache_lookups.clone());
        r.register("kilowatch_store_lock_wait_seconds", "Time spent waiting for the store's lock, per acquisition", m.lock_wait.clone());
        r.register("kilowatch_store_checkpoint_duration_seconds", "Duration of checkpoints (heads to chunks, request log emptied), failed ones included", m.checkpoint_duration.clone());
        r.register("kilowatch_store_checkpoint_failures", "Checkpoints that failed (the request log keeps the data)", m.checkpoint_failures.clone());
        r.register("kilowatch_store_checkpoint_samples", "Samples moved from the heads into chunks by checkpoints", m.checkpoint_samples.clone());
        r.register("kilowatch_store_maintenance_duration_seconds", "Duration of maintenance passes (roll-ups, compaction, retention), failed ones included", m.maintenance_duration.clone());
        r.register("kilowatch_store_maintenance_failures", "Maintenance passes that failed (retried at the next tick)", m.maintenance_failures.clone());
        r.register(
            "kilowatch_alerts_catching_up",
            "1 while this aggregator, started with data far behind the clock, holds its alerts (neither evaluated nor sent) for its collectors' spools to catch up; see alerts.catch_up_max_s",
            m.alerts_catching_up.clone(),
        );
        r.register(
            "kilowatch_model_energy_joules_per_token",
            "Energy per token of each served model over the last complete hour, by model, tenant, basis (gpu, it, facility) and tokens (all: prompt and generated; generated: all the energy on output tokens)",
            m.model_j_per_token.clone(),
        );
        r.register_collector(Box::new(m.scraped.clone()));
        r.register("kilowatch_fleet_fetch_errors", "Failed fetches of a fleet site's hourly ledger, by site (the refresh goes on)", m.fleet_fetch_errors.clone());
        r.register("kilowatch_fleet_site_age_seconds", "Seconds since a fleet site's ledger was last fetched in full, by site", m.fleet_site_age.clone());
        Metrics { registry: r, ..m }
    }

    /// The exposition: the store's and the queue's state are read now.
    pub fn render(&self, store: Option<&StoreStats>, sink: Option<SinkHealth>) -> Result<String, std::fmt::Error> {
        let snap = Snapshot { store: store.cloned(), now_ns: kilowatch_model::Timestamp::now().0, sink };
        if let Ok(mut g) = self.scraped.0.lock() {
            *g = snap;
        }
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What a scrape reads rather than counts.
#[derive(Debug, Default)]
struct Snapshot {
    store: Option<StoreStats>,
    now_ns: i64,
    sink: Option<SinkHealth>,
}

#[derive(Debug, Default)]
struct Scraped(Mutex<Snapshot>);

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    // Ended with a full stop, as the registry ends the help of the metrics registered in it.
    g.encode(enc.encode_descriptor(name, &format!("{help}."), None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, &format!("{help}."), None, c.metric_type())?)
}

const NS: f64 = 1e9;

impl Collector for Scraped {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(g) = self.0.lock() else { return Ok(()) };
        let e = &mut enc;
        if let Some(s) = &g.store {
            gauge(e, "kilowatch_store_series", "Series in the store", s.series as f64)?;
            gauge(e, "kilowatch_store_head_samples", "Samples in memory since the last checkpoint", s.head_samples as f64)?;
            gauge(e, "kilowatch_store_head_bytes", "Bytes of compressed samples in memory, waiting for a checkpoint or being written by one", s.head_bytes as f64)?;
            gauge(e, "kilowatch_store_memory_bytes", "Bytes the memory budget counts: series at 1 KB each and samples in memory", s.memory_bytes as f64)?;
            if let Some(b) = s.memory_budget_bytes {
                gauge(e, "kilowatch_store_memory_budget_bytes", "The memory budget ([store] memory_budget_mb); writes get 503 above it", b as f64)?;
            }
            gauge(e, "kilowatch_store_log_records", "Requests in the write-ahead log, to be replayed after a crash until the next checkpoint", s.log_records as f64)?;
            counter(e, "kilowatch_store_log_torn_segments", "Write-ahead log segments that ended in a torn record when the store opened (a crash mid-write)", s.log_torn_segments)?;
            counter(e, "kilowatch_store_checkpoints", "Checkpoints completed since the store was opened", s.checkpoints)?;
            counter(e, "kilowatch_store_maintenance_passes", "Maintenance passes completed since the store was opened", s.maintenance_passes)?;
            if let Some(newest) = s.newest_ts {
                // Negative when a sender's clock runs ahead of this server's.
                gauge(e, "kilowatch_store_newest_sample_age_seconds", "Age of the newest sample stored, by this server's clock (absent while the store is empty)", (g.now_ns - newest) as f64 / NS)?;
            }
            if let (Some(newest), Some(rolled)) = (s.newest_ts, s.horizons.rolled_to) {
                // Roll-ups wait for an hour to settle, so an hour or two is normal; growth is not.
                let lag = (newest - rolled).max(0) as f64 / NS;
                gauge(e, "kilowatch_store_maintenance_lag_seconds", "How far roll-ups (rolled_to) are behind the newest sample (absent until the first hour is rolled up)", lag)?;
            }
        }
        if let Some(q) = &g.sink {
            gauge(e, "kilowatch_influxdb_queue_batches", "Batches queued for InfluxDB, not yet sent", q.queued_batches as f64)?;
            gauge(e, "kilowatch_influxdb_queue_bytes", "Bytes queued for InfluxDB, not yet sent", q.queued_bytes as f64)?;
            counter(e, "kilowatch_influxdb_batches_sent", "Batches InfluxDB accepted", q.batches_sent)?;
            counter(e, "kilowatch_influxdb_send_errors", "Sends to InfluxDB that failed and will be retried", q.send_errors)?;
            counter(e, "kilowatch_influxdb_batches_rejected", "Batches InfluxDB refused as invalid (dropped)", q.batches_rejected)?;
            counter(e, "kilowatch_influxdb_batches_dropped", "Batches dropped from a full queue", q.batches_dropped)?;
        }
        Ok(())
    }
}

/// `GET /metrics`: a read token is needed, as for every read, unless reads are open.
pub async fn metrics(State(st): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let token = crate::server::query_token(&uri);
    if !st.auth.may_read(Auth::presented(&headers, token.as_deref())) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid read token is required");
    }
    crate::tokens_api::refresh_model_gauges(&st).await;
    let store = st.store.clone();
    // The store's stats take its lock: off the async workers.
    let stats = match tokio::task::spawn_blocking(move || store.stats()).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store stats unavailable for /metrics");
            None
        }
        Err(_) => None,
    };
    match st.metrics.render(stats.as_ref(), st.sink.as_ref().map(|s| s.health())) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", "metrics could not be encoded"),
    }
}
