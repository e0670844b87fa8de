use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kilowatch_collector::agent::{Agent, AgentStats};
use kilowatch_collector::clock::Clock;
use kilowatch_collector::config::CollectorConfig;
use kilowatch_collector::ship::{Shipper, ShipperConfig};
use kilowatch_collector::source::{SimSource, Source};
use kilowatch_model::{Precision, Timestamp, encode_points};
use kilowatch_sim::{Emit, SimConfig};

/// Kilowatch's node and facility agent: samples its sources every interval and ships line
/// protocol to the aggregator.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The collector's TOML configuration.
    #[arg(long, short, default_value = "/etc/kilowatch/collector.toml")]
    config: PathBuf,
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

fn sources(cfg: &CollectorConfig, path: &std::path::Path) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let mut out: Vec<Box<dyn Source>> = Vec::new();
    if let Some(f) = &cfg.facility {
        out.extend(kilowatch_collector::facility::sources(f, path.parent().unwrap_or(std::path::Path::new(".")))?);
    }
    if let Some(s) = &cfg.sim {
        out.push(Box::new(SimSource::new(SimConfig {
            seed: s.seed,
            site: s.site.clone(),
            nodes: s.nodes,
            first_node: s.first_node,
            emit: Emit { gpus: s.gpus, nodes: s.node_power, facility: s.facility },
            start: Timestamp::now(),
            ..SimConfig::default()
        })));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(Cmd::SimPlant(args)) = cli.cmd {
        return kilowatch_collector::facility::plant_server::run(args).await;
    }
    let cfg = CollectorConfig::load(&cli.config)?;
    let mut sources = sources(&cfg, &cli.config)?;
    if sources.is_empty() {
        anyhow::bail!("{}: no source is configured (add a [sim] section)", cli.config.display());
    }
    if cli.once {
        let now = Timestamp::now();
        let mut points = Vec::new();
        for s in &mut sources {
            points.extend(s.sample(now).with_context(|| format!("sampling {}", s.name()))?);
        }
        print!("{}", encode_points(&points, Precision::Ns));
        return Ok(());
    }
    let shipper = Shipper::new(&ShipperConfig {
        url: cfg.aggregator.url.clone(),
        token: cfg.token(&cli.config)?,
        org: cfg.aggregator.org.clone(),
        bucket: cfg.aggregator.bucket.clone(),
        timeout: Duration::from_secs_f64(cfg.aggregator.timeout_s),
    })?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let agent = Agent {
        sources,
        shipper,
        interval: Duration::from_secs_f64(cfg.interval_s),
        clock: Clock::Wall,
        max_pending_bytes: cfg.aggregator.max_pending_bytes,
        stats: Arc::new(AgentStats::default()),
    };
    let task = tokio::spawn(agent.run(rx));
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    let _ = tx.send(true);
    task.await.context("collector loop")?;
    Ok(())
}
