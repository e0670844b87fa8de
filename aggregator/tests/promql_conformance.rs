//! Conformance with a real Prometheus: the same samples go to Debian's `prometheus` (backfilled
//! with `promtool tsdb create-blocks-from openmetrics`) and to Kilowatch (line protocol); the
//! queries of Prometheus' own compliance suite (prometheus/compliance,
//! `promql/promql-test-queries.yml`, variants expanded in `tests/promql/queries.tsv`) and GPU
//! dashboard queries run on both, instant and range, and the answers must be equal: labels
//! exactly, values to 1e-9 relative, NaN and absence included. Prints the pass count per
//! family; fails on any difference not listed in docs/prometheus.md, "PromQL deviations".

mod common;
#[path = "promql/real_prometheus.rs"]
mod real_prometheus;

use std::collections::BTreeMap;

use common::READ;
use real_prometheus::{Series, both, series};
use serde_json::Value;

/// 2023-11-14T20:00:00Z, on a two-hour block boundary.
const START: i64 = 1_699_992_000;
const HOURS: i64 = 3;

/// A small deterministic generator (xorshift64*), so both servers get the same numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The demo service's metrics (the names the compliance queries use) and a small GPU site.
fn data() -> Vec<Series> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let end = START + HOURS * 3600;
    let every = |step: i64| (START..end).step_by(step as usize);
    let mut out = Vec::new();
    for (n, inst) in ["demo.promlabs.com:10000", "demo.promlabs.com:10001", "demo.promlabs.com:10002"].iter().enumerate() {
        let base = [("instance", *inst), ("job", "demo")];
        for ty in ["buffers", "cached", "free", "used"] {
            let mut v = 1e8 * (1.0 + rng.next() * 9.0);
            let s = every(5).map(|t| {
                v += (rng.next() - 0.5) * 1e6;
                (t, (v * 100.0).round() / 100.0)
            });
            out.push(series("demo_memory_usage_bytes", &[base[0], base[1], ("type", ty)], s.collect()));
        }
        out.push(series("demo_num_cpus", &base, every(5).map(|t| (t, [4.0, 6.0, 8.0][n])).collect()));
        for mode in ["idle", "system", "user"] {
            let mut c = rng.next() * 100.0;
            let s = every(5).map(|t| {
                c += rng.next() * 5.0;
                // One restart of the second instance: its counters start again.
                if n == 1 && t == START + 5000 {
                    c = rng.next();
                }
                (t, c)
            });
            out.push(series("demo_cpu_usage_seconds_total", &[base[0], base[1], ("mode", mode)], s.collect()));
        }
        let mut d = 5e9 * (1.0 + n as f64);
        out.push(series(
            "demo_disk_usage_bytes",
            &base,
            every(5)
                .map(|t| {
                    d += rng.next() * 1e5 - 2e4;
                    (t, d.round())
                })
                .collect(),
        ));
        out.push(series("demo_batch_last_success_timestamp_seconds", &base, every(5).map(|t| (t, (t - t % 300 - 60 * n as i64) as f64)).collect()));
        // Ten minutes on, ten off: the lookback and staleness of a series that comes and goes.
        out.push(series("demo_intermittent_metric", &base, every(5).filter(|t| (t - START) / 600 % 2 == 0).map(|t| (t, rng.next())).collect()));
        for path in ["/api/bar", "/api/foo"] {
            let bounds = ["0.0002", "0.001", "0.0025", "0.01", "0.025", "0.1", "0.25", "1", "+Inf"];
            let mut counts = vec![0.0; bounds.len()];
            let mut sum = 0.0;
            let mut per: Vec<Vec<(i64, f64)>> = vec![Vec::new(); bounds.len()];
            let (mut sums, mut totals) = (Vec::new(), Vec::new());
            for t in every(5) {
                for _ in 0..(rng.next() * 20.0) as usize {
                    let x = rng.next().powi(4);
                    sum += x;
                    for (i, b) in bounds.iter().enumerate() {
                        if *b == "+Inf" || x <= b.parse::<f64>().unwrap_or(f64::INFINITY) {
                            counts[i] += 1.0;
                        }
                    }
                }
                for (i, c) in counts.iter().enumerate() {
                    per[i].push((t, *c));
                }
                sums.push((t, sum));
                totals.push((t, counts[bounds.len() - 1]));
            }
            let l = [base[0], base[1], ("method", "GET"), ("path", path), ("status", "200")];
            for (i, b) in bounds.iter().enumerate() {
                let mut with_le = l.to_vec();
                with_le.push(("le", b));
                out.push(series("demo_api_request_duration_seconds_bucket", &with_le, std::mem::take(&mut per[i])));
            }
            out.push(series("demo_api_request_duration_seconds_sum", &l, sums));
            out.push(series("demo_api_request_duration_seconds_count", &l, totals));
        }
    }
    for node in ["dgx-001", "dgx-002", "dgx-003"] {
        for gpu in 0..8 {
            let (g, uuid) = (gpu.to_string(), format!("GPU-{node}-{gpu}"));
            let l = [("gpu", g.as_str()), ("node", node), ("uuid", uuid.as_str())];
            let mut e = (rng.next() * 1e9).round();
            let (mut power, mut temp) = (Vec::new(), Vec::new());
            let mut energy = Vec::new();
            for t in every(15) {
                // Centiwatts: equal readings would make topk's choice among ties arbitrary.
                let p = ((200.0 + rng.next() * 500.0) * 100.0).round() / 100.0;
                e += p * 15_000.0;
                power.push((t, p));
                energy.push((t, e));
                temp.push((t, (45.0 + rng.next() * 40.0).round()));
            }
            out.push(series("gpu_power_w", &l, power));
            out.push(series("gpu_energy_mj", &l, energy));
            out.push(series("gpu_temp_c", &l, temp));
        }
    }
    for model in ["llama-3-70b", "mistral-large"] {
        let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];
        let mut counts = vec![0.0; bounds.len()];
        let mut per: Vec<Vec<(i64, f64)>> = vec![Vec::new(); bounds.len()];
        for t in every(15) {
            for _ in 0..(rng.next() * 30.0) as usize {
                let x = rng.next() * 3.0;
                for (i, b) in bounds.iter().enumerate() {
                    if *b == "+Inf" || x <= b.parse::<f64>().unwrap_or(f64::INFINITY) {
                        counts[i] += 1.0;
                    }
                }
            }
            for (i, c) in counts.iter().enumerate() {
                per[i].push((t, *c));
            }
        }
        for (i, b) in bounds.iter().enumerate() {
            out.push(series("vllm_time_to_first_token_seconds_bucket", &[("le", b), ("model", model)], std::mem::take(&mut per[i])));
        }
    }
    out
}

/// The queries the documentation lists as known deviations (`- \`query\`` lines under
/// "PromQL deviations" in docs/prometheus.md).
fn documented_deviations() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/prometheus.md")).unwrap_or_default();
    let Some(section) = doc.split("PromQL deviations").nth(1) else { return Vec::new() };
    let section = section.split("\n## ").next().unwrap_or("");
    section.lines().filter_map(|l| l.strip_prefix("- `")?.split("`").next().map(str::to_owned)).collect()
}

/// An answer reduced to what must be equal: error or not, result type, and each series'
/// labels with its values, sorted by labels.
#[derive(Debug)]
enum Answer {
    Error,
    Scalar(Vec<(f64, String)>),
    Series(String, BTreeMap<String, Vec<(f64, String)>>),
}

fn answer(body: &Value) -> Answer {
    if body["status"] != "success" {
        return Answer::Error;
    }
    let d = &body["data"];
    let ty = d["resultType"].as_str().unwrap_or("").to_owned();
    let point = |p: &Value| (p[0].as_f64().unwrap_or(f64::NAN), p[1].as_str().unwrap_or("").to_owned());
    match ty.as_str() {
        "scalar" | "string" => Answer::Scalar(vec![point(&d["result"])]),
        _ => Answer::Series(
            ty,
            d["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let pts = match s.get("value") {
                        Some(v) => vec![point(v)],
                        None => s["values"].as_array().into_iter().flatten().map(point).collect(),
                    };
                    (s["metric"].to_string(), pts)
                })
                .collect(),
        ),
    }
}

fn same_value(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

fn same_points(a: &[(f64, String)], b: &[(f64, String)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.0 - y.0).abs() < 1e-6 && same_value(&x.1, &y.1))
}

/// Why two answers differ, or None.
fn difference(k: &Answer, p: &Answer) -> Option<String> {
    match (k, p) {
        (Answer::Error, Answer::Error) => None,
        (Answer::Scalar(a), Answer::Scalar(b)) if same_points(a, b) => None,
        (Answer::Series(ta, a), Answer::Series(tb, b)) if ta == tb => {
            if a.keys().ne(b.keys()) {
                return Some(format!("series differ: kilowatch {:?} prometheus {:?}", a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>()));
            }
            a.iter().find(|(m, pts)| !same_points(pts, &b[*m])).map(|(m, pts)| format!("{m}: kilowatch {:?} prometheus {:?}", &pts[..pts.len().min(4)], &b[m][..b[m].len().min(4)]))
        }
        _ => Some(format!("kilowatch {:?} prometheus {:?}", short(k), short(p))),
    }
}

fn short(a: &Answer) -> String {
    let s = format!("{a:?}");
    s.chars().take(300).collect()
}

async fn fetch(client: &reqwest::Client, base: &str, path: &str, params: &[(&str, String)]) -> Value {
    let r = client.get(format!("{base}{path}")).query(params).header("Authorization", format!("Bearer {READ}")).send().await.expect("send");
    r.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_equal_prometheus() {
    let dir = tempfile::tempdir().expect("dir");
    let Some((_prom, prom, srv)) = both(dir.path(), &data()).await else { return };
    let kw = srv.url("/prometheus");
    let client = reqwest::Client::new();
    let deviations = documented_deviations();
    let queries = include_str!("promql/queries.tsv");
    // Instant queries at times off the 5 s grid, and a range over a restart and a gap.
    let instants = [START + 4003, START + 7200, START + HOURS * 3600 - 61];
    let (range_start, range_end, step) = (START + 4321, START + 4321 + 1800, 37);
    let mut per_family: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut listed = 0;
    // Queries Prometheus answers with data: equal empty answers alone would prove nothing.
    let mut with_data = 0;
    for line in queries.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut cols = line.split('\t');
        let (family, query, should_fail) = (cols.next().unwrap_or(""), cols.next().unwrap_or(""), cols.next() == Some("fail"));
        let mut diffs = Vec::new();
        for t in instants {
            let params = [("query", query.to_owned()), ("time", t.to_string())];
            let (k, p) = (answer(&fetch(&client, &kw, "/api/v1/query", &params).await), answer(&fetch(&client, &prom, "/api/v1/query", &params).await));
            if matches!(&p, Answer::Scalar(_)) || matches!(&p, Answer::Series(_, m) if !m.is_empty()) {
                with_data += 1;
            }
            if should_fail && !matches!(k, Answer::Error) {
                diffs.push(format!("at {t}: should fail, answered {}", short(&k)));
            }
            if let Some(d) = difference(&k, &p) {
                diffs.push(format!("instant at {t}: {d}"));
            }
        }
        let params = [("query", query.to_owned()), ("start", range_start.to_string()), ("end", range_end.to_string()), ("step", step.to_string())];
        let (k, p) = (answer(&fetch(&client, &kw, "/api/v1/query_range", &params).await), answer(&fetch(&client, &prom, "/api/v1/query_range", &params).await));
        if let Some(d) = difference(&k, &p) {
            diffs.push(format!("range: {d}"));
        }
        let e = per_family.entry(family.to_owned()).or_default();
        e.1 += 1;
        if diffs.is_empty() {
            e.0 += 1;
        } else if deviations.iter().any(|d| d == query) {
            listed += 1;
        } else {
            unexpected.push(format!("{query}\n    {}", diffs.join("\n    ")));
        }
    }
    let (pass, total) = per_family.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!("PromQL conformance with Prometheus 2.42, per family (equal / run):");
    for (f, (p, n)) in &per_family {
        println!("  {f:<24} {p:>4} / {n}");
    }
    println!("  {:<24} {pass:>4} / {total} ({:.1} %), {listed} documented deviations", "all", 100.0 * pass as f64 / total as f64);
    assert!(unexpected.is_empty(), "{} queries answer differently from Prometheus and are not documented deviations:\n{}", unexpected.len(), unexpected.join("\n"));
    assert!(pass as f64 >= 0.95 * total as f64, "{pass} / {total} equal: under 95 %");
    assert!(with_data >= 3 * total * 8 / 10, "only {with_data} of {} instant answers hold data", 3 * total);
}
