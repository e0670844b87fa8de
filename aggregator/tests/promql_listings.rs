//! `series`, `labels` and `label/{name}/values` with `start` and `end`, compared with a real
//! Prometheus holding the same samples: only the series with samples in the window are listed,
//! `match[]` narrows them; a tenant's token lists only its own series.

mod common;
#[path = "promql/real_prometheus.rs"]
mod real_prometheus;

use std::collections::BTreeSet;

use common::{READ, TENANT};
use real_prometheus::{Series, both, series};
use serde_json::Value;

/// 2023-11-14T20:00:00Z, on a two-hour block boundary.
const START: i64 = 1_699_992_000;
const H: i64 = 3600;

/// `up` of job a for the first hour, of job b for the fifth (in another two-hour block), and a
/// temperature for all five hours, every 15 s; jobs of two owners in the first hour.
fn data() -> Vec<Series> {
    let every = |from: i64, to: i64| (from..to).step_by(15);
    vec![
        series("up", &[("job", "a"), ("instance", "x:9100")], every(START, START + H).map(|t| (t, 1.0)).collect()),
        series("up", &[("job", "b"), ("instance", "y:9100")], every(START + 4 * H, START + 5 * H).map(|t| (t, 1.0)).collect()),
        series("node_temp_c", &[("job", "a"), ("zone", "z1")], every(START, START + 5 * H).map(|t| (t, 20.0 + (t % 7) as f64)).collect()),
        series("job_energy", &[("job", "j1"), ("owner", "mistral-ai/pretrain")], every(START, START + H).map(|t| (t, (t - START) as f64)).collect()),
        series("job_energy", &[("job", "j2"), ("owner", "kyutai/moshi")], every(START, START + H).map(|t| (t, (t - START) as f64)).collect()),
    ]
}

async fn fetch(base: &str, path: &str, params: &[(&str, String)], token: &str) -> Value {
    let r = reqwest::Client::new().get(format!("{base}{path}")).query(params).header("Authorization", format!("Bearer {token}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{base}{path} {params:?}");
    let body: Value = r.json().await.expect("json");
    body["data"].clone()
}

/// A listing as a set: label names or values, or label sets as JSON text.
fn set(data: &Value) -> BTreeSet<String> {
    data.as_array().expect("list").iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_in_a_window_equal_prometheus() {
    let dir = tempfile::tempdir().expect("dir");
    let Some((_prom, prom, srv)) = both(dir.path(), &data()).await else { return };
    let kw = srv.url("/prometheus");
    // The first hour; the fifth (another block); the third, where only the temperature runs;
    // the whole span.
    let windows = [(START + 600, START + 1200), (START + 4 * H + 600, START + 4 * H + 1200), (START + 2 * H + 1800, START + 3 * H), (START, START + 5 * H)];
    let mut sizes = Vec::new();
    for (from, to) in windows {
        let w = [("start", from.to_string()), ("end", to.to_string())];
        let with = |extra: &[(&'static str, &str)]| w.iter().cloned().chain(extra.iter().map(|(k, v)| (*k, (*v).to_owned()))).collect::<Vec<_>>();
        let asks: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("/api/v1/series", with(&[("match[]", "{job=~\".+\"}")])),
            ("/api/v1/series", with(&[("match[]", "up"), ("match[]", "node_temp_c{zone=\"z1\"}")])),
            ("/api/v1/labels", with(&[])),
            ("/api/v1/labels", with(&[("match[]", "up")])),
            ("/api/v1/label/job/values", with(&[])),
            ("/api/v1/label/__name__/values", with(&[])),
            ("/api/v1/label/instance/values", with(&[("match[]", "up")])),
        ];
        for (path, params) in asks {
            let (k, p) = (fetch(&kw, path, &params, READ).await, fetch(&prom, path, &params, READ).await);
            assert_eq!(set(&k), set(&p), "{path} {params:?}: Kilowatch {k}, Prometheus {p}");
            sizes.push(set(&p).len());
        }
    }
    // The windows list different series: equal answers are not all the same answer.
    assert!(sizes.iter().collect::<BTreeSet<_>>().len() > 3, "{sizes:?}");
    // Without a window, every series the store knows, as Prometheus lists over all its blocks.
    let all = [("match[]", "up".to_owned())];
    assert_eq!(set(&fetch(&kw, "/api/v1/series", &all, READ).await).len(), 2);

    // Over more hours than a listing computes, the ledger's hourly series are listed by name
    // and window, and the answer says so; over a day and a half they are computed (none here: no
    // meter).
    let long = [("match[]", "{__name__=~\"kilowatch_.+\",window=\"1h\"}".to_owned()), ("start", START.to_string()), ("end", (START + 30 * 24 * H).to_string())];
    let r = reqwest::Client::new().get(format!("{kw}/api/v1/series")).query(&long).header("Authorization", format!("Bearer {READ}")).send().await.expect("send");
    let body: Value = r.json().await.expect("json");
    assert!(body["warnings"][0].as_str().is_some_and(|w| w.contains("window=\"1h\"") && w.contains("narrow start and end")), "{body}");
    assert!(set(&body["data"]).contains("{\"__name__\":\"kilowatch_pue\",\"site\":\"dc5\",\"window\":\"1h\"}"), "{body}");
    let short = [long[0].clone(), ("start", START.to_string()), ("end", (START + 36 * H).to_string())];
    let r = reqwest::Client::new().get(format!("{kw}/api/v1/series")).query(&short).header("Authorization", format!("Bearer {READ}")).send().await.expect("send");
    let body: Value = r.json().await.expect("json");
    assert_eq!((&body["data"], body.get("warnings")), (&serde_json::json!([]), None), "{body}");

    // A tenant's token lists its own owners' series only, in a window too.
    let w = [("start", START.to_string()), ("end", (START + 600).to_string())];
    assert_eq!(set(&fetch(&kw, "/api/v1/label/owner/values", &w, TENANT).await), BTreeSet::from(["mistral-ai/pretrain".to_owned()]));
    assert_eq!(set(&fetch(&kw, "/api/v1/label/owner/values", &w, READ).await).len(), 2);
    let mine = fetch(&kw, "/api/v1/series", &[w[0].clone(), w[1].clone(), ("match[]", "{__name__=~\".+\"}".to_owned())], TENANT).await;
    assert_eq!(set(&mine).len(), 1, "{mine}");
}
