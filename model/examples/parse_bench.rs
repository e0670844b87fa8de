//! Lines parsed per second: plain DC5 lines (the fast path) and the same lines with escaped
//! names (the per-line rules of `lineproto/line.rs`), against InfluxData's
//! `influxdb-line-protocol` parser on the escaped ones (what the slow path was before it).
//! A figure printer, not a test: `cargo run --release -p kilowatch-model --example parse_bench`.

use std::time::Instant;

use kilowatch_model::{Precision, Timestamp, parse_batch};

const LINES: usize = 20_000;
const ROUNDS: usize = 20;

fn body(escaped: bool) -> String {
    let mut s = String::new();
    for i in 0..LINES {
        let node = if escaped { format!("dgx\\ {:03}", i % 127) } else { format!("dgx-{:03}", i % 127) };
        s.push_str(&format!(
            "gpu,site=dc5,node={node},gpu={} power_w={}.25,energy_mj={}i,temp_c=61,temp_margin_c=21,mem_temp_c=70,util_pct=97,mem_util_pct=40,sm_clock_mhz=1980i,mem_used_bytes=81920000000i,throttle_reasons=0i 1700000000{:09}\n",
            i % 8,
            500 + i % 100,
            123_456_789 + i,
            i
        ));
    }
    s
}

fn rate(what: &str, text: &str, mut parse: impl FnMut(&str) -> usize) {
    let mut n = parse(text);
    let t0 = Instant::now();
    for _ in 0..ROUNDS {
        n = parse(text);
    }
    let per_s = (LINES * ROUNDS) as f64 / t0.elapsed().as_secs_f64();
    println!("{what:<58} {:>10.0} lines/s ({n} lines a round)", per_s);
}

fn main() {
    let plain = body(false);
    let escaped = body(true);
    rate("plain lines, Kilowatch (fast path)", &plain, |t| parse_batch(t, Precision::Ns, Timestamp(0)).map_or(0, |l| l.len()));
    rate("escaped names, Kilowatch (per-line rules)", &escaped, |t| parse_batch(t, Precision::Ns, Timestamp(0)).map_or(0, |l| l.len()));
    rate("escaped names, influxdb-line-protocol 2.0.0 parse_lines", &escaped, |t| influxdb_line_protocol::parse_lines(t).filter(Result::is_ok).count());
}
