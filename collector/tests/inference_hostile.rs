//! Hostile and unlucky inference pages (issue 31 items 1 and 2): labels no line protocol can
//! carry as they are, and pages that are too large, too slow or endless. The collector repairs
//! or drops what the aggregator would refuse, and never lets a page cost it a GPU sample.

mod hostile_pages;

use hostile_pages::hostile_vllm_page;
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::inference::InferenceSource;
use kilowatch_collector::inference::{Engine, read_page};
use kilowatch_collector::sanitize::{MAX_NAME_BYTES, Sanitizer};
use kilowatch_collector::source::Source;
use std::path::Path;
use std::time::Duration;

use hostile_pages::Misbehaviour;
use kilowatch_model::{Precision, Timestamp, encode_points, parse_lines};

fn source(url: &str) -> InferenceSource {
    sources(&[("tenant-vllm", url, "")])
}

/// One source for several servers: (name, url, extra keys).
fn sources(servers: &[(&str, &str, &str)]) -> InferenceSource {
    let mut text = String::from("[aggregator]\nurl = \"http://127.0.0.1:1\"\n");
    for (name, url, extra) in servers {
        text.push_str(&format!("[[inference]]\nname = \"{name}\"\nengine = \"vllm\"\nurl = \"{url}\"\ngpus = [0]\n{extra}\n"));
    }
    let cfg = CollectorConfig::parse(&text, Path::new("c.toml")).expect("config");
    InferenceSource::new(&cfg.inference, "dc5", "dgx-001", None).expect("source")
}

/// An endless page and a page that never comes, beside a good one: every sample ends at its
/// deadline with the good server's rows, the endless page is cut at its byte cap, the silent
/// one at the deadline; each is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_silent_pages_end_at_their_caps_and_the_good_server_is_read() {
    let good = hostile_pages::serve_page(hostile_pages::many_series_page(3)).await;
    let endless = hostile_pages::serve_raw(Misbehaviour::Endless).await;
    let silent = hostile_pages::serve_raw(Misbehaviour::Silent).await;
    let mut src = sources(&[
        ("good", &format!("http://{good}/metrics"), ""),
        ("endless", &format!("http://{endless}/metrics"), "max_page_bytes = 65536"),
        ("silent", &format!("http://{silent}/metrics"), "timeout_ms = 600000"),
    ])
    .with_deadline(Duration::from_millis(500));
    let mut rows = Vec::new();
    for i in 0..3 {
        rows.push(src.sample(Timestamp(i)).await.expect("sample").iter().filter(|p| p.tag_value("server") == Some("good")).count());
    }
    assert_eq!(rows, [3, 3, 3], "the good server's rows in every sample");
    assert_eq!((src.caps.pages_over_bytes, src.caps.pages_over_deadline, src.scrape_errors), (3, 3, 6), "{:?}", src.caps);
}

/// A page of a million series is abandoned at the byte cap; one of 20,000 keeps max_rows rows.
/// Either way the sample is small enough for one spool record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_a_million_series_is_capped() {
    let huge = hostile_pages::serve_page(hostile_pages::many_series_page(1_000_000)).await;
    let large = hostile_pages::serve_page(hostile_pages::many_series_page(20_000)).await;
    let mut src = sources(&[("huge", &format!("http://{huge}/metrics"), ""), ("large", &format!("http://{large}/metrics"), "")]).with_deadline(Duration::from_secs(20));
    let points = src.sample(Timestamp(1)).await.expect("sample");
    assert_eq!(src.caps.pages_over_bytes, 1, "{:?}", src.caps);
    assert_eq!(src.caps.rows_over_cap, 20_000 - 256, "{:?}", src.caps);
    assert_eq!(points.iter().filter(|p| p.tag_value("server") == Some("large")).count(), 256);
    assert!(points.iter().all(|p| p.tag_value("server") == Some("large")));
    let body = encode_points(&points, Precision::Ns);
    assert!(body.len() < 1 << 20, "{} bytes", body.len());
    let dir = tempfile::tempdir().expect("tmp");
    let mut spool = kilowatch_ship::Spool::open(kilowatch_ship::SpoolConfig { dir: dir.path().to_path_buf(), ..Default::default() }).expect("spool");
    spool.append(body.as_bytes()).expect("one record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_page_makes_lines_the_aggregator_takes() {
    let page = read_page(&hostile_vllm_page(), Engine::Vllm, None, "", None);
    assert_eq!((page.parse_errors, page.models.len()), (0, 6), "every row of the page is read");
    let addr = hostile_pages::serve_page(hostile_vllm_page()).await;
    let mut src = source(&format!("http://{addr}/metrics"));
    let points = src.sample(Timestamp(1)).await.expect("sample");
    assert_eq!(points.len(), 6);
    // As the page spelled them, the lines are refused (the aggregator of issue 31 refused the
    // whole batch); repaired, every one is taken.
    assert!(parse_lines(&encode_points(&points, Precision::Ns), Precision::Ns, Timestamp(0)).is_err(), "the raw labels make bad lines");
    let mut repaired = points.clone();
    let mut s = Sanitizer::default();
    s.points(&mut repaired);
    let back = parse_lines(&encode_points(&repaired, Precision::Ns), Precision::Ns, Timestamp(0)).expect("every line parses");
    assert_eq!(back.len(), 6, "no row is lost: an empty label loses its tag, not its counts");
    // The 100 kB label was cut to max_label_bytes at reading; the sanitiser fixed the tab, the
    // line break and the backslash, and left the empty label out.
    assert_eq!((s.repaired, s.dropped), (3, 1));
    let ok = back.iter().find(|p| p.tag_value("model") == Some("llama-ok")).expect("the ordinary model");
    assert_eq!(ok.get_f64("prompt_tokens"), Some(100.0));
    assert!(back.iter().all(|p| p.tag_value("model").is_none_or(|m| m.len() <= MAX_NAME_BYTES && !m.contains(['\t', '\n']))));
}

/// A GPU that reports one point a sample.
struct OneGpu;

impl Source for OneGpu {
    fn name(&self) -> &str {
        "gpu"
    }
    fn sample(&mut self, now: Timestamp) -> kilowatch_collector::source::Sampling<'_> {
        Box::pin(async move { Ok(vec![kilowatch_model::Point::new("gpu", now).tag("node", "dgx-001").tag("gpu", "0").field("energy_mj", 1000i64)]) })
    }
}

/// The agent as it runs on a node whose inference servers are an endless page and a silent
/// one: every cycle spools the GPU's sample, and every cycle's scrapes end at a cap (counted in
/// the agent's stats, as `/metrics` shows them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_samples_keep_flowing_beside_endless_and_silent_pages() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use kilowatch_collector::agent::{Agent, AgentStats};
    use kilowatch_ship::{Spool, SpoolConfig};

    let endless = hostile_pages::serve_raw(Misbehaviour::Endless).await;
    let silent = hostile_pages::serve_raw(Misbehaviour::Silent).await;
    let stats = Arc::new(AgentStats::default());
    let inference = sources(&[("endless", &format!("http://{endless}/metrics"), "max_page_bytes = 65536"), ("silent", &format!("http://{silent}/metrics"), "timeout_ms = 600000")])
        .with_deadline(Duration::from_millis(100))
        .with_stats(stats.clone());
    let dir = tempfile::tempdir().expect("tmp");
    let spool_cfg = SpoolConfig { dir: dir.path().to_path_buf(), ..Default::default() };
    // Nothing listens there: every batch stays in the spool, one record a cycle.
    let shipper = kilowatch_ship::Shipper::new(&kilowatch_ship::ShipperConfig { url: "http://127.0.0.1:9".into(), token: "t".into(), org: None, bucket: None, timeout: Duration::from_secs(1) })
        .expect("shipper");
    let agent = Agent {
        sources: vec![Box::new(OneGpu), Box::new(inference)],
        shipper,
        interval: Duration::from_millis(200),
        clock: kilowatch_collector::clock::Clock::Wall,
        spool: Spool::open(spool_cfg.clone()).expect("spool"),
        stats: stats.clone(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(agent.run(rx));
    let started = std::time::Instant::now();
    while stats.cycles.load(Ordering::Relaxed) < 8 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    task.await.expect("agent");
    let cycles = stats.cycles.load(Ordering::Relaxed);
    assert!(cycles >= 8, "cycles: {cycles}");
    assert_eq!(stats.points.load(Ordering::Relaxed), cycles, "the GPU's point in every cycle, nothing of the pages");
    assert_eq!(stats.inference_pages_over_cap.load(Ordering::Relaxed), 2 * cycles, "both pages abandoned in every cycle");
    let spool = Spool::open(spool_cfg).expect("reopen");
    assert_eq!(spool.pending_records(), cycles, "one spooled batch a cycle");
}
