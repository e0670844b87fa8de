//! Disk budget of the embedded store for a DC5-sized site (a bench binary, not a test).
//! Simulates the site at 1 Hz into a fresh store, checkpointing every 5 simulated minutes like
//! `kilowatch serve`, runs one maintenance pass (roll-ups, compaction), and measures what each
//! resolution costs per series and hour. It then states the budget of a year at the default
//! retention (raw 48 h, minute roll-ups 30 days, hour roll-ups kept).
//!
//!     cargo run --release -p kilowatch-aggregator --example store_budget -- --nodes 127 --minutes 65
//!
//! Figures are payload bytes (what SQLite stores in the blobs); the file size, with SQLite's
//! pages and indexes, is printed beside them.

use std::time::Instant;

use kilowatch_model::Timestamp;
use kilowatch_sim::{PointBuf, SimConfig, Site};
use kilowatch_store::{Retention, Store};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn sum(conn: &rusqlite::Connection, sql: &str) -> (f64, f64) {
    conn.query_row(sql, [], |r| Ok((r.get::<_, Option<f64>>(0)?.unwrap_or(0.0), r.get::<_, Option<f64>>(1)?.unwrap_or(0.0)))).expect("query")
}

fn main() {
    let nodes: usize = arg("--nodes", 127);
    let minutes: i64 = arg("--minutes", 65);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    // An hour boundary, so that the first hour is whole.
    let start = Timestamp(1_790_812_800_000_000_000);
    let mut site = Site::new(SimConfig { nodes, start, ..SimConfig::default() });
    let mut buf = PointBuf::new();
    let t0 = Instant::now();
    let mut samples = 0u64;
    for s in 0..=minutes * 60 {
        site.advance_to(Timestamp(start.0 + s * 1_000_000_000));
        site.fill_points(&mut buf);
        samples += store.write(buf.points()).expect("write").samples as u64;
        if s % 300 == 299 {
            store.checkpoint().expect("checkpoint");
        }
        if s % 600 == 0 {
            eprintln!("simulated {} min, {samples} samples, {:.0} s", s / 60, t0.elapsed().as_secs_f64());
        }
    }
    store.checkpoint().expect("checkpoint");
    let series = store.stats().expect("stats").series as f64;
    let conn = rusqlite::Connection::open(store.path()).expect("open db");
    let (chunk_bytes, chunk_n) = sum(&conn, "SELECT SUM(length(data)), SUM(n) FROM chunks");
    let t1 = Instant::now();
    let rep = store.maintain(&Retention::default(), i64::MAX).expect("maintain");
    let maint_s = t1.elapsed().as_secs_f64();
    let (block_bytes, block_n) = sum(&conn, "SELECT SUM(length(data)), SUM(n) FROM blocks");
    let (minute_bytes, minute_rows) = sum(&conn, "SELECT SUM(length(data)), COUNT(*) FROM rollups WHERE level = 60");
    let (hour_bytes, hour_rows) = sum(&conn, "SELECT SUM(length(data)), COUNT(*) FROM rollups WHERE level = 3600");
    let per_series_hour_raw = block_bytes / series / (block_n / series / 3600.0).max(1e-9);
    let per_series_hour_min = minute_bytes / minute_rows.max(1.0);
    // An hour row holds one bucket per hour: the cost of an hour is one bucket of it.
    let per_series_hour_hour = hour_bytes / hour_rows.max(1.0);
    let gb = |b: f64| b / 1e9;
    let keep = Retention::default();
    let h = |ns: i64| ns as f64 / 3.6e12;
    let raw_gb = gb(per_series_hour_raw * series * h(keep.raw));
    let minute_gb = gb(per_series_hour_min * series * h(keep.minute));
    let hour_gb_year = gb(per_series_hour_hour * series * 8760.0);
    let file = std::fs::metadata(store.path()).map(|m| m.len()).unwrap_or(0) + std::fs::metadata(store.path().with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
    println!("site: {nodes} nodes, {series} series at 1 Hz, {minutes} simulated minutes, {samples} samples in {:.1} s", t0.elapsed().as_secs_f64() - maint_s);
    println!("maintenance pass: {maint_s:.1} s ({rep:?})");
    println!("checkpoint chunks: {:.2} bytes/sample", chunk_bytes / chunk_n.max(1.0));
    println!("compacted blocks (pco): {:.2} bytes/sample, {:.0} bytes per series-hour", block_bytes / block_n.max(1.0), per_series_hour_raw);
    println!("minute roll-ups: {per_series_hour_min:.0} bytes per series-hour row");
    println!("hour roll-ups: {per_series_hour_hour:.0} bytes per series-hour bucket row (rewritten per hour until the day ends)");
    println!("store.db + WAL now: {:.2} GB", gb(file as f64));
    println!();
    println!("budget at the default retention (payload):");
    println!("  raw, {} h: {raw_gb:.1} GB", h(keep.raw));
    println!("  minute roll-ups, {} d: {minute_gb:.1} GB", h(keep.minute) / 24.0);
    println!("  hour roll-ups: {hour_gb_year:.2} GB per year, kept");
    println!("  first year: {:.1} GB; each further year adds {hour_gb_year:.2} GB", raw_gb + minute_gb + hour_gb_year);
}
