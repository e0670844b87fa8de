//! The Redfish source. Power resources: recorded DGX/HGX-style BMC responses
//! (tests/fixtures/redfish) served on loopback with session auth. Discovery and basic auth:
//! PyPI's sushy-tools emulator (`--fake`), which has chassis but no power resources.

mod sampling;

use sampling::block_on;
mod peers;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::facility::redfish::RedfishSource;
use kilowatch_collector::source::Source;
use kilowatch_model::{Point, Timestamp};

#[derive(Default)]
struct Bmc {
    tokens: Mutex<HashSet<String>>,
    logins: AtomicUsize,
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redfish").join(name)).expect("fixture")
}

async fn login(State(b): State<Arc<Bmc>>, body: String) -> Response {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if v["UserName"] != "kilowatch" || v["Password"] != "pw" {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = b.logins.fetch_add(1, Ordering::SeqCst);
    let token = format!("token-{n}");
    b.tokens.lock().expect("lock").insert(token.clone());
    (StatusCode::CREATED, [("X-Auth-Token", token), ("Location", format!("/redfish/v1/SessionService/Sessions/{n}"))], "{}").into_response()
}

async fn resource(State(b): State<Arc<Bmc>>, headers: HeaderMap, UrlPath(path): UrlPath<String>) -> Response {
    let ok = headers.get("X-Auth-Token").and_then(|t| t.to_str().ok()).is_some_and(|t| b.tokens.lock().expect("lock").contains(t));
    if !ok {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let file = match path.as_str() {
        "Chassis" => "chassis.json",
        "Chassis/BMC_0" => "chassis_BMC_0.json",
        "Chassis/DGX" => "chassis_DGX.json",
        "Chassis/DGX/Power" => "power_DGX.json",
        "Chassis/HGX_Baseboard_0" => "chassis_HGX_Baseboard_0.json",
        "Chassis/HGX_Baseboard_0/EnvironmentMetrics" => "environment_HGX_Baseboard_0.json",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([("Content-Type", "application/json")], fixture(file)).into_response()
}

fn node<'a>(p: &'a [Point], name: &str) -> &'a Point {
    p.iter().find(|x| x.measurement == "node" && x.tag_value("node") == Some(name)).unwrap_or_else(|| panic!("no node {name} in {p:#?}"))
}

#[test]
fn recorded_bmc_power_and_environment_metrics_with_sessions() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let bmc = Arc::new(Bmc::default());
    let app = axum::Router::new().route("/redfish/v1/SessionService/Sessions", post(login)).route("/redfish/v1/{*path}", get(resource)).with_state(bmc.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move { axum::serve(listener, app).await });

    let text = format!(
        r#"
[aggregator]
url = "http://127.0.0.1:1"
[facility]
[[facility.redfish]]
name = "dgx-001-bmc"
url = "http://127.0.0.1:{port}"
node = "dgx-001"
username = "kilowatch"
password = "pw"

[[facility.redfish]]
name = "dgx-002-bmc"
url = "http://127.0.0.1:{port}/"
node = "dgx-002"
username = "kilowatch"
password = "pw"
chassis = "HGX_Baseboard_0"

[[facility.redfish]]
name = "dgx-003-bmc"
url = "http://127.0.0.1:{port}"
node = "dgx-003"
username = "kilowatch"
password = "wrong"
"#
    );
    let cfg = CollectorConfig::parse(&text, Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let mut src = RedfishSource::new(&fac.redfish, Path::new("."), &fac.site_tags()).expect("source");
    let p = block_on(src.sample(Timestamp::from_secs(1))).expect("sample");
    // No chassis named: the first with readings (DGX, after BMC_0 which has none) and its
    // legacy Power resource: PowerControl[0].PowerConsumedWatts.
    assert_eq!(node(&p, "dgx-001").get_f64("power_w"), Some(6213.5));
    assert_eq!(node(&p, "dgx-001").get("energy_j"), None);
    // The HGX baseboard, named: EnvironmentMetrics, whose energy counter is carried (kWh → J).
    assert_eq!(node(&p, "dgx-002").get_f64("power_w"), Some(4875.25));
    assert_eq!(node(&p, "dgx-002").get_f64("energy_j"), Some(18234.125 * 3.6e6));
    let down: Vec<_> = p.iter().filter(|x| x.tag_value("kind") == Some("no_response")).collect();
    assert_eq!(down.len(), 1, "{p:#?}");
    assert_eq!(down[0].tag_value("device"), Some("dgx-003-bmc"));
    assert_eq!(bmc.logins.load(Ordering::SeqCst), 2, "one session per BMC");

    // Sessions are reused: no new login for the next polls.
    block_on(src.sample(Timestamp::from_secs(2))).expect("sample");
    assert_eq!(bmc.logins.load(Ordering::SeqCst), 2);
    // The BMC drops every session (reboot, timeout): one 401, one new login each, no gap.
    bmc.tokens.lock().expect("lock").clear();
    let p = block_on(src.sample(Timestamp::from_secs(3))).expect("sample");
    assert_eq!(node(&p, "dgx-001").get_f64("power_w"), Some(6213.5));
    assert_eq!(bmc.logins.load(Ordering::SeqCst), 4);
}

#[test]
fn sushy_emulator_chassis_discovery_and_basic_auth() {
    let Some(py) = peers::python("sushy_emulator_chassis_discovery_and_basic_auth") else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let port = peers::free_port();
    let script = peers::script("sushy_emulator.py");
    let mut peer = peers::spawn(&py, &[script.to_str().expect("utf-8"), &port.to_string(), dir.path().to_str().expect("utf-8"), "admin", "s3cret"]);
    peers::wait_tcp(port, &mut peer);
    let text = format!(
        r#"
[aggregator]
url = "http://127.0.0.1:1"
[facility]
[[facility.redfish]]
name = "good"
url = "http://127.0.0.1:{port}"
node = "n1"
auth = "basic"
username = "admin"
password = "s3cret"
[[facility.redfish]]
name = "bad"
url = "http://127.0.0.1:{port}"
node = "n2"
auth = "basic"
username = "admin"
password = "nope"
"#
    );
    let cfg = CollectorConfig::parse(&text, Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let mut src = RedfishSource::new(&fac.redfish, Path::new("."), &fac.site_tags()).expect("source");
    let ids = block_on(src.chassis_ids());
    let good = ids[0].as_ref().expect("chassis listed with basic auth");
    assert_eq!(good.len(), 1, "{good:?}");
    let bad = ids[1].as_ref().expect_err("wrong password").to_string();
    assert!(bad.contains("401"), "{bad}");
    // The emulator's chassis has Thermal but no Power: discovery says so rather than invent 0 W.
    let p = block_on(src.sample(Timestamp::from_secs(1))).expect("sample");
    assert!(!p.iter().any(|x| x.measurement == "node"), "{p:#?}");
    let msgs: Vec<String> = p.iter().filter(|x| x.tag_value("kind") == Some("no_response")).filter_map(|x| x.get("message").and_then(|m| m.as_str()).map(str::to_owned)).collect();
    assert_eq!(msgs.len(), 2, "{p:#?}");
    assert!(msgs.iter().any(|m| m.contains("no chassis with power readings")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("401")), "{msgs:?}");
}

#[test]
fn tls_needs_the_ca_file_or_an_explicit_insecure_flag() {
    let Some(py) = peers::python("tls_needs_the_ca_file_or_an_explicit_insecure_flag") else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let port = peers::free_port();
    let script = peers::script("sushy_emulator.py");
    let mut peer = peers::spawn(&py, &[script.to_str().expect("utf-8"), &port.to_string(), dir.path().to_str().expect("utf-8"), "admin", "s3cret", "--tls"]);
    peers::wait_tcp(port, &mut peer);
    let ca = dir.path().join("cert.pem");
    let block = |name: &str, extra: &str| {
        format!("[[facility.redfish]]\nname = \"{name}\"\nurl = \"https://127.0.0.1:{port}\"\nnode = \"{name}\"\nauth = \"basic\"\nusername = \"admin\"\npassword = \"s3cret\"\n{extra}\n")
    };
    let text = format!(
        "[aggregator]\nurl = \"http://127.0.0.1:1\"\n[facility]\n{}{}{}",
        block("with-ca", &format!("ca_file = {:?}", ca.to_str().expect("utf-8"))),
        block("insecure", "insecure = true"),
        block("unverified", ""),
    );
    let cfg = CollectorConfig::parse(&text, Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let mut src = RedfishSource::new(&fac.redfish, Path::new("."), &fac.site_tags()).expect("source");
    let ids = block_on(src.chassis_ids());
    assert_eq!(ids[0].as_ref().expect("trusted through ca_file").len(), 1);
    assert_eq!(ids[1].as_ref().expect("insecure accepts it").len(), 1);
    let e = ids[2].as_ref().expect_err("an unknown self-signed certificate is refused").to_string();
    assert!(e.contains("GET /redfish/v1/Chassis"), "{e}");
}
