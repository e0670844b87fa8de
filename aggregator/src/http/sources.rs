//! Which sources feed the ledger, for `GET /api/v1/health` (read token): each ingest path's
//! last stored write, and the GPUs by where their energy comes from (the collector or any
//! line-protocol writer; Prometheus remote write; dcgm-exporter readings kept apart because
//! the collector reports the same node), with the GPUs whose energy has gone silent.

use std::collections::BTreeSet;

use kilowatch_store::Store;
use serde_json::{Value, json};

use crate::http::remote_write::map::{SHADOW_MEASUREMENT, SOURCE_TAG};
use crate::metrics::Metrics;

/// A GPU whose newest energy reading is older than this is listed as silent (the alert pack's
/// "silent for 15 minutes").
const SILENT_AFTER_NS: i64 = 15 * 60 * 1_000_000_000;

/// GPUs named in the silent list, at most.
const MAX_LISTED: usize = 50;

pub fn feeds(store: &Store, metrics: &Metrics, now_ns: i64) -> Value {
    let mut line_protocol = GpuCount::default();
    let mut remote_write = GpuCount::default();
    let mut silent = BTreeSet::new();
    if let Ok(series) = store.latest_of("gpu", "energy_mj") {
        for (tags, newest) in series {
            let from_prometheus = tags.get(SOURCE_TAG.0) == Some(SOURCE_TAG.1);
            let c = if from_prometheus { &mut remote_write } else { &mut line_protocol };
            c.gpus += 1;
            if newest.is_none_or(|(t, _)| now_ns - t > SILENT_AFTER_NS) {
                c.silent += 1;
                silent.insert(format!("{}:{}", tags.get("node").unwrap_or("?"), tags.get("gpu").unwrap_or("?")));
            }
        }
    }
    let shadowed = store.latest_of(SHADOW_MEASUREMENT, "energy_mj").map(|s| s.len()).unwrap_or(0);
    json!({
        "line_protocol": { "last_write": metrics.last_write("line_protocol"), "gpus": line_protocol.gpus, "silent_gpus": line_protocol.silent },
        "remote_write": { "last_write": metrics.last_write("remote_write"), "gpus": remote_write.gpus, "silent_gpus": remote_write.silent, "shadowed_gpus": shadowed },
        "silent_gpus": silent.into_iter().take(MAX_LISTED).collect::<Vec<_>>(),
    })
}

#[derive(Default)]
struct GpuCount {
    gpus: usize,
    silent: usize,
}
