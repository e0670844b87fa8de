mod common;

use common::{MIN, counters, ts};
use kilowatch_model::{Point, Timestamp};
use kilowatch_sim::{Emit, NODE_MAX_W, SimConfig, Site};

fn counter_values(points: &[Point]) -> Vec<f64> {
    points.iter().flat_map(|p| ["energy_mj", "energy_j", "energy_kwh", "volume_m3"].into_iter().filter_map(|f| p.get_f64(f))).collect()
}

#[test]
fn energy_balances_and_readings_stay_physical() {
    // Mixed steps (1 s to 15 min) over two summer days that include a generator test (first
    // Tuesday of July 2025 is the 1st).
    let mut site = Site::new(SimConfig { start: ts("2025-06-30T12:00:00Z"), ..SimConfig::default() });
    let first = site.points();
    let c0 = counters(&first);
    let mut prev = counter_values(&first);
    let steps = [1_000_000_000, MIN, 5 * MIN, 15 * MIN];
    let mut i = 0;
    let mut saw_generator = false;
    let mut saw_cap = false;
    while site.now() < ts("2025-07-02T12:00:00Z") {
        site.advance_to(Timestamp(site.now().0 + steps[i % steps.len()]));
        i += 1;
        let pts = site.points();
        for p in &pts {
            match p.measurement.as_str() {
                "node" => {
                    let w = p.get_f64("power_w").expect("node power");
                    assert!((1_500.0..=NODE_MAX_W).contains(&w), "{p}");
                }
                "gpu" => {
                    let w = p.get_f64("power_w").expect("gpu power");
                    assert!((50.0..=700.0).contains(&w), "{p}");
                    saw_cap |= p.get_f64("throttle_reasons") == Some(4.0);
                }
                "meter" if p.tag_value("meter") == Some("gen-1") => {
                    saw_generator |= p.get_f64("power_w").unwrap_or(0.0) > 0.0;
                }
                _ => {}
            }
        }
        let now = counter_values(&pts);
        assert_eq!(now.len(), prev.len());
        for (a, b) in prev.iter().zip(&now) {
            assert!(b >= a, "counter went back: {a} -> {b}");
        }
        prev = now;
    }
    assert!(saw_generator, "the monthly generator test did not run");
    assert!(saw_cap, "no GPU ever reached its power cap");
    let c1 = counters(&site.points());
    let facility = c1.facility - c0.facility;
    let parts = (c1.it - c0.it) + (c1.cooling - c0.cooling) + (c1.losses - c0.losses) + (c1.other - c0.other);
    assert!(((facility - parts) / facility).abs() < 1e-9, "{facility} vs {parts}");
    let truth = site.truth();
    assert!(((truth.facility_kwh - facility) / facility).abs() < 1e-9);
    assert!(truth.generator_kwh > 0.0);
}

#[test]
fn emit_and_first_node_select_points() {
    let start = ts("2025-03-10T08:00:00Z");
    let mut whole = Site::new(SimConfig { start, ..SimConfig::default() });
    let mut slice = Site::new(SimConfig { start, first_node: 17, nodes: 16, emit: Emit { gpus: true, nodes: true, facility: false }, ..SimConfig::default() });
    let mut facility = Site::new(SimConfig { start, emit: Emit { gpus: false, nodes: false, facility: true }, ..SimConfig::default() });
    for _ in 0..3 {
        let t = Timestamp(whole.now().0 + 10 * MIN);
        whole.advance_to(t);
        slice.advance_to(t);
        facility.advance_to(t);
    }
    let s = slice.points();
    assert_eq!(s.len(), 16 * 9);
    assert_eq!(s[0].tag_value("node"), Some("dgx-017"));
    assert_eq!(s[0].tag_value("gpu"), Some("0"));
    assert_eq!(s[8].measurement, "node");
    assert_eq!(s.last().and_then(|p| p.tag_value("node")), Some("dgx-032"));
    // A slice agrees with the whole site: collectors can split the site between them.
    let w = whole.points();
    let from = 16 * 9;
    assert_eq!(&w[from..from + s.len()], s.as_slice());
    assert_eq!(slice.active_jobs().iter().map(|a| a.node.as_str()).min(), Some("dgx-017"));

    let f = facility.points();
    assert!(f.iter().all(|p| ["meter", "water", "cooling"].contains(&p.measurement.as_str())));
    assert_eq!(f.len(), 8 + 1 + 8);
    assert_eq!(&w[w.len() - f.len()..], f.as_slice());
    assert_eq!(facility.truth(), whole.truth());
}
