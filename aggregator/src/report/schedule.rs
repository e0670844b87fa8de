//! Produces last month's report on its own: once the local date reaches `[report] day`, the
//! report of the previous month is written into `[report] dir` (default `<data_dir>/reports`)
//! unless it is already there, and a ready notice is POSTed to `[report] webhook_url`.
//!
//! It checks every hour and on start, and "on or after the day" rather than "on the day", so an
//! aggregator that was down on the day catches up when it comes back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Datelike;
use chrono_tz::Tz;
use kilowatch_model::Timestamp;
use serde::Deserialize;
use tokio::sync::watch;

use super::render::Format;
use crate::config::Config;
use kilowatch_store::Store;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Produce last month's report automatically.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Day of the month (local) from which last month's report is produced. The default leaves
    /// a day for late meter data to arrive.
    #[serde(default = "default_day")]
    pub day: u32,
    /// Where reports are kept; default `<server.data_dir>/reports`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// POSTed `{"site","month","files"}` when a report is ready.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_day() -> u32 {
    2
}
fn default_formats() -> Vec<String> {
    vec!["html".into(), "pdf".into(), "csv".into(), "json".into()]
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig { enabled: true, day: default_day(), dir: None, formats: default_formats(), webhook_url: None }
    }
}

impl ReportConfig {
    pub fn dir_for(&self, cfg: &Config) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| cfg.server.data_dir.join("reports"))
    }
}

/// The month whose report is due at `now`, if any: last month once the local day is reached.
pub fn due_month(now: Timestamp, tz: Tz, day: u32) -> Option<String> {
    let local = now.to_datetime().with_timezone(&tz);
    if local.day() < day.clamp(1, 28) {
        return None;
    }
    let (y, m) = if local.month() == 1 { (local.year() - 1, 12) } else { (local.year(), local.month() - 1) };
    Some(format!("{y:04}-{m:02}"))
}

/// One check: writes the due report if it is missing; returns its files when it wrote them.
/// When the report that is due at `now` became due: `day` 00:00 local of the current month.
pub fn due_at(now: Timestamp, tz: Tz, day: u32) -> Option<String> {
    use chrono::TimeZone;
    let local = now.to_datetime().with_timezone(&tz);
    let midnight = local.date_naive().with_day(day.clamp(1, 28))?.and_hms_opt(0, 0, 0)?;
    // A zone whose midnight is skipped or doubled (a DST change at 00:00) takes the earliest.
    tz.from_local_datetime(&midnight).earliest().map(|d| Timestamp::from_datetime(d).to_rfc3339())
}

/// The id of a report's ready notice (body `id`, header `X-Kilowatch-Notification-Id`): the same
/// from both members of a pair, so that a receiver drops the twin.
pub fn notice_id(site: &str, month: &str) -> String {
    format!("report-{site}-{month}")
}

pub fn run_once(store: &Store, cfg: &Config, now: Timestamp) -> Result<Option<(String, Vec<PathBuf>)>, super::ReportError> {
    let tz: Tz = cfg.site.timezone.parse().map_err(|_| super::ReportError::TimeZone(cfg.site.timezone.clone()))?;
    let Some(month) = due_month(now, tz, cfg.report.day) else { return Ok(None) };
    let dir = cfg.report.dir_for(cfg);
    if dir.join(format!("{}-{month}.json", cfg.site.name)).exists() {
        return Ok(None);
    }
    let mut formats = cfg.report.formats.iter().map(|f| Format::parse(f)).collect::<Result<Vec<_>, _>>()?;
    // The JSON marks the month as done; write it whatever the list says.
    if !formats.contains(&Format::Json) {
        formats.push(Format::Json);
    }
    // Stamped with when it became due, not when it ran: both members of an active-active pair
    // then write byte-identical files (docs/ha.md).
    let files = super::write_files(store, cfg, &month, &formats, &dir, due_at(now, tz, cfg.report.day).as_deref())?;
    Ok(Some((month, files)))
}

pub fn spawn(store: Arc<Store>, cfg: Arc<Config>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().ok();
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let (s, c) = (store.clone(), cfg.clone());
            let done = match tokio::task::spawn_blocking(move || run_once(&s, &c, Timestamp::now())).await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "monthly report not produced; will retry in an hour");
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "monthly report task failed");
                    None
                }
            };
            let Some((month, files)) = done else { continue };
            tracing::info!(month = %month, files = files.len(), "monthly report ready");
            if let (Some(url), Some(client)) = (&cfg.report.webhook_url, &client) {
                let id = notice_id(&cfg.site.name, &month);
                let body = serde_json::json!({ "id": id, "site": cfg.site.name, "month": month, "files": files, "status": "ready" });
                match client.post(url).header(kilowatch_alerts::payload::ID_HEADER, &id).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(status = %r.status(), "report webhook refused the notice"),
                    Err(e) => tracing::warn!(error = %e, "report webhook unreachable"),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_from_the_configured_local_day() {
        let tz = chrono_tz::Europe::Paris;
        // 2026-11-01T23:30Z is already 2 November in Paris.
        assert_eq!(due_month(Timestamp::from_secs(1_793_575_800), tz, 2).as_deref(), Some("2026-10"));
        assert_eq!(due_month(Timestamp::from_secs(1_793_575_800 - 3600), tz, 2), None);
        // January reports December of the year before.
        assert_eq!(due_month(Timestamp::from_secs(1_799_020_800), tz, 1).as_deref(), Some("2026-12"));
    }
}
