//! Real protocol peers from PyPI (pymodbus, snmpsim, sushy-tools) started on loopback.
//! `scripts/test` builds a venv and exports `KILOWATCH_PY`; without it a test is skipped with
//! a notice, except under CI (`CI=true`), where a missing peer fails.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python interpreter of the peers' venv, or `None` (skip) outside CI.
pub fn python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("KILOWATCH_PY") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: KILOWATCH_PY is not set under CI: scripts/test must build the peers' venv"),
        _ => {
            eprintln!("SKIPPED {test}: KILOWATCH_PY is not set (run scripts/test to build the peers' venv)");
            None
        }
    }
}

/// The venv's `bin/` folder (console scripts such as `snmpsim-command-responder`).
pub fn venv_bin(py: &std::path::Path) -> PathBuf {
    py.parent().map(PathBuf::from).unwrap_or_default()
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(name)
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// A child process killed when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(program: &std::path::Path, args: &[&str]) -> Peer {
    let child = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    Peer(child)
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_tcp(port: u16, peer: &mut Peer) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = peer.0.try_wait() {
            panic!("the peer exited before listening on {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 30 s");
}
