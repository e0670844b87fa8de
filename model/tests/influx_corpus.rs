//! InfluxData's line-protocol test corpus (`tests/data/influxdata-corpus.json`, MIT, from
//! github.com/influxdata/line-protocol; licence beside it): every decode case through
//! Kilowatch's parser. Each case either decodes as InfluxData's decoder does, or is one of the
//! deviations listed below, each kind with its reason (the same list is in docs/api.md,
//! "Differences from InfluxDB"). A deviation listed that no longer deviates fails too, so the
//! list stays exact.
//!
//! InfluxDB's storage rules are applied to the decoder's answer before comparing: a field
//! given twice keeps its last value (the decoder returns both), a tag given twice is an error
//! (the corpus' own harness refuses it).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kilowatch_model::{FieldValue, Point, Precision, Timestamp, encode_points, parse_lines};
use serde_json::Value;

const CORPUS: &str = include_str!("data/influxdata-corpus.json");

/// Why a case is decoded differently from InfluxData's decoder, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Deviation {
    /// An integer beyond ±2^53: refused, naming why. Samples are stored as 64-bit floats, which
    /// would round it silently.
    BigInteger,
    /// `\n`, `\r`, `\t` in a string field value: the corpus' decoder reads a control character,
    /// InfluxDB 1.x and 2.x (`models.unescapeStringField`) store the two characters, and so does
    /// Kilowatch.
    StringEscapes,
    /// Tabs before a line are skipped, as InfluxDB 1.x and 2.x do (`models.ParsePoints` skips
    /// spaces and tabs); the corpus' decoder refuses them.
    LeadingTab,
    /// A comment line is skipped whatever it holds, as InfluxDB does; the corpus' decoder
    /// refuses control characters in comments.
    CommentControlCharacters,
}

fn expected_deviation(key: &str) -> Option<Deviation> {
    DEVIATIONS.iter().find(|(k, _)| *k == key).map(|(_, d)| *d)
}

/// Every case Kilowatch decodes differently, by key.
const DEVIATIONS: &[(&str, Deviation)] = &[
    ("0a8f26758f528779410d4fe335cf9ebc", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=000922337203685477580
    ("27fd209742d33a19ea3cbf54268c025b", Deviation::BigInteger),               // "u,hostregion=t e=18446744073709551615u"
    ("37b82de81acdd74c72d6ec702e4ef075", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=18446744073709551615u
    ("458185eb0d05b93d1430d78871b7bce8", Deviation::BigInteger),               // "u e=-223372036854775808i"
    ("46545fbfb2e1e8b404e0e75c66028e9c", Deviation::BigInteger),               // "cpu value=18446744073709551615u"
    ("5dbfe055bdc883aa2aaf79c810454da6", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=-9223372036854775808i
    ("5f1e832135dbf0161b3a1bb71a0be866", Deviation::BigInteger),               // "cpu value=18446744073709551615u"
    ("7dc95d7c6966e8062f7caede23dae716", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=9223372036854775807i"
    ("7e13908609ae8781f04b77693dfa5316", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=000922337203685477580
    ("98692f7aa255f4bddeab1bce627c5531", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=-00092233720368547758
    ("a04be94c8c7bd94f4fc5396d973e8a31", Deviation::BigInteger),               // "cpu value=9223372036854775807i"
    ("a6580c1d553edf6a6ade68480c95ed6d", Deviation::BigInteger),               // "cpu value=9223372036854775807i"
    ("c2d6a608f3179aa48138ed8b460a94e5", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=18446744073709551615u
    ("c51981ff72a9c2f4fba996c77c80ad73", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=-00092233720368547758
    ("d00f6348ff30faffe56d97abccfef3cc", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=000184467440737095516
    ("e218e0443ecf82353d4b77b16f068d96", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=000184467440737095516
    ("eb1d4076931acb9941cb712fc3574b55", Deviation::BigInteger),               // "u e=18446744073709551615u"
    ("f1930c5c9f954ad0114aa24c0b2a55df", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=-9223372036854775808i
    ("f54aa21c9e0561707c8481990ac01f3c", Deviation::BigInteger),               // "cpu,host=serverA,region=us-west value=9223372036854775807i"
    ("dfa6432a639651d02910c4527badb15c", Deviation::CommentControlCharacters), // "#\n#\u{15}\"\u{b}f=#\n#\u{15}\"\u{b}f\"\u{b}f=0 -\"=\"\"\u{
    ("2be024ca70163a7068b08f5e8ef57ffa", Deviation::LeadingTab),               // "\tm v=1"
    ("a02aab4c616a523b89c419dc100e70fd", Deviation::LeadingTab),               // "\t\n\n\t"
    ("c0ce359f018a4255f4152ca2bc156ca7", Deviation::LeadingTab),               // "\t\n\t\n\n\t\n\t"
    ("0d72bd69a58fa1a3399cf61fc9fdc67c", Deviation::StringEscapes),            // "m v=\"\\r\""
    ("909116df4d304c2e9ad8a57300bc08d7", Deviation::StringEscapes),            // "m v=\"\\t\""
    ("ea7ad6289581283d56af6d43c72c2664", Deviation::StringEscapes),            // "m v=\"\\n\""
];

#[derive(Debug, Clone, PartialEq)]
struct Decoded {
    name: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Wire>,
    time: i64,
}

/// A field value compared as the wire type and value.
#[derive(Debug, Clone, PartialEq)]
enum Wire {
    Float(f64),
    Int(i64),
    Uint(u64),
    Bool(bool),
    Str(String),
}

fn from_point(p: &Point) -> Decoded {
    Decoded {
        name: p.measurement.clone(),
        tags: p.tags.clone(),
        fields: p
            .fields
            .iter()
            .map(|(k, v)| {
                let w = match v {
                    FieldValue::F64(x) => Wire::Float(*x),
                    FieldValue::I64(x) => Wire::Int(*x),
                    FieldValue::U64(x) => Wire::Uint(*x),
                    FieldValue::Bool(x) => Wire::Bool(*x),
                    FieldValue::Str(s) => Wire::Str(s.clone()),
                };
                (k.clone(), w)
            })
            .collect(),
        time: p.ts.0,
    }
}

fn wire(v: &Value) -> Wire {
    let (kind, x) = v.as_object().and_then(|o| o.iter().next()).expect("one typed value");
    match kind.as_str() {
        "float" => Wire::Float(x.as_f64().expect("float")),
        "int" => Wire::Int(x.as_i64().expect("int")),
        "uint" => Wire::Uint(x.as_u64().expect("uint")),
        "bool" => Wire::Bool(x.as_bool().expect("bool")),
        "string" => Wire::Str(x.as_str().expect("string").to_owned()),
        other => panic!("unknown value kind {other}"),
    }
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v["binary"].as_str().expect("text or binary").to_owned())
}

/// The corpus' expected answer, with InfluxDB's storage rules applied: `None` is an error.
fn expected(output: &Value) -> Option<Vec<Decoded>> {
    let points = output.get("result")?.as_array().expect("result is a list");
    let mut out = Vec::new();
    for p in points {
        let mut tags = BTreeMap::new();
        for t in p["tags"].as_array().expect("tags") {
            if tags.insert(text(&t["key"]), text(&t["value"])).is_some() {
                return None;
            }
        }
        // Later values of a key replace earlier ones: the last wins.
        let fields = p["fields"].as_array().expect("fields").iter().map(|f| (text(&f["key"]), wire(&f["value"]))).collect();
        out.push(Decoded { name: text(&p["name"]), tags, fields, time: p["time"].as_i64().expect("time") });
    }
    Some(out)
}

fn precision(p: &str) -> Precision {
    match p {
        "1ns" => Precision::Ns,
        "1µs" => Precision::Us,
        "1ms" => Precision::Ms,
        "1s" => Precision::S,
        other => panic!("unknown precision {other}"),
    }
}

struct Outcome {
    key: String,
    input: String,
    ours: Result<Vec<Decoded>, String>,
    theirs: Option<Vec<Decoded>>,
}

fn run_corpus() -> Vec<Outcome> {
    let corpus: Value = serde_json::from_str(CORPUS).expect("corpus is JSON");
    let decode = corpus["decode"].as_object().expect("decode cases");
    let mut out = Vec::new();
    for (key, case) in decode {
        let input = &case["input"];
        let bytes = match &input["text"] {
            Value::String(s) => s.clone().into_bytes(),
            other => STANDARD.decode(other["binary"].as_str().expect("binary text")).expect("base64"),
        };
        let precision = precision(input["precision"].as_str().expect("precision"));
        let default = Timestamp(input["defaultTime"].as_i64().expect("defaultTime"));
        let ours = match std::str::from_utf8(&bytes) {
            // The write route refuses a body that is not UTF-8 as a whole, as InfluxDB does
            // with invalid UTF-8 in any name.
            Err(_) => Err("not UTF-8".to_owned()),
            Ok(t) => parse_lines(t, precision, default).map(|ps| ps.iter().map(from_point).collect()).map_err(|e| e.to_string()),
        };
        out.push(Outcome { key: key.clone(), input: String::from_utf8_lossy(&bytes).into_owned(), ours, theirs: expected(&case["output"]) });
    }
    out
}

#[test]
fn every_corpus_case_decodes_as_influxdb_or_is_a_listed_deviation() {
    let outcomes = run_corpus();
    assert!(outcomes.len() > 6000, "the whole corpus: {}", outcomes.len());
    let mut unexplained = Vec::new();
    let mut listed_but_same = Vec::new();
    let mut by_kind: BTreeMap<Deviation, usize> = BTreeMap::new();
    for o in &outcomes {
        let same = match (&o.ours, &o.theirs) {
            (Err(_), None) => true,
            (Ok(a), Some(b)) => a == b,
            _ => false,
        };
        match (same, expected_deviation(&o.key)) {
            (true, None) => {}
            (true, Some(_)) => listed_but_same.push(o.key.clone()),
            (false, Some(d)) => *by_kind.entry(d).or_default() += 1,
            (false, None) => unexplained.push(format!("{} {:?}\n  ours:   {:?}\n  theirs: {:?}", o.key, o.input, o.ours, o.theirs)),
        }
    }
    assert!(unexplained.is_empty(), "{} cases differ from InfluxDB's decode and are not listed:\n{}", unexplained.len(), unexplained.join("\n"));
    assert!(listed_but_same.is_empty(), "listed as deviations but decoded as InfluxDB: {listed_but_same:?}");
    let listed: BTreeSet<&str> = DEVIATIONS.iter().map(|(k, _)| *k).collect();
    assert_eq!(listed.len(), DEVIATIONS.len(), "a key listed twice");
    eprintln!("{} cases, deviations by kind: {by_kind:?}", outcomes.len());
}

/// Encode cases written differently on purpose, by key.
const ENCODE_DEVIATIONS: &[(&str, Deviation)] = &[
    // A line break in a string is written as itself (InfluxDB stores `\n` as two characters).
    ("65a52922c8cba2673eff7194628cc1e0", Deviation::StringEscapes),
];

/// Go's shortest `%g` spelling of a float (`6.632243e+06`, `5e-324`), which InfluxData's encoder
/// writes; Kilowatch writes Rust's (`6632243`). Both read back as the same number.
fn go_float(x: f64) -> String {
    let e = format!("{x:e}");
    let (mantissa, exp) = e.split_once('e').expect("an exponent");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..6).contains(&exp) { format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()) } else { format!("{x}") }
}

/// The corpus' encode cases: each point, written by Kilowatch's encoder, is the text
/// InfluxData's encoder writes (names escaped alike: only what would end them), floats' spelling
/// aside, except where listed.
#[test]
fn corpus_points_encode_as_influxdata_writes_them() {
    let corpus: Value = serde_json::from_str(CORPUS).expect("corpus is JSON");
    let cases = corpus["encode"].as_object().expect("encode cases");
    let mut differ = Vec::new();
    let mut listed_but_same = Vec::new();
    let mut checked = 0;
    for (key, case) in cases {
        let p = &case["input"]["point"];
        let Some(want) = case["output"]["result"].as_str() else { continue };
        let mut point = Point::new(text(&p["name"]), Timestamp(p["time"].as_i64().expect("time")));
        for t in p["tags"].as_array().expect("tags") {
            point = point.tag(text(&t["key"]), text(&t["value"]));
        }
        let mut ours_floats = Vec::new();
        for f in p["fields"].as_array().expect("fields") {
            let v = match wire(&f["value"]) {
                Wire::Float(x) => {
                    assert_eq!(go_float(x).parse::<f64>().ok(), Some(x), "Go's spelling reads back");
                    ours_floats.push((format!("{}={x}", text(&f["key"])), format!("{}={}", text(&f["key"]), go_float(x))));
                    FieldValue::F64(x)
                }
                Wire::Int(x) => FieldValue::I64(x),
                Wire::Uint(x) => FieldValue::U64(x),
                Wire::Bool(x) => FieldValue::Bool(x),
                Wire::Str(s) => FieldValue::Str(s),
            };
            point.fields.push((text(&f["key"]), v));
        }
        let mut ours = encode_points(std::slice::from_ref(&point), precision(case["input"]["precision"].as_str().expect("precision")));
        for (rust, go) in &ours_floats {
            ours = ours.replace(rust.as_str(), go);
        }
        checked += 1;
        let same = ours.trim_end_matches('\n') == want;
        match (same, ENCODE_DEVIATIONS.iter().any(|(k, _)| k == key)) {
            (true, true) => listed_but_same.push(key.clone()),
            (false, false) => differ.push(format!("{key}: ours {ours:?}, theirs {want:?}")),
            _ => {}
        }
    }
    assert!(checked > 100, "{checked}");
    assert!(differ.is_empty(), "{} of {checked} encode differently:\n{}", differ.len(), differ.join("\n"));
    assert!(listed_but_same.is_empty(), "{listed_but_same:?}");
}
