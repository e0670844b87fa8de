//! CPU time per sampling cycle and peak memory of the NVML source.
//!
//! ```sh
//! cargo build --release -p kilowatch-fake-nvml
//! cargo run --release -p kilowatch-collector --example nvml_bench -- [cycles] [lib]
//! ```
//! With no `lib`, it uses the fake library (8 GPUs, two job processes each) from the same
//! target folder; give the real `libnvidia-ml.so.1` on a GPU node to measure the driver too.
//! A cycle is what the collector does each interval: `sample()`, the wire points, their line
//! protocol, and the `/metrics` text.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kilowatch_collector::nvml::{DcgmMetrics, GpuBackend, NvmlBackend, NvmlOptions, sample_to_points};
use kilowatch_model::{Precision, Timestamp, encode_points};

fn scenario(gpus: usize) -> String {
    let mut s = String::new();
    for i in 0..gpus {
        s.push_str(&format!(
            "[[gpu]]\npower_mw = [{p0}, {p1}, {p2}]\nenergy_mj = [{e0}, {e1}, {e2}]\nutil_gpu = [90, 97, 95]\ntemp_c = [60, 61, 62]\n\
             processes = [{{ pid = 4242, used_memory = 1073741824 }}, {{ pid = 5000, used_memory = 2147483648 }}]\n",
            p0 = 500_000 + i,
            p1 = 510_000 + i,
            p2 = 520_000 + i,
            e0 = 1_000_000_000u64,
            e1 = 1_000_510_000u64,
            e2 = 1_001_030_000u64,
        ));
    }
    s
}

/// This thread's CPU time in ns (the first field of schedstat), finer than clock ticks.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok().and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())).unwrap_or(0)
}

/// utime + stime of the whole process, in clock ticks (100 Hz on Linux).
fn process_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn status_kb(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cycles: u32 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(2000);
    let proc_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
    let _keep;
    let lib: PathBuf = match args.get(2) {
        Some(real) => PathBuf::from(real),
        None => {
            // target/<profile>/examples/nvml_bench → target/<profile>/libkilowatch_fake_nvml.so
            let exe = std::env::current_exe().expect("own path");
            let built = exe.parent().and_then(Path::parent).map(|d| d.join("libkilowatch_fake_nvml.so")).expect("target dir");
            assert!(built.exists(), "{} missing: run `cargo build --release -p kilowatch-fake-nvml` first", built.display());
            let dir = tempfile::tempdir().expect("tempdir");
            let lib = dir.path().join("libnvidia-ml.so.1");
            std::fs::copy(&built, &lib).expect("copy fake");
            std::fs::write(dir.path().join("fake-nvml.toml"), scenario(8)).expect("scenario");
            _keep = dir;
            lib
        }
    };

    let rss_before_kb = status_kb("VmRSS:");
    let open_start = Instant::now();
    let mut backend = NvmlBackend::open(NvmlOptions::new(&lib).proc_root(&proc_root)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let open_ms = open_start.elapsed().as_secs_f64() * 1e3;
    let statics = backend.devices();
    let mut metrics = DcgmMetrics::new("bench-node", statics.clone());

    // Warm-up: first-time allocations and the fake's scenario parse stay out of the figures.
    for _ in 0..10 {
        let s = backend.sample();
        metrics.update(&s);
    }

    let mut sample_ns = 0u64;
    let mut bytes = 0usize;
    let mut points = 0usize;
    let cpu0 = thread_cpu_ns();
    let ticks0 = process_cpu_ticks();
    let wall0 = Instant::now();
    for i in 0..cycles {
        let t = thread_cpu_ns();
        let sample = backend.sample();
        sample_ns += thread_cpu_ns() - t;
        let pts = sample_to_points("dc5", "bench-node", &statics, &sample, Timestamp::from_secs(1_700_000_000 + i64::from(i)));
        points += pts.len();
        bytes += encode_points(&pts, Precision::Ns).len();
        metrics.update(&sample);
        bytes += metrics.render().len();
    }
    let cpu_ns = thread_cpu_ns() - cpu0;
    let ticks = process_cpu_ticks() - ticks0;
    let wall = wall0.elapsed();

    let per_cycle_us = cpu_ns as f64 / f64::from(cycles) / 1e3;
    println!("gpus: {}  cycles: {cycles}  lib: {}", statics.len(), lib.display());
    println!("open (init + statics + event registration): {open_ms:.2} ms");
    println!(
        "CPU per cycle: {per_cycle_us:.1} us (sample() alone {:.1} us; process utime+stime {:.1} us/cycle from {ticks} ticks)",
        sample_ns as f64 / f64::from(cycles) / 1e3,
        ticks as f64 * 10_000.0 / f64::from(cycles),
    );
    println!("share of one core at 1 Hz: {:.4} %  (goal < 0.2 %)", per_cycle_us / 1e6 * 100.0);
    println!("wall per cycle: {:.1} us; {points} points, {bytes} bytes of text produced", wall.as_secs_f64() * 1e6 / f64::from(cycles));
    println!(
        "memory: VmHWM (peak RSS) {:.1} MiB, VmRSS {:.1} MiB (at start {:.1} MiB)  (goal < 20 MB)",
        status_kb("VmHWM:") as f64 / 1024.0,
        status_kb("VmRSS:") as f64 / 1024.0,
        rss_before_kb as f64 / 1024.0
    );
}
