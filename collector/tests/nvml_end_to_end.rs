//! The real `nvml-wrapper` against the fake `libnvidia-ml.so`: every field from NVML into
//! line protocol and into the DCGM-style exposition, jobs from cgroup fixtures.

mod nvml_support;

use kilowatch_collector::nvml::{DcgmMetrics, GpuBackend, GpuEvent, GpuEventKind, MigMode, NvmlBackend, NvmlOptions, sample_to_points};
use kilowatch_model::{Precision, Timestamp, encode_points, parse_lines};
use nvml_support::{FakeNvml, fixtures_proc};

const UUID0: &str = "GPU-11111111-2222-3333-4444-555555555555";

const SCENARIO: &str = r#"
driver_version = "550.54.15"
call_log = "@DIR@/calls.log"

[[gpu]]
uuid = "GPU-11111111-2222-3333-4444-555555555555"
pci_bus_id = "00000000:18:00.0"
memory_total = 85520809984
memory_used = [0, 42949672960]
power_mw = [100000, 512500]
energy_mj = [1000000000, 1025200000]
power_limit_mw = 700000
temp_c = [40, 61]
mem_temp_c = [45, 70]
slowdown_c = 82
shutdown_c = 92
util_gpu = [0, 97]
util_mem = [0, 40]
sm_clock = [345, 1980]
mem_clock = 2619
throttle = [1, 4]
ecc_corrected = [0, 3]
ecc_uncorrected = [0, 1]
xids = [{ frame = 1, code = 79 }]
processes = [{ pid = 4242, used_memory = 1073741824, from = 1 }]

[[gpu]]
mig_current = 1
processes = [{ pid = 4243, from = 1 }]

[[gpu]]
processes = [{ pid = 5000, from = 1 }, { pid = 5001, from = 1 }, { pid = 6000, from = 1 }]
"#;

fn open(fake: &FakeNvml) -> NvmlBackend {
    NvmlBackend::open(NvmlOptions::new(&fake.lib).proc_root(fixtures_proc())).expect("open fake NVML")
}

#[test]
fn statics_are_read_once() {
    let fake = FakeNvml::new(SCENARIO);
    let mut b = open(&fake);
    assert_eq!(b.driver_version(), Some("550.54.15"));
    let devs = b.devices();
    assert_eq!(devs.len(), 3);
    let d0 = &devs[0];
    assert_eq!(d0.index, 0);
    assert_eq!(d0.name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(d0.uuid.as_deref(), Some(UUID0));
    assert_eq!(d0.pci_bus_id.as_deref(), Some("00000000:18:00.0"));
    assert_eq!(d0.memory_total_bytes, Some(85_520_809_984));
    assert_eq!((d0.slowdown_temp_c, d0.shutdown_temp_c), (Some(82), Some(92)));
    assert_eq!(d0.mig, Some(MigMode { current: false, pending: false }));
    assert_eq!(devs[1].mig, Some(MigMode { current: true, pending: false }));
    assert_eq!(devs[1].pci_bus_id.as_deref(), Some("00000000:19:00.0"));
    for _ in 0..3 {
        b.sample();
    }
    assert_eq!(fake.calls("nvmlDeviceGetName", 0), 1, "static facts are read once");
    assert_eq!(fake.calls("nvmlDeviceGetTotalEnergyConsumption", 0), 3);
}

#[test]
fn every_field_into_line_protocol() {
    let fake = FakeNvml::new(SCENARIO);
    let mut b = open(&fake);
    let statics = b.devices();
    let sample = b.sample();
    assert!(sample.down.is_empty(), "{sample:?}");
    assert_eq!(sample.events, vec![GpuEvent { gpu: 0, kind: GpuEventKind::Xid { code: 79 } }]);

    let ts = Timestamp::from_secs(1_700_000_000);
    let points = sample_to_points("dc5", "dgx-001", &statics, &sample, ts);
    let text = encode_points(&points, Precision::Ns);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "gpu,gpu=0,node=dgx-001,site=dc5,uuid={UUID0} power_w=512.5,energy_mj=1025200000i,temp_c=61,temp_margin_c=21,\
             mem_temp_c=70,util_pct=97,mem_util_pct=40,sm_clock_mhz=1980i,mem_clock_mhz=2619i,mem_used_bytes=42949672960i,\
             mem_total_bytes=85520809984i,power_limit_w=700,throttle_reasons=4i,ecc_corrected=3i,ecc_uncorrected=1i 1700000000000000000"
        )
    );
    assert_eq!(lines[1], format!("gpu_job,gpu=0,node=dgx-001,site=dc5,uuid={UUID0} job=\"slurm:1234\",pids=\"4242\" 1700000000000000000"));
    let jobs: Vec<(String, String)> = points
        .iter()
        .filter(|p| p.measurement == "gpu_job")
        .map(|p| (p.tag_value("gpu").unwrap_or_default().to_owned(), p.get("job").and_then(|v| v.as_str()).unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(
        jobs,
        vec![
            ("0".into(), "slurm:1234".into()),
            ("1".into(), "slurm:5678".into()),
            ("2".into(), "k8s:1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b".into()),
            ("2".into(), "k8s:8dbc5577-d0e2-4706-8787-57d52c03ddf2".into()),
        ],
        "pid 6000 is in no job and holds nothing"
    );
    assert!(text.ends_with(&format!("gpu_event,gpu=0,node=dgx-001,site=dc5,uuid={UUID0} kind=\"xid\",xid=79i 1700000000000000000\n")));
    assert_eq!(points.iter().filter(|p| p.measurement == "gpu").count(), 3);

    // What the aggregator will read back.
    let back = parse_lines(&text, Precision::Ns, ts).expect("valid line protocol");
    assert_eq!(back, points);

    // Processes with their PIDs and memory, as the backend saw them.
    let p = &sample.readings[0].processes[0];
    assert_eq!((p.pid, p.used_memory_bytes, p.job.as_deref()), (4242, Some(1_073_741_824), Some("slurm:1234")));
}

#[test]
fn every_field_into_the_exposition() {
    let fake = FakeNvml::new(SCENARIO);
    let mut b = open(&fake);
    let mut m = DcgmMetrics::new("dgx-001", b.devices());
    m.update(&b.sample());
    let text = m.render();
    let l0 = format!("{{gpu=\"0\",UUID=\"{UUID0}\",pci_bus_id=\"00000000:18:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"dgx-001\"}}");
    for (name, value) in [
        ("DCGM_FI_DEV_POWER_USAGE", "512.5"),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "1025200000"),
        ("DCGM_FI_DEV_GPU_TEMP", "61"),
        ("DCGM_FI_DEV_MEMORY_TEMP", "70"),
        ("DCGM_FI_DEV_SLOWDOWN_TEMP", "82"),
        ("DCGM_FI_DEV_SHUTDOWN_TEMP", "92"),
        ("DCGM_FI_DEV_GPU_UTIL", "97"),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", "40"),
        ("DCGM_FI_DEV_SM_CLOCK", "1980"),
        ("DCGM_FI_DEV_MEM_CLOCK", "2619"),
        ("DCGM_FI_DEV_FB_USED", "40960"),
        ("DCGM_FI_DEV_FB_FREE", "40599"),
        ("DCGM_FI_DEV_FB_TOTAL", "81559"),
        ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "700"),
        ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "4"),
        ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "3"),
        ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "1"),
        ("DCGM_FI_DEV_XID_ERRORS", "79"),
        ("DCGM_FI_DEV_MIG_MODE", "0"),
        ("kilowatch_gpu_up", "1"),
    ] {
        let line = format!("{name}{l0} {value}\n");
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
        assert!(text.contains(&format!("# TYPE {name} ")), "no TYPE for {name}");
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
    }
    assert!(text.contains("# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"));
    assert!(text.contains(&format!("kilowatch_gpu_job_info{{gpu=\"0\",UUID=\"{UUID0}\",Hostname=\"dgx-001\",hpc_job=\"slurm:1234\"}} 1\n")));
    assert_eq!(text.matches("kilowatch_gpu_job_info{").count(), 4);
    assert!(!text.contains("hpc_job=\"\""));
    // The replay counter's symbol is missing from the fake: absent, not zero.
    assert!(!text.contains("DCGM_FI_DEV_PCIE_REPLAY_COUNTER"));
}
