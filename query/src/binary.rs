//! Binary operators: arithmetic, comparisons (filtering or `bool`) and the set operators,
//! between scalars and vectors, with Prometheus' vector matching (`on`, `ignoring`,
//! `group_left`, `group_right`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::QueryError;
use crate::eval::{Evaluator, drop_name};
use crate::source::{Labels, NAME_LABEL};
use crate::value::{Sample, Value};

pub(crate) fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Value, QueryError> {
    let op = b.op.to_string();
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    let return_bool = b.return_bool();
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(&op, l, r)?;
            Ok(Value::Scalar(if is_comparison(&op) { if keep { 1.0 } else { 0.0 } } else { v }))
        }
        (Value::Vector(l), Value::Scalar(r)) => vector_scalar(&op, l, r, false, return_bool, t),
        (Value::Scalar(l), Value::Vector(r)) => vector_scalar(&op, r, l, true, return_bool, t),
        (Value::Vector(l), Value::Vector(r)) => vector_vector(&op, b, l, r, return_bool, t),
        (l, r) => Err(QueryError::BadData(format!("binary expression must contain only scalar and instant vector types, got {} and {}", l.type_name(), r.type_name()))),
    }
}

pub(crate) fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Whether the result of `op` loses the metric name (arithmetic does; filters do not).
pub(crate) fn drops_name(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^" | "atan2")
}

/// `l op r`, and for comparisons whether the pair passes (the value is then `l`).
pub(crate) fn apply(op: &str, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        // Go's math.Mod: the sign of the dividend, like Rust's `%` on floats.
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => return Err(QueryError::Unsupported(format!("the operator {other:?}"))),
    })
}

fn vector_scalar(op: &str, v: Vec<Sample>, s: f64, swap: bool, return_bool: bool, t: i64) -> Result<Value, QueryError> {
    if matches!(op, "and" | "or" | "unless") {
        return Err(QueryError::BadData(format!("set operator {op:?} not allowed in binary scalar expression")));
    }
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        let (l, r) = if swap { (s, x.value) } else { (x.value, s) };
        let (mut value, mut keep) = apply(op, l, r)?;
        // A comparison keeps the vector's value even when the scalar is on the left.
        if is_comparison(op) && swap {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            let labels = if drops_name(op) || return_bool { drop_name(&x.labels) } else { x.labels };
            out.push(Sample { labels, value, t });
        }
    }
    Ok(Value::Vector(out))
}

/// How the two sides' series are paired: by the `on` labels, or by all but the `ignoring`
/// ones and the metric name.
struct Matching {
    on: bool,
    labels: Vec<String>,
}

impl Matching {
    fn of(b: &BinaryExpr) -> Matching {
        match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(l)) => Matching { on: true, labels: l.labels.clone() },
            Some(LabelModifier::Exclude(l)) => Matching { on: false, labels: l.labels.clone() },
            None => Matching { on: false, labels: Vec::new() },
        }
    }

    fn signature(&self, l: &Labels) -> Vec<(String, String)> {
        if self.on {
            let mut names: Vec<&String> = self.labels.iter().collect();
            names.sort();
            names.dedup();
            names.into_iter().filter_map(|n| l.get(n).map(|v| (n.clone(), v.clone()))).collect()
        } else {
            l.iter().filter(|(k, _)| k.as_str() != NAME_LABEL && !self.labels.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    }
}

fn describe(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn vector_vector(op: &str, b: &BinaryExpr, lhs: Vec<Sample>, rhs: Vec<Sample>, return_bool: bool, t: i64) -> Result<Value, QueryError> {
    let matching = Matching::of(b);
    let card = b.modifier.as_ref().map(|m| m.card.clone()).unwrap_or(VectorMatchCardinality::OneToOne);
    match op {
        "and" => {
            let right: HashSet<_> = rhs.iter().map(|s| matching.signature(&s.labels)).collect();
            return Ok(Value::Vector(lhs.into_iter().filter(|s| right.contains(&matching.signature(&s.labels))).collect()));
        }
        "unless" => {
            let right: HashSet<_> = rhs.iter().map(|s| matching.signature(&s.labels)).collect();
            return Ok(Value::Vector(lhs.into_iter().filter(|s| !right.contains(&matching.signature(&s.labels))).collect()));
        }
        "or" => {
            let left: HashSet<_> = lhs.iter().map(|s| matching.signature(&s.labels)).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !left.contains(&matching.signature(&s.labels))));
            return Ok(Value::Vector(out));
        }
        _ => {}
    }
    let (include, one_to_many) = match &card {
        VectorMatchCardinality::ManyToOne(l) => (Some(l.labels.clone()), false),
        VectorMatchCardinality::OneToMany(l) => (Some(l.labels.clone()), true),
        _ => (None, false),
    };
    let one_to_one = include.is_none();
    // The "one" side goes right, as Prometheus swaps them for group_right.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut right: HashMap<Vec<(String, String)>, &Sample> = HashMap::new();
    for s in &one {
        let sig = matching.signature(&s.labels);
        if let Some(prev) = right.insert(sig, s) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                describe(&matching.signature_labels(&s.labels)),
                describe(&prev.labels),
                describe(&s.labels)
            )));
        }
    }
    let mut matched: HashMap<Vec<(String, String)>, HashSet<Arc<Labels>>> = HashMap::new();
    let mut out = Vec::new();
    for l in &many {
        let sig = matching.signature(&l.labels);
        let Some(r) = right.get(&sig) else { continue };
        let (vl, vr) = if one_to_many { (r.value, l.value) } else { (l.value, r.value) };
        let (mut value, keep) = apply(op, vl, vr)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut metric = (*l.labels).clone();
        if drops_name(op) || return_bool {
            metric.remove(NAME_LABEL);
        }
        if one_to_one {
            if matching.on {
                metric.retain(|k, _| matching.labels.contains(k));
            } else {
                metric.retain(|k, _| !matching.labels.contains(k));
            }
        }
        for name in include.iter().flatten() {
            match r.labels.get(name) {
                Some(v) if !v.is_empty() => {
                    metric.insert(name.clone(), v.clone());
                }
                _ => {
                    metric.remove(name);
                }
            }
        }
        let metric = Arc::new(metric);
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(QueryError::Execution("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into()));
            }
        } else if seen.contains(&metric) {
            return Err(QueryError::Execution("multiple matches for labels: grouping labels must ensure unique matches".into()));
        }
        seen.insert(metric.clone());
        out.push(Sample { labels: metric, value, t });
    }
    Ok(Value::Vector(out))
}

impl Matching {
    fn signature_labels(&self, l: &Labels) -> Labels {
        self.signature(l).into_iter().collect()
    }
}
