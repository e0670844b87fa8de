//! What checkpoints cost at high cardinality: 100,000 series (50,000 lines of two fields,
//! random values) written every 10 s of data, a checkpoint every 60 s of data, as
//! `scripts/bench_ingest.py --shapes highcard` sends them. Prints the seconds spent writing
//! and checkpointing, so that a change to the checkpoint's rows can be measured alone.
//!
//! `cargo run --release -p kilowatch-store --example checkpoint_cost -- [checkpoints] [series]`

use std::time::Instant;

use kilowatch_model::{Precision, Timestamp, parse_batch};
use kilowatch_store::{Body, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let checkpoints: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let series: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let t0: i64 = 1_790_812_800;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut write_s, mut ckpt_s, mut samples) = (0.0, 0.0, 0usize);
    for c in 0..checkpoints {
        for step in 0..6 {
            let t = t0 + (c as i64 * 6 + step) * 10;
            let mut text = String::with_capacity(series * 40);
            for i in 0..series / 2 {
                text.push_str(&format!("container,host=node-{:05},pod=pod-{i:06},site=dc5 power_w={},util_pct={} {t}\n", i / 50, 10.0 + 220.0 * rand(), 100.0 * rand()));
            }
            let body = Body { text: &text, precision: Precision::S, default_ts: Timestamp(t * 1_000_000_000) };
            let started = Instant::now();
            // One POST of the bench carries about 10,000 lines.
            for part in text.split_inclusive('\n').collect::<Vec<_>>().chunks(10_000) {
                let joined: String = part.concat();
                let b = Body { text: &joined, ..body };
                let lines = parse_batch(b.text, b.precision, b.default_ts)?;
                samples += store.write_body(&b, &lines, "bench")?.points;
            }
            write_s += started.elapsed().as_secs_f64();
        }
        let started = Instant::now();
        store.checkpoint()?;
        let s = started.elapsed().as_secs_f64();
        ckpt_s += s;
        println!("checkpoint {c}: {s:.3} s");
    }
    println!("{samples} samples: writing {write_s:.2} s, checkpoints {ckpt_s:.2} s");
    Ok(())
}
