//! The `kilowatch-collector` binary as an operator runs it: `--once` with and without a config
//! file, a missing config, and NVML that cannot start (required: non-zero exit with the reason;
//! optional: a warning and no GPUs).

mod nvml_support;

use std::path::Path;
use std::process::{Command, Output};

use kilowatch_model::{Point, Precision, Timestamp, parse_lines};
use nvml_support::{FakeNvml, fixtures_proc};

const SCENARIO: &str = r#"
[[gpu]]
uuid = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
power_mw = 512500
energy_mj = 1025200000
processes = [{ pid = 4242, from = 0 }]
[[gpu]]
power_mw = 300000
"#;

/// The binary with a clean environment for the variables it reads.
fn collector() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kilowatch-collector"));
    c.env_remove("KILOWATCH_NVML_LIB").env_remove("KILOWATCH_COLLECTOR_CONFIG").env_remove("KILOWATCH_TOKEN").env("RUST_LOG", "info");
    c
}

fn run(c: &mut Command) -> (Output, String, String) {
    let out = c.output().expect("run kilowatch-collector");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("collector.toml");
    std::fs::write(&p, format!("{body}\n[aggregator]\nurl = \"http://127.0.0.1:9\"\ntoken = \"t\"\n")).expect("write config");
    p
}

fn parse(text: &str) -> Vec<Point> {
    parse_lines(text, Precision::Ns, Timestamp(0)).expect("valid line protocol")
}

#[test]
fn once_without_config_samples_the_local_gpus() {
    if Path::new("/etc/kilowatch/collector.toml").exists() {
        println!("NOTICE: /etc/kilowatch/collector.toml exists on this machine; skipping the no-config case");
        return;
    }
    let fake = FakeNvml::new(SCENARIO);
    let (out, stdout, stderr) = run(collector().arg("--once").env("KILOWATCH_NVML_LIB", &fake.lib));
    assert!(out.status.success(), "{stderr}");
    let points = parse(&stdout);
    let gpus: Vec<_> = points.iter().filter(|p| p.measurement == "gpu").collect();
    assert_eq!(gpus.len(), 2, "{stdout}");
    assert_eq!(gpus[0].tag_value("uuid"), Some("GPU-aaaaaaaa-0000-0000-0000-000000000000"));
    assert_eq!(gpus[0].get_f64("power_w"), Some(512.5), "{stdout}");
    assert_eq!(gpus[0].get_f64("energy_mj"), Some(1_025_200_000.0), "{stdout}");
    assert_eq!(gpus[1].get_f64("power_w"), Some(300.0), "{stdout}");
    assert!(stderr.contains("no config file"), "{stderr}");
}

#[test]
fn once_with_config_uses_site_node_and_proc_root() {
    let fake = FakeNvml::new(SCENARIO);
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(
        dir.path(),
        &format!("site = \"lab\"\nnode = \"dgx-042\"\ninterval_s = 0.1\n[nvml]\nlib_path = {:?}\nproc_root = {:?}\n", fake.lib.display().to_string(), fixtures_proc().display().to_string()),
    );
    let (out, stdout, stderr) = run(collector().arg("--once").arg("--config").arg(&cfg));
    assert!(out.status.success(), "{stderr}");
    let points = parse(&stdout);
    assert!(points.iter().all(|p| p.tag_value("site") == Some("lab")), "{stdout}");
    assert!(points.iter().all(|p| p.tag_value("node") == Some("dgx-042")), "{stdout}");
    let job = points.iter().find(|p| p.measurement == "gpu_job").expect("gpu_job line");
    assert_eq!(job.tag_value("gpu"), Some("0"));
    assert_eq!(job.get("job").and_then(|v| v.as_str()), Some("slurm:1234"), "{stdout}");
}

#[test]
fn a_missing_config_given_on_the_command_line_is_named() {
    let (out, _, stderr) = run(collector().args(["--once", "--config", "/nonexistent/kw/collector.toml"]));
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/kw/collector.toml"), "{stderr}");
    // An operator sees one line, not a backtrace, even with RUST_BACKTRACE set.
    let (_, _, stderr) = run(collector().args(["--config", "/nonexistent/kw/collector.toml"]).env("RUST_BACKTRACE", "1"));
    assert!(!stderr.contains("Stack backtrace"), "{stderr}");
}

#[test]
fn nvml_missing_is_fatal_unless_optional() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), "[nvml]\nlib_path = \"/nonexistent/libnvidia-ml.so.1\"\n");
    let (out, _, stderr) = run(collector().arg("--once").arg("--config").arg(&cfg));
    assert!(!out.status.success());
    assert!(stderr.contains("cannot load the NVML library") && stderr.contains("/nonexistent/libnvidia-ml.so.1"), "{stderr}");
    assert!(stderr.contains("optional = true"), "the message says how to run without GPUs: {stderr}");

    let cfg = write_config(dir.path(), "[nvml]\nlib_path = \"/nonexistent/libnvidia-ml.so.1\"\noptional = true\n");
    let (out, stdout, stderr) = run(collector().arg("--once").arg("--config").arg(&cfg));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("running without GPUs"), "{stderr}");
}

#[test]
fn driver_not_loaded_is_fatal_with_the_reason() {
    let fake = FakeNvml::new("driver_loaded = false\n[[gpu]]\n");
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(dir.path(), "[nvml]\n");
    let (out, _, stderr) = run(collector().arg("--once").arg("--config").arg(&cfg).env("KILOWATCH_NVML_LIB", &fake.lib));
    assert!(!out.status.success());
    assert!(stderr.contains("driver is not loaded"), "{stderr}");
}
