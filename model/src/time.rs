use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC. Line protocol's native resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Timestamp {
    pub fn from_secs(s: i64) -> Self {
        Timestamp(s * NANOS_PER_SEC)
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
    pub fn from_datetime<Tz: TimeZone>(dt: DateTime<Tz>) -> Self {
        let utc = dt.with_timezone(&Utc);
        Timestamp(utc.timestamp() * NANOS_PER_SEC + i64::from(utc.timestamp_subsec_nanos()))
    }
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0.div_euclid(NANOS_PER_SEC), self.0.rem_euclid(NANOS_PER_SEC) as u32)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
    pub fn parse_rfc3339(s: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(Self::from_datetime)
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
        (self.to.0 - self.from.0) as f64 / NANOS_PER_SEC as f64
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
}
