//! What `/dashboard/gpus.json` costs at 10× DC5: 1,270 nodes of 8 GPUs, ten fields each, one
//! reading a field. Prints the milliseconds to build the page's cells and to write its JSON, on
//! an otherwise idle machine; the fault harness measures the same page's latency under load.
//!
//! `cargo run --release -p kilowatch-aggregator --example gpus_cost -- [nodes]`

use std::sync::Arc;
use std::time::Instant;

use kilowatch_aggregator::view::StoreView;
use kilowatch_dashboard::SiteView;
use kilowatch_model::{Point, Timestamp};
use kilowatch_store::Store;

const FIELDS: [&str; 10] = ["power_w", "temp_margin_c", "util_pct", "throttle_reasons", "energy_mj", "sm_clock_mhz", "mem_used_mib", "temp_c", "ecc_errors", "pcie_rx_mbps"];

fn main() {
    let nodes: usize = std::env::args().nth(1).map_or(1270, |a| a.parse().expect("nodes: a number"));
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(dir.path()).expect("open"));
    let t = Timestamp(1_790_812_800 * 1_000_000_000);
    let mut points = Vec::with_capacity(nodes * 8);
    for n in 0..nodes {
        for g in 0..8 {
            let mut p = Point::new("gpu", t).tag("node", format!("dgx-{n:04}")).tag("gpu", g.to_string()).tag("uuid", format!("GPU-{n:04}{g}-8c2f-4d1e-9a7b-3f6e5d4c2b1a"));
            for (i, f) in FIELDS.into_iter().enumerate() {
                p = p.field(f, 100.0 + (n * 8 + g) as f64 * 0.37 + i as f64);
            }
            points.push(p);
        }
    }
    store.write(&points).expect("write");
    let view = StoreView::new(store, "dc5".into(), chrono_tz::Europe::Paris);
    for round in 1..=5 {
        let started = Instant::now();
        let cells = view.gpus().expect("gpus");
        let built = started.elapsed();
        let json = serde_json::to_vec(&cells).expect("json");
        let written = started.elapsed() - built;
        println!("round {round}: build {:.2} ms, JSON {:.2} ms ({} cells, {} bytes)", built.as_secs_f64() * 1e3, written.as_secs_f64() * 1e3, cells.len(), json.len());
    }
}
