//! One line of line protocol, read the way InfluxDB stores it: the lexical rules of InfluxData's
//! reference decoder (`github.com/influxdata/line-protocol`, whose test corpus
//! `model/tests/influx_corpus.rs` runs) and InfluxDB's storage rules on top (a field given twice
//! keeps its last value; a tag given twice is refused). Differences from InfluxDB, each with its
//! reason, are listed in docs/api.md, "Differences from InfluxDB".
//!
//! Escapes in names: only the characters that would end the name escape. In a measurement `\,`
//! and `\ `; in tag keys, tag values and field keys `\,`, `\=` and `\ `. Any other backslash is
//! itself, so `\\srv\share` is those ten characters, as Telegraf meant it. In string field values
//! `\\` is one backslash and `\"` a quote; any other backslash is itself.

use std::borrow::Cow;

use super::{FieldValueRef, LineError, LineSpan, Lines, Precision};
use crate::time::Timestamp;

/// Integers beyond this are refused: samples are stored as 64-bit floats (docs/api.md), which
/// hold every integer up to 2^53 exactly and would silently round larger ones.
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Where a name ends and which characters escape in it.
#[derive(Clone, Copy)]
enum Name {
    Measurement,
    /// Tag keys, tag values and field keys: the same rules.
    Key,
}

impl Name {
    fn ends_at(self, c: u8) -> bool {
        let control = c < 0x20 || c == 0x7f;
        match self {
            Name::Measurement => control || c == b',' || c == b' ',
            Name::Key => control || c == b',' || c == b' ' || c == b'=',
        }
    }
    fn escapes(self, c: u8) -> bool {
        match self {
            Name::Measurement => c == b',' || c == b' ',
            Name::Key => c == b',' || c == b' ' || c == b'=',
        }
    }
}

/// Parses one line (without its line break) into `out`, or leaves `out` as it was and says why.
pub(super) fn parse_line<'a>(text: &'a str, number: usize, precision: Precision, default_ts: Timestamp, out: &mut Lines<'a>) -> Result<(), LineError> {
    let (t0, f0) = (out.tags.len(), out.fields.len());
    let parsed = Reader { text, b: text.as_bytes(), i: 0 }.line(precision, default_ts, t0, f0, out);
    match parsed {
        Ok((measurement, ts)) => {
            out.lines.push(LineSpan { number, series_text: None, measurement, tags: (t0 as u32, out.tags.len() as u32), fields: (f0 as u32, out.fields.len() as u32), ts });
            Ok(())
        }
        Err(reason) => {
            out.tags.truncate(t0);
            out.fields.truncate(f0);
            Err(LineError { line: number, reason })
        }
    }
}

/// The time of a line without one: as InfluxDB, the server's time truncated to the request's
/// precision.
pub(super) fn default_time(default_ts: Timestamp, precision: Precision) -> Timestamp {
    Timestamp(default_ts.0 - default_ts.0.rem_euclid(precision.nanos()))
}

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn line(mut self, precision: Precision, default_ts: Timestamp, t0: usize, f0: usize, out: &mut Lines<'a>) -> Result<(Cow<'a, str>, Timestamp), String> {
        let measurement = self.required_name(Name::Measurement, "measurement")?;
        while self.peek() == Some(b',') {
            self.i += 1;
            let key = self.name(Name::Key);
            if key.is_empty() {
                return Err(format!("expected a tag key at byte {} of the line", self.i + 1));
            }
            if self.peek() != Some(b'=') {
                return Err(format!("expected '=' after tag key {:?}", excerpt(&key)));
            }
            self.i += 1;
            let value = self.name(Name::Key);
            if value.is_empty() {
                return Err(format!("tag {:?} has no value", excerpt(&key)));
            }
            check_name("tag key", &key)?;
            check_name("tag value", &value)?;
            out.tags.push((key, value));
        }
        match self.peek() {
            Some(b' ') => self.skip_spaces(),
            None => return Err("no fields".into()),
            Some(c) => return Err(format!("unexpected character {:?} after the tags", c as char)),
        }
        sort_unique_tags(&mut out.tags[t0..])?;
        self.fields(f0, out)?;
        let ts = match self.timestamp()? {
            Some(raw) => raw.checked_mul(precision.nanos()).map(Timestamp).ok_or_else(|| format!("timestamp {raw} overflows at precision {}", precision.as_str()))?,
            None => default_time(default_ts, precision),
        };
        Ok((measurement, ts))
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// A name that must be there and be one Kilowatch stores.
    fn required_name(&mut self, kind: Name, what: &str) -> Result<Cow<'a, str>, String> {
        let name = self.name(kind);
        if name.is_empty() {
            return Err(match self.peek() {
                None => format!("expected a {what}, found the end of the line"),
                Some(c) => format!("invalid character {:?} at the start of a {what}", c as char),
            });
        }
        check_name(what, &name)?;
        Ok(name)
    }

    /// A name up to its first unescaped end, unescaped.
    fn name(&mut self, kind: Name) -> Cow<'a, str> {
        let start = self.i;
        let mut owned: Option<String> = None;
        let mut run = start;
        while let Some(c) = self.peek() {
            if c == b'\\' && self.b.get(self.i + 1).is_some_and(|n| kind.escapes(*n)) {
                // Escapes are ASCII, so these slices fall on character boundaries.
                let s = owned.get_or_insert_with(String::new);
                s.push_str(&self.text[run..self.i]);
                s.push(self.b[self.i + 1] as char);
                self.i += 2;
                run = self.i;
                continue;
            }
            if c != b'\\' && kind.ends_at(c) {
                break;
            }
            self.i += 1;
        }
        match owned {
            Some(mut s) => {
                s.push_str(&self.text[run..self.i]);
                Cow::Owned(s)
            }
            None => Cow::Borrowed(&self.text[start..self.i]),
        }
    }

    fn fields(&mut self, f0: usize, out: &mut Lines<'a>) -> Result<(), String> {
        loop {
            let key = self.required_name(Name::Key, "field key")?;
            if self.peek() != Some(b'=') {
                return Err(format!("expected '=' after field key {:?}", excerpt(&key)));
            }
            self.i += 1;
            let value = self.value(&key)?;
            out.fields.push((key, value));
            match self.peek() {
                None => break,
                Some(b',') => self.i += 1,
                Some(b' ') => {
                    self.skip_spaces();
                    break;
                }
                Some(c) => return Err(format!("unexpected character {:?} after a field value", c as char)),
            }
        }
        keep_last_of_each_field(out, f0);
        Ok(())
    }

    fn value(&mut self, key: &str) -> Result<FieldValueRef<'a>, String> {
        let key = excerpt(key);
        match self.peek() {
            Some(b'"') => self.string(key),
            Some(b't' | b'T' | b'f' | b'F') => match self.bare() {
                "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValueRef::Bool(true)),
                "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValueRef::Bool(false)),
                other => Err(format!("field {key:?}: invalid boolean {:?}", excerpt(other))),
            },
            Some(b'-' | b'.' | b'0'..=b'9') => number(key, self.bare()),
            None | Some(b' ' | b',') => Err(format!("field {key:?} has no value")),
            Some(_) => Err(format!("field {key:?}: value {:?} has no type line protocol knows", excerpt(self.bare()))),
        }
    }

    /// A value up to the next ',' or white space.
    fn bare(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(|c| !matches!(c, b',' | b' ' | b'\r' | b'\n')) {
            self.i += 1;
        }
        &self.text[start..self.i]
    }

    fn string(&mut self, key: &str) -> Result<FieldValueRef<'a>, String> {
        let start = self.i + 1;
        let mut owned: Option<String> = None;
        let mut run = start;
        let mut j = start;
        loop {
            match self.b.get(j) {
                None => return Err(format!("field {key:?}: the string has no closing quote")),
                Some(b'"') => break,
                Some(b'\\') if matches!(self.b.get(j + 1), Some(b'\\' | b'"')) => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[run..j]);
                    s.push(self.b[j + 1] as char);
                    j += 2;
                    run = j;
                }
                Some(_) => j += 1,
            }
        }
        self.i = j + 1;
        Ok(FieldValueRef::Str(match owned {
            Some(mut s) => {
                s.push_str(&self.text[run..j]);
                Cow::Owned(s)
            }
            None => Cow::Borrowed(&self.text[start..j]),
        }))
    }

    /// The timestamp after the fields, if any; nothing but spaces may follow it.
    fn timestamp(&mut self) -> Result<Option<i64>, String> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let start = self.i;
        while self.peek().is_some_and(|c| c == b'-' || c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.text[start..self.i];
        if self.peek().is_some_and(|c| c != b' ') {
            return Err(format!("invalid timestamp {:?}", excerpt(&self.text[start..])));
        }
        self.skip_spaces();
        if self.i < self.b.len() {
            return Err(format!("unexpected text after the timestamp: {:?}", excerpt(&self.text[self.i..])));
        }
        digits.parse().map(Some).map_err(|_| format!("invalid timestamp {:?}", excerpt(digits)))
    }
}

/// `-?D+i`, `D+u`, or a decimal float (`1`, `-1.5`, `.5`, `1.`, `2e-3`), finite.
fn number<'a>(key: &str, s: &str) -> Result<FieldValueRef<'a>, String> {
    if let Some(d) = s.strip_suffix('i') {
        let v: i64 = d.parse().ok().filter(|_| is_integer(d, true)).ok_or_else(|| format!("field {key:?}: invalid integer {:?}", excerpt(s)))?;
        if v.unsigned_abs() > MAX_EXACT_INTEGER {
            return Err(too_large(key, s));
        }
        return Ok(FieldValueRef::I64(v));
    }
    if let Some(d) = s.strip_suffix('u') {
        let v: u64 = d.parse().ok().filter(|_| is_integer(d, false)).ok_or_else(|| format!("field {key:?}: invalid unsigned integer {:?}", excerpt(s)))?;
        if v > MAX_EXACT_INTEGER {
            return Err(too_large(key, s));
        }
        return Ok(FieldValueRef::U64(v));
    }
    if !is_decimal_float(s) {
        return Err(format!("field {key:?}: invalid number {:?}", excerpt(s)));
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(FieldValueRef::F64(f)),
        _ => Err(format!("field {key:?} is not a finite number: {:?}", excerpt(s))),
    }
}

fn too_large(key: &str, s: &str) -> String {
    format!("field {key:?}: integer {} is beyond 2^53, which a stored sample (a 64-bit float) cannot hold exactly", excerpt(s))
}

fn is_integer(d: &str, signed: bool) -> bool {
    let digits = if signed { d.strip_prefix('-').unwrap_or(d) } else { d };
    !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
}

/// `-?(D+.?D*|.D+)([eE][+-]?D+)?`: the decimal spellings Go's `ParseFloat` reads (Rust's parser
/// would also read `inf` and `nan`, which start with letters and never get here).
fn is_decimal_float(s: &str) -> bool {
    let b = s.strip_prefix('-').unwrap_or(s).as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(0);
    let mut j = int;
    let mut frac = 0;
    if b.get(j) == Some(&b'.') {
        frac = digits(j + 1);
        j += 1 + frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp = digits(j);
        if exp == 0 {
            return false;
        }
        j += exp;
    }
    j == b.len()
}

/// The start of a piece of a line for an error message: a line can be megabytes long.
fn excerpt(s: &str) -> &str {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Sorts a line's tags by key, as `Labels` holds them; a key given twice refuses the line (its
/// series would depend on which one a reader kept).
fn sort_unique_tags(tags: &mut [(Cow<'_, str>, Cow<'_, str>)]) -> Result<(), String> {
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    match tags.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(format!("tag key {:?} appears twice", excerpt(&w[0].0))),
        None => Ok(()),
    }
}

/// A field given twice keeps its last value, as InfluxDB stores it, at its first place.
fn keep_last_of_each_field(out: &mut Lines<'_>, f0: usize) {
    let fields = &mut out.fields[f0..];
    if fields.len() < 2 {
        return;
    }
    // Sorted positions group equal keys, the last one of each group last (a stable sort): linear
    // enough for a line of a million fields, which a comparison of each pair is not.
    let mut order: Vec<usize> = (0..fields.len()).collect();
    order.sort_by(|a, b| fields[*a].0.cmp(&fields[*b].0));
    let mut keep = vec![true; fields.len()];
    let mut any = false;
    let mut g = 0;
    while g < order.len() {
        let mut e = g + 1;
        while e < order.len() && fields[order[e]].0 == fields[order[g]].0 {
            keep[order[e]] = false;
            e += 1;
        }
        if e > g + 1 {
            // The group's first place takes its last value.
            fields.swap(order[g], order[e - 1]);
            any = true;
        }
        g = e;
    }
    if any {
        let mut k = keep.into_iter();
        // `retain` walks every field of the batch, the earlier lines' ones first.
        let mut idx = 0;
        out.fields.retain(|_| {
            let r = idx < f0 || k.next().unwrap_or(true);
            idx += 1;
            r
        });
    }
}

/// Names that Kilowatch refuses where InfluxDB would take them: control characters (the
/// lexical rules stop names at ASCII ones; C1 controls would break the log lines and CSV
/// reports that show names), or a backslash at the end (no escaping writes it back: the
/// character that follows it in a line would read as escaped).
fn check_name(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{what} {:?} contains a control character", excerpt(s)));
    }
    if s.ends_with('\\') {
        return Err(format!("{what} {:?} ends with a backslash", excerpt(s)));
    }
    Ok(())
}
