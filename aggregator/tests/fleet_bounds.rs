//! The fleet trusts a site's answer only within bounds (issue 31 item 9), through `kilowatch
//! serve` with a `[fleet]` section reading three fake sites served by this test: one that
//! answers hours it was not asked for (only the asked hours are kept), one whose answer is
//! larger than `fleet.max_answer_bytes` and one with more rows than `fleet.max_answer_rows`
//! (both marked degraded with a message, nothing of their answer kept).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::READ;
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000_000_000;

#[derive(Clone, Copy)]
enum Mode {
    /// The asked hours, plus hours outside the window and one off the hour.
    ExtraHours,
    /// The asked hours and 2 MB of padding.
    TooManyBytes,
    /// The asked hours with 100 jobs each.
    TooManyRows,
}

#[derive(Clone)]
struct Fake {
    mode: Mode,
    answers: Arc<AtomicUsize>,
}

fn hour(t: i64, jobs: usize) -> Value {
    let jobs: Vec<Value> =
        (0..jobs).map(|j| json!({ "job": format!("j{j}"), "owner": "o", "project": "p", "gpu_kwh": 1.0, "it_kwh": 1.0, "facility_kwh": 1.2, "water_l": null, "co2_kg": 0.1 })).collect();
    json!({ "t": t, "facility_kwh": 120.0, "generator_kwh": 0.0, "it_kwh": 100.0, "it_category": 1, "water_m3": null, "idle_kwh": 0.0, "metered_s": 3600.0, "jobs": jobs })
}

async fn ledger_hours(State(f): State<Fake>, Query(q): Query<std::collections::HashMap<String, String>>) -> Json<Value> {
    f.answers.fetch_add(1, Ordering::SeqCst);
    let t = |k: &str| kilowatch_model::Timestamp::parse_rfc3339(q.get(k).map(String::as_str).unwrap_or("")).map(|t| t.0).unwrap_or(0);
    let (from, to) = (t("from"), t("to"));
    let per_hour_jobs = if matches!(f.mode, Mode::TooManyRows) { 100 } else { 0 };
    let mut hours: Vec<Value> = (0..).map(|i| from + i * HOUR).take_while(|h| *h < to).map(|h| hour(h, per_hour_jobs)).collect();
    if matches!(f.mode, Mode::ExtraHours) {
        hours.extend([hour(from - 10 * HOUR, 0), hour(to + 10 * HOUR, 0), hour(from + HOUR / 2, 0), hour(946_684_800_000_000_000, 0)]);
    }
    let now = kilowatch_model::Timestamp::now().0;
    let mut ans = json!({ "site": "fake", "timezone": "Europe/Paris", "now": now, "hours": hours });
    if matches!(f.mode, Mode::TooManyBytes) {
        ans["jobs_unavailable"] = json!("x".repeat(2 << 20));
    }
    Json(ans)
}

async fn fake_site(mode: Mode) -> (String, Arc<AtomicUsize>) {
    let answers = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route("/api/v1/ledger/hours", get(ledger_hours)).with_state(Fake { mode, answers: answers.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_answers_too_much_is_degraded_and_only_asked_hours_are_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let (extra, extra_n) = fake_site(Mode::ExtraHours).await;
    let (bytes, bytes_n) = fake_site(Mode::TooManyBytes).await;
    let (rows, rows_n) = fake_site(Mode::TooManyRows).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let site = |name: &str, url: &str| format!("[[fleet.sites]]\nname = \"{name}\"\nurl = \"{url}\"\ntoken = \"site-read-token-0123456789\"\ntimezone = \"Europe/Paris\"\n");
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\n[alerts]\nenabled = false\n\
         [fleet]\ntimezone = \"Europe/Paris\"\nrefresh_interval_s = 1\nhistory_days = 1\nsettle_h = 0\ntimeout_s = 5\n\
         max_answer_bytes = 1048576\nmax_answer_rows = 1000\n{}{}{}",
        site("extra", &extra),
        site("bytes", &bytes),
        site("rows", &rows),
        data = dir.path().join("data").display().to_string(),
    );
    let cfg_path = dir.path().join("kilowatch.toml");
    std::fs::write(&cfg_path, cfg).expect("config");
    let log = dir.path().join("kilowatch.log");
    let _server = common::serve_process(&cfg_path, &log);

    // Every site answered at least twice (a first full fetch and a refresh), and the fleet
    // says how each stands.
    let started = Instant::now();
    let sites = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "the fleet did not refresh its sites: {}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
        if [&extra_n, &bytes_n, &rows_n].iter().any(|n| n.load(Ordering::SeqCst) < 2) {
            continue;
        }
        let Ok(r) = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/api/v1/fleet/kpi?period=day")).header("Authorization", format!("Token {READ}")).send().await else { continue };
        if r.status() != 200 {
            continue;
        }
        let v: Value = r.json().await.expect("json");
        break v["sites"].as_array().cloned().unwrap_or_default();
    };
    let by_name = |n: &str| sites.iter().find(|s| s["name"] == n).cloned().unwrap_or_else(|| panic!("site {n} in {sites:?}"));

    let e = by_name("extra");
    assert!(e["degraded"].is_null(), "{e}");
    assert_eq!(e["stale"], false, "{e}");
    // The 25 hours of `history_days = 1` (26 if an hour began during the test), not the 4 it
    // was not asked for.
    let cached = e["hours_cached"].as_u64().unwrap_or(0);
    assert!((25..=26).contains(&cached), "only the asked hours are kept: {e}");

    for (name, bound) in [("bytes", "fleet.max_answer_bytes"), ("rows", "fleet.max_answer_rows")] {
        let s = by_name(name);
        let why = s["degraded"].as_str().unwrap_or_else(|| panic!("{name} is marked degraded: {s}"));
        assert!(why.contains(bound), "{name}: the message names {bound}: {s}");
        assert_eq!(s["stale"], true, "{name}: not trusted: {s}");
        assert_eq!(s["hours_cached"], 0, "{name}: nothing of its answer is kept: {s}");
        assert!(s["last_error"].as_str().is_some_and(|m| m.contains("degraded")), "{s}");
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("not asked for"), "the extra hours are logged: {log}");
}
