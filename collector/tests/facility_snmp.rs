//! The SNMP source against PyPI's snmpsim serving snmpsim-data's recorded walks: an Eaton 9PX
//! UPS (XUPS-MIB), an Eaton 93E (RFC 1628 UPS-MIB) and an APC AP8932 rack PDU (PowerNet
//! rPDU2), through the presets shipped in deploy/snmp/. Values are the recordings' own.

mod sampling;

use sampling::block_on;
mod peers;

use std::path::Path;
use std::time::{Duration, Instant};

use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::facility::snmp::SnmpSource;
use kilowatch_collector::source::Source;
use kilowatch_model::{Point, Timestamp};

fn config(port: u16, dead: u16) -> String {
    format!(
        r#"
[aggregator]
url = "http://127.0.0.1:1"
[facility]
[[facility.snmp]]
name = "ups-a"
host = "127.0.0.1"
port = {port}
community = "eaton9px"
preset = "snmp/ups-eaton-xups.toml"
tags = {{ meter = "ups-a-out", role = "it", category = "1" }}

[[facility.snmp]]
name = "ups-b"
host = "127.0.0.1"
port = {port}
community = "eaton93e"
preset = "snmp/ups-rfc1628.toml"
tags = {{ meter = "ups-b-out", role = "it", category = "1" }}

[[facility.snmp]]
name = "pdu-r03"
host = "127.0.0.1"
port = {port}
community = "apc8932"
preset = "snmp/pdu-apc-rpdu2.toml"
tags = {{ meter = "pdu-r03-a", role = "it", category = "2" }}

[[facility.snmp]]
name = "dead"
host = "127.0.0.1"
port = {dead}
timeout_ms = 300
oid = [ {{ oid = "1.3.6.1.2.1.33.1.4.4.1.4.1", measurement = "meter", field = "power_w" }} ]
"#
    )
}

fn get<'a>(p: &'a [Point], meter: &str, phase: Option<&str>) -> &'a Point {
    p.iter().find(|x| x.measurement == "meter" && x.tag_value("meter") == Some(meter) && x.tag_value("phase") == phase).unwrap_or_else(|| panic!("no meter {meter} {phase:?} in {p:#?}"))
}

#[test]
fn recorded_ups_and_pdu_walks_read_through_the_presets() {
    let Some(py) = peers::python("recorded_ups_and_pdu_walks_read_through_the_presets") else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let port = peers::free_udp_port();
    let data = dir.path().join("data");
    let _peer = peers::spawn(
        &py,
        &[
            peers::script("snmpsim_agent.py").to_str().expect("utf-8"),
            &port.to_string(),
            data.to_str().expect("utf-8"),
            "eaton9px=UPS/eaton-9px-partial.snmprec.bz2",
            "eaton93e=UPS/eaton-93e-80.snmprec.bz2",
            "apc8932=UPS/apc-8932.snmprec",
        ],
    );
    let cfg = CollectorConfig::parse(&config(port, peers::free_udp_port()), Path::new("t.toml")).expect("config");
    let fac = cfg.facility.expect("facility");
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    // snmpsim indexes its recordings before answering (a few seconds): wait for it.
    let t0 = Instant::now();
    loop {
        let mut probe = SnmpSource::new(&fac.snmp[..1], &deploy, &fac.site_tags()).expect("source");
        let p = block_on(probe.sample(Timestamp::from_secs(1))).expect("sample");
        if p.iter().any(|x| x.measurement == "meter") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "snmpsim did not answer in 60 s");
        std::thread::sleep(Duration::from_millis(300));
    }

    let mut src = SnmpSource::new(&fac.snmp, &deploy, &fac.site_tags()).expect("source");
    let t = Instant::now();
    let p = block_on(src.sample(Timestamp::from_secs(10))).expect("sample");
    assert!(t.elapsed() < Duration::from_millis(1_500), "the dead agent stalled the others: {:?}", t.elapsed());
    // Eaton 9PX: xupsOutputWatts.1 = 50 W, xupsOutputCumulativePowerUsage = 31,275,116 Wh.
    let ups_a = get(&p, "ups-a-out", None);
    assert_eq!(ups_a.get_f64("power_w"), Some(50.0));
    assert_eq!(ups_a.get_f64("energy_kwh"), Some(31_275.116));
    assert_eq!((ups_a.tag_value("role"), ups_a.tag_value("category"), ups_a.tag_value("site")), (Some("it"), Some("1"), Some("dc5")));
    // Eaton 93E: upsOutputPower per line = 5100, 3600, 2700 W.
    for (phase, w) in [("1", 5100.0), ("2", 3600.0), ("3", 2700.0)] {
        assert_eq!(get(&p, "ups-b-out", Some(phase)).get_f64("power_w"), Some(w));
    }
    // APC AP8932: 16 hundredths of kW = 160 W; 6426 tenths of kWh = 642.6 kWh.
    let pdu = get(&p, "pdu-r03-a", None);
    assert_eq!(pdu.get_f64("power_w"), Some(160.0));
    assert_eq!(pdu.get_f64("energy_kwh"), Some(642.6));
    let down: Vec<_> = p.iter().filter(|x| x.measurement == "facility_event" && x.tag_value("kind") == Some("no_response")).collect();
    assert_eq!(down.len(), 1, "{p:#?}");
    assert_eq!(down[0].tag_value("device"), Some("dead"));
}
