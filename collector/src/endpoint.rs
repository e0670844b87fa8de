//! The configured `[[aggregator]]` endpoints opened for shipping: a shipper and a spool each.
//! Shared by `kilowatch-collector` and the tests, so that both build a collector from its
//! configuration the same way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{AgentStats, Endpoint};
use crate::config::{CollectorConfig, ConfigError};
use kilowatch_ship::{ShipError, Shipper, ShipperConfig};
use kilowatch_ship::{Spool, SpoolConfig, SpoolError};

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{key}.ca_file {path}: {source}")]
    Ca { key: String, path: std::path::PathBuf, source: std::io::Error },
    #[error("{key}: {source}")]
    Ship { key: String, source: ShipError },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// A shipper and a spool for every endpoint of `cfg` (read from `path`), each with fresh
/// counters. With several endpoints, batches a single-endpoint collector left in `spool.dir`
/// itself are first copied into every endpoint's spool, so an upgrade from one aggregator to a
/// pair loses nothing.
pub fn open(cfg: &CollectorConfig, path: &Path) -> Result<Vec<Endpoint>, EndpointError> {
    let endpoints = cfg.endpoints();
    let many = endpoints.len() > 1;
    let mut out = Vec::with_capacity(endpoints.len());
    for (i, (name, a, spool)) in endpoints.into_iter().enumerate() {
        let key = if many { format!("aggregator[{i}]") } else { "aggregator".to_owned() };
        let ca = match &a.ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|source| EndpointError::Ca { key: key.clone(), path: p.clone(), source })?),
            None => None,
        };
        let shipper = Shipper::with_ca(
            &ShipperConfig { url: a.url.clone(), token: a.token(path, &key)?, org: a.org.clone(), bucket: a.bucket.clone(), timeout: Duration::from_secs_f64(a.timeout_s) },
            ca.as_deref(),
        )
        .map_err(|source| EndpointError::Ship { key: key.clone(), source })?;
        out.push(Endpoint { name, shipper, spool: Spool::open(spool)?, stats: Arc::new(AgentStats::default()) });
    }
    if many {
        adopt_single_spool(&cfg.spool, &mut out)?;
    }
    Ok(out)
}

/// Moves the unsent batches of a single-endpoint spool in `shared.dir` into each endpoint's
/// spool (its sub-folder), oldest first, then acknowledges them there so the old files go.
fn adopt_single_spool(shared: &SpoolConfig, endpoints: &mut [Endpoint]) -> Result<(), SpoolError> {
    let has_segments = std::fs::read_dir(&shared.dir).map(|d| d.flatten().any(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".seg")))).unwrap_or(false);
    if !has_segments {
        return Ok(());
    }
    let mut old = Spool::open(shared.clone())?;
    let mut moved = 0u64;
    loop {
        let batches = old.peek(4 << 20)?;
        if batches.is_empty() {
            break;
        }
        for ep in endpoints.iter_mut() {
            for b in &batches {
                ep.spool.append(b)?;
            }
        }
        moved += batches.len() as u64;
        old.ack(batches.len() as u64)?;
    }
    let _ = std::fs::remove_file(shared.dir.join("cursor"));
    tracing::info!(dir = %shared.dir.display(), batches = moved, endpoints = endpoints.len(), "copied the single-endpoint spool into each endpoint's spool");
    Ok(())
}
