//! The fast path of the parser: plain lines (no escapes, unique tag and field keys, the common
//! number spellings) read with fewer checks. Anything else returns false and goes to the
//! per-line rules of `line.rs`, so every value and error stays theirs; a differential test and
//! the `line_protocol` fuzz target hold the two to the same answers.

use std::borrow::Cow;

use super::line::{MAX_EXACT_INTEGER, default_time};
use super::{FieldValueRef, LineSpan, Lines, Precision};
use crate::time::Timestamp;

/// Bytes the fast path accepts in names: printable ASCII except the characters line protocol
/// gives a meaning to somewhere (`,` `=` `\` `"` space). Anything else is left to the
/// reference parser.
pub(super) const NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = !matches!(b as u8, b',' | b'=' | b'\\' | b'"');
        b += 1;
    }
    t
};

/// Fields of a line the fast path reads; past this the slow path dedupes them in O(n log n).
const MAX_FIELDS: usize = 64;

/// Parses a plain line into `out`, or returns false having added nothing, for the reference
/// parser to decide. True only where the reference parser would produce the same values.
pub(super) fn parse_fast<'a>(text: &'a str, number: usize, precision: Precision, default_ts: Timestamp, out: &mut Lines<'a>) -> bool {
    let (t0, f0) = (out.tags.len(), out.fields.len());
    let ok = parse_fast_inner(text, number, precision, default_ts, out);
    if !ok {
        out.tags.truncate(t0);
        out.fields.truncate(f0);
    }
    ok
}

fn parse_fast_inner<'a>(text: &'a str, number: usize, precision: Precision, default_ts: Timestamp, out: &mut Lines<'a>) -> bool {
    let b = text.as_bytes();
    // Measurement: up to ',' or ' '.
    let mut i = name_end(b, 0);
    if i == 0 || i >= b.len() {
        return false;
    }
    let measurement = &text[..i];
    let t0 = out.tags.len();
    let mut sorted = true;
    while b[i] == b',' {
        let k = i + 1;
        let ke = name_end(b, k);
        if ke == k || b.get(ke) != Some(&b'=') {
            return false;
        }
        let v = ke + 1;
        let ve = name_end(b, v);
        if ve == v || ve >= b.len() {
            return false;
        }
        let key = &text[k..ke];
        if out.tags[t0..].last().is_some_and(|(p, _)| p.as_ref() >= key) {
            sorted = false;
        }
        out.tags.push((Cow::Borrowed(key), Cow::Borrowed(&text[v..ve])));
        i = ve;
    }
    // Tags in any order are sorted here, as Labels holds them (senders that do not sort their
    // tags, as the reference client does, would otherwise take the slow path on every line);
    // a key given twice is left to the reference parser.
    if !sorted {
        out.tags[t0..].sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if out.tags[t0..].windows(2).any(|w| w[0].0 == w[1].0) {
            return false;
        }
    }
    if b[i] != b' ' {
        return false;
    }
    let series_end = i;
    let f0 = out.fields.len();
    loop {
        let k = i + 1;
        let ke = name_end(b, k);
        if ke == k || b.get(ke) != Some(&b'=') {
            return false;
        }
        let key = &text[k..ke];
        // A key given twice (last wins) and lines of many fields (where this check would cost a
        // comparison per pair) are the slow path's.
        if out.fields.len() - f0 >= MAX_FIELDS || out.fields[f0..].iter().any(|(f, _)| f == key) {
            return false;
        }
        let v = ke + 1;
        let (value, ve) = if b.get(v) == Some(&b'"') {
            // A string without escapes or control characters.
            let Some(len) = b[v + 1..].iter().position(|c| *c == b'"' || *c == b'\\' || *c < 0x20) else { return false };
            let end = v + 1 + len;
            if b[end] != b'"' {
                return false;
            }
            (FieldValueRef::Str(Cow::Borrowed(&text[v + 1..end])), end + 1)
        } else {
            let ve = b[v..].iter().position(|c| *c == b',' || *c == b' ').map_or(b.len(), |n| v + n);
            match number_value(&text[v..ve]) {
                Some(x) => (x, ve),
                None => return false,
            }
        };
        out.fields.push((Cow::Borrowed(key), value));
        i = ve;
        if i >= b.len() || b[i] != b',' {
            break;
        }
    }
    let ts = if i >= b.len() {
        default_time(default_ts, precision)
    } else {
        // One space, then an integer to the end of the line.
        if b[i] != b' ' {
            return false;
        }
        let digits = &text[i + 1..];
        let unsigned = digits.strip_prefix('-').unwrap_or(digits);
        if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
        match digits.parse::<i64>().ok().and_then(|raw| raw.checked_mul(precision.nanos())) {
            Some(ns) => Timestamp(ns),
            None => return false,
        }
    };
    out.lines.push(LineSpan {
        number,
        series_text: Some(&text[..series_end]),
        measurement: Cow::Borrowed(measurement),
        tags: (t0 as u32, out.tags.len() as u32),
        fields: (f0 as u32, out.fields.len() as u32),
        ts,
    });
    true
}

/// The end of a run of name bytes starting at `from`.
fn name_end(b: &[u8], from: usize) -> usize {
    b[from.min(b.len())..].iter().position(|c| !NAME[*c as usize]).map_or(b.len(), |n| from + n)
}

/// A field value that is not a string, in the spellings of the reference grammar only:
/// `-?D+i`, `D+u`, `-?D+(.D+)?([eE][+-]?D+)?` and the ten boolean words. A finite float only:
/// the reference parser's answer to others is an error, which the slow path gives.
fn number_value(s: &str) -> Option<FieldValueRef<'static>> {
    let b = s.as_bytes();
    match b.last()? {
        b'i' => {
            let d = &s[..s.len() - 1];
            let u = d.strip_prefix('-').unwrap_or(d);
            if u.is_empty() || !u.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            // Past 2^53 the slow path refuses the line, naming why.
            return d.parse::<i64>().ok().filter(|v| v.unsigned_abs() <= MAX_EXACT_INTEGER).map(FieldValueRef::I64);
        }
        b'u' => {
            let d = &s[..s.len() - 1];
            if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            return d.parse::<u64>().ok().filter(|v| *v <= MAX_EXACT_INTEGER).map(FieldValueRef::U64);
        }
        _ => {}
    }
    match s {
        "t" | "T" | "true" | "True" | "TRUE" => return Some(FieldValueRef::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Some(FieldValueRef::Bool(false)),
        _ => {}
    }
    let digits = |mut j: usize| {
        let start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        (j > start).then_some(j)
    };
    let mut j = usize::from(b.first() == Some(&b'-'));
    j = digits(j)?;
    if b.get(j) == Some(&b'.') {
        j = digits(j + 1)?;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        j = digits(j)?;
    }
    if j != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite()).map(FieldValueRef::F64)
}
