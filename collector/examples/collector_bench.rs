//! The whole collector, as deployed: the release `kilowatch-collector` binary sampling 8 fake
//! GPUs through NVML, shipping every batch to a sink that answers like the aggregator, and
//! serving `/metrics`, which this bench scrapes every second (Prometheus usually scrapes every
//! 15–30 s: a pessimistic load). Reports the child's CPU per cycle, its share of one core and
//! its resident memory.
//!
//! ```sh
//! cargo build --release -p kilowatch-fake-nvml
//! cargo build --release -p kilowatch-collector --bins --examples
//! target/release/examples/collector_bench [seconds=60] [interval_s=1]
//! ```
//! (`nvml_bench` measures the library's cycle alone, in-process, with finer timing.)

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

fn scenario(gpus: usize) -> String {
    (0..gpus)
        .map(|i| {
            format!(
                "[[gpu]]\npower_mw = [{}, {}]\nenergy_mj = [1000000000, 1000510000, 1001030000]\nutil_gpu = [90, 97]\ntemp_c = [60, 61]\n\
                 processes = [{{ pid = 4242, used_memory = 1073741824 }}, {{ pid = 5000, used_memory = 2147483648 }}]\n",
                500_000 + i,
                510_000 + i
            )
        })
        .collect()
}

/// utime + stime of `pid` in clock ticks (100 Hz), dead threads included.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Sum of the live threads' run time in ns (schedstat): finer than ticks, misses dead threads.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks.flatten().filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok()).filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok())).sum()
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[derive(Default)]
struct Sink {
    batches: AtomicU64,
    bytes: AtomicU64,
}

async fn write(State(sink): State<Arc<Sink>>, body: String) -> StatusCode {
    sink.batches.fetch_add(1, Ordering::Relaxed);
    sink.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(60);
    let interval: f64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let exe = std::env::current_exe()?;
    let release = exe.parent().and_then(Path::parent).ok_or("target dir")?.to_path_buf();
    let (bin, fake) = (release.join("kilowatch-collector"), release.join("libkilowatch_fake_nvml.so"));
    for p in [&bin, &fake] {
        if !p.exists() {
            return Err(format!("{} missing: cargo build --release -p kilowatch-fake-nvml && cargo build --release -p kilowatch-collector --bins --examples", p.display()).into());
        }
    }
    let dir = tempfile::tempdir()?;
    let lib = dir.path().join("libnvidia-ml.so.1");
    std::fs::copy(&fake, &lib)?;
    std::fs::write(dir.path().join("fake-nvml.toml"), scenario(8))?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let sink = Arc::new(Sink::default());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let sink_addr = listener.local_addr()?;
    let app = Router::new().route("/api/v2/write", post(write)).with_state(sink.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let metrics_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let proc_root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "interval_s = {interval}\nnode = \"bench\"\n[aggregator]\nurl = \"http://{sink_addr}\"\ntoken = \"t\"\n\
             [nvml]\nlib_path = {lib:?}\nproc_root = {proc:?}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            lib = lib.display().to_string(),
            proc = proc_root.display().to_string()
        ),
    )?;
    let mut child = Command::new(&bin).arg("--config").arg(&cfg).env("RUST_LOG", "warn").stdout(Stdio::null()).spawn()?;
    let pid = child.id();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let scrape = || rt.block_on(async { client.get(&url).send().await.ok()?.text().await.ok() });

    // Warm-up: NVML open, first allocations, the fake's scenario parse.
    let started = Instant::now();
    let cycles0 = loop {
        if let Some(c) = scrape().as_deref().and_then(|p| metric(p, "kilowatch_collector_cycles_total")).filter(|c| *c >= 3.0) {
            break c;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return Err("the collector did not run 3 cycles within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (ticks0, ns0, batches0, wall0) = (cpu_ticks(pid), cpu_ns(pid), sink.batches.load(Ordering::Relaxed), Instant::now());
    let mut page = String::new();
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        page = scrape().unwrap_or_default();
    }
    let (ticks, ns, wall) = (cpu_ticks(pid) - ticks0, cpu_ns(pid) - ns0, wall0.elapsed().as_secs_f64());
    let cycles = metric(&page, "kilowatch_collector_cycles_total").unwrap_or(0.0) - cycles0;
    let batches = sink.batches.load(Ordering::Relaxed) - batches0;
    let (hwm, rss) = (status_kb(pid, "VmHWM:"), status_kb(pid, "VmRSS:"));
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let status = child.wait()?;

    let per_cycle_ms = |cpu_s: f64| cpu_s * 1e3 / cycles.max(1.0);
    println!("{}, 8 fake GPUs, interval {interval} s, {seconds} s measured, /metrics scraped every 1 s", bin.display());
    println!("cycles: {cycles}  batches accepted by the sink: {batches}  bytes shipped: {}", sink.bytes.load(Ordering::Relaxed));
    println!("CPU: {:.3} ms per cycle from schedstat ({:.3} ms from {ticks} ticks of utime+stime)", per_cycle_ms(ns as f64 / 1e9), per_cycle_ms(ticks as f64 / 100.0));
    println!("share of one core: {:.3} % (schedstat), {:.3} % (ticks)  (goal < 0.2 % at 1 Hz)", ns as f64 / 1e9 / wall * 100.0, ticks as f64 / 100.0 / wall * 100.0);
    println!("memory: VmHWM (peak RSS) {:.1} MiB, VmRSS {:.1} MiB  (goal < 20 MB)", hwm as f64 / 1024.0, rss as f64 / 1024.0);
    println!("last cycle (sample + encode + send): {:.3} ms; exit on SIGTERM: {status}", metric(&page, "kilowatch_collector_last_cycle_seconds").unwrap_or(0.0) * 1e3);
    Ok(())
}
