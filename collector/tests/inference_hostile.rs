//! Hostile and unlucky inference pages (issue 31 items 1 and 2): labels no line protocol can
//! carry as they are, and pages that are too large, too slow or endless. The collector repairs
//! or drops what the aggregator would refuse, and never lets a page cost it a GPU sample.

mod hostile_pages;

use hostile_pages::hostile_vllm_page;
use kilowatch_collector::inference::{Engine, read_page};
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::inference::InferenceSource;
use kilowatch_collector::sanitize::{MAX_NAME_BYTES, Sanitizer};
use kilowatch_collector::source::Source;
use std::path::Path;
use kilowatch_model::{Precision, Timestamp, encode_points, parse_lines};

fn source(url: &str) -> InferenceSource {
    let text = format!("[aggregator]\nurl = \"http://127.0.0.1:1\"\n[[inference]]\nname = \"tenant-vllm\"\nengine = \"vllm\"\nurl = \"{url}\"\ngpus = [0]\n");
    let cfg = CollectorConfig::parse(&text, Path::new("c.toml")).expect("config");
    InferenceSource::new(&cfg.inference, "dc5", "dgx-001", None).expect("source")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_page_makes_lines_the_aggregator_takes() {
    let page = read_page(&hostile_vllm_page(), Engine::Vllm, None, "", None);
    assert_eq!((page.parse_errors, page.models.len()), (0, 6), "every row of the page is read");
    let addr = hostile_pages::serve_page(hostile_vllm_page()).await;
    let mut src = source(&format!("http://{addr}/metrics"));
    let points = tokio::task::spawn_blocking(move || src.sample(Timestamp(1)).expect("sample")).await.expect("join");
    assert_eq!(points.len(), 6);
    // As the page spelled them, the lines are refused (the aggregator of issue 31 refused the
    // whole batch); repaired, every one is taken.
    assert!(parse_lines(&encode_points(&points, Precision::Ns), Precision::Ns, Timestamp(0)).is_err(), "the raw labels make bad lines");
    let mut repaired = points.clone();
    let mut s = Sanitizer::default();
    s.points(&mut repaired);
    let back = parse_lines(&encode_points(&repaired, Precision::Ns), Precision::Ns, Timestamp(0)).expect("every line parses");
    assert_eq!(back.len(), 6, "no row is lost: an empty label loses its tag, not its counts");
    assert_eq!((s.repaired, s.dropped), (4, 1));
    let ok = back.iter().find(|p| p.tag_value("model") == Some("llama-ok")).expect("the ordinary model");
    assert_eq!(ok.get_f64("prompt_tokens"), Some(100.0));
    assert!(back.iter().all(|p| p.tag_value("model").is_none_or(|m| m.len() <= MAX_NAME_BYTES && !m.contains(['\t', '\n']))));
}
