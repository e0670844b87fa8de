//! The real `kilowatch serve` binary on loopback, for tests that need a process of its own:
//! its peak memory, its open-files limit, its signals.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const WRITE: &str = "write-token-0123456789";
pub const READ: &str = "read-token-0123456789";

pub struct Kilowatch {
    pub addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Kilowatch {
    /// Starts `kilowatch serve` with `server_toml` added to its `[server]` table.
    pub async fn spawn(server_toml: &str) -> Kilowatch {
        Self::spawn_with(server_toml, &[]).await
    }

    /// [`Kilowatch::spawn`] with environment variables (over the default tokens).
    pub async fn spawn_with(server_toml: &str, env: &[(&str, &str)]) -> Kilowatch {
        let dir = tempfile::tempdir().expect("tmp");
        let config = dir.path().join("kilowatch.toml");
        let text = format!("[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n{server_toml}\n[alerts]\nenabled = false\n", dir.path().join("data"));
        std::fs::write(&config, text).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kilowatch"));
        cmd.args(["serve", "--config"]).arg(&config).env("KILOWATCH_WRITE_TOKEN", WRITE).env("KILOWATCH_READ_TOKEN", READ).env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("start kilowatch");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        // Read to the end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if line.contains("listening")
                    && let Some(a) = line.split("addr=Some(").nth(1).and_then(|r| r.split(')').next()).and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(a);
                }
                if let Ok(mut g) = l.lock() {
                    g.push_str(&line);
                    g.push('\n');
                }
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60))).await.expect("join");
        let addr = addr.unwrap_or_else(|_| panic!("kilowatch did not start listening: {}", log.lock().map(|g| g.clone()).unwrap_or_default()));
        Kilowatch { addr, child: Some(child), log, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Peak resident memory so far (VmHWM), in kB.
    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmHWM")
    }

    /// `GET /api/v1/health`, with a read token or none.
    pub async fn health(&self, token: Option<&str>) -> serde_json::Value {
        let mut r = reqwest::Client::new().get(self.url("/api/v1/health")).timeout(Duration::from_secs(20));
        if let Some(t) = token {
            r = r.header("Authorization", format!("Token {t}"));
        }
        r.send().await.expect("health").json().await.expect("json")
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit.
    pub fn terminate_and_wait(mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Kilowatch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The log line without its terminal colours (tracing colours field names).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
