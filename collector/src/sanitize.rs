//! Names and strings from outside (an inference server's labels, Redfish and SNMP strings, job
//! names) made safe to send: the collector never emits a line the aggregator refuses, so that
//! one odd label cannot cost a node its batch. Every point passes here before it is encoded;
//! what is repaired or dropped is counted, and logged once per distinct problem.

use std::collections::HashSet;

use kilowatch_model::{FieldValue, Point};

/// The longest measurement, tag key or value, or field key sent: the aggregator's default
/// `[store] max_name_bytes`. Longer names are cut (at a character boundary).
pub const MAX_NAME_BYTES: usize = 256;

/// The longest string field value sent: a page may hold any text, and a field is a sample.
pub const MAX_STRING_BYTES: usize = 1024;

/// What was wrong with a name or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// A control character (tab, line break, NUL…): replaced by a space.
    ControlCharacter,
    /// A backslash that line protocol would read as an escape (at the end, or before a space,
    /// comma or `=`): replaced by `/`.
    Backslash,
    /// Longer than [`MAX_NAME_BYTES`] or [`MAX_STRING_BYTES`]: cut.
    TooLong,
    /// A `#` first in a measurement would make the line a comment: replaced by `_`.
    CommentMark,
    /// An empty tag key or value, or field key: the tag or field is dropped.
    Empty,
    /// A field key given twice: the last value is kept.
    DuplicateField,
}

impl Problem {
    fn what(self) -> &'static str {
        match self {
            Problem::ControlCharacter => "a control character, replaced by a space",
            Problem::Backslash => "a backslash line protocol would read as an escape, replaced by '/'",
            Problem::TooLong => "too long, cut",
            Problem::CommentMark => "a leading '#', replaced by '_'",
            Problem::Empty => "empty, dropped",
            Problem::DuplicateField => "given twice, the last value kept",
        }
    }
}

/// Counts of what [`Sanitizer::points`] did, and the problems it has logged.
#[derive(Debug, Default)]
pub struct Sanitizer {
    /// Names and values changed to be sent.
    pub repaired: u64,
    /// Tags, fields and points left out.
    pub dropped: u64,
    /// (measurement, which name, problem) already logged.
    logged: HashSet<(String, String, Problem)>,
}

/// Distinct problems remembered for logging once; past this a flood of new names (a page with
/// a million models) logs nothing more rather than growing.
const MAX_LOGGED: usize = 4096;

impl Sanitizer {
    /// Repairs or drops what the aggregator would refuse in `points`, in place.
    pub fn points(&mut self, points: &mut Vec<Point>) {
        points.retain_mut(|p| self.point(p));
    }

    /// False when the point has nothing left to send.
    fn point(&mut self, p: &mut Point) -> bool {
        // Nearly every point is clean: checked without building anything.
        if is_clean(p) {
            return true;
        }
        let mut found = Vec::new();
        let measurement = clean_name(&p.measurement, &mut |pb| found.push(("measurement".to_owned(), pb)));
        let measurement = match measurement.strip_prefix('#') {
            Some(rest) => {
                found.push(("measurement".to_owned(), Problem::CommentMark));
                format!("_{rest}")
            }
            None => measurement,
        };
        if measurement.is_empty() {
            found.push(("measurement".to_owned(), Problem::Empty));
            self.report(&p.measurement, found, 0, 1);
            return false;
        }
        let mut dropped = 0;
        let mut tags = kilowatch_model::Labels::new();
        for (k, v) in &p.tags {
            let key = clean_name(k, &mut |pb| found.push((format!("tag key {k:?}"), pb)));
            let value = clean_name(v, &mut |pb| found.push((format!("tag {key:?}"), pb)));
            if key.is_empty() || value.is_empty() {
                found.push((format!("tag {key:?}"), Problem::Empty));
                dropped += 1;
                continue;
            }
            tags.insert(key, value);
        }
        let mut fields: Vec<(String, FieldValue)> = Vec::with_capacity(p.fields.len());
        for (k, v) in &p.fields {
            let key = clean_name(k, &mut |pb| found.push((format!("field key {k:?}"), pb)));
            if key.is_empty() {
                found.push(("field key".to_owned(), Problem::Empty));
                dropped += 1;
                continue;
            }
            let value = match v {
                FieldValue::Str(s) => FieldValue::Str(clean_string(s, &mut |pb| found.push((format!("field {key:?}"), pb)))),
                other => other.clone(),
            };
            if let Some(i) = fields.iter().position(|(f, _)| *f == key) {
                found.push((format!("field {key:?}"), Problem::DuplicateField));
                fields.remove(i);
                dropped += 1;
            }
            fields.push((key, value));
        }
        let keep = !fields.is_empty();
        if !keep {
            dropped += 1;
        }
        let original = std::mem::replace(&mut p.measurement, measurement);
        p.tags = tags;
        p.fields = fields;
        self.report(&original, found, dropped, 0);
        keep
    }

    fn report(&mut self, measurement: &str, found: Vec<(String, Problem)>, dropped: u64, dropped_points: u64) {
        self.dropped += dropped + dropped_points;
        for (name, problem) in found {
            if !matches!(problem, Problem::Empty | Problem::DuplicateField) {
                self.repaired += 1;
            }
            let key = (clip(measurement), clip(&name), problem);
            if self.logged.len() < MAX_LOGGED && !self.logged.contains(&key) {
                tracing::warn!(measurement = %key.0, name = %key.1, problem = problem.what(), "a name or value from outside was repaired or dropped before sending; logged once");
                self.logged.insert(key);
            }
        }
    }
}

/// Whether `p` goes out as it is (what [`Sanitizer::point`] would leave unchanged).
fn is_clean(p: &Point) -> bool {
    let name_ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME_BYTES && !s.chars().any(char::is_control) && !s.contains('\\');
    name_ok(&p.measurement)
        && !p.measurement.starts_with('#')
        && p.tags.iter().all(|(k, v)| name_ok(k) && name_ok(v))
        && !p.fields.is_empty()
        && p.fields.iter().enumerate().all(|(i, (k, v))| {
            name_ok(k)
                && p.fields[..i].iter().all(|(f, _)| f != k)
                && match v {
                    FieldValue::Str(s) => s.len() <= MAX_STRING_BYTES && !s.chars().any(char::is_control),
                    _ => true,
                }
        })
}

/// A name cut for a log line: the name at fault may be megabytes.
fn clip(s: &str) -> String {
    cut(s, 64).to_owned()
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A measurement, tag key or value, or field key that every line-protocol parser reads back as
/// it was sent: no control character, no backslash that reads as an escape, at most
/// [`MAX_NAME_BYTES`]. Each change is reported to `problem`.
pub fn clean_name(s: &str, problem: &mut dyn FnMut(Problem)) -> String {
    let s = if s.len() > MAX_NAME_BYTES {
        problem(Problem::TooLong);
        cut(s, MAX_NAME_BYTES)
    } else {
        s
    };
    let mut out = String::with_capacity(s.len());
    let (mut control, mut backslash) = (false, false);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_control() {
            control = true;
            out.push(' ');
        } else if c == '\\' && chars.peek().is_none_or(|n| matches!(n, ' ' | ',' | '=' | '\\') || n.is_control()) {
            backslash = true;
            out.push('/');
        } else {
            out.push(c);
        }
    }
    if control {
        problem(Problem::ControlCharacter);
    }
    if backslash {
        problem(Problem::Backslash);
    }
    out
}

/// A string field value at most [`MAX_STRING_BYTES`] long, without control characters (a NUL
/// ends the text for some parsers; a line break inside quotes splits it for others).
pub fn clean_string(s: &str, problem: &mut dyn FnMut(Problem)) -> String {
    let s = if s.len() > MAX_STRING_BYTES {
        problem(Problem::TooLong);
        cut(s, MAX_STRING_BYTES)
    } else {
        s
    };
    if s.chars().any(char::is_control) {
        problem(Problem::ControlCharacter);
        return s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use kilowatch_model::{Precision, Timestamp, encode_points, parse_lines};
    use proptest::prelude::*;

    use super::*;

    /// Whether the aggregator takes every line of `body` with its default limits: it parses,
    /// and no name is longer than `[store] max_name_bytes`.
    fn aggregator_takes(body: &str, sent: usize) -> Result<(), String> {
        let points = parse_lines(body, Precision::Ns, Timestamp(0)).map_err(|e| e.to_string())?;
        if points.len() != sent {
            return Err(format!("{} lines for {sent} points: {body:?}", points.len()));
        }
        for p in &points {
            let names = std::iter::once(p.measurement.as_str()).chain(p.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()])).chain(p.fields.iter().map(|(k, _)| k.as_str()));
            if let Some(n) = names.into_iter().find(|n| n.len() > MAX_NAME_BYTES) {
                return Err(format!("{} bytes name", n.len()));
            }
        }
        Ok(())
    }

    fn hostile(model: &str) -> Point {
        Point::new("inference", Timestamp(1)).tag("node", "n1").tag("model", model).field("prompt_tokens", 5.0).field("gpus", "0,1")
    }

    #[test]
    fn hostile_labels_are_repaired_or_dropped_and_logged_once() {
        let mut s = Sanitizer::default();
        let mut points = vec![hostile(""), hostile("a\tb"), hostile("a\nb"), hostile("trailing\\"), hostile(&"x".repeat(100_000)), hostile("ok")];
        s.points(&mut points);
        assert_eq!(points.len(), 6, "a bad tag costs that tag only");
        let models: Vec<_> = points.iter().map(|p| p.tag_value("model").map(str::len)).collect();
        assert_eq!(models, [None, Some(3), Some(3), Some(9), Some(MAX_NAME_BYTES), Some(2)]);
        assert_eq!(points[1].tag_value("model"), Some("a b"));
        assert_eq!(points[3].tag_value("model"), Some("trailing/"));
        assert_eq!((s.repaired, s.dropped), (4, 1));
        let body = encode_points(&points, Precision::Ns);
        aggregator_takes(&body, 6).expect("every line taken");
        // The same problems again: counted, not logged again.
        let logged = s.logged.len();
        s.points(&mut vec![hostile("a\tb"), hostile("")]);
        assert_eq!((s.logged.len(), s.repaired, s.dropped), (logged, 5, 2));
    }

    #[test]
    fn a_point_with_nothing_left_is_dropped() {
        let mut s = Sanitizer::default();
        let mut points = vec![Point::new("m", Timestamp(1)).field("", 1.0), Point::new("", Timestamp(1)).field("v", 1.0)];
        s.points(&mut points);
        assert!(points.is_empty());
        assert_eq!(s.dropped, 3);
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            // Every character; then the ones line protocol cares about, often.
            any::<String>(),
            proptest::collection::vec(prop_oneof![Just('\\'), Just(' '), Just(','), Just('='), Just('"'), Just('\n'), Just('\t'), Just('#'), Just('\r'), Just('\0'), Just('a'), Just('é')], 0..12)
                .prop_map(|v| v.into_iter().collect()),
            (0usize..600).prop_map(|n| "é".repeat(n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Whatever strings a source hands over, what the collector sends parses, point for
        /// point, and fits the aggregator's default name limit.
        #[test]
        fn what_the_collector_builds_always_parses(m in any_text(), tk in any_text(), tv in any_text(), fk in any_text(), fs in any_text(), fk2 in any_text()) {
            let mut points = vec![Point::new(m.as_str(), Timestamp(7)).tag(tk.as_str(), tv.as_str()).tag("node", "n1").field(fk.as_str(), fs.as_str()).field(fk2.as_str(), 1.5)];
            let mut s = Sanitizer::default();
            s.points(&mut points);
            let body = encode_points(&points, Precision::Ns);
            prop_assert!(aggregator_takes(&body, points.len()).is_ok(), "{:?}: {:?}", body, aggregator_takes(&body, points.len()));
        }
    }
}
