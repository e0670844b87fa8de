//! `promtool check metrics` (Debian package `prometheus`) on the GPU exposition, when
//! promtool is installed; CI installs it.

mod nvml_support;

use std::io::Write;
use std::process::{Command, Stdio};

use kilowatch_collector::nvml::{DcgmMetrics, GpuBackend, NvmlBackend, NvmlOptions};
use nvml_support::{FakeNvml, fixtures_proc};

const SCENARIO: &str = r#"
[[gpu]]
name = "NVIDIA H100 80GB \"HBM3\""
xids = [{ frame = 1, code = 79 }]
processes = [{ pid = 4242, from = 1 }, { pid = 5000, from = 1 }]
[[gpu]]
not_supported = ["mem_temp"]
[[gpu]]
faults = [{ from = 1, error = "gpu_lost" }]
"#;

#[test]
fn promtool_accepts_the_exposition() {
    let fake = FakeNvml::new(SCENARIO);
    let mut b = NvmlBackend::open(NvmlOptions::new(&fake.lib).proc_root(fixtures_proc())).expect("open");
    let mut m = DcgmMetrics::new("dgx-001", b.devices());
    m.update(&b.sample());
    let text = m.render();
    assert!(text.contains("kilowatch_gpu_up{gpu=\"2\"") && text.contains("} 0\n"), "{text}");

    if let Ok(p) = std::env::var("KILOWATCH_DUMP_EXPOSITION") {
        std::fs::write(p, &text).expect("dump");
    }
    let Some(report) = promtool(&text) else { return };
    // dcgm-exporter's own label names (UUID, modelName, Hostname) and its counters without
    // `_total` are what existing dashboards query, so promtool's style lints on exactly those
    // are expected (dcgm-exporter's output gets the same). Anything else fails the test.
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let dcgm_counter = line.starts_with("DCGM_") && line.ends_with("counter metrics should have \"_total\" suffix");
        let camel = line.ends_with("label names should be written in 'snake_case' not 'camelCase'");
        assert!(dcgm_counter || camel, "unexpected promtool finding: {line}\n---\n{text}");
    }
    // And the camelCase findings come from those three labels only.
    let snake = text.replace("UUID=", "uuid=").replace("modelName=", "model_name=").replace("Hostname=", "hostname=");
    let report = promtool(&snake).unwrap_or_default();
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with("DCGM_") && line.contains("_total"), "unexpected promtool finding: {line}");
    }
    println!("promtool check metrics: parsed; only dcgm-compatibility style lints");
}

/// Runs `promtool check metrics` on `text`: `None` when promtool is not installed, else its
/// lint findings. Panics when promtool cannot parse the text at all.
fn promtool(text: &str) -> Option<String> {
    let child = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("NOTICE: promtool not found ({e}); skipping `promtool check metrics` (apt-get install prometheus)");
            return None;
        }
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // promtool: 0 clean, 3 lint findings only, anything else a parse failure.
    assert!(matches!(out.status.code(), Some(0 | 3)), "promtool rejected the exposition ({:?}):\n{report}\n---\n{text}", out.status);
    Some(report)
}
