//! The monthly report's schedule, files and web access. What the report says, and its document
//! model, is assembled by `kilowatch_accounting::report`; `kilowatch_dashboard::report` renders
//! it (both re-exported here). This module adds the alert history, which accounting does not read.

pub mod schedule;
pub mod web;

use crate::adapters::StoreRead;
use std::collections::BTreeMap;

pub use kilowatch_accounting::report::*;
pub use kilowatch_accounting::statement::Statement;
pub use kilowatch_dashboard::report::{Document, RenderedPdf, render, render_pdf};
use kilowatch_store::Store;

use crate::config::Config;

/// Assembles the report for `month` (YYYY-MM, local to `site.timezone`), with the alerts that
/// fired in it from the alert history beside the store.
pub fn build(store: &Store, cfg: &Config, month: &str, generated_at: Option<&str>) -> Result<MonthlyReport, ReportError> {
    kilowatch_accounting::report::build(&StoreRead(store), cfg, month, generated_at, |range| alerts_section(store, range))
}

/// Alerts that fired in the month, each counted once by (fingerprint, firing time): from the
/// alert history (the notifications in `alerts.db`'s delivery log, kept 62 days) and from the
/// engine's saved state (alerts still firing or resolved within the hour, which may not have
/// been notified yet). Without that database the section says so instead of failing.
fn alerts_section(store: &Store, range: kilowatch_model::TimeRange) -> Alerts {
    let dir = crate::alerting::data_dir(store);
    let none = |why: String| Alerts { fired_by_severity: BTreeMap::new(), total: 0, source: String::new(), unavailable: Some(why) };
    if !dir.join("alerts.db").exists() {
        return none("no alert database (alerts.db) beside the store".into());
    }
    let read = || -> Result<_, kilowatch_alerts::OutboxError> {
        let outbox = kilowatch_alerts::Outbox::open(&dir)?;
        let state: kilowatch_alerts::engine::EngineState = outbox.load("engine")?.unwrap_or_default();
        Ok((outbox.log_since(range.from)?, state))
    };
    let (log, state) = match read() {
        Ok(x) => x,
        Err(e) => return none(format!("alert database unreadable: {e}")),
    };
    let mut fired: BTreeMap<(String, i64), String> = BTreeMap::new();
    let notified = log.iter().flat_map(|d| d.notification.alerts.iter());
    for a in notified.chain(state.alerts.values()) {
        if let Some(f) = a.fired_at.filter(|f| *f >= range.from && *f < range.to) {
            fired.entry((a.fingerprint.clone(), f.0)).or_insert_with(|| a.labels.get("severity").cloned().unwrap_or_else(|| "none".into()));
        }
    }
    let mut by = BTreeMap::new();
    for sev in fired.into_values() {
        *by.entry(sev).or_insert(0) += 1;
    }
    let source = format!("alert history in alerts.db ({} notifications since the month began) and the alert engine's state", log.len());
    Alerts { total: by.values().sum(), fired_by_severity: by, source, unavailable: None }
}

/// A customer's statement for `period` (`YYYY-MM` or `YYYY`, local to `site.timezone`).
pub fn statement(store: &Store, cfg: &Config, owner: &str, period: &str, generated_at: Option<&str>) -> Result<Statement, ReportError> {
    kilowatch_accounting::statement::build(&StoreRead(store), cfg, owner, period, generated_at)
}

/// The file name of a statement: of the owner's characters, those not safe in a file name or
/// a header (`/`, quotes, spaces) become `_`.
pub fn statement_file(cfg: &Config, owner: &str, period: &str, f: render::Format) -> String {
    let safe = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect::<String>();
    format!("{}-{}-{}.{}", safe(&cfg.site.name), safe(owner), safe(period), f.ext())
}

/// Builds the report once and writes `<site>-<month>.<ext>` per format into `dir`.
pub fn write_files(store: &Store, cfg: &Config, month: &str, formats: &[render::Format], dir: &std::path::Path, generated_at: Option<&str>) -> Result<Vec<std::path::PathBuf>, ReportError> {
    let r = build(store, cfg, month, generated_at)?;
    let io = |path: &std::path::Path, source| ReportError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut out = Vec::new();
    let mut renderer = render::Renderer::new(&r);
    for f in formats {
        let path = dir.join(format!("{}-{}.{}", cfg.site.name, month, f.ext()));
        std::fs::write(&path, renderer.render(*f)?).map_err(|e| io(&path, e))?;
        out.push(path);
    }
    Ok(out)
}
