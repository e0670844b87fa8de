//! `kilowatch-collector sim-plant` as a process: it serves the simulated plant over Modbus TCP
//! per deploy/modbus/sim-plant.toml, and the collector's example configuration reads it.

mod sampling;

use sampling::block_on;
mod peers;

use std::path::Path;
use std::time::Duration;

use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::facility::ModbusSource;
use kilowatch_collector::source::Source;
use kilowatch_model::Timestamp;

#[test]
fn sim_plant_subcommand_serves_the_documented_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = peers::free_port();
    let listen = format!("127.0.0.1:{port}");
    let map = root.join("deploy/modbus/sim-plant.toml");
    let bin = Path::new(env!("CARGO_BIN_EXE_kilowatch-collector"));
    let mut plant = peers::spawn(bin, &["sim-plant", "--listen", &listen, "--map", map.to_str().expect("utf-8"), "--speed", "600", "--step-s", "0.1"]);
    peers::wait_tcp(port, &mut plant);

    let deploy = root.join("deploy");
    let text = std::fs::read_to_string(deploy.join("collector-facility-sim.toml")).expect("example");
    let cfg = CollectorConfig::parse(&text.replace("port = 5020", &format!("port = {port}")), Path::new("c.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let mut src = ModbusSource::new(&fac.modbus, &deploy, &fac.site_tags()).expect("source");
    let grid = |p: &[kilowatch_model::Point]| p.iter().find(|x| x.measurement == "meter" && x.tag_value("meter") == Some("grid-a")).and_then(|x| x.get_f64("energy_kwh")).expect("grid-a energy");
    let a = block_on(src.sample(Timestamp::from_secs(1))).expect("sample");
    std::thread::sleep(Duration::from_millis(500));
    let b = block_on(src.sample(Timestamp::from_secs(2))).expect("sample");
    // 600 simulated seconds per second: the counter moves between two reads.
    assert!(grid(&b) > grid(&a), "{} then {}", grid(&a), grid(&b));
    assert_eq!(b.iter().filter(|x| x.measurement == "meter").count(), 8);
    assert_eq!(b.iter().filter(|x| x.measurement == "cooling").count(), 8);
    let cu = b.iter().find(|x| x.measurement == "cooling").expect("cooling");
    assert!(["mix", "free", "evaporative", "humidify"].contains(&cu.get("mode").and_then(|m| m.as_str()).expect("mode")));
    assert!(cu.get_f64("outside_dew_point_c").is_some(), "derived dew point: {cu:?}");
    assert!(b.iter().any(|x| x.measurement == "water"));
}
