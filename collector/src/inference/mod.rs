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

pub use expo::{Engine, Limits, ModelCounters, Page, read_page, read_page_within};

use crate::nvml::SharedGpuPids;
use crate::source::{Sampling, Source};

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
    /// What the server does in a prefill/decode-disaggregated deployment: `prefill`, `decode`
    /// or `both` (default, an ordinary server). Shipped as the `role` tag (absent for `both`), so
    /// the aggregator counts each request and prompt once and charges each side's energy to
    /// the right tokens (docs/inference.md).
    #[serde(default)]
    pub role: kilowatch_model::metric::ServingRole,
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
    #[serde(default = "crate::nvml::default_proc_root")]
    pub proc_root: PathBuf,
    /// Largest page read, bytes (default 4 MiB); a larger or endless page is abandoned and
    /// counted, and its counters are not shipped that interval.
    #[serde(default = "default_max_page_bytes")]
    pub max_page_bytes: u64,
    /// Most (model, tenant) rows shipped from one page (default 256); rows beyond are left out
    /// and counted.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Longest model or tenant label kept, bytes (default 256); longer ones are cut.
    #[serde(default = "default_max_label_bytes")]
    pub max_label_bytes: usize,
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_max_page_bytes() -> u64 {
    4 << 20
}
fn default_max_rows() -> usize {
    256
}
fn default_max_label_bytes() -> usize {
    256
}
/// Checks one entry; the error names the key.
pub fn check(c: &InferenceServerConfig) -> Result<(), (&'static str, String)> {
    if c.name.is_empty() {
        return Err(("inference.name", "must not be empty".into()));
    }
    if !(c.url.starts_with("http://") || c.url.starts_with("https://")) || pid::url_port(&c.url).is_none() {
        return Err(("inference.url", format!("{:?} must be an http:// or https:// URL", c.url)));
    }
    kilowatch_model::config::within_u64("inference.timeout_ms", c.timeout_ms, 1, 600_000)?;
    kilowatch_model::config::within_u64("inference.max_page_bytes", c.max_page_bytes, 1024, 1 << 30)?;
    kilowatch_model::config::within_u64("inference.max_rows", c.max_rows as u64, 1, 100_000)?;
    kilowatch_model::config::within_u64("inference.max_label_bytes", c.max_label_bytes as u64, 16, 4096)?;
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
    #[error("inference server {name:?}: {message}")]
    Client { name: String, message: String },
}

struct Server {
    cfg: InferenceServerConfig,
    client: reqwest::Client,
    /// Whether the last scrape failed, so a down server is logged once, not every second.
    down: bool,
    /// Whether a cap on its rows or labels was met, so that it is logged once.
    capped: bool,
    /// The server's main PID and process tree, found at most every [`TREE_TTL`]: walking every
    /// process's sockets and parents each second would cost more than the rest of the sample.
    tree: Option<(Instant, Option<u32>, BTreeSet<u32>)>,
}

/// How long a server's process tree is trusted before /proc is walked again (a restarted
/// server's new PID is found within this).
const TREE_TTL: Duration = Duration::from_secs(30);

/// Every `[[inference]]` server of the node as one source.
pub struct InferenceSource {
    servers: Vec<Server>,
    site: String,
    node: String,
    gpu_pids: Option<SharedGpuPids>,
    /// Every server's scrape ends by this long after the sample starts, so that a slow or
    /// endless page never delays the next sample of the GPUs ([`InferenceSource::with_deadline`]).
    deadline: Duration,
    /// Scrapes that failed (unreachable, timeout, HTTP error), for the operator and the tests.
    pub scrape_errors: u64,
    /// What the caps cut, for the operator and the tests.
    pub caps: CapCounts,
    /// The agent's counters, where the caps are also counted for `/metrics`.
    stats: Option<std::sync::Arc<crate::agent::AgentStats>>,
}

/// How often each cap of a scrape was met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapCounts {
    /// Pages abandoned past `max_page_bytes` (or endless).
    pub pages_over_bytes: u64,
    /// Scrapes abandoned at the sample's deadline.
    pub pages_over_deadline: u64,
    /// Rows left out past `max_rows`.
    pub rows_over_cap: u64,
    /// Labels cut to `max_label_bytes`.
    pub labels_cut: u64,
}

/// Why a scrape brought no page.
#[derive(Debug)]
enum ScrapeFailure {
    /// Unreachable, an HTTP error, the server's own timeout.
    Failed(String),
    /// Past `max_page_bytes`.
    TooLarge(u64),
    /// Past the sample's deadline.
    Deadline,
}

impl std::fmt::Display for ScrapeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeFailure::Failed(e) => f.write_str(e),
            ScrapeFailure::TooLarge(max) => write!(f, "the page is larger than {max} bytes ([[inference]] max_page_bytes); abandoned"),
            ScrapeFailure::Deadline => f.write_str("no whole page before the sample's deadline (half the collector's interval); abandoned"),
        }
    }
}

impl InferenceSource {
    /// `gpu_pids` is the NVML source's process map, absent on a node without NVML (then only
    /// configured `gpus` are known).
    pub fn new(cfgs: &[InferenceServerConfig], site: &str, node: &str, gpu_pids: Option<SharedGpuPids>) -> Result<Self, InferenceError> {
        let servers = cfgs
            .iter()
            .map(|c| {
                let client = reqwest::Client::builder().timeout(Duration::from_millis(c.timeout_ms)).build().map_err(|e| InferenceError::Client { name: c.name.clone(), message: e.to_string() })?;
                Ok(Server { cfg: c.clone(), client, down: false, capped: false, tree: None })
            })
            .collect::<Result<Vec<_>, InferenceError>>()?;
        Ok(InferenceSource { servers, site: site.to_owned(), node: node.to_owned(), gpu_pids, deadline: Duration::from_secs(2), scrape_errors: 0, caps: CapCounts::default(), stats: None })
    }

    /// Ends every scrape of a sample within `deadline` (the collector passes half its interval;
    /// default 2 s): servers are scraped at once, and one that has not answered in full by then
    /// is abandoned for this interval.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Counts the caps met in the agent's `stats` too (the collector's `/metrics`).
    pub fn with_stats(mut self, stats: std::sync::Arc<crate::agent::AgentStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Adds to the caps' counts, here and in the agent's.
    fn count(&mut self, add: CapCounts) {
        use std::sync::atomic::Ordering::Relaxed;
        self.caps.pages_over_bytes += add.pages_over_bytes;
        self.caps.pages_over_deadline += add.pages_over_deadline;
        self.caps.rows_over_cap += add.rows_over_cap;
        self.caps.labels_cut += add.labels_cut;
        if let Some(st) = &self.stats {
            st.inference_pages_over_cap.fetch_add(add.pages_over_bytes + add.pages_over_deadline, Relaxed);
            st.inference_rows_over_cap.fetch_add(add.rows_over_cap + add.labels_cut, Relaxed);
        }
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

    /// Every server's page at once, each within `deadline` and its byte cap.
    async fn scrape_all(servers: &[Server], deadline: Duration) -> Vec<Result<String, ScrapeFailure>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, s) in servers.iter().enumerate() {
            let (client, url, max) = (s.client.clone(), s.cfg.url.clone(), s.cfg.max_page_bytes);
            set.spawn(async move { (i, tokio::time::timeout(deadline, scrape(client, url, max)).await.unwrap_or(Err(ScrapeFailure::Deadline))) });
        }
        let mut out: Vec<Result<String, ScrapeFailure>> = servers.iter().map(|_| Err(ScrapeFailure::Deadline)).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, r)) = joined {
                out[i] = r;
            }
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
            if let Some(role) = cfg.role.tag() {
                p = p.tag("role", role);
            }
            for (k, v) in [
                ("prompt_tokens", c.prompt_tokens),
                ("generation_tokens", c.generation_tokens),
                ("requests", c.requests),
                ("ttft_sum_s", c.ttft_sum_s),
                ("ttft_count", c.ttft_count),
                ("prompt_cached_tokens", c.prompt_cached_tokens),
            ] {
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

/// One page, read chunk by chunk so that a page past `max` bytes (or an endless one) costs at
/// most `max` bytes of memory.
async fn scrape(client: reqwest::Client, url: String, max: u64) -> Result<String, ScrapeFailure> {
    let mut resp = client.get(&url).send().await.map_err(|e| ScrapeFailure::Failed(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ScrapeFailure::Failed(format!("HTTP {status}")));
    }
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(ScrapeFailure::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ScrapeFailure::Failed(e.to_string()))? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(ScrapeFailure::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Source for InferenceSource {
    fn name(&self) -> &str {
        "inference"
    }

    /// Never fails as a whole: a server that does not answer is logged (once) and counted, and
    /// the others are still sampled.
    fn sample(&mut self, now: Timestamp) -> Sampling<'_> {
        Box::pin(async move {
            let pages = Self::scrape_all(&self.servers, self.deadline).await;
            let mut out = Vec::new();
            for (i, page) in pages.into_iter().enumerate() {
                let cfg = self.servers[i].cfg.clone();
                match page {
                    Ok(text) => {
                        if self.servers[i].down {
                            tracing::info!(server = %cfg.name, "inference server answers again");
                        }
                        self.servers[i].down = false;
                        let limits = expo::Limits { max_rows: cfg.max_rows, max_label_bytes: cfg.max_label_bytes };
                        let page = expo::read_page_within(&text, cfg.engine, cfg.model.as_deref(), cfg.tenant.as_deref().unwrap_or(""), cfg.tenant_label.as_deref(), limits);
                        drop(text);
                        self.count(CapCounts { rows_over_cap: page.rows_over_cap, labels_cut: page.labels_cut, ..CapCounts::default() });
                        if (page.rows_over_cap > 0 || page.labels_cut > 0) && !self.servers[i].capped {
                            tracing::warn!(server = %cfg.name, rows_left_out = page.rows_over_cap, labels_cut = page.labels_cut, max_rows = cfg.max_rows, max_label_bytes = cfg.max_label_bytes, "the page has more rows or longer labels than [[inference]] allows; logged once");
                        }
                        self.servers[i].capped |= page.rows_over_cap > 0 || page.labels_cut > 0;
                        if page.parse_errors > 0 {
                            tracing::debug!(server = %cfg.name, errors = page.parse_errors, "unparsable families on the page were skipped");
                        }
                        let (gpus, main) = self.gpus(i);
                        out.extend(self.points(&cfg, &page, &gpus, main, now));
                    }
                    Err(e) => {
                        self.scrape_errors += 1;
                        match e {
                            ScrapeFailure::TooLarge(_) => self.count(CapCounts { pages_over_bytes: 1, ..CapCounts::default() }),
                            ScrapeFailure::Deadline => self.count(CapCounts { pages_over_deadline: 1, ..CapCounts::default() }),
                            ScrapeFailure::Failed(_) => {}
                        }
                        if !self.servers[i].down {
                            tracing::warn!(server = %cfg.name, url = %cfg.url, error = %e, "inference server not answering");
                        }
                        self.servers[i].down = true;
                    }
                }
            }
            Ok(out)
        })
    }
}
