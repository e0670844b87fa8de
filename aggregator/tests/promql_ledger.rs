//! The ledger as series: `kilowatch_pue{window=…}` and its siblings over the Prometheus API
//! equal what `GET /api/v1/kpi` answers for the same windows (an hour, a day, a month in the
//! site's time zone), to 1e-9, stamped at each window's end; the job, owner and model series
//! equal `GET /api/v1/jobs` and `GET /api/v1/models`; a Grafana panel of
//! `kilowatch_pue{window="1d"}` is the monthly report's daily PUE.

mod common;

use common::{READ, Server};
use serde_json::Value;

/// Each ledger series and the `GET /api/v1/kpi` field it must equal.
const FIGURES: [(&str, &str); 6] = [
    ("kilowatch_pue", "pue"),
    ("kilowatch_it_energy_kwh", "it_energy_kwh"),
    ("kilowatch_facility_energy_kwh", "facility_energy_kwh"),
    ("kilowatch_water_m3", "water_m3"),
    ("kilowatch_wue_litres_per_kwh", "wue_l_per_kwh"),
    ("kilowatch_co2_kg", "co2_location_kg"),
];

async fn get(srv: &Server, path: &str, params: &[(&str, String)]) -> Value {
    let r = reqwest::Client::new().get(srv.url(path)).query(params).header("Authorization", format!("Bearer {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{path} {params:?}");
    r.json().await.expect("json")
}

fn unix(rfc3339: &str) -> i64 {
    kilowatch_model::Timestamp::parse_rfc3339(rfc3339).expect("time").0 / 1_000_000_000
}

/// The value of `name{window=…}` at `t`, which must be one series.
async fn ledger_value(srv: &Server, name: &str, window: &str, t: i64) -> (Value, f64) {
    let q = format!("{name}{{window=\"{window}\"}}");
    let body = get(srv, "/prometheus/api/v1/query", &[("query", q.clone()), ("time", t.to_string())]).await;
    let result = body["data"]["result"].as_array().expect("vector");
    assert_eq!(result.len(), 1, "{q} at {t}: {body}");
    let v: f64 = result[0]["value"][1].as_str().expect("value").parse().expect("number");
    (result[0]["metric"].clone(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_series_equal_the_kpi_api() {
    let dir = tempfile::tempdir().expect("tmp");
    common::backfill_october_2024(dir.path());
    let srv = Server::start(dir.path()).await;
    let windows = [
        ("1h", vec![("period", "hour".to_owned()), ("at", "2024-10-15T10:30:00Z".to_owned())], "2024-10-15T11:00:00Z"),
        ("1d", vec![("period", "day".to_owned()), ("at", "2024-10-15T12:00:00+02:00".to_owned())], "2024-10-16T00:00:00+02:00"),
        ("month", vec![("period", "month".to_owned()), ("month", "2024-10".to_owned())], "2024-11-01T00:00:00+01:00"),
    ];
    for (window, params, end) in windows {
        let kpi = get(&srv, "/api/v1/kpi", &params).await;
        assert!(kpi["pue"].as_f64().is_some_and(|p| p > 1.0), "{window}: {kpi}");
        for (name, field) in FIGURES {
            let (metric, v) = ledger_value(&srv, name, window, unix(end)).await;
            assert_close(&kpi[field], v, &format!("{name}{{window=\"{window}\"}} vs kpi.{field}"));
            assert_eq!(metric["site"], "dc5", "{metric}");
            assert_eq!(metric["category"], kpi["pue_category"].to_string(), "{metric}");
            assert_eq!(metric["coverage"], coverage_of(&kpi), "{metric}");
        }
    }
    // A range at daily steps: each day's own figure, stamped at its local midnight.
    let body = get(
        &srv,
        "/prometheus/api/v1/query_range",
        &[("query", "kilowatch_pue{window=\"1d\"}".into()), ("start", unix("2024-10-02T00:00:00+02:00").to_string()), ("end", unix("2024-10-05T00:00:00+02:00").to_string()), ("step", "86400".into())],
    )
    .await;
    let values = body["data"]["result"][0]["values"].as_array().expect("values").clone();
    assert_eq!(values.len(), 4, "{body}");
    for (i, v) in values.iter().enumerate() {
        let day = format!("2024-10-{:02}T12:00:00+02:00", i + 1);
        let kpi = get(&srv, "/api/v1/kpi", &[("period", "day".into()), ("at", day)]).await;
        assert_close(&kpi["pue"], v[1].as_str().expect("value").parse().expect("number"), &format!("day {}", i + 1));
    }
    // Between stamps a panel holds the last closed day.
    let midday = unix("2024-10-16T12:00:00+02:00");
    let held = get(&srv, "/prometheus/api/v1/query", &[("query", "last_over_time(kilowatch_pue{window=\"1d\"}[1d])".into()), ("time", midday.to_string())]).await;
    let (_, day15) = ledger_value(&srv, "kilowatch_pue", "1d", unix("2024-10-16T00:00:00+02:00")).await;
    assert_eq!(held["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()), Some(day15));
}

/// Equal to 1e-9 relative (exactly, for zero).
fn assert_close(want: &Value, got: f64, what: &str) {
    let w = want.as_f64().unwrap_or_else(|| panic!("{what}: the kpi has no number: {want}"));
    assert!((got - w).abs() <= 1e-9 * w.abs(), "{what}: got {got}, want {w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_and_owner_series_equal_the_jobs_api() {
    let dir = tempfile::tempdir().expect("tmp");
    common::backfill_october_2024(dir.path());
    let srv = Server::start(dir.path()).await;
    let jobs = get(&srv, "/api/v1/jobs", &[("period", "day".into()), ("at", "2024-10-15T12:00:00+02:00".into())]).await;
    let t = unix("2024-10-16T00:00:00+02:00").to_string();
    let list = jobs["jobs"].as_array().expect("jobs");
    assert!(!list.is_empty(), "the day has jobs");
    let body = get(&srv, "/prometheus/api/v1/query", &[("query", "kilowatch_job_energy_kwh{window=\"1d\"}".into()), ("time", t.clone())]).await;
    let series = body["data"]["result"].as_array().expect("vector");
    assert_eq!(series.len(), list.len(), "one series per job");
    let kpi = get(&srv, "/api/v1/kpi", &[("period", "day".into()), ("at", "2024-10-15T12:00:00+02:00".into())]).await;
    for j in list {
        let s = series.iter().find(|s| s["metric"]["job"] == j["job"]).unwrap_or_else(|| panic!("no series for {}", j["job"]));
        assert_eq!(s["metric"]["owner"], j["owner"]);
        // The day's E_IT category and coverage, which the job's energy rests on.
        assert_eq!(s["metric"]["category"], kpi["pue_category"].to_string(), "{s}");
        assert_eq!(s["metric"]["coverage"], coverage_of(&kpi), "{s}");
        assert_close(&j["it_energy_kwh"], s["value"][1].as_str().expect("v").parse().expect("number"), &format!("job {}", j["job"]));
    }
    let body = get(&srv, "/prometheus/api/v1/query", &[("query", "kilowatch_owner_energy_kwh{window=\"1d\"}".into()), ("time", t.clone())]).await;
    let owners = jobs["by_owner"].as_object().expect("by_owner");
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(owners.len()));
    for s in body["data"]["result"].as_array().into_iter().flatten() {
        let owner = s["metric"]["owner"].as_str().expect("owner");
        assert_close(&owners[owner]["it_energy_kwh"], s["value"][1].as_str().expect("v").parse().expect("number"), owner);
    }
    // A tenant's token sees its own owners' jobs only, as in /api/v1/jobs.
    let r = reqwest::Client::new()
        .get(srv.url("/prometheus/api/v1/query"))
        .query(&[("query", "kilowatch_owner_energy_kwh{window=\"1d\"}".to_owned()), ("time", t)])
        .header("Authorization", format!("Bearer {}", common::TENANT))
        .send()
        .await
        .expect("send");
    let body: Value = r.json().await.expect("json");
    let seen: Vec<&str> = body["data"]["result"].as_array().into_iter().flatten().filter_map(|s| s["metric"]["owner"].as_str()).collect();
    assert!(!seen.is_empty() && seen.iter().all(|o| o.starts_with("mistral-ai/")), "{seen:?}");
}

/// Paris midnight opening 2026-10-01 (2026-09-30T22:00:00Z), seconds.
const L0: i64 = 1_790_805_600;
const H: i64 = 3600;

fn ts(t: i64) -> String {
    kilowatch_model::Timestamp::from_secs(t).to_rfc3339()
}

/// A small serving site over `hours` from `L0`: an IT meter at 100 kW (category 1), a grid meter
/// at 120 kW when `facility`, GPUs 0–3 of node n1 at 500 W read every 30 minutes, and two vLLM
/// servers on GPUs 0 and 1, one for a tenant of the `TENANT` token's owners and one for another.
fn serving_site(hours: i64, facility: bool) -> String {
    let mut b = String::new();
    for k in 0..=hours {
        let t = L0 + k * H;
        b.push_str(&format!("meter,meter=u,role=it,category=1 energy_kwh={} {t}\n", 100 * k));
        if facility {
            b.push_str(&format!("meter,meter=g,role=facility energy_kwh={} {t}\n", 120 * k));
        }
    }
    for k in 0..=2 * hours {
        let t = L0 + k * 1800;
        for gpu in 0..4 {
            b.push_str(&format!("gpu,node=n1,gpu={gpu} energy_mj={}i {t}\n", 500 * 1800 * 1000 * k));
        }
    }
    for (server, model, tenant, gpu, rate) in [("s1", "mistral-7b", "mistral-ai/chat", 0, 1.0), ("s2", "llama-70b", "acme/rag", 1, 0.4)] {
        for k in 0..=hours * 4 {
            let (t, n) = (L0 + k * 900, k as f64 * rate);
            b.push_str(&format!(
                "inference,node=n1,server={server},engine=vllm,model={model},tenant={tenant} prompt_tokens={},generation_tokens={},requests={},gpus=\"{gpu}\" {t}\n",
                n * 40_000.0,
                n * 10_000.0,
                n * 20.0
            ));
        }
    }
    b
}

/// `query` at `t` (seconds) with `token`: the vector's series.
async fn vector(srv: &Server, query: &str, t: i64, token: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(srv.url("/prometheus/api/v1/query"))
        .query(&[("query", query.to_owned()), ("time", t.to_string())])
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "{query}");
    let body: Value = r.json().await.expect("json");
    body["data"]["result"].as_array().unwrap_or_else(|| panic!("{query}: {body}")).clone()
}

/// The `coverage` label the ledger gives a window, from `GET /api/v1/kpi`'s data quality.
fn coverage_of(kpi: &Value) -> &'static str {
    let q = &kpi["data_quality"];
    if q["coverage_pct"].as_f64().unwrap_or(0.0) < 100.0 {
        "partial"
    } else if q["estimated_meters"].as_u64().unwrap_or(0) > 0 {
        "estimated"
    } else {
        "metered"
    }
}

/// `kilowatch_model_energy_joules_per_token{model,tenant,basis,tokens,window}` is
/// `GET /api/v1/models`' per-token figure of the same window, to 1e-9, for an hour and a local
/// day; a tenant's token sees its own models only; without a facility meter the facility
/// figures are absent (the models answer them null, with a reason), never 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_energy_per_token_equals_the_models_api() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Server::start(dir.path()).await;
    assert_eq!(srv.write(&serving_site(25, true), "s", common::WRITE).await.status(), 204);
    for (window, from, to) in [("1h", L0 + 5 * H, L0 + 6 * H), ("1d", L0, L0 + 24 * H)] {
        let models = get(&srv, "/api/v1/models", &[("from", ts(from)), ("to", ts(to))]).await;
        let kpi = get(&srv, "/api/v1/kpi", &[("from", ts(from)), ("to", ts(to))]).await;
        let series = vector(&srv, &format!("kilowatch_model_energy_joules_per_token{{window=\"{window}\"}}"), to, READ).await;
        let rows = models["models"].as_array().expect("models");
        assert_eq!(rows.len(), 2, "{models}");
        assert_eq!(series.len(), rows.len() * 2 * 3, "a series per model, tokens (all, generated) and basis (gpu, it, facility): {series:?}");
        for m in rows {
            for (tokens, field) in [("all", "j_per_token"), ("generated", "j_per_generated_token")] {
                for basis in ["gpu", "it", "facility"] {
                    let s = series
                        .iter()
                        .find(|s| s["metric"]["model"] == m["model"] && s["metric"]["tenant"] == m["tenant"] && s["metric"]["tokens"] == tokens && s["metric"]["basis"] == basis)
                        .unwrap_or_else(|| panic!("no series for {} {tokens} {basis}: {series:?}", m["model"]));
                    let v: f64 = s["value"][1].as_str().expect("value").parse().expect("number");
                    assert!(v > 0.0, "{s}");
                    assert_close(&m["per_token"][field][basis], v, &format!("{window} {} {tokens} {basis}", m["model"]));
                    assert_eq!(s["value"][0], to, "stamped at the window's end");
                    assert_eq!(s["metric"]["category"], kpi["pue_category"].to_string(), "{s}");
                    assert_eq!(s["metric"]["coverage"], coverage_of(&kpi), "{s}");
                }
            }
        }
    }
    // The customer's token (owners mistral-ai/*) reads its own model's series, not acme's.
    let day = vector(&srv, "kilowatch_model_energy_joules_per_token{window=\"1d\"}", L0 + 24 * H, common::TENANT).await;
    assert_eq!(day.len(), 6, "{day:?}");
    assert!(day.iter().all(|s| s["metric"]["tenant"] == "mistral-ai/chat"), "{day:?}");
    // The listings with `start` and `end` name the ledger's series of the windows that end
    // there, with all their labels, for each token what its queries see.
    let end = L0 + 24 * H;
    for token in [READ, common::TENANT] {
        let listed = reqwest::Client::new()
            .get(srv.url("/prometheus/api/v1/series"))
            .query(&[("match[]", "{__name__=~\"kilowatch_.+\",window=\"1d\"}".to_owned()), ("start", (end - 60).to_string()), ("end", end.to_string())])
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .expect("send");
        let listed: Value = listed.json().await.expect("json");
        let mut listed: Vec<String> = listed["data"].as_array().expect("series").iter().map(Value::to_string).collect();
        let mut queried: Vec<String> = vector(&srv, "{__name__=~\"kilowatch_.+\",window=\"1d\"}", end, token).await.iter().map(|s| s["metric"].to_string()).collect();
        listed.sort();
        queried.sort();
        assert!(listed.iter().any(|l| l.contains("kilowatch_model_energy_joules_per_token")), "{listed:?}");
        assert_eq!(listed, queried, "token {token}");
    }
    srv.stop().await;

    // No facility meter: the GPU and IT figures stand, the facility's are no series.
    let dir2 = tempfile::tempdir().expect("tmp");
    let srv2 = Server::start(dir2.path()).await;
    assert_eq!(srv2.write(&serving_site(25, false), "s", common::WRITE).await.status(), 204);
    let models = get(&srv2, "/api/v1/models", &[("from", ts(L0)), ("to", ts(L0 + 24 * H))]).await;
    assert!(models["facility_unavailable"].is_string(), "{models}");
    let day = vector(&srv2, "kilowatch_model_energy_joules_per_token{window=\"1d\"}", L0 + 24 * H, READ).await;
    assert_eq!(day.len(), 2 * 2 * 2, "gpu and it only: {day:?}");
    assert!(day.iter().all(|s| s["metric"]["basis"] != "facility"), "{day:?}");
    let facility = vector(&srv2, "kilowatch_model_energy_joules_per_token{window=\"1d\",basis=\"facility\"}", L0 + 24 * H, READ).await;
    assert!(facility.is_empty(), "absent, not 0: {facility:?}");
    srv2.stop().await;
}

/// A Grafana time series panel of `kilowatch_pue{window="1d"}` over October 2024 (a range
/// query at Grafana's hourly step, across the end of summer time) holds one point per day, at
/// each local midnight, equal to the monthly report's daily PUE and to `GET /api/v1/kpi`'s
/// (the dashboard's) for that day, with the day's `category` and `coverage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_pue_panel_is_the_reports_daily_pue() {
    let dir = tempfile::tempdir().expect("tmp");
    common::backfill_october_2024(dir.path());
    let srv = Server::start(dir.path()).await;
    let report = get(&srv, "/api/v1/reports/2024-10.json", &[]).await;
    let days = report["daily"].as_array().expect("daily");
    assert_eq!(days.len(), 31, "{}", report["daily"]);
    let body = get(
        &srv,
        "/prometheus/api/v1/query_range",
        &[("query", "kilowatch_pue{window=\"1d\"}".into()), ("start", unix("2024-10-01T01:00:00+02:00").to_string()), ("end", unix("2024-11-01T00:00:00+01:00").to_string()), ("step", "3600".into())],
    )
    .await;
    // The day's labels may change (coverage): gather every series' points.
    let mut points: Vec<(i64, f64, Value)> = Vec::new();
    for s in body["data"]["result"].as_array().expect("matrix") {
        for v in s["values"].as_array().expect("values") {
            points.push((v[0].as_i64().expect("t"), v[1].as_str().expect("value").parse().expect("number"), s["metric"].clone()));
        }
    }
    points.sort_by_key(|p| p.0);
    assert_eq!(points.len(), 31, "one point per day: {points:?}");
    for (day, (t, v, metric)) in days.iter().zip(&points) {
        let date = day["date"].as_str().expect("date");
        let local = kilowatch_model::Timestamp::parse_rfc3339(&format!("{date}T12:00:00Z")).expect("date");
        assert!(*t > local.0 / 1_000_000_000 && *t - local.0 / 1_000_000_000 <= 14 * 3600, "{date}: stamped at its end, {t}");
        assert_close(&day["pue"], *v, &format!("{date}: panel vs the report"));
        let kpi = get(&srv, "/api/v1/kpi", &[("period", "day".into()), ("at", format!("{date}T12:00:00+01:00"))]).await;
        assert_close(&kpi["pue"], *v, &format!("{date}: panel vs /api/v1/kpi"));
        assert_eq!(metric["category"], kpi["pue_category"].to_string(), "{date}: {metric}");
        assert_eq!(metric["coverage"], coverage_of(&kpi), "{date}: {metric}");
    }
}
