//! The dashboard as the `kilowatch` binary mounts it, in process (`oneshot`): pages open,
//! their JSON behind the read token, every endpoint answering on an empty store and on a
//! store holding a little of everything.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::Auth;
use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::server;
use kilowatch_model::{Precision, Timestamp, parse_lines};
use kilowatch_store::Store;
use tower::ServiceExt;

const READ: &str = "read-token-0123456789";
const WRITE: &str = "write-token-0123456789";

fn app(store: Arc<Store>, open_reads: bool) -> Router {
    let state = AppState { store, auth: Arc::new(Auth::new(vec![WRITE.into()], vec![READ.into()], open_reads)), config: Arc::new(Config::default()), sink: None, metrics: Default::default() };
    server::router(state)
}

async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Token {t}"));
    }
    let r = app.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("response");
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 16 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

const PAGES: &[&str] = &["/", "/jobs", "/job?id=x", "/gpus", "/gpu?node=dgx-001", "/cooling", "/alerts", "/dashboard/assets/app.js", "/dashboard/assets/chart.js", "/dashboard/assets/app.css"];
const JSON: &[&str] = &[
    "/dashboard/overview.json",
    "/dashboard/power.json?range=24h",
    "/dashboard/power.json?range=30d",
    "/dashboard/climate.json?range=7d",
    "/dashboard/cooling.json?range=24h",
    "/dashboard/water.json?range=30d",
    "/dashboard/gpus.json",
];

/// Two readings 15 min apart of one facility meter, one IT meter, one cooling unit, one water
/// meter and one GPU, ending now.
fn partial_site(store: &Store) {
    let now = Timestamp::now().0 / 1_000_000_000;
    let mut text = String::new();
    for (k, t) in [(0.0, now - 900), (1.0, now)] {
        text += &format!(
            "meter,site=dc5,meter=grid-a,role=facility energy_kwh={},power_w=1160000 {t}\n\
             meter,site=dc5,meter=ups-1,role=it,category=1 energy_kwh={},power_w=1000000 {t}\n\
             water,site=dc5,meter=makeup-1,potable=true volume_m3={} {t}\n\
             cooling,site=dc5,unit=cu-01 outside_temp_c=24,outside_rh_pct=50,supply_temp_c=22,supply_rh_pct=55,mode=\"free\" {t}\n\
             gpu,site=dc5,node=dgx-001,gpu=0 power_w=500,temp_margin_c=20,util_pct=90,throttle_reasons=0i {t}\n",
            1000.0 + k * 290.0,
            1000.0 + k * 250.0,
            10.0 + k * 0.05
        );
    }
    let points = parse_lines(&text, Precision::S, Timestamp::now()).expect("line protocol");
    store.write(&points).expect("write");
}

#[tokio::test]
async fn pages_are_open_and_their_data_needs_a_read_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(Arc::new(Store::open(dir.path()).expect("store")), false);
    for p in PAGES {
        let r = app.clone().oneshot(Request::get(*p).body(Body::empty()).expect("request")).await.expect("response");
        assert_eq!(r.status(), StatusCode::OK, "{p}");
    }
    for u in JSON {
        assert_eq!(get(&app, u, None).await.0, StatusCode::UNAUTHORIZED, "{u} without a token");
        assert_eq!(get(&app, u, Some(WRITE)).await.0, StatusCode::UNAUTHORIZED, "{u} with a write token");
        assert_eq!(get(&app, &format!("{u}{}token={READ}", if u.contains('?') { '&' } else { '?' }), None).await.0, StatusCode::OK, "{u} with ?token=");
    }
}

#[tokio::test]
async fn every_endpoint_answers_on_an_empty_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(Arc::new(Store::open(dir.path()).expect("store")), false);
    for u in JSON {
        let (s, v) = get(&app, u, Some(READ)).await;
        assert_eq!(s, StatusCode::OK, "{u}: {v}");
    }
    let (_, v) = get(&app, "/dashboard/overview.json", Some(READ)).await;
    assert!(v["pue"].is_null());
    assert_eq!(v["gpu_count"], 0);
    assert_eq!(get(&app, "/dashboard/gpus/dgx-001?range=6h", Some(READ)).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_endpoint_answers_on_partial_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    partial_site(&store);
    // Open reads (the demo): no token needed.
    let app = app(store, true);
    for u in JSON.iter().copied().chain(["/dashboard/gpus/dgx-001?range=1h", "/dashboard/gpus/dgx-001/0?range=24h"]) {
        let (s, v) = get(&app, u, None).await;
        assert_eq!(s, StatusCode::OK, "{u}: {v}");
    }
    let (_, v) = get(&app, "/dashboard/overview.json", None).await;
    assert_eq!(v["facility_power_w"], 1_160_000.0);
    assert_eq!(v["cooling_mode"], "free");
    let (_, v) = get(&app, "/dashboard/power.json?range=1h", None).await;
    let names: Vec<&str> = v.as_array().expect("series").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["facility", "IT"], "only the roles present");
    let it = &v[1]["points"];
    assert!(it.as_array().expect("points").iter().any(|p| p[1] == 1_000_000.0));
    assert!(it.as_array().expect("points").iter().any(|p| p[1].is_null()), "empty buckets are null");
    let (_, v) = get(&app, "/dashboard/cooling.json?range=1h", None).await;
    assert_eq!(v[0]["unit"], "cu-01");
    // Magnus: 22 °C at 55 % RH has a dew point of about 12.5 °C.
    assert!((v[0]["dew_point_c"].as_f64().expect("dew point") - 12.5).abs() < 0.2, "{}", v[0]["dew_point_c"]);
    assert_eq!(v[0]["modes"][0]["mode"], "free");
    let (_, v) = get(&app, "/dashboard/water.json?range=24h", None).await;
    let litres: f64 = v["hourly"][0]["points"].as_array().expect("points").iter().filter_map(|p| p[1].as_f64()).sum();
    assert!((litres - 50.0).abs() < 1e-6, "0.05 m3 drawn = 50 L, got {litres}");
    let (_, v) = get(&app, "/dashboard/gpus.json", None).await;
    assert_eq!(v[0]["node"], "dgx-001");
    assert_eq!(v[0]["stale"], false);
    let (_, v) = get(&app, "/dashboard/gpus/dgx-001/0?range=1h", None).await;
    assert_eq!(v["series"].as_array().map(Vec::len), Some(3), "power, margin, utilization");
    assert_eq!(get(&app, "/dashboard/gpus/dgx-001/7?range=1h", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn basic_auth_carries_the_read_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(Arc::new(Store::open(dir.path()).expect("store")), false);
    let call = |auth: Option<String>, uri: &'static str| {
        let app = app.clone();
        async move {
            let mut req = Request::get(uri);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            app.oneshot(req.body(Body::empty()).expect("request")).await.expect("response")
        }
    };
    // base64("ops:read-token-0123456789")
    let basic = Some("Basic b3BzOnJlYWQtdG9rZW4tMDEyMzQ1Njc4OQ==".to_owned());
    for uri in ["/dashboard/overview.json", "/api/v1/kpi?period=day"] {
        assert_eq!(call(basic.clone(), uri).await.status(), StatusCode::OK, "{uri}");
        let r = call(None, uri).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        assert!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Basic")), "{uri}: the browser is asked to log in");
    }
    // base64("ops:wrong-token-000000")
    assert_eq!(call(Some("Basic b3BzOndyb25nLXRva2VuLTAwMDAwMA==".into()), "/dashboard/gpus.json").await.status(), StatusCode::UNAUTHORIZED);
}
