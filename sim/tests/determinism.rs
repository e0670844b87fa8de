mod common;

use common::{MIN, ts};
use kilowatch_model::{Precision, Timestamp, encode_points};
use kilowatch_sim::{SimConfig, Site};

fn run(seed: u64) -> String {
    let cfg = SimConfig { seed, site_nodes: 8, nodes: 8, start: ts("2025-07-15T10:00:00Z"), ..SimConfig::default() };
    let mut site = Site::new(cfg);
    let mut out = encode_points(&site.points(), Precision::Ns);
    for i in 1..=50 {
        site.advance_to(Timestamp(site.now().0 + MIN * (1 + i % 3)));
        out.push_str(&encode_points(&site.points(), Precision::Ns));
        for e in site.take_job_events() {
            out.push_str(&format!("{e:?}\n"));
        }
    }
    out
}

#[test]
fn same_seed_same_bytes() {
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
    assert!(a.contains("gpu,gpu=7,node=dgx-008,site=dc5,uuid=GPU-"), "{}", &a[..400]);
    assert!(a.contains("meter,category=1,meter=ups-a-out,role=it,site=dc5 "));
    assert!(a.contains("water,meter=makeup-1,potable=true,site=dc5 volume_m3="));
    assert!(a.contains("cooling,site=dc5,unit=cu-08 "));
}

#[test]
fn reused_buffer_matches_fresh_points() {
    let cfg = SimConfig { site_nodes: 4, nodes: 4, ..SimConfig::default() };
    let mut site = Site::new(cfg);
    let mut buf = kilowatch_sim::PointBuf::new();
    for _ in 0..5 {
        site.advance_to(Timestamp(site.now().0 + 7 * MIN));
        site.fill_points(&mut buf);
        assert_eq!(buf.points(), site.points().as_slice());
    }
}
