//! Shared by the `nvml_*` tests: builds the fake `libnvidia-ml.so` once and gives each test
//! its own copy with its own scenario beside it (a copy is a distinct object to the dynamic
//! loader, so tests running in parallel threads do not share the fake's state).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The fake library, built with `cargo build -p kilowatch-fake-nvml` into this test's own
/// target folder, unless `KILOWATCH_FAKE_NVML` names one already built (what CI does).
pub fn fake_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(p) = std::env::var_os("KILOWATCH_FAKE_NVML") {
            return PathBuf::from(p);
        }
        let profile_dir = cargo_build(&["-p", "kilowatch-fake-nvml"]);
        let lib = profile_dir.join("libkilowatch_fake_nvml.so");
        assert!(lib.exists(), "{} missing after build", lib.display());
        lib
    })
    .clone()
}

/// Runs `cargo build ARGS` into this test binary's own target folder and profile (for what the
/// tests of one package need of another: a library, a binary); returns `target/<profile>`.
pub fn cargo_build(args: &[&str]) -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo).args(["build", "--quiet"]).args(args).args(["--profile", &profile, "--target-dir"]).arg(&target_dir).current_dir(workspace).status().expect("run cargo build");
    assert!(status.success(), "cargo build {args:?} failed");
    profile_dir
}

/// A private copy of the fake library with `scenario` as its `fake-nvml.toml`.
pub struct FakeNvml {
    pub dir: tempfile::TempDir,
    pub lib: PathBuf,
}

impl FakeNvml {
    pub fn new(scenario: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("libnvidia-ml.so.1");
        std::fs::copy(fake_lib(), &lib).expect("copy fake lib");
        let scenario = scenario.replace("@DIR@", &dir.path().display().to_string());
        std::fs::write(dir.path().join("fake-nvml.toml"), scenario).expect("write scenario");
        FakeNvml { dir, lib }
    }

    pub fn call_log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// How many times `symbol` was called for GPU `gpu` (needs `call_log = "@DIR@/calls.log"`).
    pub fn calls(&self, symbol: &str, gpu: usize) -> usize {
        let text = std::fs::read_to_string(self.call_log()).unwrap_or_default();
        let want = format!("{symbol} {gpu}");
        text.lines().filter(|l| *l == want).count()
    }
}

/// The cgroup fixture tree; spelled from the workspace root so other crates' tests (the
/// aggregator's end-to-end test includes this module) find it too.
pub fn fixtures_proc() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    workspace.join("collector/tests/fixtures/proc")
}
