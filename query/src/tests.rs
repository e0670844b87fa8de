//! The engine on in-memory series, against values worked out by hand from Prometheus'
//! definitions.

use crate::{Engine, Limits, MemorySource, QueryError, STALE_NAN_BITS, Value};

const S: i64 = 1000;
const M: i64 = 60 * S;

fn engine_over(src: &MemorySource) -> Engine<'_> {
    Engine::new(src, Limits::default())
}

/// `(labels as {k="v"}, value)` of an instant vector, sorted by labels.
fn vector(src: &MemorySource, q: &str, t: i64) -> Vec<(String, f64)> {
    match engine_over(src).instant(q, t).unwrap_or_else(|e| panic!("{q}: {e}")).value {
        Value::Vector(v) => v.iter().map(|s| (s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), s.value)).collect(),
        other => panic!("{q}: {other:?}"),
    }
}

fn one(src: &MemorySource, q: &str, t: i64) -> f64 {
    let v = vector(src, q, t);
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].1
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

/// Counters every 60 s from t = 30 s, one per second of increase, two GPUs.
fn counters() -> MemorySource {
    let mut src = MemorySource::default();
    for gpu in ["0", "1"] {
        let k = if gpu == "0" { 1.0 } else { 2.0 };
        src.push(&[("__name__", "energy_j"), ("node", "dgx-001"), ("gpu", gpu)], (0..20).map(|i| (30 * S + i * M, k * 60.0 * i as f64)).collect());
    }
    src
}

#[test]
fn rate_extrapolates_as_prometheus_and_stops_at_zero() {
    let src = counters();
    // Samples at 30, 90, …, 270 s: 240 s sampled, extrapolated 30 s to the end, and to the
    // start only as far as the counter's zero (0 s away): 270 s of a 1/s counter over 300 s.
    assert!(close(one(&src, "rate(energy_j{gpu=\"0\"}[5m])", 300 * S), 0.9));
    assert!(close(one(&src, "increase(energy_j{gpu=\"0\"}[5m])", 300 * S), 270.0));
    // Later, away from zero: 30 s extrapolated on each side of 240 s sampled.
    assert!(close(one(&src, "rate(energy_j{gpu=\"0\"}[5m])", 600 * S), 1.0));
    assert!(close(one(&src, "delta(energy_j{gpu=\"0\"}[5m])", 600 * S), 300.0));
    assert!(close(one(&src, "irate(energy_j{gpu=\"1\"}[5m])", 600 * S), 2.0));
    assert!(close(one(&src, "deriv(energy_j{gpu=\"1\"}[5m])", 600 * S), 2.0));
    let v = vector(&src, "sum by (node) (rate(energy_j[5m]))", 600 * S);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, "node=dgx-001");
    assert!(close(v[0].1, 3.0));
}

#[test]
fn counter_resets_are_added_back() {
    let mut src = MemorySource::default();
    // 0+10x5 0+10x4 every 5 m, as Prometheus' own functions test.
    let vals = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 0.0, 10.0, 20.0, 30.0, 40.0];
    src.push(&[("__name__", "http_requests"), ("path", "/bar")], vals.iter().enumerate().map(|(i, v)| (i as i64 * 5 * M, *v)).collect());
    assert!(close(one(&src, "increase(http_requests[50m])", 50 * M), 90.0));
    assert!(close(one(&src, "resets(http_requests[50m])", 50 * M), 1.0));
    assert!(close(one(&src, "changes(http_requests[50m])", 50 * M), 10.0));
}

#[test]
fn lookback_staleness_offset_and_at() {
    let mut src = MemorySource::default();
    src.push(&[("__name__", "power_w"), ("node", "a")], vec![(0, 100.0), (60 * S, 200.0)]);
    src.push(&[("__name__", "power_w"), ("node", "b")], vec![(0, 5.0), (30 * S, f64::from_bits(STALE_NAN_BITS))]);
    // Five minutes of lookback, closed at its start (Prometheus 2.x).
    assert_eq!(vector(&src, "power_w", 360 * S), vec![("__name__=power_w,node=a".to_owned(), 200.0)]);
    assert!(vector(&src, "power_w", 361 * S).is_empty());
    // A stale marker ends node b at once.
    assert_eq!(vector(&src, "power_w{node=\"b\"}", 10 * S).len(), 1);
    assert!(vector(&src, "power_w{node=\"b\"}", 40 * S).is_empty());
    assert!(close(one(&src, "power_w{node=\"a\"} offset 1m", 90 * S), 100.0));
    assert!(close(one(&src, "power_w{node=\"a\"} @ 30", 1000 * S), 100.0));
    assert!(close(one(&src, "timestamp(power_w{node=\"a\"})", 90 * S), 60.0));
}

#[test]
fn aggregations_group_and_order_as_prometheus() {
    let mut src = MemorySource::default();
    for (node, gpu, v) in [("a", "0", 1.0), ("a", "1", 3.0), ("b", "0", 10.0), ("b", "1", f64::NAN)] {
        src.push(&[("__name__", "util"), ("node", node), ("gpu", gpu)], vec![(0, v)]);
    }
    let t = 10 * S;
    assert_eq!(vector(&src, "sum without (gpu) (util{node=\"a\"})", t), vec![("node=a".to_owned(), 4.0)]);
    assert_eq!(vector(&src, "avg by (node) (util{node=\"a\"})", t), vec![("node=a".to_owned(), 2.0)]);
    assert_eq!(vector(&src, "max(util)", t)[0].1, 10.0, "NaN loses to numbers in max");
    assert_eq!(vector(&src, "count(util)", t)[0].1, 4.0);
    assert!(close(one(&src, "stddev(util{node=\"a\"})", t), 1.0));
    assert!(close(one(&src, "quantile(0.5, util{node=\"a\"})", t), 2.0));
    let top = vector(&src, "topk(2, util)", t);
    assert_eq!(top.iter().map(|x| x.1).collect::<Vec<_>>().len(), 2);
    assert!(top.iter().any(|x| x.1 == 10.0) && top.iter().any(|x| x.1 == 3.0));
    assert_eq!(vector(&src, "count_values(\"v\", util{node=\"a\"})", t).len(), 2);
    let sorted = engine_over(&src).instant("sort_desc(util{node=\"a\"})", t).unwrap().value;
    let Value::Vector(v) = sorted else { panic!() };
    assert_eq!(v.iter().map(|s| s.value).collect::<Vec<_>>(), vec![3.0, 1.0]);
}

#[test]
fn vector_matching_follows_on_ignoring_and_groups() {
    let mut src = MemorySource::default();
    src.push(&[("__name__", "gpu_power_w"), ("node", "a"), ("gpu", "0")], vec![(0, 500.0)]);
    src.push(&[("__name__", "gpu_power_w"), ("node", "a"), ("gpu", "1")], vec![(0, 300.0)]);
    src.push(&[("__name__", "node_power_w"), ("node", "a")], vec![(0, 1000.0)]);
    src.push(&[("__name__", "node_info"), ("node", "a"), ("rack", "r1")], vec![(0, 1.0)]);
    let t = 10 * S;
    let share = vector(&src, "gpu_power_w / on(node) group_left node_power_w", t);
    assert_eq!(share, vec![("gpu=0,node=a".to_owned(), 0.5), ("gpu=1,node=a".to_owned(), 0.3)]);
    let with_rack = vector(&src, "gpu_power_w * on(node) group_left(rack) node_info", t);
    assert_eq!(with_rack[0].0, "gpu=0,node=a,rack=r1");
    assert_eq!(vector(&src, "gpu_power_w > 400", t), vec![("__name__=gpu_power_w,gpu=0,node=a".to_owned(), 500.0)]);
    assert_eq!(vector(&src, "gpu_power_w > bool 400", t).len(), 2);
    assert_eq!(vector(&src, "gpu_power_w and on(node) node_power_w", t).len(), 2);
    assert_eq!(vector(&src, "gpu_power_w unless on(node) node_power_w", t).len(), 0);
    assert_eq!(vector(&src, "node_power_w or gpu_power_w", t).len(), 3);
    let many = engine_over(&src).instant("node_power_w / on(node) gpu_power_w", t);
    assert!(matches!(many, Err(QueryError::Execution(_))), "{many:?}");
}

#[test]
fn histogram_quantile_interpolates_classic_buckets() {
    let mut src = MemorySource::default();
    for (le, c) in [("0.1", 0.0), ("0.5", 5.0), ("1", 8.0), ("+Inf", 10.0)] {
        src.push(&[("__name__", "ttft_seconds_bucket"), ("model", "m"), ("le", le)], vec![(0, c)]);
    }
    let t = 10 * S;
    assert!(close(one(&src, "histogram_quantile(0.5, ttft_seconds_bucket)", t), 0.5));
    assert!(close(one(&src, "histogram_quantile(0.7, ttft_seconds_bucket)", t), 0.5 + 0.5 * 2.0 / 3.0));
    assert!(close(one(&src, "histogram_quantile(0.9, ttft_seconds_bucket)", t), 1.0));
    assert_eq!(vector(&src, "histogram_quantile(0.5, ttft_seconds_bucket)", t)[0].0, "model=m");
}

#[test]
fn over_time_functions_and_labels() {
    let mut src = MemorySource::default();
    src.push(&[("__name__", "temp_c"), ("gpu", "0"), ("job", "exporter")], vec![(0, 1.0), (10 * S, 2.0), (20 * S, 6.0)]);
    let t = 20 * S;
    assert!(close(one(&src, "avg_over_time(temp_c[1m])", t), 3.0));
    assert!(close(one(&src, "sum_over_time(temp_c[1m])", t), 9.0));
    assert!(close(one(&src, "max_over_time(temp_c[1m])", t), 6.0));
    assert!(close(one(&src, "min_over_time(temp_c[15s])", t), 2.0));
    assert!(close(one(&src, "quantile_over_time(0.5, temp_c[1m])", t), 2.0));
    assert!(close(one(&src, "count_over_time(temp_c[1m])", t), 3.0));
    assert_eq!(vector(&src, "last_over_time(temp_c[1m])", t)[0].0, "__name__=temp_c,gpu=0,job=exporter", "last_over_time keeps the name");
    assert!(close(one(&src, "max_over_time(temp_c[1m:10s])", t), 6.0));
    assert_eq!(vector(&src, "label_replace(temp_c, \"card\", \"gpu-$1\", \"gpu\", \"(.*)\")", t)[0].0, "__name__=temp_c,card=gpu-0,gpu=0,job=exporter");
    assert_eq!(vector(&src, "label_join(temp_c, \"id\", \"/\", \"job\", \"gpu\")", t)[0].0, "__name__=temp_c,gpu=0,id=exporter/0,job=exporter");
    assert_eq!(vector(&src, "absent(nothing{job=\"x\", gpu=~\"1\"})", t), vec![("job=x".to_owned(), 1.0)]);
    assert!(vector(&src, "absent(temp_c)", t).is_empty());
    assert_eq!(vector(&src, "absent_over_time(nothing[1m])", t).len(), 1);
    assert!(close(one(&src, "clamp(temp_c, 0, 4)", t), 4.0));
    assert!(close(one(&src, "round(temp_c / 4, 0.5)", t), 1.5));
    assert_eq!(vector(&src, "vector(1) + 1", t), vec![(String::new(), 2.0)]);
    assert!(close(one(&src, "hour(vector(3600 * 5 + 60))", t), 5.0));
}

#[test]
fn range_queries_answer_a_matrix_per_step() {
    let src = counters();
    let r = engine_over(&src).range("rate(energy_j[2m])", 300 * S, 600 * S, 60 * S).unwrap();
    let Value::Matrix(m) = r.value else { panic!() };
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].points.len(), 6);
    assert!(m[0].points.iter().all(|(_, v)| close(*v, 1.0)), "{:?}", m[0].points);
    let too_many = engine_over(&src).range("1", 0, 20_000 * S, S);
    assert!(matches!(too_many, Err(QueryError::BadData(_))));
    let matrix = engine_over(&src).range("energy_j[5m]", 0, 60 * S, 60 * S);
    assert!(matches!(matrix, Err(QueryError::BadData(_))));
}

#[test]
fn unsupported_and_wrong_queries_are_refused_by_name() {
    let src = counters();
    let e = engine_over(&src).instant("holt_winters(energy_j[5m], 0.5, 0.5)", 600 * S).unwrap_err();
    assert_eq!(e.kind(), "bad_data");
    assert!(e.to_string().contains("holt_winters"), "{e}");
    let e = engine_over(&src).instant("sum(", 0).unwrap_err();
    assert_eq!(e.kind(), "bad_data");
    let few = Engine::new(&src, Limits { max_samples: 5, ..Limits::default() }).instant("energy_j[1h]", 3600 * S).unwrap_err();
    assert!(matches!(few, QueryError::TooMuch { .. }), "{few:?}");
}

/// Series with gaps, counter resets, a stale marker, NaN and ties: what the one-pass range
/// evaluation must walk exactly as the evaluation of each step on its own does.
fn irregular() -> MemorySource {
    let mut src = MemorySource::default();
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as f64 / f64::from(1u32 << 31)
    };
    for node in ["a", "b", "c"] {
        for gpu in ["0", "1"] {
            let (mut t, mut counter, mut samples, mut gauge) = (0i64, 0.0, Vec::new(), Vec::new());
            while t < 40 * M {
                counter += (next() * 100.0).floor();
                if next() < 0.03 {
                    counter = 0.0;
                }
                samples.push((t, counter));
                let g = if next() < 0.02 {
                    f64::NAN
                } else if next() < 0.1 {
                    50.0
                } else {
                    (next() * 100.0).round()
                };
                gauge.push((t, if next() < 0.01 { f64::from_bits(STALE_NAN_BITS) } else { g }));
                // Gaps longer than the lookback now and then.
                t += if next() < 0.02 { 7 * M } else { (5.0 + next() * 20.0) as i64 * S };
            }
            src.push(&[("__name__", "energy_j"), ("node", node), ("gpu", gpu)], samples);
            src.push(&[("__name__", "temp_c"), ("node", node), ("gpu", gpu)], gauge);
        }
    }
    for (le, k) in [("0.1", 1.0), ("1", 3.0), ("+Inf", 4.0)] {
        src.push(&[("__name__", "ttft_bucket"), ("le", le)], (0..200).map(|i| (i * 12 * S, k * i as f64)).collect());
    }
    src
}

#[test]
fn range_queries_equal_each_step_evaluated_alone() {
    let src = irregular();
    let queries = [
        "energy_j",
        "temp_c offset 1m",
        "rate(energy_j[5m])",
        "increase(energy_j[3m] offset 30s)",
        "delta(temp_c[5m])",
        "irate(energy_j[5m])",
        "idelta(temp_c[2m])",
        "deriv(temp_c[5m])",
        "predict_linear(temp_c[5m], 60)",
        "resets(energy_j[10m])",
        "changes(temp_c[10m])",
        "avg_over_time(temp_c[5m])",
        "sum_over_time(temp_c[5m])",
        "max_over_time(temp_c[1m])",
        "min_over_time(temp_c[1m])",
        "count_over_time(temp_c[5m])",
        "last_over_time(temp_c[5m])",
        "quantile_over_time(0.9, temp_c[5m])",
        "stddev_over_time(temp_c[5m])",
        "sum by (node) (rate(energy_j[5m]))",
        "avg without (gpu) (temp_c)",
        "max(temp_c)",
        "min by (gpu) (temp_c)",
        "count(temp_c > 50)",
        "group by (node) (temp_c)",
        "stddev by (node) (temp_c)",
        "stdvar(temp_c)",
        "topk(2, temp_c)",
        "bottomk by (node) (1, temp_c)",
        "topk(3, avg_over_time(temp_c[5m]))",
        "quantile by (node) (0.5, temp_c)",
        "temp_c > bool 50",
        "100 - temp_c",
        "-temp_c",
        "abs(temp_c - 50)",
        "2 * 3",
        "histogram_quantile(0.9, sum by (le) (rate(ttft_bucket[5m])))",
        "histogram_quantile(0.5, ttft_bucket)",
        "sum(temp_c) / count(temp_c)",
        "temp_c @ 600",
        "timestamp(temp_c)",
        "max_over_time(temp_c[5m:1m])",
    ];
    let (start, end, step) = (2 * M, 39 * M, 15 * S);
    let engine = engine_over(&src);
    for q in queries {
        let Value::Matrix(m) = engine.range(q, start, end, step).unwrap_or_else(|e| panic!("{q}: {e}")).value else { panic!("{q}: not a matrix") };
        let mut by_step: std::collections::BTreeMap<(String, i64), f64> = std::collections::BTreeMap::new();
        let mut t = start;
        while t <= end {
            match engine.instant(q, t).unwrap_or_else(|e| panic!("{q} at {t}: {e}")).value {
                Value::Vector(v) => by_step.extend(v.iter().map(|s| ((format!("{:?}", s.labels), t), s.value))),
                Value::Scalar(v) => drop(by_step.insert(("{}".to_owned(), t), v)),
                other => panic!("{q}: {other:?}"),
            }
            t += step;
        }
        let ranged: std::collections::BTreeMap<(String, i64), f64> = m.iter().flat_map(|s| s.points.iter().map(move |(t, v)| ((format!("{:?}", s.labels), *t), *v))).collect();
        assert_eq!(ranged.len(), by_step.len(), "{q}: points");
        assert!(!ranged.is_empty(), "{q}: nothing to compare");
        for ((key, a), (key2, b)) in ranged.iter().zip(&by_step) {
            assert_eq!(key, key2, "{q}");
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{q} at {key:?}: range {a}, step alone {b}");
        }
    }
}
