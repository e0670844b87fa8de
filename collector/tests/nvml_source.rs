//! `NvmlSource`, the collector's GPU source: points and `/metrics` from the same sample, and a
//! GPU that was down when NVML opened gets its identity (UUID, name) once it answers.

mod sampling;

use sampling::block_on;
mod nvml_support;

use kilowatch_collector::config::NvmlSourceConfig;
use kilowatch_collector::nvml::NvmlSource;
use kilowatch_collector::source::Source;
use kilowatch_model::Timestamp;
use nvml_support::{FakeNvml, fixtures_proc};

const SCENARIO: &str = r#"
[[gpu]]
uuid = "GPU-00000000-aaaa-0000-0000-000000000000"
[[gpu]]
uuid = "GPU-11111111-bbbb-0000-0000-000000000001"
name = "NVIDIA H100 80GB HBM3"
power_mw = 420000
faults = [{ from = 0, until = 1, error = "gpu_lost" }]
"#;

#[test]
fn a_gpu_down_at_start_gets_its_identity_when_it_answers() {
    let fake = FakeNvml::new(SCENARIO);
    let cfg = NvmlSourceConfig { lib_path: Some(fake.lib.clone()), optional: false, proc_root: fixtures_proc() };
    let mut src = NvmlSource::from_config(&cfg, "dc5", "dgx-001").expect("open").expect("required source");
    assert_eq!(src.name(), "nvml");
    assert_eq!(src.gpus()[1].uuid, None, "GPU 1 was lost while NVML opened");
    let metrics = src.metrics();

    let first = block_on(src.sample(Timestamp(1))).expect("sample");
    assert!(first.iter().any(|p| p.measurement == "gpu_event" && p.tag_value("gpu") == Some("1") && p.get("kind").and_then(|v| v.as_str()) == Some("lost")));
    let mut page = String::new();
    metrics.render_into(&mut page);
    assert!(page.contains("kilowatch_gpu_up{gpu=\"1\"") && page.contains("} 0\n"), "{page}");

    // Backoff skips it a cycle or two, then it answers.
    let mut recovered = None;
    for t in 2..12 {
        let pts = block_on(src.sample(Timestamp(t))).expect("sample");
        if pts.iter().any(|p| p.measurement == "gpu" && p.tag_value("gpu") == Some("1")) {
            recovered = Some(pts);
            break;
        }
    }
    let pts = recovered.expect("GPU 1 answered within 10 cycles");
    let gpu1 = pts.iter().find(|p| p.measurement == "gpu" && p.tag_value("gpu") == Some("1")).expect("gpu 1 line");
    assert_eq!(gpu1.tag_value("uuid"), Some("GPU-11111111-bbbb-0000-0000-000000000001"));
    assert_eq!(gpu1.get_f64("power_w"), Some(420.0));
    assert_eq!(src.gpus()[1].uuid.as_deref(), Some("GPU-11111111-bbbb-0000-0000-000000000001"));
    let mut page = String::new();
    metrics.render_into(&mut page);
    assert!(
        page.contains("DCGM_FI_DEV_POWER_USAGE{gpu=\"1\",UUID=\"GPU-11111111-bbbb-0000-0000-000000000001\",pci_bus_id=")
            && page.contains("modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"dgx-001\"} 420\n"),
        "{page}"
    );
    assert!(!page.contains("kilowatch_gpu_up{gpu=\"1\",UUID=\"\""), "{page}");
}
