//! Aggregations over an instant vector, grouped `by` or `without` labels, with the arithmetic
//! of Prometheus 2.x (incremental mean, Welford's variance, NaN ordering of min and max).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::QueryError;
use crate::eval::Evaluator;
use crate::functions::quantile;
use crate::source::{Labels, NAME_LABEL};
use crate::value::{Sample, Value, format_value};

/// One group's running state.
struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: usize,
    /// The elements, for topk, bottomk and quantile.
    members: Vec<Sample>,
}

pub(crate) fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Value, QueryError> {
    let op = a.op.to_string();
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, t)?),
        None => None,
    };
    let Value::Vector(input) = ev.eval(&a.expr, t)? else {
        return Err(QueryError::BadData(format!("expected type instant vector in aggregation expression {op}")));
    };
    let scalar_param = || match &param {
        Some(Value::Scalar(v)) => Ok(*v),
        _ => Err(QueryError::BadData(format!("expected type scalar as the parameter of {op}"))),
    };
    // count_values adds a label of its own; the rest group on the input's labels.
    let mut input = input;
    if op == "count_values" {
        let Some(Value::String(label)) = &param else { return Err(QueryError::BadData("expected type string as the parameter of count_values".into())) };
        if !valid_label_name(label) {
            return Err(QueryError::BadData(format!("invalid label name {label:?}")));
        }
        for s in &mut input {
            let mut l = (*s.labels).clone();
            l.insert(label.clone(), format_value(s.value));
            s.labels = Arc::new(l);
        }
    }
    // The grouping labels' names, sorted (`None`: every label but the name and these).
    let (include, names): (bool, Vec<String>) = match &a.modifier {
        Some(LabelModifier::Include(n)) => (true, n.labels.clone()),
        Some(LabelModifier::Exclude(n)) => (false, n.labels.clone()),
        None => (true, Vec::new()),
    };
    let mut names = names;
    if op == "count_values"
        && include
        && let Some(Value::String(x)) = &param
    {
        names.push(x.clone());
    }
    let mut order: Vec<Vec<(&str, &str)>> = Vec::new();
    let mut groups: HashMap<Vec<(&str, &str)>, Group> = HashMap::new();
    for s in &input {
        let key = group_key(&s.labels, include, &names);
        if !groups.contains_key(&key) {
            order.push(key.clone());
            let labels = key.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            groups.insert(key.clone(), Group { labels, value: s.value, mean: s.value, count: 0, members: Vec::new() });
        }
        let Some(g) = groups.get_mut(&key) else { continue };
        let first = g.count == 0;
        g.count += 1;
        let v = s.value;
        match op.as_str() {
            "sum" => {
                if !first {
                    g.value += v;
                }
            }
            "avg" => {
                if !first {
                    let n = g.count as f64;
                    let skip = g.mean.is_infinite() && ((v.is_infinite() && (g.mean > 0.0) == (v > 0.0)) || (!v.is_infinite() && !v.is_nan()));
                    if !skip {
                        g.mean += v / n - g.mean / n;
                    }
                }
            }
            "max" => {
                if g.value < v || g.value.is_nan() {
                    g.value = v;
                }
            }
            "min" => {
                if g.value > v || g.value.is_nan() {
                    g.value = v;
                }
            }
            "count" | "group" | "count_values" => {}
            "stddev" | "stdvar" => {
                if first {
                    g.mean = 0.0;
                    g.value = 0.0;
                }
                let delta = v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (v - g.mean);
            }
            "topk" | "bottomk" | "quantile" => g.members.push(s.clone()),
            other => return Err(QueryError::Unsupported(format!("the aggregation {other}()"))),
        }
    }
    let mut out = Vec::new();
    for key in order {
        let Some(g) = groups.remove(&key) else { continue };
        let labels = Arc::new(g.labels);
        let value = match op.as_str() {
            "sum" | "max" | "min" => g.value,
            "avg" => g.mean,
            "count" | "count_values" => g.count as f64,
            "group" => 1.0,
            "stddev" => (g.value / g.count as f64).sqrt(),
            "stdvar" => g.value / g.count as f64,
            "quantile" => {
                let q = scalar_param()?;
                let vals: Vec<f64> = g.members.iter().map(|s| s.value).collect();
                quantile(q, vals)
            }
            "topk" | "bottomk" => {
                let k = scalar_param()?;
                if k < 1.0 || k.is_nan() {
                    continue;
                }
                let k = if k >= g.members.len() as f64 { g.members.len() } else { k as usize };
                let mut m = g.members;
                let top = op == "topk";
                // NaN is the least wanted in both (Prometheus' heaps put it last).
                m.sort_by(|x, y| {
                    let (a, b) = (x.value, y.value);
                    match (a.is_nan(), b.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if top => b.total_cmp(&a),
                        _ => a.total_cmp(&b),
                    }
                });
                for s in m.into_iter().take(k) {
                    out.push(Sample { t, ..s });
                }
                continue;
            }
            other => return Err(QueryError::Unsupported(format!("the aggregation {other}()"))),
        };
        out.push(Sample { labels, value, t });
    }
    Ok(Value::Vector(out))
}

/// A group's key, borrowing the sample's labels (a String is made only for a new group): the
/// `names` labels, or with `include` false every label but the name and those.
pub(crate) fn group_key<'l>(l: &'l Labels, include: bool, names: &[String]) -> Vec<(&'l str, &'l str)> {
    l.iter().filter(|(k, _)| if include { names.contains(k) } else { k.as_str() != NAME_LABEL && !names.contains(k) }).map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Prometheus' label name syntax.
pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}
