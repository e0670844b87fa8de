//! What the write-ahead log holds for one accepted write. A request that arrived as line
//! protocol is kept as its body, byte for byte, with what is needed to read it again the same
//! way (precision, the time given to lines without one, the lines the policy refused): the hot
//! path copies it and encodes nothing. Writes of built points (the demo, the simulator, tests)
//! are kept as their lines' names and values.
//!
//! Replay parses a body with the same parser, skips the refused lines and applies the rest
//! without judging them again: the clock and the policy at replay time play no part.

use kilowatch_model::{FieldValue, FieldValueRef, Lines, LinesBuffers, Point, Precision, Timestamp, parse_batch_lenient_into};

use super::Value;
use super::codec::{CorruptRecord, Reader, get_value, put_ivarint, put_uvarint, put_value};

const BODY: u8 = 1;
const POINTS: u8 = 2;

fn precision_code(p: Precision) -> u8 {
    match p {
        Precision::Ns => 0,
        Precision::Us => 1,
        Precision::Ms => 2,
        Precision::S => 3,
        Precision::M => 4,
        Precision::H => 5,
    }
}

fn precision_of(c: u8) -> Result<Precision, CorruptRecord> {
    Ok(match c {
        0 => Precision::Ns,
        1 => Precision::Us,
        2 => Precision::Ms,
        3 => Precision::S,
        4 => Precision::M,
        5 => Precision::H,
        _ => return Err(CorruptRecord("unknown precision")),
    })
}

/// A request body as it was parsed: the store logs it instead of re-encoding its samples.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    pub text: &'a str,
    pub precision: Precision,
    /// The time given to lines without a timestamp.
    pub default_ts: Timestamp,
}

fn put_skip(buf: &mut Vec<u8>, skip: &[usize]) {
    put_uvarint(buf, skip.len() as u64);
    for s in skip {
        put_uvarint(buf, *s as u64);
    }
}

/// The record of a body without the body itself: the log appends the body after it, from the
/// request's own bytes.
pub fn encode_body_head(buf: &mut Vec<u8>, body: &Body<'_>, skip: &[usize]) {
    buf.clear();
    buf.push(BODY);
    buf.push(precision_code(body.precision));
    put_ivarint(buf, body.default_ts.0);
    put_skip(buf, skip);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Lines built from points, each with the value the store keeps for each field.
pub fn encode_lines(buf: &mut Vec<u8>, lines: &Lines<'_>, skip: &[usize]) {
    buf.clear();
    buf.push(POINTS);
    put_skip(buf, skip);
    put_uvarint(buf, lines.len() as u64);
    for l in lines.iter() {
        put_str(buf, l.measurement());
        put_uvarint(buf, l.tags().len() as u64);
        for (k, v) in l.tags() {
            put_str(buf, k);
            put_str(buf, v);
        }
        put_uvarint(buf, l.fields().len() as u64);
        for (k, v) in l.fields() {
            put_str(buf, k);
            put_value(buf, &stored_value(v));
        }
        put_ivarint(buf, l.ts().0);
    }
}

/// The value the store keeps for a field: text as text, every other type as a number.
pub fn stored_value(v: &FieldValueRef<'_>) -> Value {
    match v {
        FieldValueRef::Str(s) => Value::Text(s.to_string()),
        // as_f64 is Some for every non-string variant.
        other => Value::Num(other.as_f64().unwrap_or(f64::NAN)),
    }
}

/// A decoded record, ready to be parsed into lines again.
pub enum Decoded<'a> {
    Body { body: Body<'a>, skip: Vec<usize> },
    Points { points: Vec<Point>, skip: Vec<usize> },
}

fn get_str<'a>(r: &mut Reader<'a>) -> Result<&'a str, CorruptRecord> {
    let n = r.uvarint()? as usize;
    std::str::from_utf8(r.bytes(n)?).map_err(|_| CorruptRecord("name is not UTF-8"))
}

fn get_skip(r: &mut Reader<'_>) -> Result<Vec<usize>, CorruptRecord> {
    let n = r.uvarint()? as usize;
    (0..n).map(|_| r.uvarint().map(|v| v as usize)).collect::<Result<Vec<_>, _>>()
}

pub fn decode(data: &[u8]) -> Result<Decoded<'_>, CorruptRecord> {
    let mut r = Reader::new(data);
    match r.bytes(1)?[0] {
        BODY => {
            let precision = precision_of(r.bytes(1)?[0])?;
            let default_ts = Timestamp(r.ivarint()?);
            let skip = get_skip(&mut r)?;
            let text = std::str::from_utf8(r.rest()).map_err(|_| CorruptRecord("logged body is not UTF-8"))?;
            Ok(Decoded::Body { body: Body { text, precision, default_ts }, skip })
        }
        POINTS => {
            let skip = get_skip(&mut r)?;
            let n = r.uvarint()? as usize;
            let mut points = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let measurement = get_str(&mut r)?.to_owned();
                let mut p = Point::new(measurement, Timestamp(0));
                for _ in 0..r.uvarint()? {
                    let (k, v) = (get_str(&mut r)?, get_str(&mut r)?);
                    p.tags.insert(k.to_owned(), v.to_owned());
                }
                for _ in 0..r.uvarint()? {
                    let k = get_str(&mut r)?.to_owned();
                    let v = match get_value(&mut r)? {
                        Value::Num(f) => FieldValue::F64(f),
                        Value::Text(s) => FieldValue::Str(s),
                    };
                    p.fields.push((k, v));
                }
                p.ts = Timestamp(r.ivarint()?);
                points.push(p);
            }
            Ok(Decoded::Points { points, skip })
        }
        _ => Err(CorruptRecord("unknown log record kind")),
    }
}

/// Parses a decoded body again, as the write did. A line this version's parser refuses is
/// passed over, not the body: a body logged by an older version that accepted it (a duplicate
/// tag key, an integer beyond 2^53) must not stop the store from opening after an upgrade. The
/// other lines keep their numbers, so the record's `skip` list still points at the right ones.
pub fn reparse<'a>(body: &Body<'a>) -> Result<Lines<'a>, CorruptRecord> {
    let (lines, skipped) = parse_batch_lenient_into(body.text, body.precision, body.default_ts, LinesBuffers::default());
    if skipped.count > 0 {
        tracing::warn!(lines = skipped.count, first = ?skipped.first.first().map(|e| e.line), "a logged body holds lines this version refuses; replayed without them");
    }
    Ok(lines)
}
