//! Which processes are an inference server: the one listening on its port (from
//! `/proc/net/tcp{,6}` and the sockets in `/proc/<pid>/fd`), and every descendant of it. vLLM,
//! SGLang and TGI do their GPU work in child processes (engine cores, tensor-parallel workers,
//! shards), so it is the whole tree that is matched against NVML's compute processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The inodes of the sockets listening on `port` (TCP state 0A), IPv4 and IPv6.
fn listening_inodes(proc_root: &Path, port: u16) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for table in ["net/tcp", "net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(proc_root.join(table)) else { continue };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9)) else { continue };
            let p = local.rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok());
            if *state == "0A"
                && p == Some(port)
                && let Ok(i) = inode.parse::<u64>()
                && i != 0
            {
                out.insert(i);
            }
        }
    }
    out
}

fn pids(proc_root: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// The process holding a socket that listens on `port`, if this collector may see it (reading
/// another user's `fd` folder needs root or CAP_SYS_PTRACE).
pub fn listener_pid(proc_root: &Path, port: u16) -> Option<u32> {
    let inodes = listening_inodes(proc_root, port);
    if inodes.is_empty() {
        return None;
    }
    let mut found: Vec<u32> = Vec::new();
    for pid in pids(proc_root) {
        let Ok(fds) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let t = target.to_string_lossy();
            if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')).and_then(|s| s.parse::<u64>().ok())
                && inodes.contains(&i)
            {
                found.push(pid);
                break;
            }
        }
    }
    // Forked workers may inherit the listening socket: the tree's root is the oldest, lowest PID.
    found.into_iter().min()
}

/// The parent of every process (from field 4 of `/proc/<pid>/stat`, after the command name,
/// which may itself hold spaces and parentheses).
fn parents(proc_root: &Path) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for pid in pids(proc_root) {
        let Ok(stat) = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            out.insert(pid, ppid);
        }
    }
    out
}

/// `root` and all its descendants.
pub fn process_tree(proc_root: &Path, root: u32) -> BTreeSet<u32> {
    let parents = parents(proc_root);
    let mut tree: BTreeSet<u32> = [root].into();
    // Children may be listed before their parents: repeat until nothing is added.
    loop {
        let before = tree.len();
        for (&pid, ppid) in &parents {
            if tree.contains(ppid) {
                tree.insert(pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
    }
}

/// The port of an `http://host:port/...` URL (80 or 443 when none is written).
pub fn url_port(url: &str) -> Option<u16> {
    reqwest::Url::parse(url).ok()?.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_urls() {
        assert_eq!(url_port("http://127.0.0.1:8000/metrics"), Some(8000));
        assert_eq!(url_port("http://localhost/metrics"), Some(80));
        assert_eq!(url_port("https://[::1]:9443/metrics"), Some(9443));
        assert_eq!(url_port("not a url"), None);
    }

    #[test]
    fn this_process_listens_and_its_tree_holds_it() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let me = std::process::id();
        assert_eq!(listener_pid(Path::new("/proc"), port), Some(me));
        assert!(process_tree(Path::new("/proc"), 1).contains(&me));
        drop(l);
        assert_eq!(listener_pid(Path::new("/proc"), port), None);
    }
}
