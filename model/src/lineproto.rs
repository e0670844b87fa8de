//! InfluxDB line protocol, the lingua franca of the wire schema. Parsing and escaping are
//! InfluxData's own `influxdb-line-protocol` crate (a port of the Go reference parser); this
//! module adds what Kilowatch needs on top: line numbers in errors, timestamp precisions,
//! and conversion to and from [`Point`].

use std::fmt;
use std::str::FromStr;

use influxdb_line_protocol as ilp;
use influxdb_line_protocol::builder::{AfterField, LineProtocolBuilder};

use crate::point::{FieldValue, Labels, Point};
use crate::time::Timestamp;

/// The unit of the timestamps in a write request (`precision=` on `/api/v2/write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ns" | "n" => Ok(Precision::Ns),
            "us" | "u" | "µs" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            other => Err(format!("unknown precision {other:?}: expected ns, us, ms or s")),
        }
    }
}

/// Why one line of a request was rejected. `line` counts from 1 as an editor does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Parses a whole request body. The first bad line rejects the whole body: a write is
/// accepted whole or not at all, so the caller never stores half a request.
/// Lines without a timestamp get `default_ts` (the server's receive time).
pub fn parse_lines(body: &str, precision: Precision, default_ts: Timestamp) -> Result<Vec<Point>, LineError> {
    let mut points = Vec::with_capacity(body.len() / 96 + 1);
    for (idx, raw) in ilp::split_lines(body).enumerate() {
        let line = idx + 1;
        let trimmed = raw.trim_start_matches([' ', '\t', '\r']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // `split_lines` keeps a trailing '\r' from CRLF bodies; the parser would take it as
        // part of the timestamp.
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        let mut parsed = ilp::parse_lines(text);
        let parsed = match parsed.next() {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(LineError { line, reason: e.to_string() }),
            None => continue,
        };
        points.push(convert(parsed, line, precision, default_ts)?);
    }
    Ok(points)
}

fn convert(p: ilp::ParsedLine<'_>, line: usize, precision: Precision, default_ts: Timestamp) -> Result<Point, LineError> {
    let err = |reason: String| LineError { line, reason };
    let measurement = p.series.measurement.as_str();
    if measurement.is_empty() {
        return Err(err("empty measurement name".into()));
    }
    check_name("measurement", measurement).map_err(err)?;
    let mut tags = Labels::new();
    if let Some(tag_set) = &p.series.tag_set {
        for (k, v) in tag_set {
            if k.as_str().is_empty() || v.as_str().is_empty() {
                return Err(err(format!("tag {:?} has an empty key or value", k.as_str())));
            }
            check_name("tag key", k.as_str()).map_err(err)?;
            check_name("tag value", v.as_str()).map_err(err)?;
            tags.insert(k.as_str().to_owned(), v.as_str().to_owned());
        }
    }
    let mut fields = Vec::with_capacity(p.field_set.len());
    for (k, v) in &p.field_set {
        let key = k.as_str();
        check_name("field key", key).map_err(err)?;
        if fields.iter().any(|(f, _): &(String, FieldValue)| f == key) {
            return Err(err(format!("field {key:?} appears twice")));
        }
        let value = match v {
            ilp::FieldValue::F64(f) if !f.is_finite() => {
                return Err(err(format!("field {key:?} is not a finite number")));
            }
            ilp::FieldValue::F64(f) => FieldValue::F64(*f),
            ilp::FieldValue::I64(i) => FieldValue::I64(*i),
            ilp::FieldValue::U64(u) => FieldValue::U64(*u),
            ilp::FieldValue::Boolean(b) => FieldValue::Bool(*b),
            ilp::FieldValue::String(s) => FieldValue::Str(s.as_str().to_owned()),
        };
        fields.push((key.to_owned(), value));
    }
    let ts = match p.timestamp {
        Some(raw) => raw
            .checked_mul(precision.nanos())
            .map(Timestamp)
            .ok_or_else(|| err(format!("timestamp {raw} overflows at precision {}", precision.as_str())))?,
        None => default_ts,
    };
    Ok(Point { measurement: measurement.to_owned(), tags, fields, ts })
}

/// Names that no line-protocol parser reads back the same: control characters (line breaks,
/// NUL, which parsers take as the end of the text), or a backslash at the end (the reference
/// parser refuses it however it is escaped).
fn check_name(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{what} {s:?} contains a control character"));
    }
    if s.ends_with('\\') {
        return Err(format!("{what} {s:?} ends with a backslash"));
    }
    Ok(())
}

/// Encodes points as line protocol, one line each, timestamps in `precision` (truncated).
/// Non-finite floats are left out: line protocol has no spelling for them. A point left with
/// no field at all is left out entirely.
pub fn encode_points(points: &[Point], precision: Precision) -> String {
    let mut out = Vec::with_capacity(points.len() * 128);
    for p in points {
        out = encode_one(out, p, precision);
    }
    // The builder only ever writes the `str`s and number formats it is given.
    String::from_utf8(out).unwrap_or_default()
}

fn encode_one(buf: Vec<u8>, p: &Point, precision: Precision) -> Vec<u8> {
    let mut fields = p.fields.iter().filter(|(_, v)| !matches!(v, FieldValue::F64(f) if !f.is_finite()));
    let Some((k0, v0)) = fields.next() else { return buf };
    let mut b = LineProtocolBuilder::new_with(buf).measurement(&p.measurement);
    for (k, v) in &p.tags {
        b = b.tag(k, v);
    }
    let mut b = add_field(b, k0, v0);
    for (k, v) in fields {
        b = add_field(b, k, v);
    }
    b.timestamp(p.ts.0.div_euclid(precision.nanos())).close_line().build()
}

fn add_field<S>(b: LineProtocolBuilder<Vec<u8>, S>, k: &str, v: &FieldValue) -> LineProtocolBuilder<Vec<u8>, AfterField>
where
    LineProtocolBuilder<Vec<u8>, S>: FieldAdder,
{
    match v {
        FieldValue::F64(f) => b.add(k, *f),
        FieldValue::I64(i) => b.add(k, *i),
        FieldValue::U64(u) => b.add(k, *u),
        FieldValue::Bool(x) => b.add(k, *x),
        FieldValue::Str(s) => b.add(k, s.as_str()),
    }
}

/// The builder's typestate has two `field` methods (first field, further fields); this trait
/// lets one function call either.
trait FieldAdder {
    fn add<F: ilp::builder::FieldValue>(self, k: &str, v: F) -> LineProtocolBuilder<Vec<u8>, AfterField>;
}
impl FieldAdder for LineProtocolBuilder<Vec<u8>, ilp::builder::AfterMeasurement> {
    fn add<F: ilp::builder::FieldValue>(self, k: &str, v: F) -> LineProtocolBuilder<Vec<u8>, AfterField> {
        self.field(k, v)
    }
}
impl FieldAdder for LineProtocolBuilder<Vec<u8>, AfterField> {
    fn add<F: ilp::builder::FieldValue>(self, k: &str, v: F) -> LineProtocolBuilder<Vec<u8>, AfterField> {
        self.field(k, v)
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(encode_points(std::slice::from_ref(self), Precision::Ns).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(0);

    #[test]
    fn parses_wire_schema_lines() {
        let body = "gpu,site=dc5,node=dgx-001,gpu=0 power_w=512.5,energy_mj=123456789i,mode=\"free\" 1700000000000000000\n\
                    meter,site=dc5,meter=grid-a,role=facility energy_kwh=1234567.8 1700000000000000000\n";
        let pts = parse_lines(body, Precision::Ns, T0).expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].measurement, "gpu");
        assert_eq!(pts[0].tag_value("node"), Some("dgx-001"));
        assert_eq!(pts[0].get("energy_mj"), Some(&FieldValue::I64(123_456_789)));
        assert_eq!(pts[0].get("mode"), Some(&FieldValue::Str("free".into())));
        assert_eq!(pts[1].get_f64("energy_kwh"), Some(1_234_567.8));
        assert_eq!(pts[1].ts, Timestamp(1_700_000_000_000_000_000));
    }

    #[test]
    fn precisions_scale_timestamps() {
        for (p, raw) in [(Precision::S, "1700000000"), (Precision::Ms, "1700000000000"), (Precision::Us, "1700000000000000"), (Precision::Ns, "1700000000000000000")] {
            let pts = parse_lines(&format!("m v=1 {raw}"), p, T0).expect("valid");
            assert_eq!(pts[0].ts, Timestamp::from_secs(1_700_000_000), "{p:?}");
        }
        let e = parse_lines("m v=1 9223372036854775", Precision::S, T0).expect_err("overflow");
        assert!(e.reason.contains("overflows"), "{e}");
    }

    #[test]
    fn missing_timestamp_takes_default() {
        let pts = parse_lines("m v=1", Precision::Ns, Timestamp(42)).expect("valid");
        assert_eq!(pts[0].ts, Timestamp(42));
    }

    #[test]
    fn errors_name_the_line() {
        let body = "# a comment\nm v=1 1\n\nm,t=a v=oops 2\n";
        let e = parse_lines(body, Precision::Ns, T0).expect_err("bad line");
        assert_eq!(e.line, 4, "{e}");
        let e = parse_lines("m 1", Precision::Ns, T0).expect_err("no field");
        assert_eq!(e.line, 1);
        let e = parse_lines("m v=1,v=2 1", Precision::Ns, T0).expect_err("dup field");
        assert!(e.reason.contains("twice"));
    }

    #[test]
    fn escaping_round_trips() {
        let p = Point::new("my measurement,x", Timestamp(7))
            .tag("tag key", "va=l,ue with space")
            .field("field=key", "a \"quoted\" \\ string")
            .field("n", 1.5);
        let text = encode_points(std::slice::from_ref(&p), Precision::Ns);
        assert_eq!(text, "my\\ measurement\\,x,tag\\ key=va\\=l\\,ue\\ with\\ space field\\=key=\"a \\\"quoted\\\" \\\\ string\",n=1.5 7\n");
        let back = parse_lines(&text, Precision::Ns, T0).expect("valid");
        assert_eq!(back, vec![p]);
    }

    #[test]
    fn backslashes_in_names_round_trip() {
        // Found by the fuzz target. A backslash before an ordinary character is itself.
        let pts = parse_lines("m\\%x,t=a\\\\b f\\y=1 1", Precision::Ns, T0).expect("valid");
        assert_eq!(pts[0].measurement, "m\\%x");
        let again = encode_points(&pts, Precision::Ns);
        assert_eq!(parse_lines(&again, Precision::Ns, T0).expect("valid"), pts);
        let e = parse_lines("m,t=a\\\\ v=1 1", Precision::Ns, T0).expect_err("ends with a backslash");
        assert!(e.reason.contains("backslash"), "{e}");
    }

    #[test]
    fn crlf_bodies_parse() {
        let pts = parse_lines("m v=1 1\r\nm v=2 2\r\n", Precision::Ns, T0).expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1].ts, Timestamp(2));
    }

    #[test]
    fn encoding_skips_non_finite() {
        let p = Point::new("m", Timestamp(1)).field("a", f64::NAN).field("b", 2i64);
        assert_eq!(encode_points(&[p], Precision::Ns), "m b=2i 1\n");
        let p = Point::new("m", Timestamp(1)).field("a", f64::INFINITY);
        assert_eq!(encode_points(&[p], Precision::Ns), "");
    }
}
