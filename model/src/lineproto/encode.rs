//! Points to line protocol, through InfluxData's builder (which does the escaping).

use std::fmt;

use influxdb_line_protocol as ilp;
use influxdb_line_protocol::builder::{AfterField, LineProtocolBuilder};

use super::Precision;
use crate::point::{FieldValue, Point};

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
