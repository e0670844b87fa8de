//! The facility path end to end over the real protocol: the simulator's plant served as Modbus
//! TCP (the `sim-plant` register map), read by the collector's Modbus source, shipped as line
//! protocol to a real aggregator; PUE and WUE for a simulated day equal the simulator's own
//! ground truth to 1e-9.

mod common;

use std::path::Path;
use std::sync::{Arc, RwLock};

use common::{Server, WRITE, assert_close};
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::facility::ModbusSource;
use kilowatch_collector::facility::plant_server::{RegisterBank, SharedBank, encode_points, plant_site, serve};
use kilowatch_collector::facility::regmap::RegisterMap;
use kilowatch_collector::source::Source;
use kilowatch_model::{Precision, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_over_modbus_gives_the_simulators_pue_and_wue() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let map = RegisterMap::load(&deploy.join("modbus/sim-plant.toml")).expect("map");

    let bank: SharedBank = Arc::new(RwLock::new(RegisterBank::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let plant = tokio::spawn(serve(listener, bank.clone(), async move {
        let _ = rx.await;
    }));

    // The shipped example configuration, pointed at this test's plant.
    let text = std::fs::read_to_string(deploy.join("collector-facility-sim.toml")).expect("example");
    let text = text.replace("port = 5020", &format!("port = {port}"));
    let cfg = CollectorConfig::parse(&text, Path::new("collector-facility-sim.toml")).expect("config");
    let fac = cfg.facility.expect("[facility]");
    let mut source = ModbusSource::new(&fac.modbus, &deploy, &fac.site_tags()).expect("source");

    // A hot July day: evaporative cooling in the afternoon, so water flows.
    let start = Timestamp::parse_rfc3339("2025-07-15T00:00:00Z").expect("time");
    let end = Timestamp::parse_rfc3339("2025-07-16T00:00:00Z").expect("time");
    let mut site = plant_site(5, "dc5", start);
    let step = 300_000_000_000;
    let mut t = start;
    let mut events = 0;
    loop {
        site.advance_to(t);
        encode_points(&map, &site.points(), &bank).expect("encode");
        let points = source.sample(t).await.expect("sample");
        events += points.iter().filter(|p| p.measurement == "facility_event" && p.tag_value("kind") != Some("frozen")).count();
        assert!(points.iter().any(|p| p.measurement == "meter"), "no meter points at {t:?}: {points:?}");
        let r = s.write(&kilowatch_model::encode_points(&points, Precision::Ns), "ns", WRITE).await;
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
        if t >= end {
            break;
        }
        t = Timestamp((t.0 + step).min(end.0));
    }
    assert_eq!(events, 0, "no device, counter or range event on a healthy plant");
    let _ = stop.send(());
    let _ = plant.await;

    let truth = site.truth();
    assert!(truth.water_m3 > 0.0, "the day must use water");
    let k = s.kpi("2025-07-15T00:00:00Z", "2025-07-16T00:00:00Z").await;
    assert_close(&k["facility_energy_kwh"], truth.facility_kwh, "E_DC over Modbus vs simulator");
    assert_close(&k["it_energy_kwh"], truth.it_kwh, "E_IT over Modbus vs simulator");
    assert_close(&k["pue"], truth.facility_kwh / truth.it_kwh, "PUE over Modbus vs simulator");
    assert_close(&k["water_m3"], truth.water_m3, "WIN over Modbus vs simulator");
    assert_close(&k["wue_l_per_kwh"], truth.water_m3 * 1000.0 / truth.it_kwh, "WUE over Modbus vs simulator");
}
