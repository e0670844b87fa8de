//! The evaluator: an expression at one timestamp, and queries (instant and range) as
//! evaluations at each step, the way Prometheus defines them.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use crate::source::{Labels, NAME_LABEL, SeriesSource, is_stale};
use crate::steps::{Column, Stepped, Steps};
use crate::value::{Sample, Series, Value};
use crate::{QueryError, aggregate, binary, functions};

/// What one query may touch: bounds on what it reads, so one query cannot take the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Samples read from the source, all selectors together.
    pub max_samples: usize,
    /// Series read from the source, all selectors together.
    pub max_series: usize,
    /// Steps of a range query (Prometheus refuses more than 11,000).
    pub max_steps: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_samples: 50_000_000, max_series: 500_000, max_steps: 11_000 }
    }
}

/// An answer and the warnings that go with it (the resolution of roll-up data).
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
}

/// Evaluates PromQL over a [`SeriesSource`].
pub struct Engine<'a> {
    source: &'a dyn SeriesSource,
    limits: Limits,
    /// How far back an instant selector looks for a sample (Prometheus: 5 minutes).
    pub lookback_ms: i64,
}

/// The default step of a subquery without one (Prometheus' global evaluation interval).
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

impl<'a> Engine<'a> {
    pub fn new(source: &'a dyn SeriesSource, limits: Limits) -> Self {
        Engine { source, limits, lookback_ms: 5 * 60_000 }
    }

    /// An instant query at `t` (ms).
    pub fn instant(&self, query: &str, t: i64) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        let ev = Evaluator::new(self, &expr, t, t, 0)?;
        let mut value = ev.eval(&expr, t)?;
        if let Value::Vector(v) = &mut value
            && !keeps_order(&expr)
        {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        if let Value::Matrix(m) = &mut value {
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(QueryResult { value, warnings: ev.warnings.into_inner() })
    }

    /// A range query: `query` evaluated at `start`, `start + step`, … up to `end` (ms).
    pub fn range(&self, query: &str, start: i64, end: i64, step: i64) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::BadData("zero or negative query resolution step widths are not accepted. Try a positive integer".into()));
        }
        if end < start {
            return Err(QueryError::BadData("end timestamp must not be before start time".into()));
        }
        if (end - start) / step >= self.limits.max_steps as i64 {
            return Err(QueryError::BadData(format!("exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)", self.limits.max_steps)));
        }
        let expr = parse(query)?;
        let ev = Evaluator::new(self, &expr, start, end, step)?;
        let steps = Steps::new(start, end, step);
        let columns = match ev.eval_steps(&expr, &steps)? {
            Stepped::Scalar(v) => vec![Column { labels: Arc::new(Labels::new()), values: v.into_iter().map(Some).collect() }],
            Stepped::Vector(v) => v,
        };
        let mut m: Vec<Series> = columns
            .into_iter()
            .filter_map(|c| {
                let points: Vec<(i64, f64)> = c.values.into_iter().enumerate().filter_map(|(k, v)| Some((steps.at(k), v?))).collect();
                (!points.is_empty()).then_some(Series { labels: c.labels, points })
            })
            .collect();
        m.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult { value: Value::Matrix(m), warnings: ev.warnings.into_inner() })
    }
}

pub(crate) fn type_word(v: &Value) -> &'static str {
    match v {
        Value::Matrix(_) => "range vector",
        Value::String(_) => "string",
        _ => v.type_name(),
    }
}

fn parse(query: &str) -> Result<Expr, QueryError> {
    if query.trim().is_empty() {
        return Err(QueryError::Parse("1:1: parse error: no expression found in input".into()));
    }
    promql_parser::parser::parse(query).map_err(QueryError::Parse)
}

/// Whether an instant query's vector keeps the order its outermost function gave it.
fn keeps_order(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => keeps_order(&p.expr),
        Expr::Call(c) => matches!(c.func.name, "sort" | "sort_desc"),
        _ => false,
    }
}

/// One series as loaded for a selector.
pub(crate) struct Loaded {
    pub labels: Arc<Labels>,
    /// The labels without the name, made once: what range functions answer with at every step.
    pub unnamed: Arc<Labels>,
    pub samples: Vec<(i64, f64)>,
}

/// The evaluation of one query: what its selectors read (once, for every step), and the
/// warnings the reads gave.
pub(crate) struct Evaluator<'e> {
    engine: &'e Engine<'e>,
    /// The query's start and end (ms): what `@ start()` and `@ end()` mean.
    start: i64,
    end: i64,
    /// Each selector's series, by the selector's address in the parsed expression.
    loaded: HashMap<usize, Vec<Loaded>>,
    pub warnings: RefCell<Vec<String>>,
    samples_read: Cell<usize>,
}

pub(crate) fn ms_of(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms_of(d),
        Some(Offset::Neg(d)) => -ms_of(d),
    }
}

impl RangeSeries<'_> {
    /// The labels a range function answers with: these, without the name.
    pub fn without_name(&self) -> Arc<Labels> {
        self.unnamed.clone().unwrap_or_else(|| drop_name(&self.labels))
    }
}

impl<'e> Evaluator<'e> {
    /// How far back an instant selector looks for a sample.
    pub(crate) fn lookback_ms(&self) -> i64 {
        self.engine.lookback_ms
    }

    fn new(engine: &'e Engine<'e>, expr: &Expr, start: i64, end: i64, _step: i64) -> Result<Self, QueryError> {
        let mut ev = Evaluator { engine, start, end, loaded: HashMap::new(), warnings: RefCell::new(Vec::new()), samples_read: Cell::new(0) };
        let mut windows: HashMap<usize, (&VectorSelector, i64, i64)> = HashMap::new();
        ev.plan(expr, start, end, &mut windows)?;
        let mut series = 0usize;
        for (key, (vs, from, to)) in windows {
            let matchers = selector_matchers(vs);
            let sel = engine.source.select(&matchers, from, to)?;
            series += sel.series.len();
            let n: usize = sel.series.iter().map(|s| s.samples.len()).sum();
            ev.samples_read.set(ev.samples_read.get() + n);
            if series > engine.limits.max_series {
                return Err(QueryError::TooMuch { what: "series", limit: engine.limits.max_series });
            }
            if ev.samples_read.get() > engine.limits.max_samples {
                return Err(QueryError::TooMuch { what: "samples", limit: engine.limits.max_samples });
            }
            for w in sel.warnings {
                if !ev.warnings.borrow().contains(&w) {
                    ev.warnings.borrow_mut().push(w);
                }
            }
            ev.loaded.insert(
                key,
                sel.series
                    .into_iter()
                    .map(|s| {
                        let labels = Arc::new(s.labels);
                        Loaded { unnamed: drop_name(&labels), labels, samples: s.samples }
                    })
                    .collect(),
            );
        }
        Ok(ev)
    }

    /// The time an `@` modifier pins evaluation to, else `t`.
    pub fn at_time(&self, at: &Option<AtModifier>, t: i64) -> i64 {
        match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => match st.duration_since(UNIX_EPOCH) {
                Ok(d) => ms_of(&d),
                Err(e) => -ms_of(&e.duration()),
            },
        }
    }

    /// The span of evaluation times `[from, to]` of `at`/`offset`-modified expression.
    fn shifted(&self, at: &Option<AtModifier>, off: &Option<Offset>, from: i64, to: i64) -> (i64, i64) {
        let o = offset_ms(off);
        match at {
            None => (from - o, to - o),
            Some(_) => {
                let a = self.at_time(at, from) - o;
                (a, a)
            }
        }
    }

    /// Records, for every selector, the window of samples the evaluations over `[from, to]`
    /// need.
    fn plan<'x>(&self, e: &'x Expr, from: i64, to: i64, w: &mut HashMap<usize, (&'x VectorSelector, i64, i64)>) -> Result<(), QueryError> {
        let mut add = |vs: &'x VectorSelector, a: i64, b: i64| {
            let key = vs as *const VectorSelector as usize;
            let entry = w.entry(key).or_insert((vs, a, b));
            entry.1 = entry.1.min(a);
            entry.2 = entry.2.max(b);
        };
        match e {
            Expr::VectorSelector(vs) => {
                refuse_or_matchers(vs)?;
                let (a, b) = self.shifted(&vs.at, &vs.offset, from, to);
                add(vs, a - self.engine.lookback_ms, b);
            }
            Expr::MatrixSelector(ms) => {
                refuse_or_matchers(&ms.vs)?;
                let (a, b) = self.shifted(&ms.vs.at, &ms.vs.offset, from, to);
                add(&ms.vs, a - ms_of(&ms.range), b);
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.shifted(&sq.at, &sq.offset, from, to);
                self.plan(&sq.expr, a - ms_of(&sq.range), b, w)?;
            }
            Expr::Aggregate(a) => {
                self.plan(&a.expr, from, to, w)?;
                if let Some(p) = &a.param {
                    self.plan(p, from, to, w)?;
                }
            }
            Expr::Unary(u) => self.plan(&u.expr, from, to, w)?,
            Expr::Binary(b) => {
                self.plan(&b.lhs, from, to, w)?;
                self.plan(&b.rhs, from, to, w)?;
            }
            Expr::Paren(p) => self.plan(&p.expr, from, to, w)?,
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, from, to, w)?;
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::Extension(_) => return Err(QueryError::Unsupported("an extension expression".into())),
        }
        Ok(())
    }

    /// `e` evaluated at `t` (ms).
    pub fn eval(&self, e: &Expr, t: i64) -> Result<Value, QueryError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => unique(Value::Vector(v.into_iter().map(|s| Sample { labels: drop_name(&s.labels), value: -s.value, t }).collect())),
                other => Err(QueryError::BadData(format!("unary expression only allowed on expressions of type scalar or instant vector, got \"{}\"", type_word(&other)))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant_vector(vs, t))),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => Ok(Value::Matrix(self.range_arg(e, t)?.series.into_iter().map(|s| Series { labels: s.labels, points: s.points.into_owned() }).collect())),
            Expr::Call(c) => unique(functions::call(self, c, t)?),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Binary(b) => unique(binary::eval(self, b, t)?),
            Expr::Extension(_) => Err(QueryError::Unsupported("an extension expression".into())),
        }
    }

    pub(crate) fn series_of(&self, vs: &VectorSelector) -> &[Loaded] {
        self.loaded.get(&(vs as *const VectorSelector as usize)).map_or(&[], Vec::as_slice)
    }

    /// An instant selector at `t`: each series' newest sample within the lookback, unless it
    /// is a stale marker.
    fn instant_vector(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let r = self.at_time(&vs.at, t) - offset_ms(&vs.offset);
        let mut out = Vec::new();
        for s in self.series_of(vs) {
            let i = s.samples.partition_point(|(ts, _)| *ts <= r);
            if i == 0 {
                continue;
            }
            let (ts, v) = s.samples[i - 1];
            if ts < r - self.engine.lookback_ms || is_stale(v) {
                continue;
            }
            out.push(Sample { labels: s.labels.clone(), value: v, t: ts });
        }
        out
    }

    /// A range vector argument (a matrix selector or a subquery, in parentheses or not) at
    /// `t`, with the window it covers.
    pub fn range_arg<'s>(&'s self, e: &Expr, t: i64) -> Result<RangeArg<'s>, QueryError> {
        match e {
            Expr::Paren(p) => self.range_arg(&p.expr, t),
            Expr::MatrixSelector(ms) => {
                let end = self.at_time(&ms.vs.at, t) - offset_ms(&ms.vs.offset);
                let start = end - ms_of(&ms.range);
                let mut series = Vec::new();
                for s in self.series_of(&ms.vs) {
                    let a = s.samples.partition_point(|(ts, _)| *ts < start);
                    let b = s.samples.partition_point(|(ts, _)| *ts <= end);
                    let window = &s.samples[a..b];
                    // Borrowed unless stale markers must be taken out: a range query reads the
                    // same samples at every step.
                    let points = if window.iter().any(|(_, v)| is_stale(*v)) { Cow::Owned(window.iter().copied().filter(|(_, v)| !is_stale(*v)).collect()) } else { Cow::Borrowed(window) };
                    if !points.is_empty() {
                        series.push(RangeSeries { labels: s.labels.clone(), unnamed: Some(s.unnamed.clone()), points });
                    }
                }
                Ok(RangeArg { series, start, end, range_ms: ms_of(&ms.range), selector: Some(&ms.vs as *const VectorSelector as usize) })
            }
            Expr::Subquery(sq) => self.subquery(sq, t),
            _ => Err(QueryError::BadData(format!("expected type range vector, got {}", e))),
        }
    }

    fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<RangeArg<'static>, QueryError> {
        let end = self.at_time(&sq.at, t) - offset_ms(&sq.offset);
        let range = ms_of(&sq.range);
        let start = end - range;
        let step = sq.step.as_ref().map_or(DEFAULT_SUBQUERY_STEP_MS, ms_of).max(1);
        let mut first = step * start.div_euclid(step);
        if first < start {
            first += step;
        }
        let mut by: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
        let mut ts = first;
        while ts <= end {
            match self.eval(&sq.expr, ts)? {
                Value::Scalar(v) => by.entry(Arc::new(Labels::new())).or_default().push((ts, v)),
                Value::Vector(v) => {
                    for s in v {
                        if !is_stale(s.value) {
                            by.entry(s.labels).or_default().push((ts, s.value));
                        }
                    }
                }
                other => return Err(QueryError::BadData(format!("subquery is only allowed on instant vector, got {} instead", type_word(&other)))),
            }
            ts += step;
        }
        Ok(RangeArg { series: by.into_iter().map(|(labels, points)| RangeSeries { labels, unnamed: None, points: Cow::Owned(points) }).collect(), start, end, range_ms: range, selector: None })
    }
}

/// One series of a range vector, its samples borrowed from what the selector read where it can.
pub(crate) struct RangeSeries<'a> {
    pub labels: Arc<Labels>,
    /// `labels` without the name, where made already.
    pub unnamed: Option<Arc<Labels>>,
    pub points: Cow<'a, [(i64, f64)]>,
}

/// A range vector with the window `[start, end]` (ms) it was read over.
pub(crate) struct RangeArg<'a> {
    pub series: Vec<RangeSeries<'a>>,
    pub start: i64,
    pub end: i64,
    pub range_ms: i64,
    /// The matrix selector it came from (for `absent_over_time`'s labels), if any.
    #[allow(dead_code)]
    pub selector: Option<usize>,
}

/// The matchers of a selector, its metric name included.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Vec<Matcher> {
    let mut m = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name
        && !m.iter().any(|x| x.name == NAME_LABEL && x.op == MatchOp::Equal && &x.value == name)
    {
        m.push(Matcher::new(MatchOp::Equal, NAME_LABEL, name));
    }
    m
}

/// Labels without the metric name: what arithmetic and most functions return.
pub(crate) fn drop_name(l: &Arc<Labels>) -> Arc<Labels> {
    if l.contains_key(NAME_LABEL) {
        let mut x = (**l).clone();
        x.remove(NAME_LABEL);
        Arc::new(x)
    } else {
        l.clone()
    }
}

/// The matchers of a series selector (`up{job="a"}`), as the `match[]` parameters carry them.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, QueryError> {
    match parse(s)? {
        Expr::VectorSelector(vs) if vs.matchers.or_matchers.is_empty() => Ok(selector_matchers(&vs)),
        _ => Err(QueryError::BadData(format!("{s:?} is not a series selector"))),
    }
}

/// `{a="1" or b="2"}` is Prometheus 3's; 2.x, whose answers this engine gives, has no such thing.
fn refuse_or_matchers(vs: &VectorSelector) -> Result<(), QueryError> {
    if vs.matchers.or_matchers.is_empty() { Ok(()) } else { Err(QueryError::Unsupported("`or` between matchers of one selector".into())) }
}

/// Prometheus refuses a vector in which two elements have the same labels (what dropping the
/// name or rewriting a label can make), rather than answer one of them.
fn unique(v: Value) -> Result<Value, QueryError> {
    if let Value::Vector(samples) = &v
        && samples.len() > 1
    {
        let mut seen = std::collections::HashSet::with_capacity(samples.len());
        if !samples.iter().all(|s| seen.insert(&*s.labels)) {
            return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into()));
        }
    }
    Ok(v)
}
