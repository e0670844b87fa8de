//! The Modbus source against a Modbus server nobody here wrote: PyPI's pymodbus on loopback,
//! with known registers (tests/peers/modbus_server.py). Exact values for floats in both word
//! orders, scaled integers, 16- and 32-bit counters across a rollover, a meter swap, the
//! SDM630 preset, and a dead device that costs only its own timeout.

mod sampling;

use sampling::block_on;
mod peers;

use std::path::Path;
use std::time::{Duration, Instant};

use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::facility::ModbusSource;
use kilowatch_collector::source::Source;
use kilowatch_model::{Point, Timestamp};
use tokio_modbus::client::Writer;

fn find<'a>(points: &'a [Point], measurement: &str, tag: (&str, &str)) -> &'a Point {
    points.iter().find(|p| p.measurement == measurement && p.tag_value(tag.0) == Some(tag.1)).unwrap_or_else(|| panic!("no {measurement} {tag:?} in {points:#?}"))
}

fn events<'a>(points: &'a [Point], kind: &str) -> Vec<&'a Point> {
    points.iter().filter(|p| p.measurement == "facility_event" && p.tag_value("kind") == Some(kind)).collect()
}

fn config(port: u16, dead_port: u16) -> String {
    format!(
        r#"
[aggregator]
url = "http://127.0.0.1:1"
[facility]
site = "lab"

[[facility.modbus]]
name = "pymodbus"
host = "127.0.0.1"
port = {port}
timeout_ms = 3000
register = [
  {{ address = 0, type = "f32", measurement = "meter", field = "power_w", tags = {{ meter = "abcd" }} }},
  {{ address = 2, type = "f32", word_order = "little", measurement = "meter", field = "power_w", tags = {{ meter = "cdab" }} }},
  {{ address = 4, type = "i16", scale = 0.1, measurement = "cooling", field = "supply_temp_c", tags = {{ unit = "u1" }} }},
  {{ address = 5, type = "u16", scale = 0.1, measurement = "cooling", field = "supply_rh_pct", tags = {{ unit = "u1" }} }},
  {{ address = 6, type = "u32", scale = 0.01, counter = true, measurement = "meter", field = "energy_kwh", tags = {{ meter = "c32" }} }},
  {{ address = 8, type = "f64", counter = true, measurement = "water", field = "volume_m3", tags = {{ meter = "w" }} }},
  {{ address = 12, type = "u16", counter = true, measurement = "meter", field = "energy_kwh", tags = {{ meter = "c16" }} }},
  {{ address = 13, type = "u32", word_order = "little", measurement = "meter", field = "power_w", tags = {{ meter = "u32le" }} }},
]

[[facility.modbus]]
name = "sdm630"
host = "127.0.0.1"
port = {port}
map = "modbus/eastron-sdm630.toml"
tags = {{ meter = "grid-a", role = "facility" }}

[[facility.modbus]]
name = "dead"
host = "127.0.0.1"
port = {dead_port}
timeout_ms = 300
register = [ {{ address = 0, type = "u16", measurement = "meter", field = "power_w" }} ]
"#
    )
}

fn write(port: u16, address: u16, words: &[u16]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        let mut ctx = tokio_modbus::client::tcp::connect(([127, 0, 0, 1], port).into()).await.expect("connect");
        ctx.write_multiple_registers(address, words).await.expect("transport").expect("exception");
    });
}

#[test]
fn pymodbus_registers_decode_exactly() {
    let Some(py) = peers::python("pymodbus_registers_decode_exactly") else { return };
    let port = peers::free_port();
    let mut peer = peers::spawn(&py, &[peers::script("modbus_server.py").to_str().expect("utf-8"), &port.to_string()]);
    peers::wait_tcp(port, &mut peer);
    // A port nothing listens on: connection refused at once. A blackholed host would cost the
    // full timeout, which the elapsed-time assertion below allows for.
    let dead_port = peers::free_port();
    let cfg = CollectorConfig::parse(&config(port, dead_port), Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut src = ModbusSource::new(&fac.modbus, &deploy, &fac.site_tags()).expect("source");

    let t0 = Instant::now();
    let p = block_on(src.sample(Timestamp::from_secs(1_000))).expect("sample");
    assert!(t0.elapsed() < Duration::from_millis(2_500), "a dead device stalled the poll: {:?}", t0.elapsed());
    assert_eq!(find(&p, "meter", ("meter", "abcd")).get_f64("power_w"), Some(1234.5));
    assert_eq!(find(&p, "meter", ("meter", "cdab")).get_f64("power_w"), Some(1234.5));
    assert_eq!(find(&p, "cooling", ("unit", "u1")).get_f64("supply_temp_c"), Some(-12.3));
    assert_eq!(find(&p, "cooling", ("unit", "u1")).get_f64("supply_rh_pct"), Some(65.5));
    assert_eq!(find(&p, "meter", ("meter", "c32")).get_f64("energy_kwh"), Some(42_949_672.8));
    assert_eq!(find(&p, "water", ("meter", "w")).get_f64("volume_m3"), Some(4512.3));
    assert_eq!(find(&p, "meter", ("meter", "c16")).get_f64("energy_kwh"), Some(65_530.0));
    assert_eq!(find(&p, "meter", ("meter", "u32le")).get_f64("power_w"), Some(65_538.0));
    let sdm = find(&p, "meter", ("meter", "grid-a"));
    assert_eq!((sdm.get_f64("power_w"), sdm.get_f64("energy_kwh")), (Some(12_345.5), Some(98_765.25)));
    assert_eq!(sdm.tag_value("role"), Some("facility"));
    assert_eq!(sdm.tag_value("site"), Some("lab"));
    let down = events(&p, "no_response");
    assert_eq!(down.len(), 1, "{p:#?}");
    assert_eq!(down[0].tag_value("device"), Some("dead"));

    // Both counters cross their rollover: the energy across the wrap is counted, not lost.
    write(port, 6, &[0x0000, 0x0010]);
    write(port, 12, &[4]);
    let p = block_on(src.sample(Timestamp::from_secs(1_001))).expect("sample");
    assert_eq!(find(&p, "meter", ("meter", "c32")).get_f64("energy_kwh"), Some(42_949_673.12));
    assert_eq!(find(&p, "meter", ("meter", "c16")).get_f64("energy_kwh"), Some(65_540.0));
    let wraps = events(&p, "rollover");
    assert_eq!(wraps.len(), 2, "{p:#?}");
    // Still down: reported once, counted every poll.
    assert!(events(&p, "no_response").is_empty());
    let dropped = p.iter().find(|x| x.measurement == "facility_dropped" && x.tag_value("device") == Some("dead")).expect("drop count");
    assert_eq!(dropped.get_f64("count"), Some(2.0));

    // A new meter starting from a small reading is a swap (reset), not a wrap.
    write(port, 6, &[0x0000, 0x0005]);
    let p = block_on(src.sample(Timestamp::from_secs(1_002))).expect("sample");
    assert_eq!(find(&p, "meter", ("meter", "c32")).get_f64("energy_kwh"), Some(0.05));
    let resets = events(&p, "reset");
    assert_eq!(resets.len(), 1, "{p:#?}");
    assert_eq!(resets[0].tag_value("meter"), Some("c32"));
}

#[test]
fn a_silent_device_costs_its_timeout_and_nothing_more() {
    let Some(py) = peers::python("a_silent_device_costs_its_timeout_and_nothing_more") else { return };
    let port = peers::free_port();
    let mut peer = peers::spawn(&py, &[peers::script("modbus_server.py").to_str().expect("utf-8"), &port.to_string()]);
    peers::wait_tcp(port, &mut peer);
    // Accepts connections (the kernel's backlog) and never answers: the worst kind of dead.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let text = config(port, silent_port).replace("timeout_ms = 300", "timeout_ms = 400");
    let cfg = CollectorConfig::parse(&text, Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut src = ModbusSource::new(&fac.modbus, &deploy, &fac.site_tags()).expect("source");
    for i in 0..3 {
        let t0 = Instant::now();
        let p = block_on(src.sample(Timestamp::from_secs(10 + i))).expect("sample");
        let took = t0.elapsed();
        // Polled concurrently: the cycle takes the silent device's timeout, not a sum.
        assert!(took >= Duration::from_millis(390) && took < Duration::from_millis(1_200), "cycle took {took:?}");
        assert_eq!(find(&p, "meter", ("meter", "abcd")).get_f64("power_w"), Some(1234.5));
        assert_eq!(find(&p, "meter", ("meter", "grid-a")).get_f64("power_w"), Some(12_345.5));
        assert_eq!(events(&p, "no_response").len(), usize::from(i == 0), "{p:#?}");
    }
    drop(silent);
}

#[test]
fn a_device_that_stops_answering_and_comes_back_raises_events() {
    let Some(py) = peers::python("a_device_that_stops_answering_and_comes_back_raises_events") else { return };
    let port = peers::free_port();
    let script = peers::script("modbus_server.py");
    let mut peer = peers::spawn(&py, &[script.to_str().expect("utf-8"), &port.to_string()]);
    peers::wait_tcp(port, &mut peer);
    let cfg = CollectorConfig::parse(&config(port, peers::free_port()), Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut src = ModbusSource::new(&fac.modbus[..1], &deploy, &fac.site_tags()).expect("source");
    assert!(events(&block_on(src.sample(Timestamp::from_secs(1))).expect("sample"), "no_response").is_empty());
    drop(peer);
    let p = block_on(src.sample(Timestamp::from_secs(2))).expect("sample");
    assert_eq!(events(&p, "no_response").len(), 1, "{p:#?}");
    let mut peer = peers::spawn(&py, &[script.to_str().expect("utf-8"), &port.to_string()]);
    peers::wait_tcp(port, &mut peer);
    let p = block_on(src.sample(Timestamp::from_secs(3))).expect("sample");
    assert_eq!(events(&p, "recovered").len(), 1, "{p:#?}");
    assert_eq!(find(&p, "meter", ("meter", "abcd")).get_f64("power_w"), Some(1234.5));
}

fn dropped_count(points: &[Point], device: &str, reason: &str) -> Option<f64> {
    points.iter().find(|x| x.measurement == "facility_dropped" && x.tag_value("device") == Some(device) && x.tag_value("reason") == Some(reason)).and_then(|x| x.get_f64("count"))
}

#[test]
fn an_all_ones_register_is_a_fault_not_a_reading() {
    let Some(py) = peers::python("an_all_ones_register_is_a_fault_not_a_reading") else { return };
    let port = peers::free_port();
    let mut peer = peers::spawn(&py, &[peers::script("modbus_server.py").to_str().expect("utf-8"), &port.to_string()]);
    peers::wait_tcp(port, &mut peer);
    let cfg = CollectorConfig::parse(&config(port, peers::free_port()), Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut src = ModbusSource::new(&fac.modbus[..1], &deploy, &fac.site_tags()).expect("source");
    block_on(src.sample(Timestamp::from_secs(1))).expect("sample");

    // A failed transducer reads all ones: 4,294,967,295 W and a counter at its top.
    write(port, 13, &[0xFFFF, 0xFFFF]);
    write(port, 6, &[0xFFFF, 0xFFFF]);
    let p = block_on(src.sample(Timestamp::from_secs(2))).expect("sample");
    assert!(p.iter().all(|x| x.tag_value("meter") != Some("u32le") && x.tag_value("meter") != Some("c32")), "a fault was shipped: {p:#?}");
    assert_eq!(dropped_count(&p, "pymodbus", "register_fault"), Some(2.0), "{p:#?}");
    // Just below all ones is no fault pattern, but no meter draws 4.29 GW: over the bound.
    write(port, 13, &[0xFFFE, 0xFFFF]);
    write(port, 6, &[0xFFFF, 0xFFF5]);
    let p = block_on(src.sample(Timestamp::from_secs(3))).expect("sample");
    assert!(p.iter().all(|x| x.tag_value("meter") != Some("u32le")), "{p:#?}");
    assert_eq!(dropped_count(&p, "pymodbus", "implausible_power"), Some(1.0), "{p:#?}");
    // The counter goes on from where it was (0xFFFFFFF0): the fault, above it, left no false
    // reset behind.
    assert_eq!(find(&p, "meter", ("meter", "c32")).get_f64("energy_kwh"), Some(42_949_672.85));
    assert!(events(&p, "reset").is_empty() && events(&p, "rollover").is_empty(), "{p:#?}");

    // The same value with the bound raised for this device: shipped.
    let text = config(port, peers::free_port()).replace("timeout_ms = 3000\n", "timeout_ms = 3000\nbounds = { w = { max = 5e9 } }\n");
    let cfg = CollectorConfig::parse(&text, Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let mut src = ModbusSource::new(&fac.modbus[..1], &deploy, &fac.site_tags()).expect("source");
    let p = block_on(src.sample(Timestamp::from_secs(4))).expect("sample");
    assert_eq!(find(&p, "meter", ("meter", "u32le")).get_f64("power_w"), Some(4_294_967_294.0));
}
