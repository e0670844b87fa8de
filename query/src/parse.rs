//! The API's time and duration parameters, read the way Prometheus reads them.

use crate::QueryError;

/// A time parameter: Unix seconds (`1700000000.5`) or RFC 3339 (`2026-12-07T10:00:00Z`), as ms.
pub fn parse_time_ms(s: &str) -> Result<i64, QueryError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    rfc3339_ms(s).ok_or_else(|| QueryError::BadData(format!("cannot parse {s:?} to a valid timestamp")))
}

/// A duration parameter: seconds (`15`, `0.5`) or a PromQL duration (`1m30s`), as ms.
pub fn parse_duration_ms(s: &str) -> Result<i64, QueryError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    promql_parser::util::parse_duration(s).map(|d| d.as_millis() as i64).map_err(|_| QueryError::BadData(format!("cannot parse {s:?} to a valid duration")))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` as ms since the epoch.
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = digits.parse().ok()?;
    }
    let offset_min = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let m = tz.get(1..3)?.parse::<i64>().ok()? * 60 + tz.get(4..6)?.parse::<i64>().ok()?;
            if tz.starts_with('-') { -m } else { m }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_prometheus_reads_them() {
        assert_eq!(parse_time_ms("1700000000.5").unwrap(), 1_700_000_000_500);
        assert_eq!(parse_time_ms("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time_ms("2023-11-14T23:13:20.25+01:00").unwrap(), 1_700_000_000_250);
        assert!(parse_time_ms("yesterday").is_err());
        assert_eq!(parse_duration_ms("15").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("1m30s").unwrap(), 90_000);
        assert!(parse_duration_ms("fast").is_err());
    }
}
