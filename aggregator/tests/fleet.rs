//! Three site aggregators in three time zones (two offsets), each sent a day of a simulated
//! site through its ingest and jobs API, and a fleet aggregator reading their hourly ledgers over
//! HTTP on loopback: the fleet's E_DC, E_IT, water and job totals are the sums of the sites'
//! own answers to 1e-9; a site stopped mid-test is shown stale with its age, its last figures
//! kept (never zero), and the others' figures do not move.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{READ, Server, TENANT, WRITE};
use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::Auth;
use kilowatch_aggregator::config::{AuthConfig, Config, FleetConfig, FleetSite, SiteConfig};
use kilowatch_aggregator::demo;
use kilowatch_aggregator::server;
use kilowatch_model::{Precision, Timestamp, encode_points};
use kilowatch_sim::{JobEvent, PointBuf, SimConfig, Site};
use kilowatch_store::Store;
use serde_json::Value;
use tokio::sync::watch;

const HOUR: i64 = 3_600_000_000_000;

/// (name, zone, seed, nodes) of the three sites.
const SITES: [(&str, &str, u64, usize); 3] = [("paris", "Europe/Paris", 5, 6), ("amsterdam", "Europe/Amsterdam", 11, 4), ("dublin", "Europe/Dublin", 17, 3)];

/// A simulated site from `start` to `end`, sent to the site's aggregator as a collector and
/// the scheduler's hooks would: line protocol to `/api/v2/write` every 15 simulated minutes,
/// job starts and ends to `/api/v1/jobs` as they happen.
async fn feed(s: &Server, name: &str, seed: u64, nodes: usize, start: i64, end: i64) {
    let mut site = Site::new(SimConfig { seed, site: name.into(), start: Timestamp(start), nodes, site_nodes: nodes, ..SimConfig::default() });
    let post_jobs = |posts: Vec<kilowatch_store::jobs::JobPost>| async move {
        if posts.is_empty() {
            return;
        }
        let r = reqwest::Client::new().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&posts).send().await.expect("send");
        assert_eq!(r.status(), 200, "jobs posted");
    };
    post_jobs(demo::job_posts(site.active_jobs().into_iter().map(JobEvent::Start).collect())).await;
    // A small site submits few jobs (3 nodes: one every 22 hours or so), so a 20-hour window
    // can hold none of the simulator's: one GPU runs the test's own job from an hour after the
    // start to an hour before the end, and every site has job energy in the window.
    post_jobs(vec![kilowatch_store::jobs::JobPost {
        job: format!("fleet-test:{name}"),
        owner: Some("fleet-test".into()),
        project: Some("fleet-test".into()),
        node: Some("dgx-001".into()),
        gpus: Some(vec![0]),
        start: Some(Timestamp(start + HOUR).to_rfc3339()),
        end: Some(Timestamp(end - HOUR).to_rfc3339()),
        source: Some("test".into()),
    }])
    .await;
    let mut buf = PointBuf::new();
    let step = 900 * 1_000_000_000;
    for i in 0..=(end - start) / step {
        if i > 0 {
            site.advance_to(Timestamp(start + i * step));
        }
        site.fill_points(&mut buf);
        let r = s.write(&encode_points(buf.points(), Precision::Ns), "ns", WRITE).await;
        assert_eq!(r.status(), 204, "{name}: {}", r.text().await.unwrap_or_default());
        post_jobs(demo::job_posts(site.take_job_events())).await;
    }
}

async fn get(url: String) -> Value {
    let r = reqwest::Client::new().get(&url).header("Authorization", format!("Token {READ}")).timeout(Duration::from_secs(60)).send().await.expect("send");
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.expect("json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-9 * want.abs().max(1e-9), "{what}: fleet {got}, sites {want}");
}

/// Polls the fleet's KPIs until `ok` holds of them (bounded: 60 s).
async fn wait_for(url: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let v = get(url.to_owned()).await;
        if ok(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 60 s");
}

/// The sites' own E_DC, E_IT, water, jobs' E_IT, idle and jobs' facility energy, summed.
async fn site_sums(sites: &[Server], q: &str) -> [f64; 6] {
    let mut want = [0.0f64; 6];
    for s in sites {
        let k = get(s.url(&format!("/api/v1/kpi?{q}"))).await;
        let j = get(s.url(&format!("/api/v1/jobs?{q}"))).await;
        let jobs = j["jobs"].as_array().expect("jobs");
        let sum = |key: &str| jobs.iter().map(|x| f(&x[key])).sum::<f64>();
        for (w, v) in want.iter_mut().zip([f(&k["facility_energy_kwh"]), f(&k["it_energy_kwh"]), f(&k["water_m3"]), sum("it_energy_kwh"), f(&j["idle_kwh"]), sum("facility_energy_kwh")]) {
            *w += v;
        }
    }
    want
}

/// The fleet's KPIs and jobs equal `want` ([`site_sums`]) to 1e-9.
fn fleet_equals(kpi: &Value, jobs: &Value, want: &[f64; 6]) {
    let t = &kpi["fleet"];
    close(f(&t["facility_energy_kwh"]), want[0], "fleet E_DC");
    close(f(&t["it_energy_kwh"]), want[1], "fleet E_IT");
    close(f(&t["water_m3"]), want[2], "fleet water");
    close(f(&jobs["jobs_it_energy_kwh"]), want[3], "fleet jobs' E_IT");
    close(f(&jobs["idle_kwh"]), want[4], "fleet idle");
    let fac: f64 = jobs["jobs"].as_array().expect("jobs").iter().map(|x| f(&x["facility_energy_kwh"])).sum();
    close(fac, want[5], "fleet jobs' facility energy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_totals_are_the_sites_sums_and_a_stopped_site_goes_stale() {
    let now = Timestamp::now().0;
    // A window of whole hours that closed an hour ago, and a day of data ending there.
    let to = now.div_euclid(HOUR) * HOUR - HOUR;
    let from = to - 20 * HOUR;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let mut sites = Vec::new();
    for ((name, zone, seed, nodes), d) in SITES.iter().zip(&dirs) {
        let cfg = Config { site: SiteConfig { name: (*name).into(), timezone: (*zone).into() }, ..Config::default() };
        let s = Server::start_with(d.path(), "127.0.0.1:0".parse().expect("addr"), cfg, false).await;
        feed(&s, name, *seed, *nodes, from - 2 * HOUR, to + HOUR / 2).await;
        sites.push(s);
    }

    // The fleet aggregator, wired as `kilowatch serve` wires a `[fleet]` section.
    let fleet_cfg = FleetConfig {
        timezone: "Europe/Paris".into(),
        refresh_interval_s: 1,
        history_days: 2,
        settle_h: 0,
        timeout_s: 5,
        stale_after_s: Some(30),
        max_answer_bytes: 64 << 20,
        max_answer_rows: 1_000_000,
        sites: SITES
            .iter()
            .zip(&sites)
            .map(|((name, zone, ..), s)| FleetSite {
                name: (*name).into(),
                url: format!("http://{}", s.addr),
                token: Some(READ.into()),
                token_file: None,
                timezone: (*zone).into(),
                dashboard_url: None,
            })
            .collect(),
    };
    let config = Config { fleet: Some(fleet_cfg.clone()), ..Config::default() };
    config.validate().expect("fleet config");
    let fleet_dir = tempfile::tempdir().expect("tmp");
    let (stop, rx) = watch::channel(false);
    let metrics = Arc::new(kilowatch_aggregator::metrics::Metrics::new());
    let started = kilowatch_aggregator::fleet::start(fleet_cfg, metrics.clone(), rx.clone()).expect("fleet");
    let state = AppState {
        store: Arc::new(Store::open(fleet_dir.path()).expect("store")),
        auth: Arc::new(Auth::from_config(&AuthConfig { read_tokens: vec![READ.into()], ..AuthConfig::default() }, false)),
        config: Arc::new(config),
        sink: None,
        metrics,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fleet_addr = listener.local_addr().expect("addr");
    let fleet_task = tokio::spawn(server::serve(listener, server::router_with(state, started.routes), rx));

    let q = format!("from={}&to={}", Timestamp(from).to_rfc3339(), Timestamp(to).to_rfc3339());
    let kpi_url = format!("http://{fleet_addr}/api/v1/fleet/kpi?{q}");
    let fresh = |v: &Value| v["sites"].as_array().is_some_and(|s| s.iter().all(|s| s["stale"] == false && s["hours_covered"] == s["hours_expected"]));
    let fleet = wait_for(&kpi_url, "every site fetched", fresh).await;

    // Each site's own answers over the same window.
    let mut want = [0.0f64; 6];
    for (i, s) in sites.iter().enumerate() {
        let k = get(s.url(&format!("/api/v1/kpi?{q}"))).await;
        let j = get(s.url(&format!("/api/v1/jobs?{q}"))).await;
        let fs = &fleet["sites"][i];
        assert_eq!(fs["name"], SITES[i].0);
        close(f(&fs["facility_energy_kwh"]), f(&k["facility_energy_kwh"]), "a site's E_DC");
        close(f(&fs["it_energy_kwh"]), f(&k["it_energy_kwh"]), "a site's E_IT");
        close(f(&fs["water_m3"]), f(&k["water_m3"]), "a site's water");
        assert_eq!(fs["pue_category"], k["pue_category"]);
        let jobs_it: f64 = j["jobs"].as_array().expect("jobs").iter().map(|x| f(&x["it_energy_kwh"])).sum();
        let jobs_fac: f64 = j["jobs"].as_array().expect("jobs").iter().map(|x| f(&x["facility_energy_kwh"])).sum();
        assert!(jobs_it > 0.0, "site {i} ran jobs in the window: {j}");
        for (w, v) in want.iter_mut().zip([f(&k["facility_energy_kwh"]), f(&k["it_energy_kwh"]), f(&k["water_m3"]), jobs_it, f(&j["idle_kwh"]), jobs_fac]) {
            *w += v;
        }
    }
    let want_paris_edc = f(&get(sites[0].url(&format!("/api/v1/kpi?{q}"))).await["facility_energy_kwh"]);
    let t = &fleet["fleet"];
    close(f(&t["facility_energy_kwh"]), want[0], "fleet E_DC");
    close(f(&t["it_energy_kwh"]), want[1], "fleet E_IT");
    close(f(&t["water_m3"]), want[2], "fleet water");
    close(f(&t["pue"]), want[0] / want[1], "fleet PUE, energy-weighted");
    close(f(&t["wue_l_per_kwh"]), want[2] * 1000.0 / want[1], "fleet WUE, energy-weighted");
    assert_eq!(t["complete"], true, "{t}");
    let jobs = get(format!("http://{fleet_addr}/api/v1/fleet/jobs?{q}")).await;
    close(f(&jobs["jobs_it_energy_kwh"]), want[3], "fleet jobs' E_IT");
    close(f(&jobs["idle_kwh"]), want[4], "fleet idle");
    let fac: f64 = jobs["jobs"].as_array().expect("jobs").iter().map(|x| f(&x["facility_energy_kwh"])).sum();
    close(fac, want[5], "fleet jobs' facility energy");
    let owners_it: f64 = jobs["by_owner"].as_object().expect("owners").values().map(|o| f(&o["it_energy_kwh"])).sum();
    close(owners_it, want[3], "fleet owners' E_IT");

    // Data that reaches a site after its hours closed, as a collector's spool replays it after
    // a long outage, and a job posted afterwards: the fleet fetches those hours again (it asks
    // the site what changed since its mark) and still adds up to the sites' own answers.
    let late_hour = from + 5 * HOUR;
    let late: String = (0..=60).map(|i| format!("meter,site=paris,meter=grid-late,role=facility energy_kwh={} {}\n", i as f64 * 7.5, late_hour + i * 60_000_000_000)).collect();
    assert_eq!(sites[0].write(&late, "ns", WRITE).await.status(), 204);
    let node = get(sites[1].url(&format!("/api/v1/jobs?{q}"))).await["jobs"][0]["gpus"][0].as_str().and_then(|g| g.split(':').next()).expect("a node").to_owned();
    let job =
        serde_json::json!({"job": "late:1", "owner": "late-owner/batch", "node": node, "gpus": [7], "start": Timestamp(from + 8 * HOUR).to_rfc3339(), "end": Timestamp(from + 10 * HOUR).to_rfc3339()});
    let r = reqwest::Client::new().post(sites[1].url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&job).send().await.expect("post");
    assert_eq!(r.status(), 200);
    let paris_now = f(&get(sites[0].url(&format!("/api/v1/kpi?{q}"))).await["facility_energy_kwh"]);
    assert!((paris_now - want_paris_edc - 450.0).abs() < 1e-6, "the late meter adds 450 kWh at Paris: {want_paris_edc} then {paris_now}");
    let owners_url = format!("http://{fleet_addr}/api/v1/fleet/jobs?{q}");
    let refetched = wait_for(&kpi_url, "the late hours fetched again", |v| (f(&v["sites"][0]["facility_energy_kwh"]) - paris_now).abs() <= 1e-9 * paris_now).await;
    for _ in 0..600 {
        if get(owners_url.clone()).await["by_owner"].get("late-owner/batch").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let want_late = site_sums(&sites, &q).await;
    fleet_equals(&refetched, &get(owners_url).await, &want_late);

    // The hourly ledger is an operator's view: a customer's scoped token may not read it.
    let r = reqwest::Client::new().get(sites[0].url(&format!("/api/v1/ledger/hours?{q}"))).header("Authorization", format!("Token {TENANT}")).send().await.expect("send");
    assert_eq!(r.status(), 403, "a tenant token reads no site ledger");

    // The monthly report: the fleet's month in Paris, each site's own month in its zone.
    let month = chrono::DateTime::from_timestamp(to / 1_000_000_000, 0).expect("t").format("%Y-%m").to_string();
    let report = get(format!("http://{fleet_addr}/api/v1/fleet/reports/{month}.json")).await;
    assert!(report["fleet_month"]["window"].as_str().is_some_and(|w| w.contains("Europe/Paris")), "{}", report["fleet_month"]["window"]);
    let dublin = &report["site_months"][2];
    assert!(dublin["window"].as_str().is_some_and(|w| w.contains("Europe/Dublin")), "{dublin}");
    assert_ne!(dublin["from"], report["site_months"][0]["from"], "Dublin's month starts an hour after Paris's");

    // Dublin stops answering.
    let before = refetched;
    let stopped = sites.pop().expect("dublin");
    stopped.stop().await;
    let after = wait_for(&kpi_url, "dublin shown stale", |v| v["sites"][2]["stale"] == true).await;
    let d = &after["sites"][2];
    assert!(d["last_error"].is_string(), "{d}");
    assert!(f(&d["age_s"]) >= 0.0, "a stale site shows its age: {d}");
    // Its last figures are kept and flagged, never zero; the others do not move.
    assert_eq!(d["it_energy_kwh"], before["sites"][2]["it_energy_kwh"]);
    assert!(f(&d["it_energy_kwh"]) > 0.0);
    for i in 0..2 {
        for k in ["facility_energy_kwh", "it_energy_kwh", "water_m3", "pue", "stale"] {
            assert_eq!(after["sites"][i][k], before["sites"][i][k], "site {i} {k}");
        }
    }
    assert_eq!(after["fleet"]["stale_sites"], serde_json::json!(["dublin"]));
    assert_eq!(after["fleet"]["complete"], false);
    // The EU filings side by side: each site's own, asked now; Dublin's says why it is absent.
    let year = &month[..4];
    let eu = get(format!("http://{fleet_addr}/api/v1/fleet/eu-indicators?year={year}")).await;
    for i in 0..2 {
        let own = get(sites[i].url(&format!("/api/v1/eu-indicators?year={year}"))).await;
        assert_eq!(eu["sites"][i]["filing"]["annex_ii"], own["annex_ii"], "site {i}'s filing, as the site gives it");
    }
    assert!(eu["sites"][2]["filing"].is_null() && eu["sites"][2]["error"].is_string(), "{}", eu["sites"][2]);
    // The age grows while it stays away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = get(kpi_url.clone()).await;
    assert!(f(&later["sites"][2]["age_s"]) > f(&d["age_s"]), "age grows: {} then {}", d["age_s"], later["sites"][2]["age_s"]);
    let m = reqwest::Client::new().get(format!("http://{fleet_addr}/metrics")).header("Authorization", format!("Token {READ}")).send().await.expect("metrics").text().await.expect("text");
    assert!(m.lines().any(|l| l.starts_with("kilowatch_fleet_fetch_errors_total{site=\"dublin\"}")), "fetch errors counted by site:\n{m}");

    let _ = stop.send(true);
    let _ = fleet_task.await;
    let _ = started.refresher.await;
    for s in sites {
        s.stop().await;
    }
}
