//! Ingest benchmark: field values per second per core for parse + validate + store of a fixed
//! line-protocol file, through the same functions the HTTP handler calls (`parse_batch`,
//! `Store::write_lines`).
//!
//!     cargo run --release -p kilowatch-aggregator --example ingest_bench -- [--write-file FILE] [--steps N] [--split K]
//!
//! With `--write-file`, it only writes the file (for running other servers on the same input,
//! see scripts/bench-ingest). "Points" are field values (one stored sample each); lines are
//! reported too. `--split K` cuts each second of data into K requests, as K collectors would
//! send it: each request is one commit, so this shows the cost of the commit's fsync.
//! `--series N [--fields K]` measures instead what a series costs in memory: N new series (K
//! fields a line), one sample each, then a checkpoint, and the growth of the resident set over N (the figure behind
//! `kilowatch_store::SERIES_BYTES`).

use std::time::Instant;

use kilowatch_model::{Precision, Timestamp, encode_points, parse_batch};
use kilowatch_sim::{PointBuf, SimConfig, Site};
use kilowatch_store::Store;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc/self/stat (fields 14 and 15, in clock ticks).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) * 1024.0
}

/// Resident bytes a series costs: measured over `n` series with tags like a GPU's, `fields` a
/// line (a GPU line has ten).
fn series_memory(n: usize, fields: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    let before = rss_bytes();
    let t = 1_790_812_800i64;
    let values: String = (0..fields).map(|f| format!("f{f}=1")).collect::<Vec<_>>().join(",");
    for part in (0..n.div_ceil(fields)).collect::<Vec<_>>().chunks(10_000) {
        let text: String = part.iter().map(|i| format!("gpu,host=dgx-{:04},gpu={},uuid=GPU-{:08x}-2222-3333-4444-555555555555 {values} {t}\n", i / 8, i % 8, i)).collect();
        let b = kilowatch_store::Body { text: &text, precision: Precision::S, default_ts: Timestamp(0) };
        store.write_body(&b, &parse_batch(b.text, b.precision, b.default_ts).expect("valid"), "bench").expect("store");
    }
    store.checkpoint().expect("checkpoint");
    let after = rss_bytes();
    let n = store.stats().expect("stats").series;
    println!(
        "{n} series, {fields} a line: resident set grew {:.1} MB, {:.0} bytes a series (the budget counts {})",
        (after - before) / 1e6,
        (after - before) / n as f64,
        kilowatch_store::SERIES_BYTES
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--series").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()) {
        let fields = args.iter().position(|a| a == "--fields").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(1);
        series_memory(n, fields);
        return;
    }
    let steps: i64 = args.iter().position(|a| a == "--steps").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(60);
    let write_file = args.iter().position(|a| a == "--write-file").and_then(|i| args.get(i + 1)).cloned();
    let split: usize = args.iter().position(|a| a == "--split").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(1).max(1);

    // One minute of the whole DC5 site at 1 Hz (default): the file every server ingests.
    let start = Timestamp::parse_rfc3339("2025-07-01T12:00:00Z").expect("time");
    let mut site = Site::new(SimConfig { start, ..SimConfig::default() });
    let mut buf = PointBuf::new();
    let mut body = String::new();
    let mut requests = Vec::new();
    for i in 1..=steps {
        site.advance_to(Timestamp(start.0 + i * 1_000_000_000));
        site.fill_points(&mut buf);
        let points = buf.points();
        for part in points.chunks(points.len().div_ceil(split).max(1)) {
            let text = encode_points(part, Precision::Ns);
            body.push_str(&text);
            requests.push(text);
        }
    }
    if let Some(path) = write_file {
        std::fs::write(&path, &body).expect("write file");
        eprintln!("wrote {} bytes, {} lines to {path}", body.len(), body.lines().count());
        return;
    }
    let lines = body.lines().count();

    // Parse alone.
    let t = Instant::now();
    let mut fields = 0usize;
    for r in &requests {
        fields += parse_batch(r, Precision::Ns, Timestamp(0)).expect("valid").field_count();
    }
    let parse_s = t.elapsed().as_secs_f64();

    // Parse + validate + store, one request per second of data as collectors send it.
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    // As `kilowatch serve` runs it, with the default window checked on every value.
    store.set_out_of_order_window(Some(std::time::Duration::from_secs(48 * 3600))).expect("window");
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    for r in &requests {
        let b = kilowatch_store::Body { text: r, precision: Precision::Ns, default_ts: Timestamp(0) };
        let lines = parse_batch(b.text, b.precision, b.default_ts).expect("valid");
        store.write_body(&b, &lines, "bench").expect("store");
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let per_request_ms = ingest_s * 1e3 / requests.len() as f64;
    let t = Instant::now();
    store.checkpoint().expect("checkpoint");
    let ckpt_s = t.elapsed().as_secs_f64();
    let db = std::fs::metadata(dir.path().join("store.db")).map(|m| m.len()).unwrap_or(0);

    println!("input: {} requests, {lines} lines, {fields} field values, {:.1} MB", requests.len(), body.len() as f64 / 1e6);
    println!("parse only:            {:>10.0} lines/s  {:>10.0} values/s", lines as f64 / parse_s, fields as f64 / parse_s);
    println!("parse+validate+store:  {:>10.0} lines/s  {:>10.0} values/s  (wall {ingest_s:.2} s, cpu {cpu:.2} s)", lines as f64 / ingest_s, fields as f64 / ingest_s);
    println!("per core (cpu time):   {:>10.0} lines/s  {:>10.0} values/s", lines as f64 / cpu.max(1e-9), fields as f64 / cpu.max(1e-9));
    println!("per request (wall):    {per_request_ms:>10.3} ms  ({} requests, one commit each)", requests.len());
    println!("checkpoint: {ckpt_s:.2} s; store on disk {:.1} MB ({:.1} bytes/value)", db as f64 / 1e6, db as f64 / fields as f64);
}
