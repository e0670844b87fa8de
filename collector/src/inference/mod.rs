//! Inference servers on this node (`[[inference]]`): each interval their Prometheus pages are
//! scraped and turned into `inference` points (prompt and generated tokens, finished requests,
//! time to first token) tagged with the server, its engine, the model and the tenant, and
//! carrying the GPUs the server runs on. The GPUs come from the configuration where it says
//! `gpus`, else from NVML: the server's process tree (the PID listening on its port, or the
//! configured `pid`/`pidfile`, and its descendants) matched against the GPUs' compute processes.
//! Counters are shipped as the server reports them; a restart (a counter going down) is a reset
//! the aggregator handles like every other counter's.

pub mod expo;
pub mod pid;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kilowatch_model::metric::INFERENCE;
use kilowatch_model::{Point, Timestamp};
use serde::Deserialize;

pub use expo::{Engine, ModelCounters, Page, read_page};

use crate::nvml::SharedGpuPids;
use crate::source::{Source, SourceError};

/// One `[[inference]]` entry of the collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceServerConfig {
    /// The `server` tag: a name unique on this node (e.g. `llama-70b-a`).
    pub name: String,
    /// `vllm`, `sglang`, `tgi` or `triton`: which metric names to read.
    pub engine: Engine,
    /// The server's Prometheus page, e.g. `http://127.0.0.1:8000/metrics` (Triton: port 8002).
    pub url: String,
    /// The model name to report; needed for TGI, whose page names none, and otherwise replaces
    /// the page's own (`model_name`, `model`).
    #[serde(default)]
    pub model: Option<String>,
    /// The tenant the server serves, where it serves one (a dedicated deployment).
    #[serde(default)]
    pub tenant: Option<String>,
    /// A label of the page that names the tenant (for servers that expose one); overrides `tenant`.
    #[serde(default)]
    pub tenant_label: Option<String>,
    /// The node's GPU indices the server runs on. Absent: found through NVML from the server's processes.
    #[serde(default)]
    pub gpus: Option<Vec<u32>>,
    /// The server's main process, when it is not the one listening on the URL's port.
    #[serde(default)]
    pub pid: Option<u32>,
    /// A file holding that PID (read at every sample: it changes when the server restarts).
    #[serde(default)]
    pub pidfile: Option<PathBuf>,
    /// Milliseconds before a scrape is abandoned (default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Where the host's `/proc` is (default `/proc`).
    #[serde(default = "default_proc_root")]
    pub proc_root: PathBuf,
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

/// Checks one entry; the error names the key.
pub fn check(c: &InferenceServerConfig) -> Result<(), (&'static str, String)> {
    if c.name.is_empty() {
        return Err(("inference.name", "must not be empty".into()));
    }
    if !(c.url.starts_with("http://") || c.url.starts_with("https://")) || pid::url_port(&c.url).is_none() {
        return Err(("inference.url", format!("{:?} must be an http:// or https:// URL", c.url)));
    }
    crate::config::within_u64("inference.timeout_ms", c.timeout_ms, 1, 600_000)?;
    if c.engine == Engine::Tgi && c.model.is_none() {
        return Err(("inference.model", format!("server {:?}: TGI's page names no model: set `model`", c.name)));
    }
    if c.pid.is_some() && c.pidfile.is_some() {
        return Err(("inference.pid", format!("server {:?}: give `pid` or `pidfile`, not both", c.name)));
    }
    if let Some(g) = &c.gpus
        && (g.is_empty() || g.iter().any(|&i| i >= 64))
    {
        return Err(("inference.gpus", format!("server {:?}: {g:?} must list GPU indices 0..63", c.name)));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("inference: cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
    #[error("inference server {name:?}: {message}")]
    Client { name: String, message: String },
}

struct Server {
    cfg: InferenceServerConfig,
    client: reqwest::Client,
    /// Whether the last scrape failed, so a down server is logged once, not every second.
    down: bool,
    /// The server's main PID and process tree, found at most every [`TREE_TTL`]: walking every
    /// process's sockets and parents each second would cost more than the rest of the sample.
    tree: Option<(Instant, Option<u32>, BTreeSet<u32>)>,
}

/// How long a server's process tree is trusted before /proc is walked again (a restarted
/// server's new PID is found within this).
const TREE_TTL: Duration = Duration::from_secs(30);

/// Every `[[inference]]` server of the node as one source.
pub struct InferenceSource {
    rt: Option<tokio::runtime::Runtime>,
    servers: Vec<Server>,
    site: String,
    node: String,
    gpu_pids: Option<SharedGpuPids>,
    /// Scrapes that failed (unreachable, timeout, HTTP error), for the operator and the tests.
    pub scrape_errors: u64,
}

impl InferenceSource {
    /// `gpu_pids` is the NVML source's process map, absent on a node without NVML (then only
    /// configured `gpus` are known).
    pub fn new(cfgs: &[InferenceServerConfig], site: &str, node: &str, gpu_pids: Option<SharedGpuPids>) -> Result<Self, InferenceError> {
        let servers = cfgs
            .iter()
            .map(|c| {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_millis(c.timeout_ms))
                    .build()
                    .map_err(|e| InferenceError::Client { name: c.name.clone(), message: e.to_string() })?;
                Ok(Server { cfg: c.clone(), client, down: false, tree: None })
            })
            .collect::<Result<Vec<_>, InferenceError>>()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(InferenceError::Runtime)?;
        Ok(InferenceSource { rt: Some(rt), servers, site: site.to_owned(), node: node.to_owned(), gpu_pids, scrape_errors: 0 })
    }

    fn main_pid(cfg: &InferenceServerConfig) -> Option<u32> {
        if let Some(p) = cfg.pid {
            return Some(p);
        }
        if let Some(f) = &cfg.pidfile {
            return std::fs::read_to_string(f).ok().and_then(|t| t.trim().parse().ok());
        }
        pid::listener_pid(&cfg.proc_root, pid::url_port(&cfg.url)?)
    }

    /// Server `i`'s GPUs and main PID: configured GPUs win; else the GPUs NVML saw its process
    /// tree on (the tree refreshed every [`TREE_TTL`], a sixth of it while no process is found).
    fn gpus(&mut self, i: usize) -> (Vec<u32>, Option<u32>) {
        let srv = &mut self.servers[i];
        // A server not found yet (starting, or invisible from here) is looked for more often.
        let stale = srv.tree.as_ref().is_none_or(|(at, main, _)| at.elapsed() >= if main.is_some() { TREE_TTL } else { TREE_TTL / 6 });
        if stale {
            let main = Self::main_pid(&srv.cfg);
            let tree = match (main, srv.cfg.gpus.is_some()) {
                (Some(root), false) => pid::process_tree(&srv.cfg.proc_root, root),
                _ => BTreeSet::new(),
            };
            srv.tree = Some((Instant::now(), main, tree));
        }
        static NONE: BTreeSet<u32> = BTreeSet::new();
        let (main, tree) = srv.tree.as_ref().map_or((None, &NONE), |(_, m, t)| (*m, t));
        if let Some(g) = &srv.cfg.gpus {
            let mut g = g.clone();
            g.sort_unstable();
            g.dedup();
            return (g, main);
        }
        match &self.gpu_pids {
            Some(map) => (map.gpus_of(tree), main),
            None => (Vec::new(), main),
        }
    }

    async fn scrape_all(servers: &[Server]) -> Vec<Result<String, String>> {
        let mut out = Vec::with_capacity(servers.len());
        // One after the other: a node runs a handful of servers, each bounded by its timeout.
        for s in servers {
            let r = async {
                let resp = s.client.get(&s.cfg.url).send().await.map_err(|e| e.to_string())?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(format!("HTTP {status}"));
                }
                resp.text().await.map_err(|e| e.to_string())
            }
            .await;
            out.push(r);
        }
        out
    }

    /// The points of one server's page.
    pub fn points(&self, cfg: &InferenceServerConfig, page: &Page, gpus: &[u32], main_pid: Option<u32>, now: Timestamp) -> Vec<Point> {
        let gpus_text = gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let mut out = Vec::with_capacity(page.models.len());
        for ((model, tenant), c) in &page.models {
            let mut p = Point::new(INFERENCE, now)
                .tag("site", self.site.as_str())
                .tag("node", self.node.as_str())
                .tag("server", cfg.name.as_str())
                .tag("engine", cfg.engine.name())
                .tag("model", model.as_str());
            if !tenant.is_empty() {
                p = p.tag("tenant", tenant.as_str());
            }
            for (k, v) in [("prompt_tokens", c.prompt_tokens), ("generation_tokens", c.generation_tokens), ("requests", c.requests), ("ttft_sum_s", c.ttft_sum_s), ("ttft_count", c.ttft_count), ("prompt_cached_tokens", c.prompt_cached_tokens)] {
                if let Some(v) = v {
                    p = p.field(k, v);
                }
            }
            if !gpus_text.is_empty() {
                p = p.field("gpus", gpus_text.as_str());
            }
            if let Some(pid) = main_pid {
                p = p.field("pid", pid.to_string());
            }
            out.push(p);
        }
        out
    }
}

/// The agent drops its sources inside its async task, where dropping a runtime the usual
/// (blocking) way panics: shut it down in the background instead.
impl Drop for InferenceSource {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Source for InferenceSource {
    fn name(&self) -> &str {
        "inference"
    }

    /// Never fails as a whole: a server that does not answer is logged (once) and counted, and
    /// the others are still sampled.
    fn sample(&mut self, now: Timestamp) -> Result<Vec<Point>, SourceError> {
        let Some(rt) = self.rt.as_ref() else {
            return Err(SourceError::Failed { source_name: "inference".into(), message: "runtime shut down".into() });
        };
        let servers = &self.servers;
        let pages = if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(|| rt.block_on(Self::scrape_all(servers))).join())
                .map_err(|_| SourceError::Failed { source_name: "inference".into(), message: "scrape thread panicked".into() })?
        } else {
            rt.block_on(Self::scrape_all(servers))
        };
        let mut out = Vec::new();
        for (i, page) in pages.into_iter().enumerate() {
            let cfg = self.servers[i].cfg.clone();
            match page {
                Ok(text) => {
                    if self.servers[i].down {
                        tracing::info!(server = %cfg.name, "inference server answers again");
                    }
                    self.servers[i].down = false;
                    let page = read_page(&text, cfg.engine, cfg.model.as_deref(), cfg.tenant.as_deref().unwrap_or(""), cfg.tenant_label.as_deref());
                    if page.parse_errors > 0 {
                        tracing::debug!(server = %cfg.name, errors = page.parse_errors, "unparsable families on the page were skipped");
                    }
                    let (gpus, main) = self.gpus(i);
                    out.extend(self.points(&cfg, &page, &gpus, main, now));
                }
                Err(e) => {
                    self.scrape_errors += 1;
                    if !self.servers[i].down {
                        tracing::warn!(server = %cfg.name, url = %cfg.url, error = %e, "inference server not answering");
                    }
                    self.servers[i].down = true;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::CollectorConfig;

    fn parse(extra: &str) -> Result<CollectorConfig, String> {
        let text = format!("[aggregator]\nurl = \"http://x\"\n[[inference]]\nname = \"a\"\nengine = \"vllm\"\nurl = \"http://127.0.0.1:8000/metrics\"\n{extra}");
        CollectorConfig::parse(&text, Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_entries_are_refused_with_their_key() {
        assert!(parse("").is_ok());
        for (extra, key) in [
            ("colour = 1\n", "colour"),
            ("engine2 = \"x\"\n", "engine2"),
            ("timeout_ms = 0\n", "inference.timeout_ms"),
            ("gpus = []\n", "inference.gpus"),
            ("pid = 1\npidfile = \"/run/x\"\n", "inference.pid"),
            ("[[inference]]\nname = \"a\"\nengine = \"sglang\"\nurl = \"http://127.0.0.1:1/metrics\"\n", "inference.name"),
            ("[[inference]]\nname = \"b\"\nengine = \"tgi\"\nurl = \"http://127.0.0.1:1/metrics\"\n", "inference.model"),
            ("[[inference]]\nname = \"c\"\nengine = \"ollama\"\nurl = \"http://127.0.0.1:1/metrics\"\n", "engine"),
            ("[[inference]]\nname = \"d\"\nengine = \"vllm\"\nurl = \"127.0.0.1:1\"\n", "inference.url"),
        ] {
            let e = parse(extra).expect_err(extra);
            assert!(e.replace("[1]", "").replace("[0]", "").contains(key), "{extra}: {e}");
        }
    }
}
