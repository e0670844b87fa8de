//! Range queries evaluated over all their steps at once, the way VictoriaMetrics' rollups
//! work: each selector's series is walked once with moving indices (lookback, range windows,
//! counter resets), group keys are made once per series and query, and per-step state lives
//! in dense arrays. An expression this path does not cover is evaluated step by step
//! ([`Evaluator::eval`]), so every answer stays Prometheus' answer; `per_step` is that seam.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorSelector};

use crate::eval::{Evaluator, Loaded, drop_name, ms_of, offset_ms, type_word};
use crate::source::{Labels, NAME_LABEL, is_stale};
use crate::value::Value;
use crate::{QueryError, aggregate, binary, functions};

/// The evaluation times of a range query: `start`, `start + step`, … (`len` of them).
pub(crate) struct Steps {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

impl Steps {
    pub fn new(start: i64, end: i64, step: i64) -> Steps {
        Steps { start, step, len: ((end - start) / step) as usize + 1 }
    }

    pub fn at(&self, k: usize) -> i64 {
        self.start + k as i64 * self.step
    }
}

/// One series of an expression's value over every step: `None` where it has no sample.
pub(crate) struct Column {
    pub labels: Arc<Labels>,
    pub values: Vec<Option<f64>>,
}

/// An expression's value over every step.
pub(crate) enum Stepped {
    Scalar(Vec<f64>),
    Vector(Vec<Column>),
}

impl Evaluator<'_> {
    /// `e` at every step of `st`.
    pub(crate) fn eval_steps(&self, e: &Expr, st: &Steps) -> Result<Stepped, QueryError> {
        let fast = match e {
            Expr::NumberLiteral(n) => Some(Stepped::Scalar(vec![n.val; st.len])),
            Expr::Paren(p) => return self.eval_steps(&p.expr, st),
            Expr::Unary(u) => Some(match self.eval_steps(&u.expr, st)? {
                Stepped::Scalar(v) => Stepped::Scalar(v.into_iter().map(|x| -x).collect()),
                Stepped::Vector(cols) => {
                    Stepped::Vector(unique(cols.into_iter().map(|c| Column { labels: drop_name(&c.labels), values: c.values.into_iter().map(|v| v.map(|x| -x)).collect() }).collect())?)
                }
            }),
            Expr::VectorSelector(vs) if vs.at.is_none() => Some(Stepped::Vector(self.selector_steps(vs, st))),
            Expr::Call(c) => self.call_steps(c, st)?,
            Expr::Aggregate(a) => self.aggregate_steps(a, st)?,
            Expr::Binary(b) => self.binary_steps(b, st)?,
            _ => None,
        };
        match fast {
            Some(v) => Ok(v),
            None => self.per_step(e, st),
        }
    }

    /// `e` evaluated at each step on its own, gathered into columns by labels.
    fn per_step(&self, e: &Expr, st: &Steps) -> Result<Stepped, QueryError> {
        let mut scalar: Option<Vec<f64>> = None;
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
        let mut cols: Vec<Column> = Vec::new();
        for k in 0..st.len {
            match self.eval(e, st.at(k))? {
                Value::Scalar(v) => scalar.get_or_insert_with(|| Vec::with_capacity(st.len)).push(v),
                Value::Vector(v) => {
                    for s in v {
                        let i = *index.entry(s.labels.clone()).or_insert_with(|| {
                            cols.push(Column { labels: s.labels, values: vec![None; st.len] });
                            cols.len() - 1
                        });
                        cols[i].values[k] = Some(s.value);
                    }
                }
                other => return Err(QueryError::BadData(format!("invalid expression type \"{}\" for range query, must be Scalar or instant Vector", type_word(&other)))),
            }
        }
        Ok(match scalar {
            Some(v) if v.len() == st.len => Stepped::Scalar(v),
            _ => Stepped::Vector(cols),
        })
    }

    fn vector_steps(&self, e: &Expr, st: &Steps, what: &str) -> Result<Vec<Column>, QueryError> {
        match self.eval_steps(e, st)? {
            Stepped::Vector(v) => Ok(v),
            Stepped::Scalar(_) => Err(QueryError::BadData(format!("expected type instant vector in {what}, got scalar"))),
        }
    }

    fn scalar_steps(&self, e: &Expr, st: &Steps, what: &str) -> Result<Vec<f64>, QueryError> {
        match self.eval_steps(e, st)? {
            Stepped::Scalar(v) => Ok(v),
            Stepped::Vector(_) => Err(QueryError::BadData(format!("expected type scalar in {what}, got instant vector"))),
        }
    }

    /// An instant selector at every step: one moving index per series finds the newest sample
    /// within the lookback.
    fn selector_steps(&self, vs: &VectorSelector, st: &Steps) -> Vec<Column> {
        let off = offset_ms(&vs.offset);
        let lookback = self.lookback_ms();
        let mut out = Vec::new();
        for s in self.series_of(vs) {
            let mut values = Vec::with_capacity(st.len);
            let (mut i, mut any) = (0, false);
            for k in 0..st.len {
                let r = st.at(k) - off;
                while i < s.samples.len() && s.samples[i].0 <= r {
                    i += 1;
                }
                let v = match i.checked_sub(1).map(|j| s.samples[j]) {
                    Some((ts, v)) if ts >= r - lookback && !is_stale(v) => Some(v),
                    _ => None,
                };
                any |= v.is_some();
                values.push(v);
            }
            if any {
                out.push(Column { labels: s.labels.clone(), values });
            }
        }
        out
    }

    /// A function of a range window over every step: per series, two indices slide over its
    /// samples (stale markers taken out once). `f` gets the window, the window's
    /// `(start, end)`, the step's index and the series' counter resets inside the window.
    fn sliding(&self, ms: &MatrixSelector, st: &Steps, keep_name: bool, mut f: impl FnMut(&[(i64, f64)], (i64, i64), usize, &[f64]) -> Option<f64>) -> Result<Vec<Column>, QueryError> {
        let off = offset_ms(&ms.vs.offset);
        let range = ms_of(&ms.range);
        let mut out = Vec::new();
        for s in self.series_of(&ms.vs) {
            let samples = without_stale(s);
            let p: &[(i64, f64)] = &samples;
            // The sample index after each reset and the value before it.
            let (mut reset_at, mut reset_prev) = (Vec::new(), Vec::new());
            for (j, w) in p.windows(2).enumerate() {
                if w[1].1 < w[0].1 {
                    reset_at.push(j + 1);
                    reset_prev.push(w[0].1);
                }
            }
            let (mut a, mut b, mut ra, mut rb) = (0, 0, 0, 0);
            let mut values = Vec::with_capacity(st.len);
            let mut any = false;
            for k in 0..st.len {
                let end = st.at(k) - off;
                let start = end - range;
                while a < p.len() && p[a].0 < start {
                    a += 1;
                }
                while b < p.len() && p[b].0 <= end {
                    b += 1;
                }
                while ra < reset_at.len() && reset_at[ra] <= a {
                    ra += 1;
                }
                while rb < reset_at.len() && reset_at[rb] < b {
                    rb += 1;
                }
                let v = if a < b { f(&p[a..b], (start, end), k, &reset_prev[ra..rb.max(ra)]) } else { None };
                any |= v.is_some();
                values.push(v);
            }
            if any {
                out.push(Column { labels: if keep_name { s.labels.clone() } else { s.unnamed.clone() }, values });
            }
        }
        if keep_name { Ok(out) } else { unique(out) }
    }

    fn call_steps(&self, c: &Call, st: &Steps) -> Result<Option<Stepped>, QueryError> {
        let name = c.func.name;
        let args = &c.args.args;
        if let Some(f) = functions::math(name)
            && args.len() == 1
        {
            let cols = self.vector_steps(&args[0], st, &format!("call to function {name:?}"))?;
            return Ok(Some(Stepped::Vector(unique(cols.into_iter().map(|c| Column { labels: drop_name(&c.labels), values: c.values.into_iter().map(|v| v.map(f)).collect() }).collect())?)));
        }
        if let Some(f) = functions::over_time(name) {
            let quantile = name == "quantile_over_time";
            let Some(ms) = args.get(usize::from(quantile)).and_then(|a| plain_matrix(a)) else { return Ok(None) };
            let q = if quantile { self.scalar_steps(&args[0], st, "call to function \"quantile_over_time\"")? } else { Vec::new() };
            let cols = self.sliding(ms, st, name == "last_over_time", |p, _, k, _| Some(f(p, q.get(k).copied().unwrap_or(f64::NAN))))?;
            return Ok(Some(Stepped::Vector(cols)));
        }
        let Some(ms) = args.first().and_then(|a| plain_matrix(a)) else {
            return if name == "histogram_quantile" { self.histogram_quantile_steps(c, st) } else { Ok(None) };
        };
        let range = ms_of(&ms.range);
        let cols = match name {
            "rate" | "increase" | "delta" => {
                let (counter, per_second) = (name != "delta", name == "rate");
                self.sliding(ms, st, false, |p, (start, end), _, resets| functions::extrapolated_rate(p, (start, end, range), counter, per_second, resets))?
            }
            "irate" | "idelta" => self.sliding(ms, st, false, |p, _, _, _| functions::instant_delta(p, name == "irate"))?,
            "deriv" => self.sliding(ms, st, false, |p, _, _, _| (p.len() >= 2).then(|| functions::linear_regression(p, p[0].0).0))?,
            "resets" => self.sliding(ms, st, false, |_, _, _, resets| Some(resets.len() as f64))?,
            "changes" => self.sliding(ms, st, false, |p, _, _, _| Some(p.windows(2).filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan())).count() as f64))?,
            "predict_linear" => {
                let Some(arg) = args.get(1) else { return Ok(None) };
                let secs = self.scalar_steps(arg, st, "call to function \"predict_linear\"")?;
                self.sliding(ms, st, false, |p, (_, end), k, _| {
                    (p.len() >= 2).then(|| {
                        let (slope, intercept) = functions::linear_regression(p, end + offset_ms(&ms.vs.offset));
                        slope * secs[k] + intercept
                    })
                })?
            }
            _ => return Ok(None),
        };
        Ok(Some(Stepped::Vector(cols)))
    }

    /// `histogram_quantile`: the buckets grouped by their labels without `le` once, then each
    /// step's quantile from the buckets present at it.
    fn histogram_quantile_steps(&self, c: &Call, st: &Steps) -> Result<Option<Stepped>, QueryError> {
        let [q, v] = c.args.args.as_slice() else { return Ok(None) };
        let q = self.scalar_steps(q, st, "call to function \"histogram_quantile\"")?;
        let cols = self.vector_steps(v, st, "call to function \"histogram_quantile\"")?;
        let mut groups: BTreeMap<Labels, Vec<(f64, usize)>> = BTreeMap::new();
        for (i, c) in cols.iter().enumerate() {
            let Some(le) = c.labels.get("le").and_then(|le| le.parse::<f64>().ok()) else { continue };
            let mut key = (*c.labels).clone();
            key.remove("le");
            key.remove(NAME_LABEL);
            groups.entry(key).or_default().push((le, i));
        }
        let mut out = Vec::with_capacity(groups.len());
        let mut buckets = Vec::new();
        for (labels, members) in groups {
            let values = (0..st.len)
                .map(|k| {
                    buckets.clear();
                    buckets.extend(members.iter().filter_map(|(le, i)| cols[*i].values[k].map(|v| (*le, v))));
                    (!buckets.is_empty()).then(|| functions::bucket_quantile(q[k], buckets.clone()))
                })
                .collect();
            out.push(Column { labels: Arc::new(labels), values });
        }
        Ok(Some(Stepped::Vector(out)))
    }

    /// Aggregations: each input series' group found once, then every step's state
    /// accumulated in dense `groups × steps` arrays in the input's order (the order the
    /// step-by-step evaluation adds in, so the sums are the same to the bit).
    fn aggregate_steps(&self, a: &AggregateExpr, st: &Steps) -> Result<Option<Stepped>, QueryError> {
        let op = a.op.to_string();
        if !matches!(op.as_str(), "sum" | "avg" | "max" | "min" | "count" | "group" | "stddev" | "stdvar" | "topk" | "bottomk" | "quantile") {
            return Ok(None);
        }
        let what = format!("aggregation expression {op}");
        let param = match &a.param {
            Some(p) => Some(self.scalar_steps(p, st, &format!("the parameter of {op}"))?),
            None => None,
        };
        let input = self.vector_steps(&a.expr, st, &what)?;
        let (include, names): (bool, Vec<String>) = match &a.modifier {
            Some(LabelModifier::Include(n)) => (true, n.labels.clone()),
            Some(LabelModifier::Exclude(n)) => (false, n.labels.clone()),
            None => (true, Vec::new()),
        };
        let mut index: HashMap<Vec<(&str, &str)>, usize> = HashMap::new();
        let mut group_labels: Vec<Labels> = Vec::new();
        let group_of: Vec<usize> = input
            .iter()
            .map(|c| {
                let key = aggregate::group_key(&c.labels, include, &names);
                let n = index.len();
                *index.entry(key).or_insert_with_key(|key| {
                    group_labels.push(key.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
                    n
                })
            })
            .collect();
        let n = st.len;
        if matches!(op.as_str(), "topk" | "bottomk" | "quantile") {
            let Some(param) = param else { return Err(QueryError::BadData(format!("expected type scalar as the parameter of {op}"))) };
            return Ok(Some(Stepped::Vector(ranked(&op, &input, &group_of, group_labels, &param, n))));
        }
        let acc = match op.as_str() {
            "sum" => Acc::Sum,
            "avg" => Acc::Avg,
            "max" => Acc::Max,
            "min" => Acc::Min,
            "stddev" | "stdvar" => Acc::Variance,
            _ => Acc::Count,
        };
        let ng = group_labels.len();
        let mut value = vec![0.0f64; ng * n];
        let mut mean = vec![0.0f64; ng * n];
        let mut count = vec![0u32; ng * n];
        for (c, g) in input.iter().zip(&group_of) {
            let base = g * n;
            for (k, v) in c.values.iter().enumerate() {
                let Some(v) = *v else { continue };
                let i = base + k;
                count[i] += 1;
                let first = count[i] == 1;
                if first {
                    value[i] = v;
                    mean[i] = v;
                }
                match acc {
                    Acc::Sum if !first => value[i] += v,
                    Acc::Avg if !first => {
                        let m = mean[i];
                        let skip = m.is_infinite() && ((v.is_infinite() && (m > 0.0) == (v > 0.0)) || (!v.is_infinite() && !v.is_nan()));
                        if !skip {
                            let cnt = f64::from(count[i]);
                            mean[i] += v / cnt - m / cnt;
                        }
                    }
                    Acc::Max if value[i] < v || value[i].is_nan() => value[i] = v,
                    Acc::Min if value[i] > v || value[i].is_nan() => value[i] = v,
                    Acc::Variance => {
                        if first {
                            mean[i] = 0.0;
                            value[i] = 0.0;
                        }
                        let delta = v - mean[i];
                        mean[i] += delta / f64::from(count[i]);
                        value[i] += delta * (v - mean[i]);
                    }
                    _ => {}
                }
            }
        }
        let out = group_labels
            .into_iter()
            .enumerate()
            .map(|(g, labels)| {
                let values = (g * n..(g + 1) * n)
                    .map(|i| {
                        let cnt = f64::from(count[i]);
                        (count[i] > 0).then(|| match op.as_str() {
                            "avg" => mean[i],
                            "count" => cnt,
                            "group" => 1.0,
                            "stddev" => (value[i] / cnt).sqrt(),
                            "stdvar" => value[i] / cnt,
                            _ => value[i],
                        })
                    })
                    .collect();
                Column { labels: Arc::new(labels), values }
            })
            .collect();
        Ok(Some(Stepped::Vector(out)))
    }

    /// Binary operators with a scalar on at least one side, element by element; two vectors
    /// (vector matching) are evaluated step by step.
    fn binary_steps(&self, b: &BinaryExpr, st: &Steps) -> Result<Option<Stepped>, QueryError> {
        let op = b.op.to_string();
        let (lt, rt) = (b.lhs.value_type(), b.rhs.value_type());
        if lt == ValueType::Vector && rt == ValueType::Vector || matches!(op.as_str(), "and" | "or" | "unless") {
            return Ok(None);
        }
        let comparison = binary::is_comparison(&op);
        let return_bool = b.return_bool();
        Ok(Some(match (self.eval_steps(&b.lhs, st)?, self.eval_steps(&b.rhs, st)?) {
            (Stepped::Scalar(l), Stepped::Scalar(r)) => {
                let mut out = Vec::with_capacity(st.len);
                for (l, r) in l.into_iter().zip(r) {
                    let (v, keep) = binary::apply(&op, l, r)?;
                    out.push(if comparison { if keep { 1.0 } else { 0.0 } } else { v });
                }
                Stepped::Scalar(out)
            }
            (Stepped::Vector(v), Stepped::Scalar(s)) => Stepped::Vector(vector_scalar(&op, v, &s, false, return_bool)?),
            (Stepped::Scalar(s), Stepped::Vector(v)) => Stepped::Vector(vector_scalar(&op, v, &s, true, return_bool)?),
            (Stepped::Vector(_), Stepped::Vector(_)) => return Ok(None),
        }))
    }
}

/// What an aggregation keeps per group and step.
#[derive(Clone, Copy)]
enum Acc {
    Sum,
    Avg,
    Max,
    Min,
    Variance,
    Count,
}

/// `topk`, `bottomk` and `quantile`: per step and group, the members present ranked as the
/// step-by-step evaluation ranks them (its stable sort: ties keep the input's order).
fn ranked(op: &str, input: &[Column], group_of: &[usize], group_labels: Vec<Labels>, param: &[f64], n: usize) -> Vec<Column> {
    let ng = group_labels.len();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); ng];
    for (i, g) in group_of.iter().enumerate() {
        members[*g].push(i);
    }
    if op == "quantile" {
        return group_labels
            .into_iter()
            .zip(&members)
            .map(|(labels, m)| {
                let values = (0..n)
                    .map(|k| {
                        let vals: Vec<f64> = m.iter().filter_map(|i| input[*i].values[k]).collect();
                        (!vals.is_empty()).then(|| functions::quantile(param[k], vals))
                    })
                    .collect();
                Column { labels: Arc::new(labels), values }
            })
            .collect();
    }
    let top = op == "topk";
    // NaN is the least wanted in both (Prometheus' heaps put it last).
    let order = |(a, i): &(f64, usize), (b, j): &(f64, usize)| -> Ordering {
        let by_value = match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ if top => b.total_cmp(a),
            _ => a.total_cmp(b),
        };
        by_value.then(i.cmp(j))
    };
    let mut out: Vec<Option<Vec<Option<f64>>>> = vec![None; input.len()];
    let mut present: Vec<(f64, usize)> = Vec::new();
    for (k, kk) in param.iter().enumerate() {
        if *kk < 1.0 || kk.is_nan() {
            continue;
        }
        for m in &members {
            present.clear();
            present.extend(m.iter().filter_map(|i| input[*i].values[k].map(|v| (v, *i))));
            if present.is_empty() {
                continue;
            }
            let keep = if *kk >= present.len() as f64 { present.len() } else { *kk as usize };
            if keep < present.len() {
                present.select_nth_unstable_by(keep - 1, order);
            }
            for (v, i) in &present[..keep] {
                out[*i].get_or_insert_with(|| vec![None; n])[k] = Some(*v);
            }
        }
    }
    out.into_iter().zip(input).filter_map(|(values, c)| Some(Column { labels: c.labels.clone(), values: values? })).collect()
}

/// A vector and a scalar, element by element, as the step-by-step `vector_scalar`.
fn vector_scalar(op: &str, v: Vec<Column>, s: &[f64], swap: bool, return_bool: bool) -> Result<Vec<Column>, QueryError> {
    let comparison = binary::is_comparison(op);
    let drop = binary::drops_name(op) || return_bool;
    let mut out = Vec::with_capacity(v.len());
    for c in v {
        let mut values = Vec::with_capacity(c.values.len());
        let mut any = false;
        for (x, s) in c.values.into_iter().zip(s) {
            let Some(x) = x else {
                values.push(None);
                continue;
            };
            let (l, r) = if swap { (*s, x) } else { (x, *s) };
            let (mut value, mut keep) = binary::apply(op, l, r)?;
            if comparison && swap {
                value = r;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            any |= keep;
            values.push(keep.then_some(value));
        }
        if any {
            out.push(Column { labels: if drop { drop_name(&c.labels) } else { c.labels }, values });
        }
    }
    if drop { unique(out) } else { Ok(out) }
}

/// A matrix selector, in parentheses or not, without `@` (which pins every step to one time:
/// left to the step-by-step path).
fn plain_matrix(e: &Expr) -> Option<&MatrixSelector> {
    match e {
        Expr::Paren(p) => plain_matrix(&p.expr),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => Some(ms),
        _ => None,
    }
}

fn without_stale(s: &Loaded) -> Cow<'_, [(i64, f64)]> {
    if s.samples.iter().any(|(_, v)| is_stale(*v)) { Cow::Owned(s.samples.iter().copied().filter(|(_, v)| !is_stale(*v)).collect()) } else { Cow::Borrowed(&s.samples) }
}

/// Columns with the same labels (what dropping the name can make) merged into one; two with a
/// value at the same step are refused, as Prometheus refuses such a vector at that step.
fn unique(cols: Vec<Column>) -> Result<Vec<Column>, QueryError> {
    let mut index: HashMap<Arc<Labels>, usize> = HashMap::with_capacity(cols.len());
    let mut out: Vec<Column> = Vec::with_capacity(cols.len());
    for c in cols {
        match index.get(&c.labels) {
            None => {
                index.insert(c.labels.clone(), out.len());
                out.push(c);
            }
            Some(&i) => {
                for (have, v) in out[i].values.iter_mut().zip(c.values) {
                    if v.is_some() {
                        if have.is_some() {
                            return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into()));
                        }
                        *have = v;
                    }
                }
            }
        }
    }
    Ok(out)
}
