//! The ledger as series: `kilowatch_pue{window=…}` and its siblings over the Prometheus API
//! equal what `GET /api/v1/kpi` answers for the same windows (an hour, a day, a month in the
//! site's time zone), to 1e-9, stamped at each window's end.

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
            assert!(metric["coverage"] == "full" || metric["coverage"] == "partial", "{metric}");
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
    for j in list {
        let s = series.iter().find(|s| s["metric"]["job"] == j["job"]).unwrap_or_else(|| panic!("no series for {}", j["job"]));
        assert_eq!(s["metric"]["owner"], j["owner"]);
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
