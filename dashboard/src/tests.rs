//! In-process handler tests: every page, asset and JSON endpoint, with no data and with some.

use super::*;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

/// A site with nothing in it yet.
struct Empty;
impl SiteView for Empty {
    fn overview(&self) -> Result<Overview, ViewError> {
        Ok(Overview { site: "dc5".into(), window: "live, last 5 min".into(), ..Default::default() })
    }
    fn power(&self, _: Window) -> Result<Vec<Series>, ViewError> {
        Ok(Vec::new())
    }
    fn climate(&self, _: Window) -> Result<Climate, ViewError> {
        Ok(Climate::default())
    }
    fn cooling(&self, _: Window) -> Result<Vec<CoolingUnit>, ViewError> {
        Ok(Vec::new())
    }
    fn water(&self, _: Window) -> Result<Water, ViewError> {
        Ok(Water::default())
    }
    fn gpus(&self) -> Result<Vec<GpuCell>, ViewError> {
        Ok(Vec::new())
    }
    fn gpu_detail(&self, node: &str, _: Option<u32>, _: Window) -> Result<GpuDetail, ViewError> {
        Err(ViewError::NotFound(format!("node {node}")))
    }
}

/// Some data, with holes: one GPU silent, one bucket without a reading.
struct Partial;
impl SiteView for Partial {
    fn overview(&self) -> Result<Overview, ViewError> {
        Ok(Overview { site: "dc5".into(), pue: Some(1.16), pue_category: Some(1), facility_power_w: Some(1.1e6), gpu_count: 1, ..Default::default() })
    }
    fn power(&self, w: Window) -> Result<Vec<Series>, ViewError> {
        Ok(vec![Series { name: "IT".into(), unit: "W".into(), points: vec![(0, Some(1e6)), (w.step_s * 1000, None)] }])
    }
    fn climate(&self, _: Window) -> Result<Climate, ViewError> {
        Ok(Climate { series: Vec::new(), modes: vec![ModeSpan { from_ms: 0, to_ms: 1000, mode: "free".into() }] })
    }
    fn cooling(&self, _: Window) -> Result<Vec<CoolingUnit>, ViewError> {
        Ok(vec![CoolingUnit { unit: "cu-01".into(), supply_temp_c: Some(22.0), ..Default::default() }])
    }
    fn water(&self, _: Window) -> Result<Water, ViewError> {
        Ok(Water::default())
    }
    fn gpus(&self) -> Result<Vec<GpuCell>, ViewError> {
        Ok(vec![GpuCell { node: "dgx-001".into(), gpu: 0, power_w: Some(500.0), ..Default::default() }, GpuCell { node: "dgx-001".into(), gpu: 1, stale: true, ..Default::default() }])
    }
    fn gpu_detail(&self, node: &str, gpu: Option<u32>, _: Window) -> Result<GpuDetail, ViewError> {
        Ok(GpuDetail { node: node.into(), gpu, series: Vec::new() })
    }
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String, String) {
    let r = app.clone().oneshot(Request::get(uri).body(Body::empty()).expect("request")).await.expect("response");
    let status = r.status();
    let ct = r.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = axum::body::to_bytes(r.into_body(), 8 << 20).await.expect("body");
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

const JSON: &[&str] = &[
    "/dashboard/overview.json",
    "/dashboard/power.json?range=24h",
    "/dashboard/power.json",
    "/dashboard/climate.json?range=7d",
    "/dashboard/cooling.json?range=30d",
    "/dashboard/water.json?range=30d",
    "/dashboard/gpus.json",
];

#[tokio::test]
async fn every_page_and_asset_is_served_from_the_binary() {
    let app = router(Arc::new(Empty));
    for p in pages::paths() {
        let (s, ct, body) = get(&app, p).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        assert!(ct.starts_with("text/html"), "{p}: {ct}");
        assert!(body.contains("/dashboard/assets/app.js"), "{p}");
        // No CDN: nothing is loaded from another origin.
        assert!(!body.contains("http://") && !body.contains("https://"), "{p} refers to another origin");
    }
    for a in pages::ASSETS {
        let (s, _, body) = get(&app, &format!("/dashboard/assets/{a}")).await;
        assert_eq!(s, StatusCode::OK, "{a}");
        // uPlot names its home page in a comment; the browser test checks no request leaves.
        assert!(a.starts_with("uPlot") || !body.contains("https://"), "{a} refers to another origin");
    }
    assert_eq!(get(&app, "/dashboard/assets/nope.js").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn json_answers_with_no_data() {
    let app = router(Arc::new(Empty));
    for u in JSON {
        let (s, ct, body) = get(&app, u).await;
        assert_eq!(s, StatusCode::OK, "{u}: {body}");
        assert!(ct.starts_with("application/json"), "{u}");
        serde_json::from_str::<serde_json::Value>(&body).expect("json");
    }
    let (_, _, body) = get(&app, "/dashboard/overview.json").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(v["pue"].is_null());
    assert_eq!(get(&app, "/dashboard/gpus/dgx-999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/dashboard/power.json?range=2y").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn json_answers_with_partial_data() {
    let app = router(Arc::new(Partial));
    for u in JSON.iter().copied().chain(["/dashboard/gpus/dgx-001?range=6h", "/dashboard/gpus/dgx-001/3?range=1h"]) {
        let (s, _, body) = get(&app, u).await;
        assert_eq!(s, StatusCode::OK, "{u}: {body}");
    }
    let (_, _, body) = get(&app, "/dashboard/power.json?range=1h").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v[0]["points"][1], serde_json::json!([15000, null]), "a bucket with no reading is null, not zero");
    let (_, _, body) = get(&app, "/dashboard/gpus.json").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v[1]["stale"], true);
    assert_eq!(get(&app, "/dashboard/gpus/dgx-001/x").await.0, StatusCode::BAD_REQUEST);
}

#[test]
fn windows_parse_to_round_steps() {
    assert_eq!(Window::parse("24h"), Some(Window { span_s: 86_400, step_s: 300 }));
    assert_eq!(Window::parse("30d").map(|w| w.span_s / w.step_s), Some(360));
    assert_eq!(Window::parse("1y"), None);
}

#[tokio::test]
async fn live_stream_sends_the_overview_at_once() {
    use futures_util::StreamExt;
    let app = router(Arc::new(Partial));
    let r = app.oneshot(Request::get("/dashboard/live").body(Body::empty()).expect("request")).await.expect("response");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let mut body = r.into_body().into_data_stream();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await.expect("an event within 5 s").expect("a frame").expect("bytes");
    let text = String::from_utf8_lossy(&first);
    assert!(text.starts_with("event: overview\ndata: {"), "{text}");
    assert!(text.contains("\"pue\":1.16"), "{text}");
}

/// The vendored uPlot is served byte for byte as it came out of its npm package: the hashes
/// in its MANIFEST were taken from `npm pack uplot@<version>`.
#[tokio::test]
async fn vendored_uplot_matches_its_npm_package() {
    use sha2::Digest;
    let manifest = include_str!("../assets/vendor/uplot/MANIFEST");
    let want: Vec<(&str, &str)> = manifest.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(|l| l.split_once("  ")).collect();
    assert_eq!(want.len(), 3, "{manifest}");
    assert!(manifest.contains("npm pack uplot@1.6.32") && manifest.contains("integrity sha512-"), "the manifest names the package and its tarball");
    let app = router(Arc::new(Empty));
    for (hash, file) in want {
        let served = if file == "LICENSE" { "uPlot.LICENSE.txt" } else { file };
        let r = app.clone().oneshot(Request::get(format!("/dashboard/assets/{served}")).body(Body::empty()).expect("request")).await.expect("response");
        assert_eq!(r.status(), StatusCode::OK, "{served}");
        let body = axum::body::to_bytes(r.into_body(), 8 << 20).await.expect("body");
        let got: String = sha2::Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hash, "{served} differs from {file} in the npm package");
    }
    let page = get(&app, "/").await.2;
    assert!(page.contains("/dashboard/assets/uPlot.iife.min.js") && page.contains("/dashboard/assets/uPlot.min.css"), "pages load uPlot");
    assert!(!include_str!("../assets/js/chart.js").contains("createElementNS"), "the hand-written SVG renderer is gone");
}
