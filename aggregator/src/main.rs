use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::Auth;
use kilowatch_aggregator::config::{Config, TokenScope};
use kilowatch_aggregator::conn::ConnLimits;
use kilowatch_aggregator::demo::{self, DemoOptions};
use kilowatch_aggregator::sink::InfluxSink;
use kilowatch_aggregator::{server, slurm};
use kilowatch_store::Store;

/// Kilowatch: energy, water and carbon of an AI datacenter, from the GPU to the meter.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the documents' data is and when they say they were made (`report`, `statement`,
/// `eu-filing`).
#[derive(clap::Args)]
struct DocumentArgs {
    /// Directory of the embedded store (overrides the config's server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Generation time to print (RFC 3339); default SOURCE_DATE_EPOCH, else now. Pin it for
    /// byte-identical files.
    #[arg(long)]
    generated_at: Option<String>,
}

impl DocumentArgs {
    /// The configuration (defaults without `--config`) and the store it names.
    fn open(&self) -> anyhow::Result<(Config, Store)> {
        let mut cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            cfg.server.data_dir = d.clone();
        }
        let store = Store::open(&cfg.server.data_dir).with_context(|| format!("opening the store in {}", cfg.server.data_dir.display()))?;
        Ok((cfg, store))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the aggregator: ingest, store, API and dashboard.
    Serve {
        /// TOML configuration (see deploy/kilowatch.toml). Flags below override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
        /// Directory of the embedded store.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Let anyone read the API and the dashboard without a token (loopback demos only).
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Run a simulated DC5 end to end: store, collector, API and dashboard, in one process.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Keep the store here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Simulated history to fill in before going live, e.g. 30d, 12h.
        #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
        backfill: Duration,
        /// Step of the backfill.
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        backfill_step: Duration,
        #[arg(long, default_value_t = 5)]
        seed: u64,
        /// DGX nodes to simulate.
        #[arg(long, default_value_t = 127)]
        nodes: usize,
        /// Inject a scenario into the live simulation: heatwave, cooling-failure or both.
        #[arg(long)]
        scenario: Option<String>,
        /// Also make a read token scoped to these owners (a glob, e.g. "mistral-ai/*") and print
        /// the link that shows what that customer sees.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Start a new or rebuilt member of an active-active pair from its twin's data: download
    /// the twin's database snapshots into an empty data directory (docs/ha.md).
    Restore {
        /// The twin's base URL, e.g. http://kw-a:8086.
        #[arg(long)]
        from: String,
        /// An admin token of the twin ([[auth.tokens]] scope = "admin").
        #[arg(long, env = "KILOWATCH_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The new member's `server.data_dir`, empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// Largest snapshot accepted, in bytes (default 256 GiB); a larger one stops the
        /// restore before it is downloaded.
        #[arg(long, default_value_t = kilowatch_aggregator::restore::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
    },
    /// Poll Slurm (`squeue --json`) and post running jobs and their GPU indices to an
    /// aggregator, closing jobs that vanish: catches what the prolog/epilog hooks missed.
    SlurmPoll {
        /// The aggregator's base URL.
        #[arg(long, env = "KILOWATCH_URL", default_value = "http://127.0.0.1:8086")]
        url: String,
        /// A write token.
        #[arg(long, env = "KILOWATCH_TOKEN")]
        token: String,
        #[arg(long, default_value = "squeue")]
        squeue: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 30)]
        interval: u64,
        /// Poll once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Write the monthly sustainability report for a local calendar month.
    Report {
        /// The month, YYYY-MM, in the site's time zone.
        #[arg(long)]
        month: String,
        /// Comma-separated: html, pdf, csv, json.
        #[arg(long, default_value = "html,pdf,csv,json")]
        format: String,
        /// Directory to write `<site>-<month>.<ext>` into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        docs: DocumentArgs,
    },
    /// Write a customer's energy statement (its jobs' energy, water and CO2) for a local
    /// calendar month or year.
    Statement {
        /// The account or owner: its jobs are those whose owner is it or starts with it and `/`.
        #[arg(long)]
        owner: String,
        /// A month, YYYY-MM, in the site's time zone.
        #[arg(long, conflicts_with = "year", required_unless_present = "year")]
        month: Option<String>,
        /// A calendar year, YYYY.
        #[arg(long)]
        year: Option<String>,
        /// pdf, csv, json or html.
        #[arg(long, default_value = "pdf")]
        format: String,
        /// The file to write; default `<site>-<owner>-<period>.<ext>` here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        docs: DocumentArgs,
    },
    /// Write the EU data-centre filing for a calendar year (Delegated Regulation 2024/1364,
    /// Annexes I–III, thresholds, voluntary GPU indicators) and its evidence bundle.
    EuFiling {
        /// The calendar year, YYYY, in the site's time zone.
        #[arg(long)]
        year: i32,
        /// Comma-separated: json, csv, pdf, html.
        #[arg(long, default_value = "json,csv,pdf")]
        format: String,
        /// Directory to write `<site>-eu-filing-<year>.<ext>` and `evidence/` into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Leave the evidence bundle out.
        #[arg(long)]
        no_evidence: bool,
        #[command(flatten)]
        docs: DocumentArgs,
    },
    /// Fetch the daily mean outside temperature of the year's reporting period from open data
    /// (`[eu.open_weather]`, Open-Meteo's historical weather API) into the store, for the EU
    /// filing's CDD (Annex II 1(n)). Run it before `eu-filing`, with the server stopped.
    EuCdd {
        /// The calendar year, YYYY, in the site's time zone.
        #[arg(long)]
        year: i32,
        #[command(flatten)]
        docs: DocumentArgs,
    },
    /// Ask an aggregator when a flexible job should start: the best start times within the
    /// forecast with their energy, water and CO2 against starting now, and the `sbatch` line.
    Advise {
        #[arg(long, env = "KILOWATCH_URL", default_value = "http://127.0.0.1:8086")]
        url: String,
        /// A read token (none for a demo on loopback).
        #[arg(long, env = "KILOWATCH_TOKEN")]
        token: Option<String>,
        #[arg(long)]
        gpus: u32,
        /// Length of the job, hours.
        #[arg(long)]
        hours: u32,
        /// The job must start within this, e.g. 48h or 2d.
        #[arg(long, default_value = "48h")]
        within: String,
        /// What to minimise: water, energy, co2, or balanced (no worse on any of them).
        #[arg(long, default_value = "balanced")]
        weight: String,
        /// Print the JSON answer instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Parse a configuration file and say what is wrong with it, if anything.
    CheckConfig { config: PathBuf },
    /// Read a token on standard input and print the SHA-256 to put in `[[auth.tokens]]`.
    HashToken,
}

/// Turns true on Ctrl-C (SIGINT) or SIGTERM (what systemd and `docker stop` send).
fn shutdown_on_ctrl_c() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; Ctrl-C still stops");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_ok() { tracing::info!(signal = "SIGINT", "stopping") },
            _ = term => tracing::info!(signal = "SIGTERM", "stopping"),
        }
        let _ = tx.send(true);
    });
    rx
}

/// glibc's allocator keeps up to eight arenas per core, each with its own free memory: the
/// threads that parse writes, checkpoint and read come and go, and what one freed stayed
/// resident in its arena while another grew. Two arenas, set before any thread starts,
/// measured on the ingest bench's high-cardinality shape (scripts/bench_ingest.py): peak RSS
/// 158-161 MB -> 133 MB at the same CPU (one arena: 123 MB, but 10% more CPU from contention).
/// An operator's own setting (`GLIBC_TUNABLES` or `MALLOC_ARENA_MAX`) is left as it is.
/// Returns whether glibc refused.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() -> bool {
    const ARENAS: libc::c_int = 2;
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max")) || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    // SAFETY: mallopt sets one of the allocator's parameters and takes no pointer; it is called
    // before any other thread exists, as the limit only applies to arenas not yet made.
    (unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) }) == 0
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() -> bool {
    false
}

fn main() -> anyhow::Result<()> {
    let refused = tune_allocator();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?.block_on(run(refused))
}

async fn run(allocator_refused: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in journald, files or CI logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if allocator_refused {
        tracing::warn!("glibc refused the two-arena limit: memory freed by one thread may stay resident while others grow");
    }
    match Cli::parse().command {
        Command::Serve { config, listen, data_dir, insecure_no_auth } => {
            let mut cfg = match &config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            }
            .with_env_tokens();
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.server.data_dir = d;
            }
            cfg.validate()?;
            let has = |scope| cfg.auth.tokens.iter().any(|t| t.scope == scope);
            // A fleet-only aggregator ingests nothing: it needs no write token.
            if cfg.fleet.is_none() && cfg.auth.write_tokens.is_empty() && !has(TokenScope::Write) && !has(TokenScope::Admin) {
                anyhow::bail!("no write token: set auth.write_tokens in the config or KILOWATCH_WRITE_TOKEN");
            }
            if cfg.auth.read_tokens.is_empty() && !has(TokenScope::Read) && !insecure_no_auth {
                anyhow::bail!("no read token: set auth.read_tokens or KILOWATCH_READ_TOKEN (or --insecure-no-auth on a trusted loopback)");
            }
            let addr: SocketAddr = cfg.server.listen.parse().context("server.listen")?;
            if insecure_no_auth && !addr.ip().is_loopback() {
                anyhow::bail!(
                    "--insecure-no-auth opens every read to anyone who can connect: it is refused on {addr}, which is not a loopback address (listen on 127.0.0.1 or ::1, or give a read token)"
                );
            }
            // Before anything starts: a bad certificate stops startup, naming its key.
            let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
                (Some(cert), Some(key)) => Some(kilowatch_aggregator::tls::acceptor(cert, key)?),
                _ => None,
            };
            let open_files = kilowatch_aggregator::conn::raise_open_files_limit();
            let limits = ConnLimits::from_config(&cfg.server).fitted_to(open_files);
            let store = Arc::new(Store::open(&cfg.server.data_dir)?);
            store.set_policy(cfg.store.policy())?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            let shutdown = shutdown_on_ctrl_c();
            let metrics = Arc::new(kilowatch_aggregator::metrics::Metrics::new());
            let checkpointer = server::spawn_checkpointer(
                store.clone(),
                Duration::from_secs(cfg.store.checkpoint_interval_s),
                usize::try_from(cfg.store.checkpoint_head_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
                metrics.clone(),
                shutdown.clone(),
            );
            let maintenance = server::spawn_maintenance(store.clone(), cfg.store.retention(), Duration::from_secs(cfg.store.maintenance_interval_s), metrics.clone(), shutdown.clone());
            let auth = Auth::from_config(&cfg.auth, insecure_no_auth);
            let sink = match &cfg.influxdb {
                Some(i) => Some(InfluxSink::start(i, &cfg.server.data_dir, shutdown.clone())?),
                None => None,
            };
            let alerting = if cfg.alerts.enabled {
                Some(kilowatch_aggregator::alerting::spawn(store.clone(), cfg.alerts.clone(), Arc::new(kilowatch_alerts::SystemClock), metrics.clone(), shutdown.clone())?)
            } else {
                None
            };
            let poller = if cfg.slurm.poll {
                let jobs = Arc::new(kilowatch_store::jobs::JobStore::beside(&store)?);
                let sink = move |posts: Vec<kilowatch_store::jobs::JobPost>| {
                    let j = jobs.clone();
                    async move { tokio::task::spawn_blocking(move || j.post_many(&posts)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string()) }
                };
                Some(tokio::spawn(slurm::run_poller(cfg.slurm.squeue.clone(), Duration::from_secs(cfg.slurm.poll_interval_s), shutdown.clone(), sink)))
            } else {
                None
            };
            let cfg = Arc::new(cfg);
            let forecaster = cfg.forecast.poll.then(|| kilowatch_aggregator::forecast_api::spawn_poller(store.clone(), cfg.clone(), shutdown.clone()));
            let reporter = cfg.report.enabled.then(|| kilowatch_aggregator::report::schedule::spawn(store.clone(), cfg.clone(), shutdown.clone()));
            let (fleet_routes, fleet_loop) = match &cfg.fleet {
                Some(f) => {
                    let started = kilowatch_aggregator::fleet::start(f.clone(), metrics.clone(), shutdown.clone())?;
                    (started.routes, Some(started.refresher))
                }
                None => (axum::Router::new(), None),
            };
            let state = AppState { store, auth: Arc::new(auth), config: cfg, sink, metrics: metrics.clone() };
            server::serve_with(listener, tls, server::router_with(state, fleet_routes), shutdown, limits, metrics).await?;
            if let Some(f) = fleet_loop {
                let _ = f.await;
            }
            if let Some(p) = poller {
                let _ = p.await;
            }
            if let Some(r) = reporter {
                let _ = r.await;
            }
            if let Some(f) = forecaster {
                let _ = f.await;
            }
            let _ = maintenance.await;
            checkpointer.await.context("final checkpoint")?;
            if let Some(a) = alerting {
                let _ = a.await;
            }
        }
        Command::Demo { listen, data_dir, speed, backfill, backfill_step, seed, nodes, scenario, tenant } => {
            let opts = DemoOptions { listen, data_dir, speed, backfill, backfill_step, seed, nodes, scenario, tenant };
            demo::run(opts, shutdown_on_ctrl_c()).await?;
        }
        Command::Restore { from, token, data_dir, max_bytes } => {
            let r = kilowatch_aggregator::restore::restore(&from, &token, &data_dir, max_bytes).await?;
            let newest = r.newest.map_or_else(|| "none".to_owned(), |t| kilowatch_model::Timestamp(t).to_rfc3339());
            println!("restored {} bytes from {from} into {}: {} series, newest sample {newest}", r.bytes, data_dir.display(), r.series);
            println!("start the member on it; the collectors' spools bring what its twin received since");
        }
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token).context("reading the token from standard input")?;
            let token = token.trim();
            if token.len() < 16 {
                anyhow::bail!("the token is shorter than 16 characters");
            }
            println!("{}", kilowatch_aggregator::auth::sha256_hex(token));
        }
        Command::SlurmPoll { url, token, squeue, interval, once } => {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
            if once {
                let json = slurm::run_squeue(&squeue)?;
                let posts = slurm::Poller::default().poll(&json, kilowatch_model::Timestamp::now())?;
                let n = slurm::post_http(&client, &url, &token, posts).await.map_err(anyhow::Error::msg)?;
                println!("{n} allocations posted");
            } else {
                let sink = |posts| {
                    let (c, u, t) = (client.clone(), url.clone(), token.clone());
                    async move { slurm::post_http(&c, &u, &t, posts).await }
                };
                slurm::run_poller(squeue, Duration::from_secs(interval.max(1)), shutdown_on_ctrl_c(), sink).await;
            }
        }
        Command::Report { month, format, out, docs } => {
            let formats = format.split(',').map(kilowatch_aggregator::report::render::Format::parse).collect::<Result<Vec<_>, _>>()?;
            let (cfg, store) = docs.open()?;
            let written = kilowatch_aggregator::report::write_files(&store, &cfg, &month, &formats, &out, docs.generated_at.as_deref())?;
            for p in written {
                println!("{}", p.display());
            }
        }
        Command::Statement { owner, month, year, format, out, docs } => {
            let format = kilowatch_aggregator::report::render::Format::parse(&format)?;
            let period = month.or(year).context("--month or --year is required")?;
            let (cfg, store) = docs.open()?;
            let s = kilowatch_aggregator::report::statement(&store, &cfg, &owner, &period, docs.generated_at.as_deref())?;
            let path = out.unwrap_or_else(|| PathBuf::from(kilowatch_aggregator::report::statement_file(&cfg, &owner, &period, format)));
            std::fs::write(&path, kilowatch_aggregator::report::render::render(&s, format)?).with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
        }
        Command::EuFiling { year, format, out, no_evidence, docs } => {
            let formats = format.split(',').map(kilowatch_aggregator::report::render::Format::parse).collect::<Result<Vec<_>, _>>()?;
            let (cfg, store) = docs.open()?;
            for p in kilowatch_aggregator::filing_api::write_files(&store, &cfg, year, &formats, &out, !no_evidence, docs.generated_at.as_deref())? {
                println!("{}", p.display());
            }
        }
        Command::EuCdd { year, docs } => {
            let (cfg, store) = docs.open()?;
            let (days, cdd) = fetch_open_weather(&store, &cfg, year).await?;
            println!("{days} days of open-data daily means stored; CDD {}", cdd.map(|c| c.to_string()).unwrap_or_else(|| "missing (a day without a mean)".into()));
        }
        Command::Advise { url, token, gpus, hours, within, weight, json } => {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
            let mut rb = client.get(format!("{}/api/v1/advice", url.trim_end_matches('/'))).query(&[("gpus", gpus.to_string()), ("hours", hours.to_string()), ("within", within), ("weight", weight)]);
            if let Some(t) = token {
                rb = rb.header("Authorization", format!("Token {t}"));
            }
            let r = rb.send().await.with_context(|| format!("asking {url} for advice"))?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.context("reading the advice")?;
            if !status.is_success() {
                anyhow::bail!("{status}: {}", body.get("message").and_then(|m| m.as_str()).unwrap_or(""));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print!("{}", kilowatch_aggregator::forecast_api::advice_text(&body));
            }
        }
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            if let (Some(cert), Some(key)) = (&cfg.server.tls_cert, &cfg.server.tls_key) {
                kilowatch_aggregator::tls::acceptor(cert, key)?;
            }
            // The fleet's token files are read at startup: a missing one is found here too.
            if let Some(f) = &cfg.fleet {
                for s in &f.sites {
                    s.read_token()?;
                }
                println!("{}: fleet of {} sites, months in {}", config.display(), f.sites.len(), f.timezone);
            }
            println!("{}: OK (site {}, time zone {}, listen {})", config.display(), cfg.site.name, cfg.site.timezone, cfg.server.listen);
        }
    }
    Ok(())
}

/// `kilowatch eu-cdd`: asks `[eu.open_weather]` for the daily mean temperatures of `year`'s
/// reporting period and stores them (`eu::open_weather`), so that the filing's CDD rests on
/// open data. Returns the days stored and the CDD they give.
async fn fetch_open_weather(store: &Store, cfg: &Config, year: i32) -> anyhow::Result<(usize, Option<f64>)> {
    use kilowatch_accounting::eu::{filing, jrc_cdd, open_weather as ow};
    let Some(w) = &cfg.eu.open_weather else { anyhow::bail!("no [eu.open_weather] in the configuration: set latitude and longitude") };
    let tz: chrono_tz::Tz = cfg.site.timezone.parse().map_err(|_| anyhow::anyhow!("bad site.timezone {:?}", cfg.site.timezone))?;
    let p = filing::reporting_period(&cfg.eu, year, tz)?;
    let (first, last) = ow::days_of(p.range, tz);
    let url = w.request_url(first, last, tz);
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build()?;
    let r = client.get(&url).send().await.with_context(|| format!("asking {}", w.url))?;
    let status = r.status();
    let body = r.text().await.context("reading the archive's answer")?;
    let days = ow::parse(&body).map_err(|e| anyhow::anyhow!("{} ({status}): {e}", w.url))?;
    let days: Vec<_> = days.into_iter().filter(|(d, _)| (first..=last).contains(d)).collect();
    let points = ow::points(&cfg.site.name, &days, tz);
    store.write(&points).context("storing the daily means")?;
    tracing::info!(provider = ow::PROVIDER, days = points.len(), %first, %last, "open-data daily means stored for CDD");
    let complete = (first.iter_days().take_while(|d| *d <= last).count() == days.len()).then_some(());
    Ok((points.len(), complete.and_then(|_| jrc_cdd(&days).ok())))
}
