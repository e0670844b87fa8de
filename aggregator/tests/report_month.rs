//! The monthly report against the API: a simulated October 2024 (745 local hours in
//! Europe/Paris, DOMAIN example 13) backfilled by the demo's code at 1-hour steps with 8 nodes,
//! then every KPI and job figure in the report's JSON compared with `/api/v1/kpi` and
//! `/api/v1/jobs` for the same month; two downloads give the same bytes. DOMAIN example 12
//! (month boundaries in Europe/Paris) through the report of January and February 2024.

mod common;

use std::time::Duration;

use common::{READ, Server, WRITE};
use kilowatch_aggregator::demo::backfill_with_jobs;
use kilowatch_aggregator::report;
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::Store;
use kilowatch_store::jobs::JobStore;
use serde_json::Value;

const GENERATED: &str = "2024-11-02T06:00:00Z";

async fn get(s: &Server, path: &str) -> reqwest::Response {
    let r = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().expect("client").get(s.url(path)).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{path}");
    r
}

async fn json(s: &Server, path: &str) -> Value {
    get(s, path).await.json().await.expect("json")
}

/// Every number (and string, except labels that name the window differently) of `want` is in
/// `got` with the same value.
fn same_numbers(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                if k == "official" || k == "official_min_coverage_pct" {
                    continue; // the API adds them; the report states the period's status in its label and methodology
                }
                let gv = g.get(k).unwrap_or_else(|| panic!("{path}.{k} missing in the report"));
                same_numbers(gv, wv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path} length");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                same_numbers(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(got, want, "{path}"),
    }
}

/// October 2024 backfilled by the demo's code: 8 nodes, 1-hour steps.
fn backfill_october(dir: &std::path::Path) {
    // 2024-09-30T21:00Z: an hour before the local month starts, so its first hour is covered.
    let start = Timestamp::from_secs(1_727_730_000);
    let end = Timestamp::from_secs(1_730_415_600 + 3600); // 2024-10-31T23:00Z + 1 h
    let store = Store::open(dir).expect("store");
    let jobs = JobStore::open(dir).expect("jobs");
    let mut site = Site::new(SimConfig { start, nodes: 8, site_nodes: 8, ..SimConfig::default() });
    backfill_with_jobs(&store, Some(&jobs), &mut site, end, Duration::from_secs(3600)).expect("backfill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn october_2024_report_equals_the_api() {
    let dir = tempfile::tempdir().expect("tmp");
    backfill_october(dir.path());
    let s = Server::start(dir.path()).await;
    let path = format!("/api/v1/reports/2024-10.json?generated_at={GENERATED}");
    let t = std::time::Instant::now();
    let bytes = get(&s, &path).await.bytes().await.expect("body");
    println!("report generated in {:.2} s (debug)", t.elapsed().as_secs_f64());
    let r: Value = serde_json::from_slice(&bytes).expect("report json");

    // Example 13: October 2024 has 745 local hours.
    assert_eq!(r["meta"]["hours"], 745.0);
    assert_eq!(r["windows"]["month"]["hours"], 745.0);
    assert_eq!(r["meta"]["timezone"], "Europe/Paris");
    assert_eq!(r["meta"]["from"], "2024-09-30T22:00:00Z");
    assert_eq!(r["meta"]["to"], "2024-10-31T23:00:00Z");
    assert_eq!(r["generated_at"], GENERATED);

    let k = json(&s, "/api/v1/kpi?period=month&month=2024-10").await;
    same_numbers(&r["windows"]["month"], &k, "month");
    let k12 = json(&s, "/api/v1/kpi?period=rolling12&month=2024-10").await;
    same_numbers(&r["windows"]["rolling12"], &k12, "rolling12");
    let prev = json(&s, "/api/v1/kpi?period=month&month=2024-09").await;
    same_numbers(&r["windows"]["previous_month"], &prev, "previous month");
    let pue = k["pue"].as_f64().expect("pue");
    assert!((1.0..1.5).contains(&pue), "PUE {pue}");
    let row = r["kpi_table"].as_array().expect("table").iter().find(|x| x["key"] == "pue").expect("pue row");
    assert_eq!(row["month"], k["pue"]);
    // September holds one hour of data: too little to compare with.
    assert_eq!(r["summary"]["headlines"][0]["previous_month"], Value::Null);
    let head = r["summary"]["headlines"].as_array().expect("headlines").iter().find(|x| x["key"] == "wue_l_per_kwh").expect("wue");
    assert_eq!(head["value"], k["wue_l_per_kwh"]);

    // The days add up to the month (local days: 31 of them, one of 25 h).
    let days = r["daily"].as_array().expect("daily");
    assert_eq!(days.len(), 31);
    assert_eq!(days[26]["hours"], 25.0, "27 October 2024 has 25 h in Paris");
    let sum: f64 = days.iter().map(|d| d["facility_energy_kwh"].as_f64().expect("day")).sum();
    let month = k["facility_energy_kwh"].as_f64().expect("edc");
    assert!(((sum - month) / month).abs() < 1e-9, "Σ days {sum} vs month {month}");

    let j = json(&s, "/api/v1/jobs?period=month&month=2024-10").await;
    for key in ["it_energy_kwh", "jobs_it_energy_kwh", "idle_kwh", "unattributed_kwh"] {
        assert_eq!(r["jobs"][key], j[key], "jobs.{key}");
    }
    let api_jobs = j["jobs"].as_array().expect("jobs");
    assert_eq!(r["jobs"]["job_count"], api_jobs.len());
    assert!(!api_jobs.is_empty(), "the simulator ran jobs");
    for top in r["jobs"]["top_jobs"].as_array().expect("top") {
        let a = api_jobs.iter().find(|x| x["job"] == top["job"]).expect("top job in the API");
        same_numbers(top, a, "top job");
    }
    for (name, roll) in r["jobs"]["top_owners"].as_array().expect("owners").iter().map(|x| (x[0].as_str().expect("owner"), &x[1])) {
        same_numbers(roll, &j["by_owner"][name], "owner");
    }
    // The EU section is the year to date at the month's end, not the calendar year: the
    // backfill's hour of November counts in the year only.
    let eu = json(&s, "/api/v1/eu-indicators?month=2024-10").await;
    same_numbers(&r["eu"]["annex_ii"], &eu["annex_ii"], "eu");
    same_numbers(&r["eu"]["annex_iii"], &eu["annex_iii"], "eu");
    let edc = |eu: &Value| eu["annex_ii"].as_array().expect("annex ii").iter().find(|i| i["key"] == "edc_kwh").expect("edc")["value"].as_f64().expect("edc value");
    assert_eq!(edc(&r["eu"]), r["windows"]["ytd"]["facility_energy_kwh"], "EU year to date = the KPI year to date");
    let eu_year = json(&s, "/api/v1/eu-indicators?year=2024").await;
    assert!(edc(&eu_year) > edc(&r["eu"]), "the calendar year includes November's first hour");

    // Reproducible: the same bytes again, in JSON and in CSV.
    assert_eq!(get(&s, &path).await.bytes().await.expect("again"), bytes);
    let csv_path = format!("/api/v1/reports/2024-10.csv?generated_at={GENERATED}");
    let csv = get(&s, &csv_path).await.text().await.expect("csv");
    assert_eq!(get(&s, &csv_path).await.text().await.expect("csv again"), csv);
    assert!(csv.contains(&format!("\nwindows.month.pue,{}\n", k["pue"])), "the CSV carries the exact PUE");
    assert!(csv.ends_with(&format!("generated_at,{GENERATED}\n")));
    let html = get(&s, "/api/v1/reports/2024-10.html").await.text().await.expect("html");
    assert!(html.contains("PUE (Cat 1)") && html.contains("Europe/Paris"), "the HTML states category and zone");
    // One month of data: the rolling 12 months and the year to date say how much of them was
    // metered, and the rolling 12 months is not called official.
    assert!(html.contains("rolling 12 months (") && html.contains("year to date (") && html.contains("% metered)"), "window coverage in the KPI table");
    assert!(html.contains("The rolling 12 months is not an official annual figure"), "not official on one month of data");
    assert_eq!(html.matches("<svg").count(), 5, "five charts inline");
    assert!(!html.contains("<svg class=\"chart\" width=\"0\""), "charts have a size");
    for part in ["Daily PUE", "Daily energy E_DC", "Daily WUE", "Hours per cooling mode", "Water per day", "day of month"] {
        assert!(html.contains(part), "chart text {part:?} in the HTML");
    }
    let pdf_path = format!("/api/v1/reports/2024-10.pdf?generated_at={GENERATED}");
    let pdf = get(&s, &pdf_path).await;
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf = pdf.bytes().await.expect("pdf");
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    assert_eq!(get(&s, &pdf_path).await.bytes().await.expect("pdf again"), pdf, "same data, same PDF bytes");
    // To look at it: KILOWATCH_REPORT_OUT=/tmp/r cargo test --test report_month
    if let Ok(out) = std::env::var("KILOWATCH_REPORT_OUT") {
        std::fs::create_dir_all(&out).expect("out dir");
        std::fs::write(format!("{out}/dc5-2024-10.html"), &html).expect("write html");
        std::fs::write(format!("{out}/dc5-2024-10.json"), &bytes).expect("write json");
    }
}

#[tokio::test]
async fn example_12_month_boundary_in_paris() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // 8 kW IT (PUE 1.25) from 2024-01-31T22:00Z to 2024-02-01T00:00Z, hourly readings.
    let (a, b, c) = (1_706_738_400i64, 1_706_742_000i64, 1_706_745_600i64);
    let body = format!(
        "meter,meter=u,role=it,category=1 energy_kwh=0 {a}\nmeter,meter=u,role=it,category=1 energy_kwh=8 {b}\nmeter,meter=u,role=it,category=1 energy_kwh=16 {c}\n\
         meter,meter=g,role=facility energy_kwh=0 {a}\nmeter,meter=g,role=facility energy_kwh=10 {b}\nmeter,meter=g,role=facility energy_kwh=20 {c}\n"
    );
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let jan = json(&s, "/api/v1/reports/2024-01.json").await;
    let feb = json(&s, "/api/v1/reports/2024-02.json").await;
    assert_eq!(jan["windows"]["month"]["it_energy_kwh"], 8.0, "January ends at 23:00Z in Paris");
    assert_eq!(feb["windows"]["month"]["it_energy_kwh"], 8.0);
    assert_eq!(feb["windows"]["month"]["pue"], 1.25);
    assert_eq!(jan["meta"]["hours"], 744.0);
    assert_eq!(feb["meta"]["hours"], 696.0);
    // February's year to date includes January's 8 kWh.
    let ytd = feb["kpi_table"].as_array().expect("table").iter().find(|x| x["key"] == "eit_kwh").expect("eit");
    assert_eq!(ytd["ytd"], 16.0);
    assert_eq!(ytd["month"], 8.0);
    assert_eq!(jan["summary"]["headlines"][0]["change_vs_previous_month_pct"], Value::Null, "no December data: no change shown");

    // The scheduled run: from 2 February (local) January's report is due, written once.
    let out = tempfile::tempdir().expect("out");
    let mut cfg = kilowatch_aggregator::config::Config::default();
    cfg.report.dir = Some(out.path().to_owned());
    let feb2 = Timestamp::from_secs(1_706_828_400); // 2024-02-01T23:00Z = 2 February 00:00 in Paris
    let (month, files) = report::schedule::run_once(&s.store, &cfg, feb2).expect("run").expect("due");
    assert_eq!(month, "2024-01");
    assert_eq!(files.len(), 4, "html, pdf, csv and json");
    let written: Value = serde_json::from_slice(&std::fs::read(out.path().join("dc5-2024-01.json")).expect("json file")).expect("json");
    assert_eq!(written["windows"]["month"]["it_energy_kwh"], 8.0);
    // Stamped with when it became due, not when it ran: a pair writes identical files.
    assert_eq!(written["generated_at"], "2024-02-01T23:00:00Z");
    let twin = tempfile::tempdir().expect("twin");
    let mut twin_cfg = cfg.clone();
    twin_cfg.report.dir = Some(twin.path().to_owned());
    report::schedule::run_once(&s.store, &twin_cfg, Timestamp(feb2.0 + 3_600_000_000_000)).expect("twin run").expect("due");
    for f in ["dc5-2024-01.json", "dc5-2024-01.csv", "dc5-2024-01.html"] {
        assert_eq!(std::fs::read(out.path().join(f)).expect("a"), std::fs::read(twin.path().join(f)).expect("b"), "{f} differs between two runs an hour apart");
    }
    assert!(report::schedule::run_once(&s.store, &cfg, feb2).expect("again").is_none(), "not produced twice");
    let early = tempfile::tempdir().expect("early dir");
    cfg.report.dir = Some(early.path().to_owned());
    assert!(report::schedule::run_once(&s.store, &cfg, Timestamp(feb2.0 - 60_000_000_000)).expect("early").is_none(), "1 February 23:59 in Paris: not due yet");
}

/// The PDF of a demo-backfilled month, rendered page by page by poppler: every page becomes a
/// non-trivial PNG, the shipped font is embedded, every character has a glyph, and every page
/// carries the site, the month and its page number.
#[test]
fn october_2024_pdf_renders_every_page() {
    let dir = tempfile::tempdir().expect("tmp");
    backfill_october(dir.path());
    let store = Store::open(dir.path()).expect("store");
    let cfg = kilowatch_aggregator::config::Config::default();
    let r = report::build(&store, &cfg, "2024-10", Some(GENERATED)).expect("report");
    let pdf = report::render_pdf(&r).expect("pdf");
    assert!(pdf.missing_glyphs.is_empty(), "characters the font lacks: {:?}", pdf.missing_glyphs);
    assert!(pdf.pages >= 5, "summary, KPIs, charts, jobs, EU, quality, methodology: {} pages", pdf.pages);
    let out = match std::env::var("KILOWATCH_REPORT_OUT") {
        Ok(o) => std::path::PathBuf::from(o),
        Err(_) => dir.path().join("out"),
    };
    std::fs::create_dir_all(&out).expect("out dir");
    let file = out.join("dc5-2024-10.pdf");
    std::fs::write(&file, &pdf.bytes).expect("write pdf");
    if !common::require_tool("pdftoppm", "poppler-utils") || !common::require_tool("pdffonts", "poppler-utils") {
        return;
    }
    let run = |cmd: &mut std::process::Command| {
        let o = cmd.output().expect("run poppler");
        assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stderr.is_empty(), "{cmd:?} complained: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let fonts = run(std::process::Command::new("pdffonts").arg(&file));
    assert!(fonts.contains("DejaVuSans"), "the shipped font is in the PDF:\n{fonts}");
    for line in fonts.lines().skip(2) {
        assert!(line.contains(" yes "), "every font embedded:\n{fonts}");
    }
    let prefix = out.join("page");
    run(std::process::Command::new("pdftoppm").args(["-png", "-r", "60"]).arg(&file).arg(&prefix));
    let mut pngs: Vec<_> = std::fs::read_dir(&out).expect("ls").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "png")).collect();
    pngs.sort();
    assert_eq!(pngs.len(), pdf.pages, "one PNG per page: {pngs:?}");
    for p in &pngs {
        let len = std::fs::metadata(p).expect("png").len();
        assert!(len > 8_000, "{} is {len} bytes: an empty page?", p.display());
    }
    // Text as poppler reads it back: the running header and footer on every page.
    if common::require_tool("pdftotext", "poppler-utils") {
        let text = run(std::process::Command::new("pdftotext").args(["-layout"]).arg(&file).arg("-"));
        let pages: Vec<&str> = text.split('\u{c}').filter(|p| !p.trim().is_empty()).collect();
        assert_eq!(pages.len(), pdf.pages);
        for (i, page) in pages.iter().enumerate() {
            assert!(page.contains("dc5 · sustainability report 2024-10"), "page {} header", i + 1);
            assert!(page.contains("calendar month 2024-10 (Europe/Paris)"), "page {} period", i + 1);
            assert!(page.contains(&format!("page {} of {}", i + 1, pdf.pages)), "page {} number", i + 1);
        }
        for section in ["Summary", "KPIs", "Daily energy", "Cooling and climate", "ASHRAE", "Who used the energy", "Alerts", "Annex II", "Data quality", "Methodology", "Daily PUE", "day of month"] {
            assert!(text.contains(section), "{section:?} in the PDF");
        }
    }
}

fn alert(name: &str, severity: &str, fired: Timestamp) -> kilowatch_alerts::Alert {
    let labels: kilowatch_model::Labels = [("alertname", name), ("severity", severity)].iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    kilowatch_alerts::Alert {
        fingerprint: kilowatch_alerts::fingerprint(&labels),
        rule: name.into(),
        labels,
        annotations: Default::default(),
        status: kilowatch_alerts::AlertStatus::Firing,
        active_since: fired,
        fired_at: Some(fired),
        resolved_at: None,
        value: 1.0,
        last_eval: fired,
        history: Vec::new(),
    }
}

/// Alerts by severity come from the alert history (the delivery log in alerts.db) and the
/// engine's state, each alert once however many receivers were notified; alerts that fired
/// before the month are not counted even when notified in it.
#[test]
fn alerts_by_severity_from_the_history() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    let outbox = kilowatch_alerts::Outbox::open(&kilowatch_aggregator::alerting::data_dir(&store)).expect("outbox");
    let at = |s: &str| Timestamp::parse_rfc3339(s).expect("time");
    let resolved_early = alert("WaterLeak", "warning", at("2024-10-05T10:00:00Z"));
    let twice = alert("CoolingFailure", "critical", at("2024-10-20T10:00:00Z"));
    let before = alert("HighPue", "warning", at("2024-09-30T21:00:00Z")); // 23:00 in Paris, 30 September
    let live = alert("GpuThermalMarginLow", "critical", at("2024-10-31T22:30:00Z")); // 23:30, 31 October
    let note = |id: &str, receiver: &str, alerts: Vec<kilowatch_alerts::Alert>, created: Timestamp| kilowatch_alerts::Notification {
        id: id.into(),
        receiver: receiver.into(),
        group_key: id.into(),
        group_labels: Default::default(),
        alerts,
        created_at: created,
    };
    let notes = [
        note("n1", "ops", vec![resolved_early.clone()], at("2024-10-05T10:00:30Z")),
        note("n2", "ops", vec![twice.clone()], at("2024-10-20T10:00:30Z")),
        note("n2", "pager", vec![twice.clone()], at("2024-10-20T10:00:30Z")),
        note("n3", "ops", vec![before.clone()], at("2024-09-30T22:00:30Z")),
    ];
    let mut state = kilowatch_alerts::engine::EngineState::default();
    for a in [twice, live] {
        state.alerts.insert(a.fingerprint.clone(), a);
    }
    outbox.commit_tick(&[("engine", &state)], &notes).expect("commit");

    let r = report::build(&store, &kilowatch_aggregator::config::Config::default(), "2024-10", Some(GENERATED)).expect("report");
    assert_eq!(r.alerts.unavailable, None);
    assert_eq!(r.alerts.fired_by_severity.get("critical"), Some(&2), "{:?}", r.alerts);
    assert_eq!(r.alerts.fired_by_severity.get("warning"), Some(&1), "{:?}", r.alerts);
    assert_eq!(r.alerts.total, 3);
}
