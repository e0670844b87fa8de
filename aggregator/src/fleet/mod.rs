//! The fleet view: `kilowatch serve` with a `[fleet]` section reads each site's exact hourly
//! ledger (`GET /api/v1/ledger/hours`, [`crate::ledger_api`]) with that site's read token,
//! keeps it by hour, and adds the sites up ([`figures`], served by [`api`]).
//!
//! Ledgers are additive, so fleet totals are exact sums of the sites'. A closed hour (ended
//! `fleet.settle_h` before the site's clock) never changes: it is fetched once and kept; the
//! open hours are fetched again at every refresh. A site that does not answer keeps what was
//! fetched and is shown stale with the age of its last full refresh, never as zero.

pub mod api;
pub mod figures;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kilowatch_model::Timestamp;
use tokio::sync::watch;

use crate::config::{ConfigError, FleetConfig, FleetSite};
use crate::events::InternalEvent;
use crate::ledger_api::{Changed, HOUR_NS, Hour, HoursAnswer, Revision};
use crate::metrics::Metrics;

/// Hours asked for in one request: a week keeps each answer a few MB at a DC5's job count.
const CHUNK_HOURS: i64 = 168;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// With the causes reqwest keeps under its own message ("connection refused", …).
    #[error("request failed: {}", chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// The site answered more than the fleet takes: the answer is not trusted.
    #[error("degraded: {0}")]
    Degraded(String),
    #[error("the answer is not the ledger's JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What is known of one site: its hours and how its last refreshes went.
#[derive(Debug, Default)]
pub struct SiteCache {
    pub hours: BTreeMap<i64, Hour>,
    /// Hours starting before this (ns) are closed: fetched once and kept.
    pub closed_until: i64,
    /// When the last refresh that fetched every open hour ended.
    pub last_ok: Option<Timestamp>,
    /// The last refresh's error, cleared by a refresh that succeeds.
    pub last_error: Option<String>,
    /// Failed refreshes in a row (the metric counts them all).
    pub errors: u64,
    /// The name and zone the site gives itself (a mismatch with `[fleet]` is logged).
    pub reported: Option<(String, String)>,
    pub jobs_unavailable: Option<String>,
    /// Why the site's last answer was not trusted (larger than `fleet.max_answer_bytes` or
    /// `fleet.max_answer_rows`), until an answer is.
    pub degraded: Option<String>,
    /// The site's mark when the kept hours were fetched: closed hours changed since are
    /// fetched again (`GET /api/v1/ledger/changed`). None from a site of an older version.
    pub revision: Option<Revision>,
}

pub struct Site {
    pub cfg: FleetSite,
    token: String,
    cache: Mutex<SiteCache>,
}

impl Site {
    pub fn cache(&self) -> MutexGuard<'_, SiteCache> {
        // A panic while holding the lock leaves a cache that is still a valid set of hours.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct Fleet {
    pub config: FleetConfig,
    pub sites: Vec<Site>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// A refresh that failed, logged and counted.
struct FetchFailed<'a> {
    site: &'a str,
    error: &'a FleetError,
    errors: u64,
}

impl InternalEvent for FetchFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.fleet_fetch_errors.get_or_create(&[("site", self.site.to_owned())]).inc();
        // The 1st, 2nd, 4th, 8th… failure in a row: a site down for a day stays visible
        // without a line every refresh.
        if self.errors.is_power_of_two() {
            tracing::warn!(site = self.site, error = %self.error, errors_in_a_row = self.errors, "fleet: site ledger refresh failed; keeping its last hours, shown stale");
        }
    }
}

/// An error's message followed by its causes', as `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !s.contains(&m) {
            s = format!("{s}: {m}");
        }
        cause = c.source();
    }
    s
}

pub fn floor_hour(t: i64) -> i64 {
    t.div_euclid(HOUR_NS) * HOUR_NS
}

impl Fleet {
    /// Reads every site's token; a missing token file stops startup naming its key.
    pub fn new(config: FleetConfig, metrics: Arc<Metrics>) -> Result<Fleet, ConfigError> {
        let sites = config.sites.iter().map(|s| Ok(Site { cfg: s.clone(), token: s.read_token()?, cache: Mutex::default() })).collect::<Result<Vec<_>, ConfigError>>()?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(config.timeout_s)).build().map_err(|e| ConfigError::Invalid { key: "fleet", message: format!("HTTP client: {e}") })?;
        Ok(Fleet { config, sites, client, metrics })
    }

    /// Seconds since `site`'s last full refresh, and whether it is stale: its last refresh
    /// failed, it never answered, or it answered longer ago than `fleet.stale_after_s`.
    pub fn freshness(&self, c: &SiteCache, now: Timestamp) -> (Option<f64>, bool) {
        let age = c.last_ok.map(|t| (now.0 - t.0).max(0) as f64 / 1e9);
        let stale = c.last_error.is_some() || age.is_none_or(|a| a > self.config.stale_after_s() as f64);
        (age, stale)
    }

    /// One GET of the site's API with its read token.
    pub async fn get_site(&self, site: &Site, path_and_query: &str) -> Result<reqwest::Response, FleetError> {
        let url = format!("{}{path_and_query}", site.cfg.url.trim_end_matches('/'));
        let r = self.client.get(url).header("Authorization", format!("Token {}", site.token)).send().await?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            let message = r.text().await.unwrap_or_default().chars().take(300).collect();
            return Err(FleetError::Status { status, message });
        }
        Ok(r)
    }

    /// A JSON answer of `site`, read within `fleet.max_answer_bytes`: a site that sends more
    /// (an endless or hostile answer) costs the fleet that much memory at most.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, site: &Site, path_and_query: &str) -> Result<T, FleetError> {
        let max = self.config.max_answer_bytes;
        let mut r = self.get_site(site, path_and_query).await?;
        if let Some(len) = r.content_length().filter(|l| *l > max) {
            return Err(FleetError::Degraded(format!("the site announced an answer of {len} bytes, more than fleet.max_answer_bytes ({max})")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await? {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(FleetError::Degraded(format!("the site answered more than fleet.max_answer_bytes ({max} bytes)")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// The hours of a site's answer to `[from, to)`: only hours it was asked for, on the hour,
    /// each once; more rows than `fleet.max_answer_rows` and the answer is not trusted.
    fn asked_hours(&self, site: &Site, hours: Vec<Hour>, from: i64, to: i64) -> Result<Vec<Hour>, FleetError> {
        let rows: u64 = hours.iter().map(|h| 1 + h.jobs.len() as u64).sum();
        let max = self.config.max_answer_rows;
        if rows > max {
            return Err(FleetError::Degraded(format!("the site answered {rows} rows (hours and their jobs), more than fleet.max_answer_rows ({max})")));
        }
        let given = hours.len();
        let mut kept: Vec<Hour> = hours.into_iter().filter(|h| (from..to).contains(&h.t) && h.t.rem_euclid(HOUR_NS) == 0).collect();
        kept.sort_by_key(|h| h.t);
        kept.dedup_by_key(|h| h.t);
        if kept.len() < given {
            tracing::warn!(site = %site.cfg.name, answered = given, kept = kept.len(), from = %rfc(from), to = %rfc(to), "fleet: the site answered hours it was not asked for; only those asked for are kept");
        }
        Ok(kept)
    }

    /// Fetches `site`'s open hours (and any not fetched yet) in weeks, oldest first, keeping
    /// each week as it arrives; drops hours older than `fleet.history_days`.
    pub async fn refresh_site(&self, site: &Site) -> Result<(), FleetError> {
        let now = Timestamp::now().0;
        let start = floor_hour(now - i64::try_from(self.config.history_days).unwrap_or(3660) * 24 * HOUR_NS);
        let end = floor_hour(now) + HOUR_NS;
        let settle = i64::try_from(self.config.settle_h).unwrap_or(0) * HOUR_NS;
        let mut mark = self.refetch_changed(site, start).await?;
        let mut from = start.max(site.cache().closed_until);
        while from < end {
            let to = (from + CHUNK_HOURS * HOUR_NS).min(end);
            let q = format!("/api/v1/ledger/hours?from={}&to={}", rfc(from), rfc(to));
            let mut ans: HoursAnswer = self.get_json(site, &q).await?;
            ans.hours = self.asked_hours(site, std::mem::take(&mut ans.hours), from, to)?;
            // The earliest mark of this refresh: what was written after it is asked for next
            // time.
            mark = mark.or(ans.revision);
            let mut c = site.cache();
            if c.reported.as_ref().is_none_or(|(n, z)| *n != ans.site || *z != ans.timezone) {
                if ans.timezone != site.cfg.timezone {
                    tracing::warn!(site = %site.cfg.name, configured = %site.cfg.timezone, reported = %ans.timezone, "fleet: the site's time zone differs from fleet.sites.timezone; its months follow the configured one");
                }
                c.reported = Some((ans.site.clone(), ans.timezone.clone()));
            }
            c.jobs_unavailable = ans.jobs_unavailable.clone();
            for h in ans.hours {
                c.hours.insert(h.t, h);
            }
            // Closed by both clocks: a site whose clock runs ahead closes nothing early.
            let closed = floor_hour(ans.now.min(now) - settle).min(to);
            c.closed_until = c.closed_until.max(closed);
            from = to;
        }
        let mut c = site.cache();
        c.hours = c.hours.split_off(&start);
        c.revision = mark;
        c.last_ok = Some(Timestamp::now());
        c.degraded = None;
        if c.last_error.take().is_some() {
            tracing::info!(site = %site.cfg.name, errors_in_a_row = c.errors, "fleet: site answers again");
        }
        c.errors = 0;
        Ok(())
    }

    /// Fetches again the kept closed hours that changed at the site since they were fetched
    /// (samples replayed after the hour closed, a job posted or ended afterwards), or all of
    /// them when the site restarted. Returns the site's mark taken before it said what changed.
    async fn refetch_changed(&self, site: &Site, start: i64) -> Result<Option<Revision>, FleetError> {
        let (rev, closed) = {
            let c = site.cache();
            (c.revision, c.closed_until)
        };
        let Some(rev) = rev.filter(|_| closed > start) else { return Ok(None) };
        let q = format!("/api/v1/ledger/changed?epoch={}&write_seq={}&jobs_at={}&from={}&to={}", rev.epoch, rev.write_seq, rev.jobs_at, rfc(start), rfc(closed));
        let ch: Changed = self.get_json(site, &q).await?;
        if ch.all {
            tracing::info!(site = %site.cfg.name, "fleet: the site restarted; its kept hours are fetched again");
            site.cache().closed_until = start;
            return Ok(Some(ch.revision));
        }
        // Runs of consecutive hours, a chunk at most each.
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for h in ch.hours.iter().copied().filter(|h| (start..closed).contains(h)) {
            match runs.last_mut() {
                Some((from, to)) if *to == h && h - *from < CHUNK_HOURS * HOUR_NS => *to = h + HOUR_NS,
                _ => runs.push((h, h + HOUR_NS)),
            }
        }
        if !runs.is_empty() {
            tracing::info!(site = %site.cfg.name, hours = runs.iter().map(|(a, b)| (b - a) / HOUR_NS).sum::<i64>(), "fleet: closed hours changed at the site; fetched again");
        }
        for (from, to) in runs {
            let q = format!("/api/v1/ledger/hours?from={}&to={}", rfc(from), rfc(to));
            let ans: HoursAnswer = self.get_json(site, &q).await?;
            let hours = self.asked_hours(site, ans.hours, from, to)?;
            let mut c = site.cache();
            for h in hours {
                c.hours.insert(h.t, h);
            }
        }
        Ok(Some(ch.revision))
    }

    /// Refreshes site `i` once; a failure is logged, counted and kept for the site's status.
    pub async fn refresh(&self, i: usize) {
        let Some(site) = self.sites.get(i) else { return };
        if let Err(e) = self.refresh_site(site).await {
            let errors = {
                let mut c = site.cache();
                c.errors += 1;
                c.last_error = Some(e.to_string());
                if let FleetError::Degraded(why) = &e {
                    c.degraded = Some(why.clone());
                }
                c.errors
            };
            FetchFailed { site: &site.cfg.name, error: &e, errors }.emit(&self.metrics);
        }
        let c = site.cache();
        if let (Some(age), _) = self.freshness(&c, Timestamp::now()) {
            self.metrics.fleet_site_age.get_or_create(&[("site", site.cfg.name.clone())]).set(age);
        }
    }

    /// One loop per site, each refreshing now and every `fleet.refresh_interval_s` until
    /// `shutdown`: a site that answers slowly (up to `fleet.timeout_s`) never delays the others.
    pub fn spawn(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..self.sites.len() {
                let (f, mut shutdown) = (self.clone(), shutdown.clone());
                set.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(f.config.refresh_interval_s));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => {}
                            _ = shutdown.changed() => break,
                        }
                        tokio::select! {
                            () = f.refresh(i) => {}
                            _ = shutdown.changed() => break,
                        }
                    }
                });
            }
            while let Some(r) = set.join_next().await {
                if let Err(e) = r {
                    tracing::error!(error = %e, "fleet: a site's refresh loop panicked");
                }
            }
        })
    }
}

/// A started fleet: its state, its routes (to be merged into the server's router with
/// [`crate::server::router_with`]) and its refresh loop.
pub struct Started {
    pub fleet: Arc<Fleet>,
    pub routes: axum::Router<crate::api::AppState>,
    pub refresher: tokio::task::JoinHandle<()>,
}

/// What `kilowatch serve` adds for a `[fleet]` section: the fleet, its routes and its refresh
/// loop, started.
pub fn start(config: FleetConfig, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) -> Result<Started, ConfigError> {
    let fleet = Arc::new(Fleet::new(config, metrics)?);
    tracing::info!(sites = fleet.sites.len(), timezone = %fleet.config.timezone, "fleet view on");
    let routes = api::routes(fleet.clone());
    let refresher = fleet.clone().spawn(shutdown);
    Ok(Started { fleet, routes, refresher })
}

fn rfc(ns: i64) -> String {
    Timestamp(ns).to_rfc3339()
}
