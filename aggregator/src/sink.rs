//! Forwarding raw points to InfluxDB 2 (or anything that speaks its v2 write API: InfluxDB 3,
//! InfluxDB Cloud, VictoriaMetrics) for sites that keep their time series there. Reads for the
//! dashboard and reports stay on the embedded store.
//!
//! Written over the workspace's own HTTP client rather than the `influxdb2` crate, which has had
//! no release since July 2024 and pins a second HTTP stack (reqwest 0.11). The queue is the
//! kilowatch-ship spool the collector uses: bounded on disk, oldest dropped and counted, replayed after an outage.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kilowatch_model::{Point, Precision, encode_points};
use kilowatch_ship::{Fsync, Outbox, ShipError, ShipStats, Shipper, ShipperConfig, Spool, SpoolConfig, SpoolError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL of the InfluxDB v2 API, e.g. `http://influxdb:8086`.
    pub url: String,
    pub org: String,
    pub bucket: String,
    /// File holding the API token; `KILOWATCH_INFLUXDB_TOKEN` overrides it.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Directory of the forwarding queue (default: `influxdb-queue` in the data directory).
    #[serde(default)]
    pub queue_dir: Option<PathBuf>,
    /// Bound on the queue on disk; past it the oldest points are dropped and counted (default 1 GiB).
    #[serde(default = "default_queue")]
    pub max_queue_bytes: u64,
    /// Seconds before a write to InfluxDB is abandoned and retried (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn default_queue() -> u64 {
    1 << 30
}
fn default_timeout() -> f64 {
    10.0
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("influxdb.token_file {path}: {source}")]
    Token { path: PathBuf, source: std::io::Error },
    #[error("influxdb: no token (set influxdb.token_file or KILOWATCH_INFLUXDB_TOKEN)")]
    NoToken,
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Ship(#[from] ShipError),
}

/// What `/api/v1/health` says about forwarding.
#[derive(Debug, Clone, Serialize)]
pub struct SinkHealth {
    pub url: String,
    pub batches_sent: u64,
    pub send_errors: u64,
    pub batches_rejected: u64,
    pub batches_dropped: u64,
    pub queued_batches: u64,
    pub queued_bytes: u64,
}

pub struct InfluxSink {
    url: String,
    outbox: Outbox,
}

impl InfluxSink {
    /// Opens the queue and starts forwarding in the background until `shutdown`.
    pub fn start(cfg: &InfluxConfig, data_dir: &std::path::Path, shutdown: watch::Receiver<bool>) -> Result<Arc<InfluxSink>, SinkError> {
        let token = match std::env::var("KILOWATCH_INFLUXDB_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => match &cfg.token_file {
                Some(p) => std::fs::read_to_string(p).map_err(|source| SinkError::Token { path: p.clone(), source })?.trim().to_owned(),
                None => return Err(SinkError::NoToken),
            },
        };
        let shipper = Shipper::new(&ShipperConfig { url: cfg.url.clone(), token, org: Some(cfg.org.clone()), bucket: Some(cfg.bucket.clone()), timeout: Duration::from_secs_f64(cfg.timeout_s) })?;
        let dir = cfg.queue_dir.clone().unwrap_or_else(|| data_dir.join("influxdb-queue"));
        // Not fsynced: the embedded store already holds every point durably; this queue only
        // has to survive a crash of the process, which it does without fsync.
        let spool = Spool::open(SpoolConfig { dir, max_bytes: cfg.max_queue_bytes, segment_bytes: (cfg.max_queue_bytes / 8).clamp(1 << 20, 64 << 20), fsync: Fsync::Never })?;
        let (outbox, _shipping) = Outbox::start(shipper, spool, Arc::new(ShipStats::default()), shutdown);
        tracing::info!(url = %cfg.url, org = %cfg.org, bucket = %cfg.bucket, "forwarding raw points to InfluxDB");
        Ok(Arc::new(InfluxSink { url: cfg.url.clone(), outbox }))
    }

    /// Queues points that the store has accepted. Blocking (file I/O): call off the runtime.
    pub fn enqueue(&self, points: &[Point]) {
        // Very large writes are spooled in pieces a spool record holds.
        self.outbox.append(&encode_points(points, Precision::Ns), "cannot queue points for InfluxDB; they stay in the embedded store only");
    }

    pub fn health(&self) -> SinkHealth {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let stats = self.outbox.stats();
        SinkHealth {
            url: self.url.clone(),
            batches_sent: g(&stats.batches_sent),
            send_errors: g(&stats.send_errors),
            batches_rejected: g(&stats.batches_rejected),
            batches_dropped: g(&stats.batches_dropped),
            queued_batches: g(&stats.spool_batches),
            queued_bytes: g(&stats.spool_bytes),
        }
    }
}
