//! The values an expression evaluates to, and their JSON in Prometheus' API.

use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::source::Labels;

/// One element of an instant vector: its labels, its value, and the timestamp (ms) of the
/// sample it came from (what `timestamp()` answers; the evaluation time for computed ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Arc<Labels>,
    pub value: f64,
    pub t: i64,
}

/// A series of a range vector or of a range query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Arc<Labels>,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A sample value as Prometheus writes it (Go's `strconv.FormatFloat(v, 'f', -1, 64)`):
/// shortest round-trip digits, no exponent, `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A timestamp (ms) as Prometheus writes it: seconds, as a JSON number.
pub fn json_time(t: i64) -> Json {
    if t % 1000 == 0 { json!(t / 1000) } else { json!(t as f64 / 1000.0) }
}

pub fn point(t: i64, v: f64) -> Json {
    json!([json_time(t), format_value(v)])
}

impl Value {
    /// `data` of a query answer: `{"resultType": …, "result": …}`; `t` is the evaluation
    /// time of an instant query.
    pub fn to_json(&self, t: i64) -> Json {
        let result = match self {
            Value::Scalar(v) => point(t, *v),
            Value::String(s) => json!([json_time(t), s]),
            Value::Vector(v) => Json::Array(v.iter().map(|s| json!({ "metric": &*s.labels, "value": point(t, s.value) })).collect()),
            Value::Matrix(m) => Json::Array(m.iter().map(|s| json!({ "metric": &*s.labels, "values": s.points.iter().map(|(t, v)| point(*t, *v)).collect::<Vec<_>>() })).collect()),
        };
        json!({ "resultType": self.type_name(), "result": result })
    }
}
