//! PromQL's functions, each as Prometheus 2.x computes it (`promql/functions.go`). A function
//! not listed here is refused by name, never approximated.

use std::sync::Arc;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use crate::QueryError;
use crate::aggregate::valid_label_name;
use crate::eval::{Evaluator, RangeArg, drop_name, selector_matchers};
use crate::source::{Labels, NAME_LABEL};
use crate::value::{Sample, Value};

pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Value, QueryError> {
    let name = c.func.name;
    let args = &c.args.args;
    let arg = |i: usize| args.get(i).map(|a| a.as_ref()).ok_or_else(|| QueryError::BadData(format!("missing argument {} of {name}()", i + 1)));
    let scalar = |i: usize| -> Result<f64, QueryError> {
        match ev.eval(arg(i)?, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::BadData(format!("expected type scalar in call to function {name:?}, got {}", other.type_name()))),
        }
    };
    let string = |i: usize| -> Result<String, QueryError> {
        match ev.eval(arg(i)?, t)? {
            Value::String(s) => Ok(s),
            other => Err(QueryError::BadData(format!("expected type string in call to function {name:?}, got {}", other.type_name()))),
        }
    };
    let vector = |i: usize| -> Result<Vec<Sample>, QueryError> {
        match ev.eval(arg(i)?, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::BadData(format!("expected type instant vector in call to function {name:?}, got {}", other.type_name()))),
        }
    };
    if let Some(f) = math(name) {
        return Ok(map_values(vector(0)?, t, f));
    }
    if let Some(f) = over_time(name) {
        let q = if name == "quantile_over_time" { Some(scalar(0)?) } else { None };
        let r = ev.range_arg(arg(usize::from(q.is_some()))?, t)?;
        let keep_name = name == "last_over_time";
        return Ok(Value::Vector(r.series.iter().map(|s| Sample { labels: if keep_name { s.labels.clone() } else { s.without_name() }, value: f(&s.points, q.unwrap_or(f64::NAN)), t }).collect()));
    }
    match name {
        "rate" | "increase" | "delta" => {
            let r = ev.range_arg(arg(0)?, t)?;
            let resets = |p: &[(i64, f64)]| p.windows(2).filter(|w| w[1].1 < w[0].1).map(|w| w[0].1).collect::<Vec<_>>();
            Ok(per_series(&r, t, |p| extrapolated_rate(p, (r.start, r.end, r.range_ms), name != "delta", name == "rate", &resets(p))))
        }
        "irate" | "idelta" => {
            let r = ev.range_arg(arg(0)?, t)?;
            Ok(per_series(&r, t, |p| instant_delta(p, name == "irate")))
        }
        "deriv" => {
            let r = ev.range_arg(arg(0)?, t)?;
            Ok(per_series(&r, t, |p| (p.len() >= 2).then(|| linear_regression(p, p[0].0).0)))
        }
        "predict_linear" => {
            let r = ev.range_arg(arg(0)?, t)?;
            let secs = scalar(1)?;
            Ok(per_series(&r, t, |p| {
                (p.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(p, t);
                    slope * secs + intercept
                })
            }))
        }
        "resets" => {
            let r = ev.range_arg(arg(0)?, t)?;
            Ok(per_series(&r, t, |p| Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)))
        }
        "changes" => {
            let r = ev.range_arg(arg(0)?, t)?;
            Ok(per_series(&r, t, |p| Some(p.windows(2).filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan())).count() as f64)))
        }
        "absent_over_time" => {
            let r = ev.range_arg(arg(0)?, t)?;
            Ok(Value::Vector(if r.series.is_empty() { vec![Sample { labels: Arc::new(absent_labels(arg(0)?)), value: 1.0, t }] } else { Vec::new() }))
        }
        "absent" => {
            let v = vector(0)?;
            Ok(Value::Vector(if v.is_empty() { vec![Sample { labels: Arc::new(absent_labels(arg(0)?)), value: 1.0, t }] } else { Vec::new() }))
        }
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => Ok(Value::Vector(vec![Sample { labels: Arc::new(Labels::new()), value: scalar(0)?, t }])),
        "scalar" => {
            let v = vector(0)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN }))
        }
        "timestamp" => Ok(Value::Vector(vector(0)?.into_iter().map(|s| Sample { labels: drop_name(&s.labels), value: s.t as f64 / 1000.0, t }).collect())),
        "round" => {
            let to = if args.len() > 1 { scalar(1)? } else { 1.0 };
            let inv = 1.0 / to;
            Ok(map_values(vector(0)?, t, move |v| (v * inv + 0.5).floor() / inv))
        }
        "clamp" => {
            let (lo, hi) = (scalar(1)?, scalar(2)?);
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(map_values(vector(0)?, t, move |v| go_max(lo, go_min(hi, v))))
        }
        "clamp_min" => {
            let lo = scalar(1)?;
            Ok(map_values(vector(0)?, t, move |v| go_max(lo, v)))
        }
        "clamp_max" => {
            let hi = scalar(1)?;
            Ok(map_values(vector(0)?, t, move |v| go_min(hi, v)))
        }
        "sort" | "sort_desc" => {
            let mut v = vector(0)?;
            let desc = name == "sort_desc";
            // Prometheus' heaps put NaN first in both orders.
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Less,
                (false, true) => std::cmp::Ordering::Greater,
                _ if desc => b.value.total_cmp(&a.value),
                _ => a.value.total_cmp(&b.value),
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => {
            let v = vector(0)?;
            let (dst, repl, src, re) = (string(1)?, string(2)?, string(3)?, string(4)?);
            let regex = regex::Regex::new(&format!("^(?:{re})$")).map_err(|_| QueryError::BadData(format!("invalid regular expression in label_replace(): {re}")))?;
            if !valid_label_name(&dst) {
                return Err(QueryError::BadData(format!("invalid destination label name in label_replace(): {dst}")));
            }
            Ok(Value::Vector(
                v.into_iter()
                    .map(|s| {
                        let src_val = s.labels.get(&src).cloned().unwrap_or_default();
                        let Some(caps) = regex.captures(&src_val) else { return s };
                        let mut res = String::new();
                        caps.expand(&repl, &mut res);
                        let mut l = (*s.labels).clone();
                        l.remove(&dst);
                        if !res.is_empty() {
                            l.insert(dst.clone(), res);
                        }
                        Sample { labels: Arc::new(l), ..s }
                    })
                    .collect(),
            ))
        }
        "label_join" => {
            let v = vector(0)?;
            let (dst, sep) = (string(1)?, string(2)?);
            let srcs: Vec<String> = (3..args.len()).map(string).collect::<Result<_, _>>()?;
            if !valid_label_name(&dst) {
                return Err(QueryError::BadData(format!("invalid destination label name in label_join(): {dst}")));
            }
            if let Some(bad) = srcs.iter().find(|s| !valid_label_name(s)) {
                return Err(QueryError::BadData(format!("invalid source label name in label_join(): {bad}")));
            }
            Ok(Value::Vector(
                v.into_iter()
                    .map(|s| {
                        let joined = srcs.iter().map(|k| s.labels.get(k).map_or("", String::as_str)).collect::<Vec<_>>().join(&sep);
                        let mut l = (*s.labels).clone();
                        if joined.is_empty() {
                            l.remove(&dst);
                        } else {
                            l.insert(dst.clone(), joined);
                        }
                        Sample { labels: Arc::new(l), ..s }
                    })
                    .collect(),
            ))
        }
        "histogram_quantile" => {
            let q = scalar(0)?;
            Ok(Value::Vector(histogram_quantile(q, vector(1)?, t)))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute" | "month" | "year" => {
            let v = if args.is_empty() { vec![Sample { labels: Arc::new(Labels::new()), value: t as f64 / 1000.0, t }] } else { vector(0)? };
            Ok(map_values(v, t, |secs| date_part(name, secs)))
        }
        other => Err(QueryError::Unsupported(format!("the function {other}()"))),
    }
}

pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

fn map_values(v: Vec<Sample>, t: i64, f: impl Fn(f64) -> f64) -> Value {
    Value::Vector(v.into_iter().map(|s| Sample { labels: drop_name(&s.labels), value: f(s.value), t }).collect())
}

fn per_series(r: &RangeArg<'_>, t: i64, f: impl Fn(&[(i64, f64)]) -> Option<f64>) -> Value {
    Value::Vector(r.series.iter().filter_map(|s| Some(Sample { labels: s.without_name(), value: f(&s.points)?, t })).collect())
}

pub(crate) fn math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        _ => return None,
    })
}

pub(crate) type OverTime = fn(&[(i64, f64)], f64) -> f64;

pub(crate) fn over_time(name: &str) -> Option<OverTime> {
    Some(match name {
        "avg_over_time" => |p, _| {
            // Finite values: their sum over their count (the incremental mean below differs
            // from it in the last bits only, and costs a division per sample, which a range
            // query pays for every sample of every window). Infinities and NaN keep
            // Prometheus' incremental mean and its rules for them.
            let sum = plain_sum(p);
            if sum.is_finite() {
                return sum / p.len() as f64;
            }
            let mut mean = 0.0f64;
            let mut n = 0.0f64;
            for (_, v) in p {
                n += 1.0;
                if mean.is_infinite() && ((v.is_infinite() && (mean > 0.0) == (*v > 0.0)) || (!v.is_infinite() && !v.is_nan())) {
                    continue;
                }
                mean += v / n - mean / n;
            }
            mean
        },
        "sum_over_time" => |p, _| kahan_sum(p.iter().map(|x| x.1)),
        "count_over_time" => |p, _| p.len() as f64,
        "present_over_time" => |_, _| 1.0,
        "last_over_time" => |p, _| p.last().map_or(f64::NAN, |x| x.1),
        "max_over_time" => |p, _| p.iter().fold(p[0].1, |m, (_, v)| if *v > m || m.is_nan() { *v } else { m }),
        "min_over_time" => |p, _| p.iter().fold(p[0].1, |m, (_, v)| if *v < m || m.is_nan() { *v } else { m }),
        "quantile_over_time" => |p, q| quantile(q, p.iter().map(|x| x.1).collect()),
        "stddev_over_time" => |p, _| variance(p).sqrt(),
        "stdvar_over_time" => |p, _| variance(p),
        _ => return None,
    })
}

/// The values' sum in four lanes (what lets the additions overlap); infinite or NaN when any
/// value is, or when it overflows.
fn plain_sum(p: &[(i64, f64)]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let mut chunks = p.chunks_exact(4);
    for c in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(c) {
            *lane += x.1;
        }
    }
    let mut sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for x in chunks.remainder() {
        sum += x.1;
    }
    sum
}

fn variance(p: &[(i64, f64)]) -> f64 {
    let (mut n, mut mean, mut aux) = (0.0, 0.0, 0.0);
    for (_, v) in p {
        n += 1.0;
        let delta = v - mean;
        mean += delta / n;
        aux += delta * (v - mean);
    }
    aux / n
}

/// Neumaier's compensated sum, as Prometheus' `kahanSumInc`.
fn kahan_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for v in values {
        let t = sum + v;
        if sum.abs() >= v.abs() {
            c += (sum - t) + v;
        } else {
            c += (v - t) + sum;
        }
        sum = t;
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// Prometheus' `extrapolatedRate`: the increase between the first and last samples (counter
/// resets added back for counters), extrapolated towards the window's edges by at most half
/// an average sample interval, and never below zero for a counter.
///
/// `window` is the range's `(start, end, range_ms)`; `resets` the value before each counter
/// reset inside `p`, in order (a range query's sliding pass finds them once per series).
pub(crate) fn extrapolated_rate(p: &[(i64, f64)], window: (i64, i64, i64), counter: bool, per_second: bool, resets: &[f64]) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (start, end, range_ms) = window;
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        for prev in resets {
            result += prev;
        }
    }
    let mut to_start = (first.0 - start) as f64 / 1000.0;
    let to_end = (end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_step = sampled / (p.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg_step / 2.0 };
    interval += if to_end < threshold { to_end } else { avg_step / 2.0 };
    result *= interval / sampled;
    if per_second {
        result /= range_ms as f64 / 1000.0;
    }
    Some(result)
}

/// `irate` and `idelta`: the last two samples.
pub(crate) fn instant_delta(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut result = if rate && last.1 < prev.1 { last.1 } else { last.1 - prev.1 };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept (at `intercept_t`, ms) of the samples, in per-second units.
pub(crate) fn linear_regression(p: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let init = p[0].1;
    if p.iter().all(|(_, v)| *v == init) {
        return if init.is_infinite() { (f64::NAN, f64::NAN) } else { (0.0, init) };
    }
    let n = p.len() as f64;
    let xs = || p.iter().map(|(t, _)| (t - intercept_t) as f64 / 1000.0);
    let sum_x = kahan_sum(xs());
    let sum_y = kahan_sum(p.iter().map(|x| x.1));
    let sum_xy = kahan_sum(xs().zip(p.iter()).map(|(x, (_, y))| x * y));
    let sum_x2 = kahan_sum(xs().map(|x| x * x));
    let cov = sum_xy - sum_x * sum_y / n;
    let var = sum_x2 - sum_x * sum_x / n;
    let slope = cov / var;
    (slope, sum_y / n - slope * sum_x / n)
}

/// The φ-quantile of values, interpolated between ranks as Prometheus' `quantile`.
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus' vectorByValueHeap.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// The labels `absent()` answers with: the selector's equality matchers, except the name and
/// labels matched more than once or otherwise.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::Paren(p) => return absent_labels(&p.expr),
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut out = Labels::new();
    let mut drop = Vec::new();
    for m in selector_matchers(vs) {
        if m.name == NAME_LABEL {
            continue;
        }
        if m.op == MatchOp::Equal && !out.contains_key(&m.name) {
            out.insert(m.name.clone(), m.value.clone());
        } else {
            drop.push(m.name.clone());
        }
    }
    for d in drop {
        out.remove(&d);
    }
    out
}

/// `histogram_quantile` over classic buckets (`le` labels), as Prometheus' `bucketQuantile`.
fn histogram_quantile(q: f64, v: Vec<Sample>, t: i64) -> Vec<Sample> {
    let mut groups: std::collections::BTreeMap<Labels, Vec<(f64, f64)>> = std::collections::BTreeMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(|le| le.parse::<f64>().ok()) else { continue };
        let mut key = (*s.labels).clone();
        key.remove("le");
        key.remove(NAME_LABEL);
        groups.entry(key).or_default().push((le, s.value));
    }
    groups.into_iter().map(|(labels, buckets)| Sample { labels: Arc::new(labels), value: bucket_quantile(q, buckets), t }).collect()
}

pub(crate) fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if b.last().is_none_or(|x| x.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound (from series differing only by name) are added.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for (le, c) in b {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => merged.push((le, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for x in &mut merged {
        if x.1 > max {
            max = x.1;
        } else if x.1 < max {
            x.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let i = merged[..n].partition_point(|x| x.1 < rank);
    if i == n {
        return merged[n - 1].0;
    }
    if i == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[i].0, merged[i].1);
    if i > 0 {
        start = merged[i - 1].0;
        count -= merged[i - 1].1;
        rank -= merged[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The calendar functions (UTC) of a Unix time in seconds.
fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let s = secs.floor() as i64;
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let d = doy_mar - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let v = match name {
        "day_of_month" => d,
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_year" => month_days[..(m - 1) as usize].iter().sum::<i64>() + d,
        "days_in_month" => month_days[(m - 1) as usize],
        "hour" => sod / 3600,
        "minute" => sod % 3600 / 60,
        "month" => m,
        _ => y,
    };
    v as f64
}
