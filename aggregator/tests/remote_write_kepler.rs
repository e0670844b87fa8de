//! Kepler through Prometheus (issue 27, "Done when" line 1, CPU-only nodes with pods): Debian's
//! real `prometheus` scrapes two CPU-only nodes' Kepler pages served by the test, cpu-01 in
//! Kepler 0.7's format (node platform and package counters in `mode="dynamic"` and `mode="idle"`
//! halves, per-container counters of two pods and Kepler's `system_processes`), cpu-02 in 0.10's
//! (active and idle per zone, a pod's package and DRAM counters, starting late); counters
//! advancing, one exporter restart that resets them all, one missed scrape; and a facility
//! exporter, and remote-writes to Kilowatch. The ledger charges each pod its containers'
//! dynamic counter deltas, the node's rest is idle, jobs + idle + unattributed = E_IT.
//!
//! The reference site gets the same samples (read back from Prometheus' own API) as
//! `kilowatch-collector` would write a node's input energy (one `node` counter, the two halves
//! summed at each scrape), the facility meters as line protocol, and the pods as the jobs API
//! declares them (namespace → owner) with their Kepler counters as `pod` line protocol (the
//! collector has no Kepler source). KPIs, the job list, the monthly report and a customer's
//! statement are equal to 1e-9.

mod common;
mod remote_write_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{READ, Server, WRITE, assert_close};
use kilowatch_aggregator::config::Config;
use remote_write_common::{assert_same, get_json};
use serde_json::{Value, json};

const J_PER_KWH: f64 = 3.6e6;
/// Scrape number (from 1) of cpu-01 answered 503: a missed scrape.
const MISSED: u32 = 7;
/// From this scrape on, every counter of a node restarts near zero (Kepler restarted).
const RESTART: u32 = 10;
/// From this scrape on, the counters stop advancing.
const LAST: u32 = 16;
/// After this scrape, the pages answer 503: Prometheus stops adding samples, so the test can
/// read back exactly what it holds.
const GONE: u32 = LAST + 2;

const NODES: [&str; 2] = ["cpu-01", "cpu-02"];

/// A container Kepler reports: node, namespace, pod, container, joules per scrape (dynamic,
/// idle) and the scrape it first appears at.
struct Container {
    node: &'static str,
    namespace: &'static str,
    pod: &'static str,
    name: &'static str,
    dynamic: f64,
    idle: f64,
    from: u32,
}

const CONTAINERS: [Container; 5] = [
    Container { node: "cpu-01", namespace: "mistral-web", pod: "web-0", name: "nginx", dynamic: 200.125, idle: 40.0, from: 1 },
    Container { node: "cpu-01", namespace: "mistral-web", pod: "web-0", name: "sidecar", dynamic: 50.5, idle: 10.0, from: 1 },
    Container { node: "cpu-01", namespace: "other", pod: "batch-1", name: "main", dynamic: 300.75, idle: 60.0, from: 1 },
    // Kepler 0.7's processes outside any container: not a pod, its energy stays the node's.
    Container { node: "cpu-01", namespace: "system", pod: "system_processes", name: "system_processes", dynamic: 99.0, idle: 20.0, from: 1 },
    Container { node: "cpu-02", namespace: "mistral-db", pod: "db-0", name: "postgres", dynamic: 500.0, idle: 80.0, from: 4 },
];

/// Node counters: metric, joules per scrape (dynamic, idle), start value.
const NODE_COUNTERS: [(&str, f64, f64, f64); 2] = [("kepler_node_platform_joules_total", 900.5, 400.25, 7_000_000.0), ("kepler_node_package_joules_total", 600.0, 200.0, 3_000_000.0)];

/// The facility exporter (the example config's names): metric, labels, start, per scrape.
const FACILITY: [(&str, &str, f64, f64); 4] = [
    ("meter_energy_wh_total", "meter=\"grid-a\",kind=\"grid\"", 1_000_000_000.0, 4_640.25),
    ("meter_energy_wh_total", "meter=\"ups-1-out\",kind=\"ups_output\"", 800_000_000.0, 4_000.5),
    ("meter_energy_wh_total", "meter=\"cooling\",kind=\"cooling\"", 50_000_000.0, 410.0),
    ("water_meter_volume_liters_total", "meter=\"makeup-1\",supply=\"potable\"", 4_512_300.0, 0.875),
];

/// A counter at scrape `k` that advances `per` a scrape from `start` and restarts at RESTART.
fn counter(start: f64, per: f64, first: u32, k: u32) -> f64 {
    let k = k.min(LAST);
    if k < RESTART { start + f64::from(k + 1 - first) * per } else { f64::from(k + 1 - RESTART) * per }
}

#[derive(Default)]
struct Kepler {
    scrapes: BTreeMap<&'static str, u32>,
    facility_scrapes: u32,
}

impl Kepler {
    /// Node `node`'s page at its next scrape (Kepler 0.7.11's names and labels), or `None`.
    fn page(&mut self, node: &'static str) -> Option<String> {
        let k = {
            let n = self.scrapes.entry(node).or_insert(0);
            *n += 1;
            *n
        };
        if (node == "cpu-01" && k == MISSED) || k > GONE {
            return None;
        }
        if node == "cpu-02" {
            return Some(Self::page_010(node, k));
        }
        let mut p = String::new();
        for (i, (name, dynamic, idle, start)) in NODE_COUNTERS.iter().enumerate() {
            let source = if i == 0 { "acpi" } else { "rapl" };
            p.push_str(&format!("# HELP {name} Aggregated value in {name} value from {source}\n# TYPE {name} counter\n"));
            for (mode, per) in [("dynamic", dynamic), ("idle", idle)] {
                p.push_str(&format!("{name}{{instance=\"{node}\",mode=\"{mode}\",package=\"0\",source=\"{source}\"}} {}\n", counter(*start, *per, 1, k)));
            }
        }
        p.push_str("# HELP kepler_container_joules_total Aggregated value in joules value from trained_power_model\n# TYPE kepler_container_joules_total counter\n");
        for (i, c) in CONTAINERS.iter().enumerate().filter(|(_, c)| c.node == node && k >= c.from) {
            for (mode, per) in [("dynamic", c.dynamic), ("idle", c.idle)] {
                p.push_str(&format!(
                    "kepler_container_joules_total{{container_id=\"{:064x}\",container_name=\"{}\",container_namespace=\"{}\",mode=\"{mode}\",pod_name=\"{}\"}} {}\n",
                    i + 1,
                    c.name,
                    c.namespace,
                    c.pod,
                    counter(1_000.0 * (i as f64 + 1.0), per, c.from, k)
                ));
            }
        }
        Some(p)
    }

    /// A node running Kepler 0.10 (its names: `docs/user/metrics.md`): active and idle per
    /// zone and power domain, pods' active energy per zone; `core` is inside `package`.
    fn page_010(node: &str, k: u32) -> String {
        let [(_, platform_dyn, platform_idle, platform_start), (_, package_dyn, package_idle, package_start)] = NODE_COUNTERS;
        let zones = [
            ("psys", "/sys/class/powercap/intel-rapl:1", platform_dyn, platform_idle, platform_start),
            ("package", "/sys/class/powercap/intel-rapl:0", package_dyn, package_idle, package_start),
            ("core", "/sys/class/powercap/intel-rapl:0:0", 300.0, 100.0, 1_000_000.0),
        ];
        let mut p = String::new();
        for (metric, idle) in [("kepler_node_cpu_active_joules_total", false), ("kepler_node_cpu_idle_joules_total", true)] {
            p.push_str(&format!("# HELP {metric} Energy consumption of cpu at node level in joules\n# TYPE {metric} counter\n"));
            for (zone, path, dynamic, idle_per, start) in zones {
                p.push_str(&format!("{metric}{{node_name=\"{node}\",path=\"{path}\",zone=\"{zone}\"}} {}\n", counter(start, if idle { idle_per } else { dynamic }, 1, k)));
            }
        }
        p.push_str("# HELP kepler_pod_cpu_joules_total Energy consumption of cpu at pod level in joules\n# TYPE kepler_pod_cpu_joules_total counter\n");
        for (i, c) in CONTAINERS.iter().enumerate().filter(|(_, c)| c.node == node && k >= c.from) {
            for (zone, per) in [("package", c.dynamic), ("dram", c.dynamic * 0.125)] {
                p.push_str(&format!(
                    "kepler_pod_cpu_joules_total{{node_name=\"{node}\",pod_id=\"uid-{i}\",pod_name=\"{}\",pod_namespace=\"{}\",state=\"running\",zone=\"{zone}\"}} {}\n",
                    c.pod,
                    c.namespace,
                    counter(500.0 * (i as f64 + 1.0), per, c.from, k)
                ));
            }
        }
        p
    }

    fn facility(&mut self) -> Option<String> {
        self.facility_scrapes += 1;
        let k = self.facility_scrapes;
        if k > GONE {
            return None;
        }
        let mut p = String::new();
        for (name, labels, start, per) in FACILITY {
            p.push_str(&format!("{name}{{{labels}}} {}\n", start + f64::from(k.min(LAST)) * per));
        }
        Some(p)
    }
}

async fn serve(kepler: Arc<Mutex<Kepler>>) -> std::net::SocketAddr {
    use axum::extract::Path;
    use axum::http::StatusCode;
    let answer = |page: Option<String>| match page {
        Some(p) => (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], p),
        None => (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/plain")], "gone\n".to_owned()),
    };
    let facility = kepler.clone();
    let app = axum::Router::new()
        .route(
            "/facility",
            axum::routing::get(move || {
                let page = facility.lock().ok().and_then(|mut e| e.facility());
                async move { answer(page) }
            }),
        )
        .route(
            "/kepler/{node}",
            axum::routing::get(move |Path(node): Path<String>| {
                let node = NODES.iter().copied().find(|n| *n == node);
                let page = node.and_then(|n| kepler.lock().ok().and_then(|mut e| e.page(n)));
                async move { answer(page) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Prometheus scraping both Kepler pages (each target labelled with its node, as a relabelling
/// from `__meta_kubernetes_pod_node_name` does) and the facility page; its API port.
fn start_prometheus(dir: &std::path::Path, pages: std::net::SocketAddr, kilowatch: std::net::SocketAddr) -> (common::Reaped, u16) {
    let mut kepler_jobs = String::new();
    for node in NODES {
        kepler_jobs.push_str(&format!("  - job_name: kepler-{node}\n    metrics_path: /kepler/{node}\n    static_configs:\n      - targets: [\"{pages}\"]\n        labels:\n          node: {node}\n"));
    }
    remote_write_common::start_prometheus(
        dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n{kepler_jobs}\
             \x20 - job_name: facility\n    metrics_path: /facility\n    static_configs:\n      - targets: [\"{pages}\"]\n\
             remote_write:\n  - url: http://{kilowatch}/api/v1/write\n    authorization:\n      credentials: {WRITE}\n\
             \x20   queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n"
        ),
    )
}

type Labels = BTreeMap<String, String>;

/// Every raw sample Prometheus holds for `selector` over the last 10 minutes, by series (ms).
async fn prometheus_samples(port: u16, selector: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let r = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/api/v1/query")).query(&[("query", format!("{selector}[10m]"))]).send().await.expect("query");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .expect("matrix")
        .iter()
        .map(|s| {
            let labels: Labels = s["metric"].as_object().expect("labels").iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())).collect();
            let values =
                s["values"].as_array().expect("values").iter().map(|p| ((p[0].as_f64().expect("time") * 1000.0).round() as i64, p[1].as_str().and_then(|x| x.parse().ok()).expect("value"))).collect();
            (labels, values)
        })
        .collect()
}

/// Σ of the positive deltas between consecutive readings: a decrease is a reset, whose pair
/// adds nothing (DOMAIN.md, "Counters").
fn counter_deltas(values: &[(i64, f64)]) -> f64 {
    values.windows(2).map(|w| w[1].1 - w[0].1).filter(|d| *d >= 0.0).sum()
}

/// Samples Kilowatch holds of the `measurement` `energy_j` series with `tags`, but Kepler's
/// `system_processes`.
fn samples_stored(s: &Server, measurement: &str, tags: &[(&str, &str)]) -> usize {
    let metas = s.store.find_series(measurement, "energy_j", tags).expect("find");
    metas.iter().filter(|m| m.tag("namespace") != Some("system")).map(|m| s.store.read_with_neighbours(m.id, 0, i64::MAX).expect("read").len()).sum()
}

fn rfc_ms(ms: i64) -> String {
    kilowatch_model::Timestamp(ms * 1_000_000).to_rfc3339()
}

/// How a figure was fed, not what it is: the allocation's source (`kepler` against `api`), and
/// the resets counted, one per counter series (Kepler's two halves of a node reset together
/// where the reference's one summed counter resets once: checked apart below).
const HOW_FED: &[&str] = &["source", "counter_resets"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kepler_pods_through_prometheus_get_the_reference_sites_ledger() {
    if !common::require_tool("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let config = Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kilowatch-prometheus.toml")).expect("deploy/kilowatch-prometheus.toml");
    let a = Server::start_with(dir_a.path(), "127.0.0.1:0".parse().expect("addr"), config.clone(), false).await;
    let kepler = Arc::new(Mutex::new(Kepler::default()));
    let pages = serve(kepler.clone()).await;
    let (prom, port) = start_prometheus(dir.path(), pages, a.addr);

    // Until the pages are gone and Kilowatch holds every sample Prometheus holds.
    let deadline = Instant::now() + Duration::from_secs(120);
    // Per figure, the selectors of both Kepler versions' series that make it.
    let selectors: [&[&str]; 4] = [
        &["kepler_node_platform_joules_total", "kepler_node_cpu_active_joules_total{zone=\"psys\"}", "kepler_node_cpu_idle_joules_total{zone=\"psys\"}"],
        &["kepler_container_joules_total{mode=\"dynamic\",container_namespace!=\"system\"}", "kepler_pod_cpu_joules_total{zone=~\"package|dram\"}"],
        &["meter_energy_wh_total"],
        &["water_meter_volume_liters_total"],
    ];
    let held = loop {
        let gone = kepler.lock().map(|k| NODES.iter().all(|n| k.scrapes.get(n).copied().unwrap_or(0) > GONE + 1) && k.facility_scrapes > GONE + 1).unwrap_or(false);
        if gone {
            let mut held = Vec::new();
            for sels in selectors {
                let mut all = Vec::new();
                for sel in sels {
                    all.extend(prometheus_samples(port, sel).await);
                }
                held.push(all);
            }
            let count = |i: usize| held[i].iter().map(|(_, v)| v.len()).sum::<usize>();
            if samples_stored(&a, "node", &[("zone", "platform")]) == count(0) && samples_stored(&a, "pod", &[]) == count(1) {
                break held;
            }
        }
        assert!(Instant::now() < deadline, "Prometheus did not deliver in time; its log: {}", std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    drop(prom);
    let (platform, pods, meters, water) = (&held[0], &held[1], &held[2], &held[3]);
    assert_eq!(platform.len(), 4, "two nodes × two modes: {platform:?}");
    // A pod's namespace and a name for each of its series, in either version's labels.
    let pod_of = |l: &Labels| {
        let ns = l.get("container_namespace").or_else(|| l.get("pod_namespace")).cloned().unwrap_or_default();
        (l["node"].clone(), ns, l["pod_name"].clone(), l.get("container_name").or_else(|| l.get("zone")).cloned().unwrap_or_default())
    };
    assert!(platform.iter().all(|(_, v)| v.windows(2).any(|w| w[1].1 < w[0].1)), "every node counter restarted");

    // The reference site: the collector's node counter (the two halves summed at each scrape),
    // the facility meters and the pods' counters as line protocol; the pods through the jobs API.
    let mut lines = String::new();
    let mut node_sum: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for (l, v) in platform {
        for (t, x) in v {
            *node_sum.entry((l["node"].clone(), *t)).or_default() += x;
        }
    }
    for ((node, t), e) in &node_sum {
        lines.push_str(&format!("node,site=dc5,node={node} energy_j={e} {t}\n"));
    }
    let mut pod_spans: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
    for (l, v) in pods {
        let (node, ns, pod, container) = pod_of(l);
        for (t, x) in v {
            lines.push_str(&format!("pod,site=dc5,node={node},namespace={ns},pod={pod},container={container} energy_j={x} {t}\n"));
        }
        let span = pod_spans.entry((node, ns, pod)).or_insert((i64::MAX, i64::MIN));
        span.0 = span.0.min(v[0].0);
        span.1 = span.1.max(v[v.len() - 1].0);
    }
    for (l, v) in meters {
        let tags = match l["kind"].as_str() {
            "grid" => "role=facility",
            "ups_output" => "role=it,category=1",
            _ => "role=cooling",
        };
        for (t, x) in v {
            lines.push_str(&format!("meter,site=dc5,meter={},{tags} energy_kwh={} {t}\n", l["meter"], x * 0.001));
        }
    }
    for (l, v) in water {
        for (t, x) in v {
            lines.push_str(&format!("water,site=dc5,meter={},potable=true volume_m3={} {t}\n", l["meter"], x * 0.001));
        }
    }
    let b = Server::start_with(dir_b.path(), "127.0.0.1:0".parse().expect("addr"), config, false).await;
    let r = b.write(&lines, "ms", WRITE).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    let posts: Vec<Value> =
        pod_spans.iter().map(|((node, ns, pod), (s, e))| json!({"job": format!("k8s:{ns}/{pod}"), "namespace": ns, "node": node, "gpus": [], "start": rfc_ms(*s), "end": rfc_ms(*e)})).collect();
    let r = reqwest::Client::new().post(b.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&posts).send().await.expect("jobs");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    let first = node_sum.keys().map(|(_, t)| *t).min().expect("samples");
    let (from, to) = (rfc_ms(first - 3_600_000), rfc_ms(first + 3_600_000));
    let jobs_path = format!("/api/v1/jobs?from={from}&to={to}");
    let (jobs_a, jobs_b) = (get_json(&a, &jobs_path).await, get_json(&b, &jobs_path).await);

    // The figures themselves, from what Prometheus scraped.
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for (l, v) in pods {
        let (_, ns, pod, _) = pod_of(l);
        *want.entry(format!("k8s:{ns}/{pod}")).or_default() += counter_deltas(v) / J_PER_KWH;
    }
    let owners: BTreeMap<&str, &str> = [("k8s:mistral-web/web-0", "mistral-ai/k8s"), ("k8s:other/batch-1", ""), ("k8s:mistral-db/db-0", "mistral-ai/k8s")].into();
    let listed: BTreeMap<String, (String, String)> = jobs_a["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| (j["job"].as_str().unwrap_or("").to_owned(), (j["owner"].as_str().unwrap_or("").to_owned(), j["project"].as_str().unwrap_or("").to_owned())))
        .collect();
    assert_eq!(listed.keys().map(String::as_str).collect::<Vec<_>>(), owners.keys().copied().collect::<Vec<_>>(), "the pods, not Kepler's system_processes: {jobs_a}");
    for (job, owner) in &owners {
        assert_eq!(listed[*job].0, *owner, "{job}'s owner from [kubernetes] namespace_owners");
        assert_eq!(format!("k8s:{}/", listed[*job].1), job[..job.find('/').expect("/") + 1], "{job}'s project is its namespace");
        let j = jobs_a["jobs"].as_array().expect("jobs").iter().find(|j| j["job"] == *job).expect("job");
        assert_close(&j["it_energy_kwh"], want[*job], &format!("{job}'s energy = its containers' dynamic counter deltas, the reset pairs adding nothing"));
        assert_eq!(j["gpu_energy_kwh"], 0.0, "{j}");
        assert_eq!(j["source"], "kepler", "{j}");
    }
    let node_kwh: f64 = platform.iter().map(|(_, v)| counter_deltas(v)).sum::<f64>() / J_PER_KWH;
    assert_close(&jobs_a["node_energy_kwh"], node_kwh, "the nodes' energy = Σ of both halves' deltas");
    assert_close(&jobs_a["idle_kwh"], node_kwh - want.values().sum::<f64>(), "what Kepler attributes no pod is the nodes' idle");
    let e_it = meters.iter().find(|(l, _)| l["kind"] == "ups_output").map(|(_, v)| counter_deltas(v) * 0.001).expect("ups");
    assert_close(&jobs_a["it_energy_kwh"], e_it, "E_IT from the UPS output meter");
    let sum = want.values().sum::<f64>() + jobs_a["idle_kwh"].as_f64().expect("idle") + jobs_a["unattributed_kwh"].as_f64().expect("unattributed");
    assert!((sum - e_it).abs() <= 1e-9 * e_it, "Σ jobs + idle + unattributed = {sum}, E_IT = {e_it}");

    // Equal to the reference, field by field.
    assert_same("kpi", &a.kpi(&from, &to).await, &b.kpi(&from, &to).await, HOW_FED);
    assert_same("jobs", &jobs_a, &jobs_b, HOW_FED);
    let resets = |v: &Value| v["data_quality"]["counter_resets"].as_u64().expect("resets");
    assert_eq!(resets(&jobs_a), resets(&jobs_b) + 2, "each node's idle half resets beside its dynamic half");
    let month = &rfc_ms(first)[..7];
    let pinned = "generated_at=2026-12-01T08:00:00Z";
    let (rep_a, rep_b) = (get_json(&a, &format!("/api/v1/reports/{month}.json?{pinned}")).await, get_json(&b, &format!("/api/v1/reports/{month}.json?{pinned}")).await);
    assert!(rep_a.to_string().contains("k8s:mistral-web/web-0"), "the report lists the pods");
    assert_same("report", &rep_a, &rep_b, HOW_FED);
    let statement = format!("/api/v1/statements/mistral-ai/{month}.json?{pinned}");
    let (st_a, st_b) = (get_json(&a, &statement).await, get_json(&b, &statement).await);
    assert!(st_a.to_string().contains("k8s:mistral-db/db-0"), "the customer's statement holds its pods: {st_a}");
    assert_same("statement", &st_a, &st_b, HOW_FED);
    let _ = READ;
    a.stop().await;
    b.stop().await;
}
