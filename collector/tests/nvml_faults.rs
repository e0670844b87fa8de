//! Faults through the real `nvml-wrapper` and the fake library: a lost GPU (others go on,
//! one event, backoff, recovery), unsupported and missing functions (absent once), an energy
//! counter going backwards, and NVML that cannot start.

mod nvml_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use kilowatch_collector::nvml::{GpuBackend, GpuEventKind, GpuSampleSet, NvmlBackend, NvmlError, NvmlOptions, sample_to_points};
use kilowatch_model::Timestamp;
use nvml_support::FakeNvml;

const SCENARIO: &str = r#"
call_log = "@DIR@/calls.log"

[[gpu]]
not_supported = ["mem_temp"]
function_not_found = ["ecc"]
energy_mj = [1000, 2000, 3000, 500, 900]

[[gpu]]
faults = [{ from = 2, until = 5, error = "gpu_lost" }]

[[gpu]]
faults = [{ from = 1, until = 2, error = "unknown" }]
"#;

fn kinds(s: &GpuSampleSet, gpu: u32) -> Vec<&'static str> {
    s.events.iter().filter(|e| e.gpu == gpu).map(|e| e.kind.name()).collect()
}

fn sampled(s: &GpuSampleSet) -> Vec<u32> {
    s.readings.iter().map(|r| r.index).collect()
}

#[test]
fn lost_gpu_is_reported_backed_off_and_recovers_while_others_go_on() {
    let fake = FakeNvml::new(SCENARIO);
    let mut b = NvmlBackend::open(NvmlOptions::new(&fake.lib)).expect("open");
    let samples: Vec<GpuSampleSet> = (0..12).map(|_| b.sample()).collect();

    // GPU 0 is sampled every cycle whatever the others do.
    assert!(samples.iter().all(|s| sampled(s).contains(&0)));

    // GPU 2: UNKNOWN on its first cycle, skipped one cycle, back on the third.
    assert_eq!(kinds(&samples[0], 2), vec!["lost"]);
    assert_eq!(samples[0].down, vec![2]);
    assert_eq!(samples[1].down, vec![1, 2], "cycle 2: GPU 1 fails, GPU 2 waits");
    assert_eq!(kinds(&samples[2], 2), vec!["recovered"]);
    assert!(sampled(&samples[2]).contains(&2));

    // GPU 1: lost at its 2nd attempt; retried after 1, 2, 4 skipped cycles (cycles 4, 7, 12).
    let lost: Vec<usize> = samples.iter().enumerate().filter(|(_, s)| kinds(s, 1) == ["lost"]).map(|(i, _)| i + 1).collect();
    assert_eq!(lost, vec![2], "one lost event, not one per cycle");
    let GpuEventKind::Lost { error } = &samples[1].events.iter().find(|e| e.gpu == 1).expect("event").kind else { panic!() };
    assert!(!error.is_empty());
    let down1: Vec<usize> = samples.iter().enumerate().filter(|(_, s)| s.down.contains(&1)).map(|(i, _)| i + 1).collect();
    assert_eq!(down1, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(kinds(&samples[11], 1), vec!["recovered"]);
    assert!(sampled(&samples[11]).contains(&1));
    // Open + attempts in cycles 1, 2, 4, 7, 12: the lost GPU is not queried every interval.
    assert_eq!(fake.calls("nvmlDeviceGetHandleByIndex_v2", 1), 6);
    assert_eq!(fake.calls("nvmlDeviceGetHandleByIndex_v2", 0), 13);

    // The lost event travels as a gpu_event point.
    let pts = sample_to_points("dc5", "n1", &b.devices(), &samples[1], Timestamp(1));
    let ev = pts.iter().find(|p| p.measurement == "gpu_event" && p.tag_value("gpu") == Some("1")).expect("event point");
    assert_eq!(ev.get("kind").and_then(|v| v.as_str()), Some("lost"));
    assert!(!pts.iter().any(|p| p.measurement == "gpu" && p.tag_value("gpu") == Some("1")), "no values for a lost GPU");
}

#[test]
fn energy_counter_going_backwards_is_flagged_never_negative() {
    let fake = FakeNvml::new(SCENARIO);
    let mut b = NvmlBackend::open(NvmlOptions::new(&fake.lib)).expect("open");
    let s: Vec<GpuSampleSet> = (0..4).map(|_| b.sample()).collect();
    let energy = |s: &GpuSampleSet| s.readings.iter().find(|r| r.index == 0).and_then(|r| r.energy_mj);
    assert_eq!(s.iter().map(energy).collect::<Vec<_>>(), vec![Some(2000), Some(3000), Some(500), Some(900)]);
    let resets: Vec<_> = s.iter().flat_map(|x| x.events.iter()).filter(|e| e.gpu == 0).map(|e| e.kind.clone()).collect();
    assert_eq!(resets, vec![GpuEventKind::CounterReset { previous_mj: 3000, current_mj: 500 }]);
    let pts = sample_to_points("dc5", "n1", &b.devices(), &s[2], Timestamp(1));
    let ev = pts.iter().find(|p| p.measurement == "gpu_event" && p.tag_value("gpu") == Some("0")).expect("reset point");
    assert_eq!(ev.get("kind").and_then(|v| v.as_str()), Some("counter_reset"));
    assert_eq!(ev.get_f64("current_mj"), Some(500.0));
}

/// A `tracing` writer into a shared buffer, to count log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn unsupported_and_missing_functions_are_absent_once() {
    let fake = FakeNvml::new(SCENARIO);
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let samples = tracing::subscriber::with_default(subscriber, || {
        let mut b = NvmlBackend::open(NvmlOptions::new(&fake.lib)).expect("open");
        let samples: Vec<GpuSampleSet> = (0..5).map(|_| b.sample()).collect();
        let absent = b.absent_fields(0);
        for f in ["memory_temperature", "ecc_corrected", "ecc_uncorrected", "pcie_replay_counter"] {
            assert!(absent.contains(&f), "{f} not absent: {absent:?}");
        }
        // GPU 1 has everything but the replay counter, whose symbol the fake does not export.
        assert_eq!(b.absent_fields(1), vec!["pcie_replay_counter"]);
        samples
    });
    for s in &samples {
        let r0 = s.readings.iter().find(|r| r.index == 0).expect("gpu 0");
        assert_eq!((r0.mem_temp_c, r0.ecc_corrected, r0.ecc_uncorrected, r0.pcie_replays), (None, None, None, None));
        assert!(r0.power_w.is_some() && r0.temp_c.is_some());
    }
    // Asked once, then never again.
    assert_eq!(fake.calls("nvmlDeviceGetFieldValues", 0), 1);
    assert_eq!(fake.calls("nvmlDeviceGetTotalEccErrors", 0), 2, "corrected and uncorrected, once each");
    assert_eq!(fake.calls("nvmlDeviceGetFieldValues", 2), 3, "GPU 2: lost in cycle 1, skipped in 2, answers from 3 on");

    let text = String::from_utf8(logs.0.lock().expect("log buffer").clone()).expect("utf-8 logs");
    let once = |field: &str| text.lines().filter(|l| l.contains("not asking again") && l.contains(&format!("field=\"{field}\""))).count();
    assert_eq!(once("memory_temperature"), 1, "{text}");
    // One line per GPU for the missing symbol, whatever the number of cycles.
    assert_eq!(once("pcie_replay_counter"), 3, "{text}");
}

#[test]
fn missing_library_names_the_path_and_the_variable() {
    let err = NvmlBackend::open(NvmlOptions::new("/nonexistent/libnvidia-ml.so.1")).expect_err("no library there");
    assert!(matches!(err, NvmlError::LibraryNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/libnvidia-ml.so.1"), "{msg}");
    assert!(msg.contains("KILOWATCH_NVML_LIB"), "{msg}");
}

#[test]
fn driver_not_loaded_is_said_plainly() {
    let fake = FakeNvml::new("driver_loaded = false\n");
    let err = NvmlBackend::open(NvmlOptions::new(&fake.lib)).expect_err("driver not loaded");
    assert!(matches!(err, NvmlError::DriverNotLoaded { .. }), "{err:?}");
    assert!(err.to_string().contains("driver is not loaded"), "{err}");
}

#[test]
fn no_gpus_is_not_an_error() {
    let fake = FakeNvml::new("");
    let mut b = NvmlBackend::open(NvmlOptions::new(&fake.lib)).expect("open");
    assert!(b.devices().is_empty());
    assert_eq!(b.sample(), GpuSampleSet::default());
}
