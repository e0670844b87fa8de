use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kilowatch_collector::agent::{AgentStats, FanOut};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::config::{CollectorConfig, NvmlSourceConfig, hostname};
use kilowatch_collector::inference::InferenceSource;
use kilowatch_collector::metrics_server::{self, Exposition};
use kilowatch_collector::nvml::{NvmlSource, SharedGpuMetrics};
use kilowatch_collector::source::{SimSource, Source};
use kilowatch_model::{Precision, Timestamp, encode_points};
use kilowatch_sim::{Emit, SimConfig};

/// Where the packaged collector looks when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/kilowatch/collector.toml";

/// Kilowatch's node and facility agent: samples its sources every interval and ships line
/// protocol to the aggregator.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The collector's TOML configuration [default: /etc/kilowatch/collector.toml]. Given and
    /// missing is an error; with `--once` and no file at the default path, the local GPUs are
    /// sampled through NVML.
    #[arg(long, short, env = "KILOWATCH_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Sample every source once, print the line protocol to stdout, and exit.
    #[arg(long)]
    once: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Serve the simulated site's meters, water and cooling units over Modbus TCP.
    SimPlant(kilowatch_collector::facility::plant_server::SimPlantArgs),
}

/// The configured sources, and the GPU view the `/metrics` listener renders.
struct Sources {
    list: Vec<Box<dyn Source>>,
    gpus: Option<SharedGpuMetrics>,
}

/// One block per kind of source. A source that cannot start is an error here (the process
/// exits with its message), unless its config says it is optional.
fn sources(cfg: &CollectorConfig, path: &std::path::Path, stats: &Arc<AgentStats>) -> anyhow::Result<Sources> {
    let mut out = Sources { list: Vec::new(), gpus: None };
    if let Some(f) = &cfg.facility {
        // Register maps and CA files are named relative to the config file.
        out.list.extend(kilowatch_collector::facility::sources(f, path.parent().unwrap_or(std::path::Path::new(".")))?);
    }
    if let Some(s) = &cfg.sim {
        out.list.push(Box::new(SimSource::new(SimConfig {
            seed: s.seed,
            site: s.site.clone(),
            nodes: s.nodes,
            first_node: s.first_node,
            emit: Emit { gpus: s.gpus, nodes: s.node_power, facility: s.facility },
            start: Timestamp::now(),
            ..SimConfig::default()
        })));
    }
    let mut gpu_pids = None;
    if let Some(n) = &cfg.nvml
        && let Some(src) = NvmlSource::from_config(n, &cfg.site, &cfg.node_name())?
    {
        out.gpus = Some(src.metrics());
        gpu_pids = Some(src.pids());
        out.list.push(Box::new(src));
    }
    // After NVML, so each sample maps servers with the processes NVML has just seen.
    if !cfg.inference.is_empty() {
        // Half the interval: a slow or endless page never delays the next sample of the GPUs.
        let deadline = std::time::Duration::from_secs_f64(cfg.interval_s / 2.0);
        out.list.push(Box::new(InferenceSource::new(&cfg.inference, &cfg.site, &cfg.node_name(), gpu_pids)?.with_deadline(deadline).with_stats(stats.clone())));
    }
    Ok(out)
}

fn any_source_configured(cfg: &CollectorConfig) -> bool {
    cfg.sim.is_some() || cfg.nvml.is_some() || cfg.facility.is_some() || !cfg.inference.is_empty()
}

/// `--config` as given (must exist), else the default path if it exists, else `None`.
fn load_config(cli: &Cli) -> anyhow::Result<Option<(CollectorConfig, PathBuf)>> {
    let path = match &cli.config {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(None),
    };
    let cfg = CollectorConfig::load(&path)?;
    Ok(Some((cfg, path)))
}

async fn sample_once(sources: &mut [Box<dyn Source>]) -> anyhow::Result<String> {
    let now = Timestamp::now();
    let mut points = Vec::new();
    for s in sources.iter_mut() {
        points.extend(s.sample(now).await.with_context(|| format!("sampling {}", s.name()))?);
    }
    Ok(encode_points(&points, Precision::Ns))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kilowatch-collector: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line for journalctl: the error and its causes, each cause only when it adds
            // something (our errors often already quote their source).
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("kilowatch-collector: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    if let Some(Cmd::SimPlant(args)) = cli.cmd.take() {
        return kilowatch_collector::facility::plant_server::run(args).await;
    }
    let Some((cfg, path)) = load_config(&cli)? else {
        if !cli.once {
            anyhow::bail!("no configuration: {DEFAULT_CONFIG} does not exist; give --config FILE (or try --once to sample the local GPUs)");
        }
        // Like `telegraf --test` on a bare node: what would the GPUs report?
        tracing::info!(default = DEFAULT_CONFIG, "no config file: sampling the local GPUs through NVML once");
        let src = NvmlSource::from_config(&NvmlSourceConfig::default(), "dc5", &hostname())?.context("NVML did not start")?;
        let mut list: Vec<Box<dyn Source>> = vec![Box::new(src)];
        print!("{}", sample_once(&mut list).await?);
        return Ok(());
    };
    if !any_source_configured(&cfg) {
        anyhow::bail!("{}: no source is configured (add an [nvml], [facility], [[inference]] or [sim] section)", path.display());
    }
    let stats = Arc::new(AgentStats::default());
    let Sources { list: mut sources, gpus } = tokio::task::block_in_place(|| sources(&cfg, &path, &stats))?;
    if sources.is_empty() {
        tracing::warn!(config = %path.display(), "every configured source is optional and unavailable: sampling nothing");
    }
    if cli.once {
        print!("{}", sample_once(&mut sources).await?);
        return Ok(());
    }

    let endpoints = kilowatch_collector::endpoint::open(&cfg, &path)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let metrics_task = match &cfg.metrics {
        Some(m) => {
            let listener = metrics_server::bind(&m.listen).await?;
            let expo = Arc::new(Exposition { stats: stats.clone(), endpoints: endpoints.iter().map(|e| (e.name.clone(), e.stats.clone())).collect(), gpus });
            Some(tokio::spawn(metrics_server::serve(listener, expo, rx.clone())))
        }
        None => None,
    };
    let agent = FanOut { sources, interval: Duration::from_secs_f64(cfg.interval_s), clock: Clock::Wall, endpoints, stats };
    let task = tokio::spawn(agent.run(rx));
    shutdown_signal().await?;
    let _ = tx.send(true);
    task.await.context("collector loop")?;
    if let Some(t) = metrics_task
        && let Err(e) = t.await.context("metrics listener")?
    {
        tracing::warn!(error = %e, "the /metrics listener had failed");
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM from systemd: stop sampling and let the agent finish its cycle.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
