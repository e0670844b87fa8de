use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC. Line protocol's native resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The instants a [`Timestamp`] holds, as RFC 3339: what 64-bit nanoseconds since 1970 reach.
pub const SUPPORTED_RANGE: &str = "1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z";

/// Why a text is not a usable time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{0}")]
    Parse(#[from] chrono::ParseError),
    /// A valid date that 64-bit nanoseconds cannot hold (year 0001, year 3000): refused rather
    /// than wrapped around to some other date.
    #[error("{0} is outside the supported range, {SUPPORTED_RANGE}")]
    OutOfRange(String),
}

impl Timestamp {
    pub fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(NANOS_PER_SEC))
    }
    pub fn from_secs_f64(s: f64) -> Self {
        Timestamp((s * NANOS_PER_SEC as f64).round() as i64)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }
    /// The instant as nanoseconds, saturated at the ends of the supported range (never
    /// wrapped). Where a date out of range must be refused, use [`Timestamp::try_from_datetime`].
    pub fn from_datetime<Tz: TimeZone>(dt: DateTime<Tz>) -> Self {
        let utc = dt.with_timezone(&Utc);
        Self::try_from_datetime(utc).unwrap_or(if utc.timestamp() < 0 { Timestamp(i64::MIN) } else { Timestamp(i64::MAX) })
    }
    /// The instant as nanoseconds, or `None` outside [`SUPPORTED_RANGE`].
    pub fn try_from_datetime<Tz: TimeZone>(dt: DateTime<Tz>) -> Option<Self> {
        dt.with_timezone(&Utc).timestamp_nanos_opt().map(Timestamp)
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0.div_euclid(NANOS_PER_SEC), self.0.rem_euclid(NANOS_PER_SEC) as u32).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
    /// Parses RFC 3339; a valid date outside [`SUPPORTED_RANGE`] is an error naming the range.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        let dt = DateTime::parse_from_rfc3339(s)?;
        Self::try_from_datetime(dt).ok_or_else(|| TimeError::OutOfRange(s.to_owned()))
    }
    /// `self + ns`, saturated at the ends of the range: for arithmetic on times that come from
    /// outside, where an overflow must not panic or wrap.
    pub fn saturating_add_ns(self, ns: i64) -> Self {
        Timestamp(self.0.saturating_add(ns))
    }
}

/// A half-open interval `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl TimeRange {
    pub fn new(from: Timestamp, to: Timestamp) -> Self {
        TimeRange { from, to }
    }
    pub fn duration_secs(&self) -> f64 {
        (i128::from(self.to.0) - i128::from(self.from.0)) as f64 / NANOS_PER_SEC as f64
    }
    pub fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t < self.to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::parse_rfc3339("2024-01-31T22:00:00Z").expect("valid");
        assert_eq!(t, Timestamp::from_secs(1_706_738_400));
        assert_eq!(t.to_rfc3339(), "2024-01-31T22:00:00Z");
        let t = Timestamp::parse_rfc3339("2024-02-01T00:00:00+01:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2024-01-31T23:00:00Z");
    }

    #[test]
    fn dates_beyond_64_bit_nanoseconds_are_refused_not_wrapped() {
        for s in ["0001-01-01T00:00:00Z", "1677-09-21T00:12:43Z", "2262-04-12T00:00:00Z", "9999-12-31T23:59:59Z"] {
            let e = Timestamp::parse_rfc3339(s).expect_err(s);
            assert!(matches!(e, TimeError::OutOfRange(_)), "{s}: {e}");
            assert!(e.to_string().contains(SUPPORTED_RANGE), "{e}");
        }
        assert_eq!(Timestamp::parse_rfc3339("2262-04-11T23:47:16.854775807Z").expect("last instant"), Timestamp(i64::MAX));
        assert_eq!(Timestamp::parse_rfc3339("1677-09-21T00:12:43.145224192Z").expect("first instant"), Timestamp(i64::MIN));
        assert!(matches!(Timestamp::parse_rfc3339("yesterday"), Err(TimeError::Parse(_))));
        let year1 = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").expect("valid date");
        assert_eq!(Timestamp::from_datetime(year1), Timestamp(i64::MIN), "saturated, not wrapped to 1754");
    }
}
