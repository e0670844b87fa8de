//! `kilowatch demo`: the whole system on its embedded defaults. A simulated DC5 is backfilled
//! straight into the store, then keeps running live through the real collector path (line
//! protocol spooled and shipped by kilowatch-ship over HTTP on loopback) while the dashboard
//! serves it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kilowatch_model::{Precision, Timestamp, encode_points};
use kilowatch_ship::{Fsync, Outbox, ShipError, ShipStats, Shipper, ShipperConfig, Spool, SpoolConfig, SpoolError};
use kilowatch_sim::live::{JobEvents, LiveSite};
use kilowatch_sim::{JobEvent, PointBuf, SimConfig, Site};

use kilowatch_store::jobs::{JobError, JobPost, JobStore};
use tokio::sync::watch;

use crate::api::AppState;
use crate::auth::Auth;
use crate::config::Config;
use crate::server;
use kilowatch_store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub data_dir: Option<PathBuf>,
    pub speed: f64,
    pub backfill: Duration,
    pub backfill_step: Duration,
    pub seed: u64,
    pub nodes: usize,
    /// `heatwave`, `cooling-failure` or `both`, starting when the live run starts.
    pub scenario: Option<String>,
    /// An owner glob (`mistral-ai/*`): the demo also makes a read token scoped to those
    /// owners and prints the link that shows what such a customer sees.
    pub tenant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create a temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error("cannot listen on {addr}: {source} (is another demo running? try --listen 127.0.0.1:8081)")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Ship(#[from] ShipError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("--speed must be positive, and --backfill-step at least one second")]
    Options,
    #[error(transparent)]
    Jobs(#[from] JobError),
    #[error("cannot draw a token from the operating system's randomness: {0}")]
    Random(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("unknown --scenario {0:?}: use heatwave, cooling-failure or both")]
    Scenario(String),
    #[error(transparent)]
    Alerting(#[from] crate::alerting::AlertingError),
}

/// Simulates `[site.now(), until]` at `step` and writes it to the store in large batches,
/// without the job events.
pub fn backfill(store: &Store, site: &mut Site, until: Timestamp, step: Duration) -> Result<u64, DemoError> {
    backfill_with_jobs(store, None, site, until, step)
}

/// The simulator's job events as ledger posts (job ids prefixed "sim:").
pub fn job_posts(events: Vec<JobEvent>) -> Vec<JobPost> {
    events
        .into_iter()
        .map(|e| match e {
            JobEvent::Start(a) => JobPost {
                job: format!("sim:{}", a.job),
                owner: Some(a.owner.clone()),
                project: Some(a.owner),
                node: Some(a.node),
                gpus: Some(a.gpus),
                start: Some(a.start.to_rfc3339()),
                end: a.end.map(|e| e.to_rfc3339()),
                source: Some("sim".into()),
            },
            JobEvent::End { job, node, end } => {
                JobPost { job: format!("sim:{job}"), owner: None, project: None, node: Some(node), gpus: None, start: None, end: Some(end.to_rfc3339()), source: Some("sim".into()) }
            }
        })
        .collect()
}

/// The simulator's training steps as progress posts, under the ledger's job ids ("sim:").
pub fn progress_posts(steps: Vec<kilowatch_sim::ProgressStep>) -> Vec<kilowatch_store::progress::ProgressPost> {
    steps.into_iter().map(|p| kilowatch_store::progress::ProgressPost { job: format!("sim:{}", p.job), step: p.step, tokens: p.tokens, samples: p.samples, time: Some(p.t.to_rfc3339()) }).collect()
}

/// Records the allocations already running at the site's current time (the backfill's first
/// instant), whose start events happened before it.
pub fn record_active(jobs: &JobStore, site: &Site) -> Result<usize, JobError> {
    jobs.post_many(&job_posts(site.active_jobs().into_iter().map(JobEvent::Start).collect()))
}

/// Like [`backfill`], and records the job events in `jobs` as they happen.
pub fn backfill_with_jobs(store: &Store, jobs: Option<&JobStore>, site: &mut Site, until: Timestamp, step: Duration) -> Result<u64, DemoError> {
    if let Some(j) = jobs {
        record_active(j, site)?;
    }
    let step_ns = step.as_nanos() as i64;
    let start = site.now();
    let total = ((until.0 - start.0) / step_ns).max(0);
    let mut buf = PointBuf::new();
    let mut written = 0u64;
    let mut last_log = Instant::now();
    let t0 = Instant::now();
    // The readings at the start itself, so that the first interval is covered too.
    site.fill_points(&mut buf);
    written += store.write(buf.points())?.samples as u64;
    for i in 1..=total {
        site.advance_to(Timestamp(start.0 + i * step_ns));
        site.fill_points(&mut buf);
        let events = site.take_job_events();
        let progress = site.take_progress();
        if let Some(j) = jobs {
            j.post_many(&job_posts(events))?;
            if !progress.is_empty() {
                j.post_progress(&progress_posts(progress), site.now().0)?;
            }
        }
        written += store.write(buf.points())?.samples as u64;
        // A simulated day at a time into chunks: memory stays bounded however long the backfill.
        if (start.0 + i * step_ns).rem_euclid(86_400_000_000_000) < step_ns {
            store.checkpoint()?;
        }
        if last_log.elapsed() >= Duration::from_secs(2) {
            last_log = Instant::now();
            tracing::info!(progress_pct = (i * 100 / total.max(1)), sim_time = %site.now().to_rfc3339(), samples = written, "backfilling");
        }
    }
    store.checkpoint()?;
    tracing::info!(samples = written, seconds = format!("{:.1}", t0.elapsed().as_secs_f64()), "backfill done");
    Ok(written)
}

pub async fn run(opts: DemoOptions, shutdown: watch::Receiver<bool>) -> Result<(), DemoError> {
    if opts.speed <= 0.0 || opts.backfill_step < Duration::from_secs(1) {
        return Err(DemoError::Options);
    }
    let _tmp;
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => {
            let t = tempfile::Builder::new().prefix("kilowatch-demo-").tempdir().map_err(DemoError::TempDir)?;
            let p = t.path().to_owned();
            _tmp = t;
            p
        }
    };
    tracing::info!(data_dir = %dir.display(), "opening the embedded store");
    let store = Arc::new(Store::open(&dir)?);

    let step_ns = opts.backfill_step.as_nanos() as i64;
    let now = Timestamp::now();
    let start = Timestamp((now.0 - opts.backfill.as_nanos() as i64).div_euclid(step_ns) * step_ns);
    let scenario = match opts.scenario.as_deref() {
        Some(name) => kilowatch_sim::Scenario::named(name, now).ok_or_else(|| DemoError::Scenario(name.to_owned()))?,
        None => kilowatch_sim::Scenario::none(),
    };
    // The demo's site serves models on its last nodes and its training jobs report progress.
    let mut site = Site::new(SimConfig { seed: opts.seed, nodes: opts.nodes, start, scenario, inference: true, ..SimConfig::default() });
    if !opts.backfill.is_zero() {
        tracing::info!(from = %start.to_rfc3339(), step_s = opts.backfill_step.as_secs(), nodes = opts.nodes, "backfilling simulated history");
        let s = store.clone();
        site = tokio::task::spawn_blocking(move || {
            let jobs = JobStore::beside(&s)?;
            backfill_with_jobs(&s, Some(&jobs), &mut site, now, opts.backfill_step).map(|_| site)
        })
        .await
        .map_err(|e| DemoError::Task(e.to_string()))??;
    }

    // A fixed write token from the environment lets a browser test create silences in the
    // demo; otherwise a fresh one nobody else knows.
    let write_token = std::env::var("KILOWATCH_WRITE_TOKEN").ok().filter(|t| t.len() >= 16).map_or_else(|| fresh_token("demo"), Ok)?;
    let mut config = Config::default();
    config.server.listen = opts.listen.to_string();
    config.auth.write_tokens.push(write_token.clone());
    // The customer's token, from the environment for a browser test, else a fresh one.
    let tenant_token = opts
        .tenant
        .as_ref()
        .map(|glob| -> Result<String, DemoError> {
            let token = std::env::var("KILOWATCH_TENANT_TOKEN").ok().filter(|t| t.len() >= 16).map_or_else(|| fresh_token("tenant"), Ok)?;
            config.auth.tokens.push(crate::config::TokenEntry {
                name: format!("demo tenant {glob}"),
                sha256: crate::auth::sha256_hex(&token),
                scope: crate::config::TokenScope::Read,
                owners: Some(vec![glob.clone()]),
                nodes: None,
            });
            Ok(token)
        })
        .transpose()?;
    let state = AppState { store: store.clone(), auth: Arc::new(Auth::from_config(&config.auth, true)), config: Arc::new(config), sink: None, metrics: Default::default() };
    let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|source| DemoError::Listen { addr: opts.listen, source })?;
    let checkpointer = server::spawn_checkpointer(store.clone(), Duration::from_secs(60), 128 << 20, state.metrics.clone(), shutdown.clone());
    let maintenance = server::spawn_maintenance(store.clone(), state.config.store.retention(), Duration::from_secs(state.config.store.maintenance_interval_s), state.metrics.clone(), shutdown.clone());
    let limits = crate::conn::ConnLimits::from_config(&state.config.server);
    let metrics = state.metrics.clone();
    let http = tokio::spawn(server::serve_with(listener, None, server::router(state), shutdown.clone(), limits, metrics));
    let rules = kilowatch_alerts::RulePack::default_pack().rules;
    let (pipeline, deliverer) =
        crate::alerting::open_pipeline_with(&store, rules, crate::alerting::demo_routing(), format!("http://{}", opts.listen), Arc::new(crate::alerting::DataClock(store.clone())))?;
    let alerting = crate::alerting::run(store.clone(), pipeline, deliverer, Duration::from_secs(5), crate::alerting::CatchUp::never(), shutdown.clone());

    let shipper = Shipper::new(&ShipperConfig { url: format!("http://{}", opts.listen), token: write_token, org: None, bucket: None, timeout: Duration::from_secs(10) })?;
    let origin = site.now();
    let forecasts = tokio::spawn(demo_forecasts(store.clone(), Site::new(SimConfig { seed: opts.seed, nodes: 1, start: origin, scenario, ..SimConfig::default() }), opts.speed, shutdown.clone()));
    // Points travel as a collector's do; the simulation's job events reach the ledger through
    // the live site's event handle.
    let spool = Spool::open(SpoolConfig { dir: dir.join("collector-spool"), fsync: Fsync::Never, ..SpoolConfig::default() })?;
    let (outbox, shipping) = Outbox::start(shipper, spool, Arc::new(ShipStats::default()), shutdown.clone());
    let mut live = LiveSite::from_site(site);
    let jobs_task = tokio::spawn(live_jobs(store.clone(), live.job_events(), shutdown.clone()));
    let collector = tokio::spawn(ship_live(live, origin, opts.speed, outbox, shutdown.clone()));
    println!("Kilowatch demo: dashboard at http://{}/  (API: http://{}/api/v1/kpi?from=…&to=…; Ctrl-C to stop)", opts.listen, opts.listen);
    println!("Reads are open without a token: this demo is for loopback only.");
    if let (Some(glob), Some(token)) = (&opts.tenant, &tenant_token) {
        println!("What a customer owning {glob} sees (its jobs and statements only): http://{}/jobs?token={token}", opts.listen);
    }
    let _ = collector.await;
    let _ = shipping.await;
    let _ = http.await.map_err(|e| DemoError::Task(e.to_string()))?;
    let _ = maintenance.await;
    let _ = checkpointer.await;
    let _ = alerting.await;
    let _ = jobs_task.await;
    let _ = forecasts.await;
    Ok(())
}

/// The live site sampled as the collector's `sim` source would be: once a real second, at the
/// time of a clock running `speed` times faster from `origin`, each sample spooled and shipped
/// as line protocol to the demo's own server.
async fn ship_live(mut live: LiveSite, origin: Timestamp, speed: f64, outbox: Outbox, mut shutdown: watch::Receiver<bool>) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let now = Timestamp(origin.0 + (started.elapsed().as_secs_f64() * speed * 1e9) as i64);
        let out = outbox.clone();
        // Advancing the site and writing the spool block: off the async runtime.
        let sampled = tokio::task::spawn_blocking(move || {
            out.append(&encode_points(&live.points_at(now), Precision::Ns), "demo: cannot spool a batch; it is lost");
            live
        });
        match sampled.await {
            Ok(l) => live = l,
            Err(e) => {
                tracing::error!(error = %e, "demo: the live site panicked; live data stops");
                break;
            }
        }
    }
}

/// The simulator's forecasts as a provider would give them: each simulated hour, its weather
/// (plus a forecast's error) and its grid carbon curve for the next 48 hours are stored as
/// `forecast` points, so `/api/v1/forecast` and the advice are live in the demo.
async fn demo_forecasts(store: Arc<Store>, site: Site, speed: f64, mut shutdown: watch::Receiver<bool>) {
    use kilowatch_forecast::inputs::{Air, Parsed, Series};
    let mut tick = tokio::time::interval(Duration::from_secs_f64((3600.0 / speed).clamp(1.0, 3600.0)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        // Stamped on the demo's data clock (its newest sample), never ahead of the wall clock:
        // a store with a skew limit refuses samples ahead of the wall, and a forecast stamped
        // after the site's newest reading would move "now" for every live view.
        let wall = Timestamp::now();
        let now = store.live_now().map_or(wall, |t| Timestamp(t.min(wall.0)));
        let issue_s = now.0.div_euclid(1_000_000_000);
        let hour0 = issue_s.div_euclid(3600) * 3600;
        let at = |k: i64| Timestamp::from_secs(hour0 + k * 3600 + 1800);
        let air = (0..48)
            .map(|k| {
                (hour0 + k * 3600, {
                    let a = site.forecast_air(now, at(k));
                    Air { dry_bulb_c: a.temp_c, wet_bulb_c: a.wet_bulb_c }
                })
            })
            .collect();
        let grid = (0..48).map(|k| (hour0 + k * 3600, site.forecast_grid_intensity(now, at(k)))).collect();
        let mut text = kilowatch_forecast::lines::input_lines("dc5", &Parsed::Weather(Series { provider: "sim".into(), issued_s: issue_s, ahead: true, hours: air }), issue_s);
        text.push_str(&kilowatch_forecast::lines::input_lines("dc5", &Parsed::Carbon(Series { provider: "sim".into(), issued_s: issue_s, ahead: true, hours: grid }), issue_s));
        let s = store.clone();
        // Stored, then a forecast issued from them and kept (`forecast_issued`) to be scored.
        let cfg = Config::default();
        match tokio::task::spawn_blocking(move || crate::forecast_api::write_lines(&s, &text).and_then(|n| crate::forecast_api::issue(&s, &cfg, issue_s).map(|_| n))).await {
            Ok(Ok(n)) => tracing::debug!(samples = n, "demo: forecast inputs stored and a forecast issued"),
            Ok(Err(e)) => tracing::warn!(error = %e, "demo: forecast inputs not stored"),
            Err(e) => tracing::warn!(error = %e, "demo: forecast task failed"),
        }
    }
}

/// Records the live simulation's job events every 10 real seconds.
async fn live_jobs(store: Arc<Store>, events: JobEvents, mut shutdown: watch::Receiver<bool>) {
    let jobs = match JobStore::beside(&store) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            tracing::error!(error = %e, "demo: no job ledger, live jobs are not recorded");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        let posts = job_posts(events.take());
        let progress = progress_posts(events.take_progress());
        let j = jobs.clone();
        match tokio::task::spawn_blocking(move || j.post_many(&posts).and_then(|n| Ok(n + j.post_progress(&progress, Timestamp::now().0)?))).await {
            Ok(Ok(n)) => tracing::debug!(rows = n, "demo: job events recorded"),
            Ok(Err(e)) => tracing::warn!(error = %e, "demo: job events not recorded"),
            Err(e) => tracing::warn!(error = %e, "demo: job task failed"),
        }
    }
}

/// A token nobody else can derive: 128 bits from the operating system's randomness (one made of
/// the clock and the process id could be guessed by anyone who saw when the demo started).
fn fresh_token(prefix: &str) -> Result<String, DemoError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| DemoError::Random(e.to_string()))?;
    Ok(bytes.iter().fold(format!("{prefix}-"), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    }))
}

#[cfg(test)]
mod token_tests {
    #[test]
    fn fresh_tokens_are_random_and_long() {
        let a = super::fresh_token("tenant").expect("token");
        let b = super::fresh_token("tenant").expect("token");
        assert_ne!(a, b);
        assert_eq!(a.len(), "tenant-".len() + 32);
        assert!(a["tenant-".len()..].chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
