//! Calendar periods in the site's time zone: the windows KPIs are reported over. Months and
//! years are local (Europe/Paris for DC5: March 2024 has 743 hours, October 2024 has 745), as
//! the EU reporting asks; `from`/`to` ranges stay as given.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;
use kilowatch_model::{TimeRange, Timestamp};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeriodError {
    #[error("unknown period {0:?}: use live, hour, day, month, ytd, rolling12 or year")]
    Unknown(String),
    #[error("{name}={value:?}: {why}")]
    Param { name: &'static str, value: String, why: &'static str },
    #[error("the local time {0} does not exist in the site's time zone")]
    NoLocalTime(String),
    #[error("{0} is outside the supported range, {range}", range = kilowatch_model::time::SUPPORTED_RANGE)]
    OutOfRange(String),
}

/// A resolved period: its window and how to label it.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub range: TimeRange,
    /// e.g. "calendar month 2024-03 (Europe/Paris)".
    pub label: String,
    /// Hourly, daily and live figures are operational indicators; only the calendar year and
    /// rolling 12 months are the official annual figure (EN 50600-4-2).
    pub official: bool,
}

/// The first instant of a local date at midnight. Midnight exists in every zone chrono-tz
/// knows except a few historical ones; the earliest of an ambiguous pair is taken.
pub fn local_midnight(tz: Tz, d: NaiveDate) -> Result<Timestamp, PeriodError> {
    let naive = d.and_hms_opt(0, 0, 0).ok_or_else(|| PeriodError::NoLocalTime(d.to_string()))?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Timestamp::try_from_datetime(t).ok_or_else(|| PeriodError::OutOfRange(d.to_string())),
        LocalResult::None => Err(PeriodError::NoLocalTime(naive.to_string())),
    }
}

fn month_start(tz: Tz, y: i32, m: u32) -> Result<Timestamp, PeriodError> {
    let (y, m) = if m > 12 { (y + (m as i32 - 1) / 12, (m - 1) % 12 + 1) } else { (y, m) };
    let d = NaiveDate::from_ymd_opt(y, m, 1).ok_or(PeriodError::Param { name: "month", value: format!("{y}-{m}"), why: "not a month" })?;
    local_midnight(tz, d)
}

fn parse_month(s: &str) -> Result<(i32, u32), PeriodError> {
    let bad = || PeriodError::Param { name: "month", value: s.to_owned(), why: "expected YYYY-MM" };
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    let y: i32 = y.parse().ok().filter(|y| (1..=9999).contains(y)).ok_or_else(bad)?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&m) {
        return Err(bad());
    }
    Ok((y, m))
}

/// Resolves `period` at `at` (default: `now`). `month=YYYY-MM` picks the month for `month` and
/// the last month of `rolling12`; `year=YYYY` picks the year for `year` and `ytd`.
pub fn resolve(period: &str, at: Option<Timestamp>, month: Option<&str>, year: Option<&str>, tz: Tz, now: Timestamp) -> Result<Period, PeriodError> {
    let at = at.unwrap_or(now);
    let local: DateTime<Tz> = at.to_datetime().with_timezone(&tz);
    let zone = tz.name();
    let year_n = match year {
        Some(y) => Some(y.parse::<i32>().ok().filter(|y| (1..=9999).contains(y)).ok_or_else(|| PeriodError::Param { name: "year", value: y.to_owned(), why: "expected YYYY" })?),
        None => None,
    };
    let month_n = month.map(parse_month).transpose()?;
    let p = |from: Timestamp, to: Timestamp, label: String, official: bool| Period { range: TimeRange::new(from, to), label, official };
    Ok(match period {
        "live" => p(at.saturating_add_ns(-300_000_000_000), at, format!("live, last 5 min to {} (operational indicator)", at.to_rfc3339()), false),
        "hour" => {
            // Truncating in UTC is truncating locally for whole-hour offsets.
            let from = Timestamp(at.0.div_euclid(3_600_000_000_000).saturating_mul(3_600_000_000_000));
            let l = local.with_minute(0).and_then(|l| l.with_second(0)).unwrap_or(local);
            p(from, from.saturating_add_ns(3_600_000_000_000), format!("hour {} ({zone}, operational indicator)", l.format("%Y-%m-%d %H:00")), false)
        }
        "day" => {
            let d = local.date_naive();
            let next = d.succ_opt().ok_or(PeriodError::NoLocalTime(d.to_string()))?;
            p(local_midnight(tz, d)?, local_midnight(tz, next)?, format!("day {d} ({zone}, operational indicator)"), false)
        }
        "month" => {
            let (y, m) = month_n.unwrap_or((local.year(), local.month()));
            p(month_start(tz, y, m)?, month_start(tz, y, m + 1)?, format!("calendar month {y:04}-{m:02} ({zone})"), false)
        }
        "ytd" => {
            let y = year_n.unwrap_or(local.year());
            let from = month_start(tz, y, 1)?;
            let to = if y == local.year() { at } else { month_start(tz, y + 1, 1)?.min(at).max(from) };
            p(from, to, format!("year to date {y} to {} ({zone})", to.to_datetime().with_timezone(&tz).format("%Y-%m-%d %H:%M")), false)
        }
        "rolling12" => {
            // The 12 complete local months ending with `month`, or with the last month that
            // ended before `at`.
            let (y, m) = match month_n {
                Some(ym) => ym,
                None if local.month() == 1 => (local.year() - 1, 12),
                None => (local.year(), local.month() - 1),
            };
            let (fy, fm) = if m == 12 { (y, 1) } else { (y - 1, m + 1) };
            p(month_start(tz, fy, fm)?, month_start(tz, y, m + 1)?, format!("rolling 12 months {fy:04}-{fm:02} to {y:04}-{m:02} ({zone})"), true)
        }
        "year" => {
            let y = year_n.unwrap_or(local.year());
            p(month_start(tz, y, 1)?, month_start(tz, y + 1, 1)?, format!("calendar year {y} ({zone})"), true)
        }
        other => return Err(PeriodError::Unknown(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(p: &Period) -> f64 {
        p.range.duration_secs() / 3600.0
    }

    #[test]
    fn domain_example_13_local_month_lengths() {
        let tz: Tz = "Europe/Paris".parse().expect("tz");
        let now = Timestamp::from_secs(0);
        assert_eq!(hours(&resolve("month", None, Some("2024-03"), None, tz, now).expect("march")), 743.0);
        assert_eq!(hours(&resolve("month", None, Some("2024-10"), None, tz, now).expect("october")), 745.0);
        assert_eq!(hours(&resolve("year", None, None, Some("2024"), tz, now).expect("year")), 8784.0);
        let r = resolve("rolling12", None, Some("2024-12"), None, tz, now).expect("r12");
        assert_eq!(r.range, resolve("year", None, None, Some("2024"), tz, now).expect("year").range);
        assert!(matches!(resolve("fortnight", None, None, None, tz, now), Err(PeriodError::Unknown(_))));
        // Years the store's timestamps cannot hold are refused, not wrapped to another date.
        assert!(matches!(resolve("year", None, None, Some("0001"), tz, now), Err(PeriodError::OutOfRange(_))));
        assert!(matches!(resolve("month", None, Some("2262-12"), None, tz, now), Err(PeriodError::OutOfRange(_))));
        assert!(matches!(resolve("year", None, None, Some("2147483647"), tz, now), Err(PeriodError::Param { .. })));
    }
}
