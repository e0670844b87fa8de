//! InfluxDB line protocol, the lingua franca of the wire schema, read as InfluxDB stores it.
//! Lines are split by `split.rs` (InfluxDB's `scanLine` with the escapes its name parsers use); what each line
//! means is `line.rs` (InfluxData's reference decoder's rules, held to its test corpus by
//! `tests/influx_corpus.rs`; that crate's own parser reads `\\` in a name as one backslash,
//! which InfluxDB does not). `parse_batch` tries `fast.rs` on each line first; `encode.rs` writes
//! points back out. Also: line numbers in errors, timestamp precisions, conversion to and from
//! [`Point`].

use std::borrow::Cow;
use std::str::FromStr;

use crate::point::{FieldValue, Point};
use crate::time::Timestamp;

mod encode;
mod fast;
mod line;
mod split;

pub use encode::encode_points;
use fast::{NAME, parse_fast};
pub use line::MAX_EXACT_INTEGER;

/// The unit of the timestamps in a write request (`precision=` on `/api/v2/write` and the v1
/// `/write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Ns,
    Us,
    Ms,
    S,
    /// Minutes: InfluxDB 1.x's `precision=m`.
    M,
    /// Hours: InfluxDB 1.x's `precision=h`.
    H,
}

impl Precision {
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
            Precision::M => 60_000_000_000,
            Precision::H => 3_600_000_000_000,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
            Precision::M => "m",
            Precision::H => "h",
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    /// InfluxDB 2's spellings and 1.x's (`n`, `u`, `ms`, `s`, `m`, `h`); empty is nanoseconds,
    /// as both read `precision=`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ns" | "n" | "" => Ok(Precision::Ns),
            "us" | "u" | "µs" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            "m" => Ok(Precision::M),
            "h" => Ok(Precision::H),
            other => Err(format!("unknown precision {other:?}: expected ns, us, ms, s (or InfluxDB 1.x's n, u, ms, s, m, h)")),
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
    parse_batch(body, precision, default_ts).map(|b| b.to_points())
}

/// [`parse_lines`] with the per-line rules alone (`line.rs`), line by line: the reference that
/// the fast path of [`parse_batch`] must agree with (checked by tests and the fuzz target).
#[doc(hidden)]
pub fn parse_lines_reference(body: &str, precision: Precision, default_ts: Timestamp) -> Result<Vec<Point>, LineError> {
    let mut out = Lines::default();
    for (idx, raw) in split::split_lines(body).enumerate() {
        parse_slow(raw, idx + 1, precision, default_ts, &mut out)?;
    }
    Ok(out.to_points())
}

/// One field value as parsed, borrowing string values from the body where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValueRef<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(Cow<'a, str>),
}

impl FieldValueRef<'_> {
    /// The numeric value, where there is one: a boolean is 1 or 0. Exact for every value the
    /// parser accepts (it refuses integers beyond [`MAX_EXACT_INTEGER`]).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FieldValueRef::F64(v) => Some(*v),
            FieldValueRef::I64(v) => Some(*v as f64),
            FieldValueRef::U64(v) => Some(*v as f64),
            FieldValueRef::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            FieldValueRef::Str(_) => None,
        }
    }
    fn to_owned_value(&self) -> FieldValue {
        match self {
            FieldValueRef::F64(v) => FieldValue::F64(*v),
            FieldValueRef::I64(v) => FieldValue::I64(*v),
            FieldValueRef::U64(v) => FieldValue::U64(*v),
            FieldValueRef::Bool(b) => FieldValue::Bool(*b),
            FieldValueRef::Str(s) => FieldValue::Str(s.clone().into_owned()),
        }
    }
}

impl<'a> From<&'a FieldValue> for FieldValueRef<'a> {
    fn from(v: &'a FieldValue) -> Self {
        match v {
            FieldValue::F64(v) => FieldValueRef::F64(*v),
            FieldValue::I64(v) => FieldValueRef::I64(*v),
            FieldValue::U64(v) => FieldValueRef::U64(*v),
            FieldValue::Bool(b) => FieldValueRef::Bool(*b),
            FieldValue::Str(s) => FieldValueRef::Str(Cow::Borrowed(s)),
        }
    }
}

#[derive(Debug)]
struct LineSpan<'a> {
    number: usize,
    series_text: Option<&'a str>,
    measurement: Cow<'a, str>,
    tags: (u32, u32),
    fields: (u32, u32),
    ts: Timestamp,
}

/// A parsed request: the same content as `Vec<Point>`, but borrowing names and strings from
/// the body and keeping all tags and fields in two flat vectors, so that parsing a line
/// allocates nothing (the ingest path's per-line `String`s and maps cost more than parsing).
/// Tags of each line are sorted by key and unique, as in [`Labels`].
#[derive(Debug, Default)]
pub struct Lines<'a> {
    lines: Vec<LineSpan<'a>>,
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: Vec<(Cow<'a, str>, FieldValueRef<'a>)>,
}

/// One line of a [`Lines`].
#[derive(Debug, Clone, Copy)]
pub struct Line<'l, 'a> {
    span: &'l LineSpan<'a>,
    tags: &'l [(Cow<'a, str>, Cow<'a, str>)],
    fields: &'l [(Cow<'a, str>, FieldValueRef<'a>)],
}

impl<'l, 'a> Line<'l, 'a> {
    /// The line's number in the request body, from 1 (for points: their index + 1).
    pub fn number(&self) -> usize {
        self.span.number
    }
    /// The measurement and tags exactly as written, when that text names the series
    /// unambiguously (no escapes, tag keys unique; the text of unsorted tags is another key for
    /// the same series): a cheap key for caching what the
    /// series resolved to. `None` otherwise.
    pub fn series_text(&self) -> Option<&'a str> {
        self.span.series_text
    }
    pub fn measurement(&self) -> &'l str {
        &self.span.measurement
    }
    pub fn tags(&self) -> &'l [(Cow<'a, str>, Cow<'a, str>)] {
        self.tags
    }
    pub fn fields(&self) -> &'l [(Cow<'a, str>, FieldValueRef<'a>)] {
        self.fields
    }
    pub fn ts(&self) -> Timestamp {
        self.span.ts
    }
}

impl<'a> Lines<'a> {
    pub fn len(&self) -> usize {
        self.lines.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
    /// Field values in all lines (one stored sample each).
    pub fn field_count(&self) -> usize {
        // Counted over the lines kept: `retain` leaves a removed line's fields in the buffer.
        self.lines.iter().map(|s| (s.fields.1 - s.fields.0) as usize).sum()
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Line<'_, 'a>> + '_ {
        self.lines.iter().map(|span| Line { span, tags: &self.tags[span.tags.0 as usize..span.tags.1 as usize], fields: &self.fields[span.fields.0 as usize..span.fields.1 as usize] })
    }

    /// Keeps only the lines `keep` says yes to (a narrowed write token's, say); their numbers
    /// stay those of the request body.
    pub fn retain(&mut self, mut keep: impl FnMut(Line<'_, 'a>) -> bool) {
        let (tags, fields) = (&self.tags, &self.fields);
        self.lines.retain(|span| keep(Line { span, tags: &tags[span.tags.0 as usize..span.tags.1 as usize], fields: &fields[span.fields.0 as usize..span.fields.1 as usize] }));
    }

    /// Borrows already built points; line numbers are their positions from 1.
    pub fn from_points(points: &'a [Point]) -> Lines<'a> {
        let mut out = Lines { lines: Vec::with_capacity(points.len()), tags: Vec::new(), fields: Vec::new() };
        for (i, p) in points.iter().enumerate() {
            let t0 = out.tags.len() as u32;
            out.tags.extend(p.tags.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str()))));
            let f0 = out.fields.len() as u32;
            out.fields.extend(p.fields.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), FieldValueRef::from(v))));
            out.lines.push(LineSpan {
                number: i + 1,
                series_text: None,
                measurement: Cow::Borrowed(&p.measurement),
                tags: (t0, out.tags.len() as u32),
                fields: (f0, out.fields.len() as u32),
                ts: p.ts,
            });
        }
        out
    }

    /// Appends a line built by a caller that already holds its parts (remote write's mapped
    /// series), numbered after the last. `tags` must be sorted by key and unique, as the parser
    /// makes them; `series_text`, when given, the line protocol of the measurement and tags
    /// without escapes (see [`Line::series_text`]). Nothing is copied: the names and string
    /// values are borrowed.
    pub fn push_line(
        &mut self,
        series_text: Option<&'a str>,
        measurement: &'a str,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
        fields: impl IntoIterator<Item = (&'a str, FieldValueRef<'a>)>,
        ts: Timestamp,
    ) {
        let t0 = self.tags.len() as u32;
        self.tags.extend(tags.into_iter().map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v))));
        let f0 = self.fields.len() as u32;
        self.fields.extend(fields.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)));
        // After the last line's number, which `retain` may have left past `len()`.
        let number = self.lines.last().map_or(0, |l| l.number) + 1;
        self.lines.push(LineSpan { number, series_text, measurement: Cow::Borrowed(measurement), tags: (t0, self.tags.len() as u32), fields: (f0, self.fields.len() as u32), ts });
    }

    pub fn to_points(&self) -> Vec<Point> {
        self.iter()
            .map(|l| Point {
                measurement: l.measurement().to_owned(),
                tags: l.tags().iter().map(|(k, v)| (k.clone().into_owned(), v.clone().into_owned())).collect(),
                fields: l.fields().iter().map(|(k, v)| (k.clone().into_owned(), v.to_owned_value())).collect(),
                ts: l.ts(),
            })
            .collect()
    }
}

/// The memory of a [`Lines`] without its contents, to parse the next request into
/// ([`parse_batch_into`], [`Lines::into_buffers`]). A server that keeps a few of these parses
/// each write into memory that is already mapped: a request's lines take about three times its
/// body, and allocating them afresh for every request either left them resident, scattered
/// among smaller blocks, or cost page faults each time (15% of the ingest bench's CPU on short
/// lines).
#[derive(Debug, Default)]
pub struct LinesBuffers {
    lines: Vec<LineSpan<'static>>,
    tags: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    fields: Vec<(Cow<'static, str>, FieldValueRef<'static>)>,
}

impl LinesBuffers {
    /// Bytes reserved, for a caller that bounds what it keeps.
    pub fn capacity_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.lines) + bytes(&self.tags) + bytes(&self.fields)
    }
}

/// The allocation of `v`, emptied, as a vector of another type of the same layout (here: the
/// same type with another lifetime). Collecting a vector's own `into_iter` in place keeps its
/// allocation (tested below), so no memory is freed or allocated.
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl Lines<'_> {
    /// This request's memory, for the next one.
    pub fn into_buffers(self) -> LinesBuffers {
        LinesBuffers { lines: recycle(self.lines), tags: recycle(self.tags), fields: recycle(self.fields) }
    }
}

impl<'a> Lines<'a> {
    /// No lines, in the memory of an earlier request's (for lines built with
    /// [`Lines::push_line`], as remote write builds them).
    pub fn from_buffers(buffers: LinesBuffers) -> Lines<'a> {
        Lines { lines: recycle(buffers.lines), tags: recycle(buffers.tags), fields: recycle(buffers.fields) }
    }
}

/// Parses a whole request body into [`Lines`], with the semantics of [`parse_lines`]. Plain
/// lines (no escapes, unique tag and field keys, the common number spellings) take a fast
/// path; any line it is unsure of goes through the per-line rules of `line.rs`, so every value
/// and every error is theirs.
pub fn parse_batch(body: &str, precision: Precision, default_ts: Timestamp) -> Result<Lines<'_>, LineError> {
    parse_batch_into(body, precision, default_ts, LinesBuffers::default())
}

/// [`parse_batch`] into the memory of an earlier request's lines.
pub fn parse_batch_into(body: &str, precision: Precision, default_ts: Timestamp, buffers: LinesBuffers) -> Result<Lines<'_>, LineError> {
    parse_each(body, precision, default_ts, buffers, Err)
}

/// The lines a lenient parse ([`parse_batch_lenient_into`]) left out: how many, and the first
/// few of them with their reasons (a body of a million bad lines keeps a few reasons, not a
/// million).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkippedLines {
    pub count: usize,
    /// The first [`SkippedLines::KEPT`], in body order.
    pub first: Vec<LineError>,
}

impl SkippedLines {
    pub const KEPT: usize = 20;
}

/// [`parse_batch_into`] that leaves out the lines it cannot read instead of failing: one bad
/// line costs that line only, as InfluxDB stores the valid lines of a request ("partial
/// write"). The same body always gives the same lines.
pub fn parse_batch_lenient_into(body: &str, precision: Precision, default_ts: Timestamp, buffers: LinesBuffers) -> (Lines<'_>, SkippedLines) {
    let mut skipped = SkippedLines::default();
    let Ok(lines) = parse_each(body, precision, default_ts, buffers, |e| {
        skipped.count += 1;
        if skipped.first.len() < SkippedLines::KEPT {
            skipped.first.push(e);
        }
        Ok::<(), std::convert::Infallible>(())
    });
    (lines, skipped)
}

/// Parses every line of `body`; a bad line is handed to `on_error`, which stops the parse
/// (strict) or lets it go on without that line (lenient).
fn parse_each<'a, E>(body: &'a str, precision: Precision, default_ts: Timestamp, buffers: LinesBuffers, mut on_error: impl FnMut(LineError) -> Result<(), E>) -> Result<Lines<'a>, E> {
    let mut out = Lines { lines: recycle(buffers.lines), tags: recycle(buffers.tags), fields: recycle(buffers.fields) };
    // The lines are counted; tags and fields grow as found. Reserving for them from the body's
    // size (the shortest lines' ratio) held three to four times what long lines need, and the
    // kept buffers hold it for good: 11 MB for a 1.2 MB request of 10,000 lines.
    out.lines.reserve(body.bytes().filter(|b| *b == b'\n').count() + 1);
    let mut pos = 0;
    let mut number = 0;
    loop {
        number += 1;
        let rest = &body[pos..];
        let seg = rest.find('\n').map_or(rest, |i| &rest[..i]);
        let text = seg.strip_suffix('\r').unwrap_or(seg);
        let consumed = if text.as_bytes().first().is_some_and(|b| NAME[*b as usize] && *b != b'#') && parse_fast(text, number, precision, default_ts, &mut out) {
            // A line the fast path takes has every quoted string closed, so the reference
            // splitter ends it at the same newline.
            seg.len()
        } else {
            let raw = split::first_line(rest);
            let f0 = out.fields.len();
            if let Err(e) = parse_slow(raw, number, precision, default_ts, &mut out) {
                // A line refused after some of its fields were read leaves none behind.
                out.fields.truncate(f0);
                on_error(e)?;
            }
            raw.len()
        };
        if consumed >= rest.len() {
            break;
        }
        pos += consumed + 1;
    }
    Ok(out)
}

/// One line through the per-line rules of `line.rs`, as `split_lines` cut it.
fn parse_slow<'a>(raw: &'a str, line: usize, precision: Precision, default_ts: Timestamp, out: &mut Lines<'a>) -> Result<(), LineError> {
    let trimmed = raw.trim_start_matches([' ', '\t', '\r']);
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(());
    }
    // `split::first_line` keeps a trailing '\r' from CRLF bodies: it ends the line, as '\n' does.
    let text = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    line::parse_line(text, line, precision, default_ts, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(0);

    /// A request parsed into the buffers of the one before reads the same as parsed afresh,
    /// and in the same memory: no allocation when the buffers are large enough (in-place
    /// collection of `recycle` is what this checks).
    #[test]
    fn a_request_parses_into_the_memory_of_the_one_before() {
        let first = "gpu,node=a,gpu=0 power_w=1,temp_c=40i 1\ngpu,node=a,gpu=1 power_w=2 2\nmeter,m=x kwh=3 3\n";
        let second = "meter,m=y,site=dc5 kwh=4,mode=\"eco\" 4\ngpu,node=b,gpu=0 power_w=5 5\n";
        let lines = parse_batch(first, Precision::Ns, T0).expect("valid");
        let (pl, pt, pf) = (lines.lines.as_ptr() as usize, lines.tags.as_ptr() as usize, lines.fields.as_ptr() as usize);
        let buffers = lines.into_buffers();
        assert!(buffers.capacity_bytes() >= std::mem::size_of::<(Cow<'static, str>, FieldValueRef<'static>)>() * 4, "four fields' worth at least");
        let again = parse_batch_into(second, Precision::Ns, T0, buffers).expect("valid");
        assert_eq!((again.lines.as_ptr() as usize, again.tags.as_ptr() as usize, again.fields.as_ptr() as usize), (pl, pt, pf), "the same allocations");
        assert_eq!(again.to_points(), parse_lines(second, Precision::Ns, T0).expect("valid"));
        assert_eq!(again.len(), 2);
    }

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
        let e = parse_lines("m,t=1,t=2 v=1 1", Precision::Ns, T0).expect_err("dup tag");
        assert!(e.reason.contains("twice"), "{e}");
    }

    #[test]
    fn escaping_round_trips() {
        let p = Point::new("my measurement,x", Timestamp(7)).tag("tag key", "va=l,ue with space").field("field=key", "a \"quoted\" \\ string").field("n", 1.5);
        let text = encode_points(std::slice::from_ref(&p), Precision::Ns);
        assert_eq!(text, "my\\ measurement\\,x,tag\\ key=va\\=l\\,ue\\ with\\ space field\\=key=\"a \\\"quoted\\\" \\\\ string\",n=1.5 7\n");
        let back = parse_lines(&text, Precision::Ns, T0).expect("valid");
        assert_eq!(back, vec![p]);
    }

    #[test]
    fn backslashes_in_names_round_trip() {
        // Found by the fuzz target. A backslash before a character that does not escape is itself.
        let pts = parse_lines("m\\%x,t=a\\\\b f\\y=1 1", Precision::Ns, T0).expect("valid");
        assert_eq!(pts[0].measurement, "m\\%x");
        assert_eq!(pts[0].tag_value("t"), Some("a\\\\b"));
        let again = encode_points(&pts, Precision::Ns);
        assert_eq!(parse_lines(&again, Precision::Ns, T0).expect("valid"), pts);
        // Only a character that ends a name can follow a backslash at its end: the name could
        // not be written back.
        let e = parse_lines("m\\\t v=1 1", Precision::Ns, T0).expect_err("a backslash at the end of a name");
        assert!(e.reason.contains("backslash"), "{e}");
    }

    /// A lenient parse keeps every good line, in order, and names each bad one; a line refused
    /// after some of its fields were read leaves none of them behind.
    #[test]
    fn a_lenient_parse_costs_a_bad_line_only() {
        let body = "m,t=a v=1 1\nm,t= v=2 2\nm v=1,w=oops 3\nm v=4 4x\nm,\tt=c v=5 5\nm v=6 6\nm v= 7\nm,t=d v=\"x\ny\" 8\n";
        let (lines, skipped) = parse_batch_lenient_into(body, Precision::Ns, T0, LinesBuffers::default());
        let pts = lines.to_points();
        assert_eq!(pts.iter().map(|p| p.ts.0).collect::<Vec<_>>(), [1, 6, 8], "{skipped:?}");
        assert_eq!(lines.field_count(), 3, "no field of a refused line is kept");
        assert_eq!(skipped.first.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3, 4, 5, 7]);
        assert_eq!(skipped.count, 5);
        // The same good lines as the strict parse of the good lines alone.
        let good = "m,t=a v=1 1\nm v=6 6\nm,t=d v=\"x\ny\" 8\n";
        let strict = parse_lines(good, Precision::Ns, T0).expect("valid");
        assert_eq!(pts, strict);
        // Reasons are kept for the first few only; all are counted.
        let many = "m v=oops 1\n".repeat(1000);
        let (lines, skipped) = parse_batch_lenient_into(&many, Precision::Ns, T0, LinesBuffers::default());
        assert!(lines.is_empty());
        assert_eq!((skipped.count, skipped.first.len()), (1000, SkippedLines::KEPT));
    }

    #[test]
    fn crlf_bodies_parse() {
        let pts = parse_lines("m v=1 1\r\nm v=2 2\r\n", Precision::Ns, T0).expect("valid");
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1].ts, Timestamp(2));
    }

    /// The fast path and the reference parser agree, value for value and error for error.
    fn same_as_reference(body: &str) {
        let fast = parse_batch(body, Precision::S, Timestamp(9)).map(|b| b.to_points());
        let reference = parse_lines_reference(body, Precision::S, Timestamp(9));
        assert_eq!(fast, reference, "body {body:?}");
    }

    #[test]
    fn fast_path_agrees_with_the_reference_parser() {
        for body in [
            "m v=1 1",
            "m,a=1,b=2 v=1.5,w=-2i,x=3u,y=t,z=\"s p,a=ce\" -4",
            "m,b=1,a=2 v=1 1",
            "m,a=1,a=2 v=1 1",
            "m v=1,v=2 1",
            "m v=1e3,w=-1.5E-3,x=2e+2,y=-0 1",
            "m v=1.,w=.5 1",
            "m v=+1 1",
            "m v=1.5i 1",
            "m v=99999999999999999999i 1",
            "m v=1e999 1",
            "m v=tru 1",
            "m v=TRUE,w=False,x=F 1",
            "m v=1  1",
            "m v=1 1 ",
            "m v=1 ",
            "m  v=1 1",
            "m v=1 9223372036854775807",
            "m v=\"a\nb\" 1\nm v=2 2",
            "m v=\"a\" x 1",
            "m v=\"a\"x 1",
            "m v=\"\" 1",
            "m v=\"é\" 1",
            "#c v=1 1\nm v=1 2",
            "  m v=1 1\n\tm v=2 2",
            "m v=1 1\r\nm v=2 2\r\n",
            "m\\ x v=1 1",
            "m,t=a\\ b v=1 1",
            "m,t=a=b v=1 1",
            "m,a,b=c v=1 1",
            "m=x v=1 1",
            "m, v=1 1",
            "m,t= v=1 1",
            "m,t=x",
            "m",
            "m v=1,",
            "m v= 1",
            "m =1 1",
            "m v=1\n\n\nm w=x 2\n",
            "m\u{1} v=1 1",
            "m v=1 -5",
            "m v=1 --5",
            "m v=1 5x",
        ] {
            same_as_reference(body);
        }
    }

    #[test]
    fn fast_path_agrees_with_the_reference_on_random_lines() {
        // Lines built from the characters that matter to the grammar.
        let alphabet: Vec<char> = "mvt=,\" .1-eEiu\\\n\r\t#0123456789aTf".chars().collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut body = String::from(["m,t=a v=", "m v=", "m,a=1,b=2 x=1,y=", ""][(next() % 4) as usize]);
            for _ in 0..len {
                body.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            same_as_reference(&body);
        }
    }

    #[test]
    fn plain_lines_borrow_their_series_text() {
        let body = "gpu,node=a,site=dc5 power_w=1,mode=\"x\" 1\ngpu,site=dc5,node=a power_w=1 2\n";
        let b = parse_batch(body, Precision::Ns, T0).expect("valid");
        let lines: Vec<_> = b.iter().collect();
        assert_eq!(lines[0].series_text(), Some("gpu,node=a,site=dc5"));
        // Unsorted tags are sorted; the text as sent still names the series.
        assert_eq!(lines[1].series_text(), Some("gpu,site=dc5,node=a"));
        assert_eq!(lines[1].tags().iter().map(|(k, _)| k.as_ref()).collect::<Vec<_>>(), ["node", "site"]);
        assert_eq!(b.field_count(), 3);
        let pts = b.to_points();
        assert_eq!(pts[0].tags, pts[1].tags);
        assert_eq!(pts[0].get("mode"), Some(&FieldValue::Str("x".into())));
    }

    #[test]
    fn encoding_skips_non_finite() {
        let p = Point::new("m", Timestamp(1)).field("a", f64::NAN).field("b", 2i64);
        assert_eq!(encode_points(&[p], Precision::Ns), "m b=2i 1\n");
        let p = Point::new("m", Timestamp(1)).field("a", f64::INFINITY);
        assert_eq!(encode_points(&[p], Precision::Ns), "");
    }
}
