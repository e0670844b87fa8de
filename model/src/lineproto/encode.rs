//! Points to line protocol, written so that InfluxDB stores exactly these names and values.
//!
//! Field values are written by InfluxData's `influxdb-line-protocol` crate (quotes and
//! backslashes in strings escaped, integers with `i`/`u`). Names are escaped here: the crate's
//! builder also writes a backslash in a name as `\\`, which InfluxDB reads as two backslashes
//! (only `\,` `\=` `\ ` escape in names), so `va\lue` would arrive as `va\\lue`.

use std::fmt::{self, Write as _};

use influxdb_line_protocol::builder::FieldValue as WireValue;

use super::Precision;
use crate::point::{FieldValue, Point};

/// Encodes points as line protocol, one line each, timestamps in `precision` (truncated).
/// Non-finite floats are left out: line protocol has no spelling for them. A point left with
/// no field at all is left out entirely.
pub fn encode_points(points: &[Point], precision: Precision) -> String {
    let mut out = String::with_capacity(points.len() * 128);
    for p in points {
        encode_one(&mut out, p, precision);
    }
    out
}

fn encode_one(out: &mut String, p: &Point, precision: Precision) {
    let mut fields = p.fields.iter().filter(|(_, v)| !matches!(v, FieldValue::F64(f) if !f.is_finite())).peekable();
    if fields.peek().is_none() {
        return;
    }
    push_name(out, &p.measurement, &[',', ' ']);
    for (k, v) in &p.tags {
        out.push(',');
        push_name(out, k, KEY_ESCAPES);
        out.push('=');
        push_name(out, v, KEY_ESCAPES);
    }
    for (i, (k, v)) in fields.enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        push_name(out, k, KEY_ESCAPES);
        out.push('=');
        // Writing into a String cannot fail.
        let _ = write!(out, "{}", Value(v));
    }
    let _ = writeln!(out, " {}", p.ts.0.div_euclid(precision.nanos()));
}

/// What escapes in tag keys, tag values and field keys.
const KEY_ESCAPES: &[char] = &[',', '=', ' '];

/// A name with the characters that would end it escaped, and nothing else: a backslash before
/// any other character is read as itself. (A backslash at the end of a name could not be
/// written; the parser refuses such names, so no stored point has one.)
fn push_name(out: &mut String, name: &str, escapes: &[char]) {
    for c in name.chars() {
        if escapes.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

struct Value<'a>(&'a FieldValue);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            FieldValue::F64(x) => WireValue::fmt(x, f),
            FieldValue::I64(x) => WireValue::fmt(x, f),
            FieldValue::U64(x) => WireValue::fmt(x, f),
            FieldValue::Bool(x) => WireValue::fmt(x, f),
            FieldValue::Str(s) => WireValue::fmt(&s.as_str(), f),
        }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(encode_points(std::slice::from_ref(self), Precision::Ns).trim_end())
    }
}
