//! One site, two ways in (issue 27, "Done when" line 1): the same two hours of a small site are
//! written (a) as `kilowatch-collector` writes them (line protocol in the wire schema, jobs
//! through `POST /api/v1/jobs`) and (b) as dcgm-exporter, a Modbus facility exporter and
//! ipmi_exporter expose them, as remote-write requests Prometheus would send (its label sets,
//! its staleness markers when a job label goes away, Slurm jobs named by dcgm-exporter's
//! `hpc_job` and Kubernetes pods by `pod`/`namespace`, an XID as dcgm-exporter's last-XID gauge),
//! into two fresh servers with the same
//! configuration (deploy/kilowatch-prometheus.toml). The KPIs, the job list, the monthly report
//! and a customer's statement must be equal to 1e-9; any difference is a mapping bug.

mod common;
mod remote_write_common;

use std::collections::BTreeMap;

use common::{READ, Server, WRITE};
use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::http::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use remote_write_common::{assert_same, get_json};
use serde_json::{Value, json};

/// 2026-11-02T00:00:00Z: a Monday in November, far from the month's edges in Europe/Paris.
const T0_MS: i64 = 1_793_577_600_000;
/// The exporters' scrape interval and the collector's sampling interval alike.
const STEP_MS: i64 = 10_000;
/// Two hours of readings: ticks 0..=TICKS.
const TICKS: i64 = 720;
/// At this tick, the driver of dgx-002 is reloaded: GPU 0's energy counter restarts near 0.
const RESET_TICK: i64 = 300;
/// At this tick, dgx-001's GPU 1 reports XID 79 (fallen off the bus): an event from the
/// collector, a change of dcgm-exporter's last-XID gauge.
const XID_TICK: i64 = 500;

const GPUS: [(&str, u32, &str); 4] = [
    ("dgx-001", 0, "GPU-00000000-0000-0000-0000-000000000010"),
    ("dgx-001", 1, "GPU-00000000-0000-0000-0000-000000000011"),
    ("dgx-002", 0, "GPU-00000000-0000-0000-0000-000000000020"),
    ("dgx-002", 1, "GPU-00000000-0000-0000-0000-000000000021"),
];

/// A job of the site: its id as the ledger names it, owner, project, node, GPUs, and the ticks
/// of its first and last reading.
struct Job {
    id: &'static str,
    owner: &'static str,
    project: &'static str,
    node: &'static str,
    gpus: &'static [u32],
    first: i64,
    last: i64,
    /// How the exporters name it: Slurm (`hpc_job` and the account label) or a pod.
    k8s: Option<(&'static str, &'static str)>,
}

const JOBS: [Job; 2] = [
    Job { id: "slurm:4242", owner: "mistral-ai/train", project: "", node: "dgx-001", gpus: &[0, 1], first: 60, last: 420, k8s: None },
    Job { id: "k8s:mistral-inference/vllm-0", owner: "mistral-ai/k8s", project: "mistral-inference", node: "dgx-002", gpus: &[1], first: 180, last: 600, k8s: Some(("mistral-inference", "vllm-0")) },
];

/// The label Prometheus' relabelling adds to dcgm-exporter's series from Slurm's account
/// (`[prometheus] job_owner_label` in deploy/kilowatch-prometheus.toml).
const OWNER_LABEL: &str = "slurm_account";

fn t_ms(k: i64) -> i64 {
    T0_MS + k * STEP_MS
}

/// A deterministic spread in [0, n).
fn spread(k: i64, salt: i64, n: i64) -> i64 {
    (k * 7_919 + salt * 104_729 + (k * k) % 977).rem_euclid(n)
}

/// GPU `g`'s energy counter (mJ) at tick `k`, as NVML and dcgm-exporter read it.
fn gpu_energy_mj(g: usize, k: i64) -> i64 {
    let inc = |j: i64| 3_000_000 + spread(j, g as i64, 4_000_000);
    if g == 2 && k >= RESET_TICK {
        return 12_345 + (RESET_TICK + 1..=k).map(inc).sum::<i64>();
    }
    1_000_000_000 * (g as i64 + 1) + (1..=k).map(inc).sum::<i64>()
}

fn gpu_power_w(g: usize, k: i64) -> f64 {
    (3_000_000 + spread(k, g as i64, 4_000_000)) as f64 / 10_000.0
}

fn gpu_temp_c(g: usize, k: i64) -> f64 {
    55.0 + spread(k, g as i64 + 7, 20) as f64
}

fn gpu_fb_used_mib(g: usize, k: i64) -> i64 {
    20_000 + spread(k, g as i64 + 11, 60_000)
}

/// The job holding GPU `g` at tick `k`.
fn job_at(g: usize, k: i64) -> Option<&'static Job> {
    let (node, gpu, _) = GPUS[g];
    JOBS.iter().find(|j| j.node == node && j.gpus.contains(&gpu) && (j.first..=j.last).contains(&k))
}

/// The facility's counters in the exporter's units (Wh, litres) at tick `k`.
fn grid_wh(k: i64) -> f64 {
    1_000_000_000.0 + (1..=k).map(|j| 9_300 + spread(j, 1, 700)).sum::<i64>() as f64
}

fn ups_wh(k: i64) -> f64 {
    800_000_000.0 + (1..=k).map(|j| 8_000 + spread(j, 2, 500)).sum::<i64>() as f64
}

fn cooling_wh(k: i64) -> f64 {
    50_000_000.0 + (1..=k).map(|j| 700 + spread(j, 3, 90)).sum::<i64>() as f64
}

fn water_l(k: i64) -> f64 {
    4_512_300.0 + (1..=k).map(|j| 0.25 + spread(j, 4, 4) as f64 * 0.125).sum::<f64>()
}

fn grid_power_w(k: i64) -> f64 {
    (9_300 + spread(k, 1, 700)) as f64 * 360.0
}

fn node_power_w(n: usize, k: i64) -> f64 {
    8_000.0 + spread(k, n as i64 + 20, 2_000) as f64 + 0.5
}

fn outside_temp_c(k: i64) -> f64 {
    12.0 + spread(k, 30, 80) as f64 / 10.0
}

const NODES: [&str; 2] = ["dgx-001", "dgx-002"];

/// The `[prometheus.map]` scale of the example's meter and water rules: Wh → kWh, L → m³. The
/// facility agent's register maps scale the same readings by the same factor.
const SCALE: f64 = 0.001;

// ---------------------------------------------------------------------------------------------
// (a) What the collector (node agents and the facility agent) writes.

fn collector_lines() -> String {
    let mut out = String::new();
    for k in 0..=TICKS {
        let t = t_ms(k);
        for (g, (node, gpu, uuid)) in GPUS.iter().enumerate() {
            out.push_str(&format!(
                "gpu,site=dc5,node={node},gpu={gpu},uuid={uuid} energy_mj={}i,power_w={},temp_c={},mem_used_bytes={}i {t}\n",
                gpu_energy_mj(g, k),
                gpu_power_w(g, k),
                gpu_temp_c(g, k),
                gpu_fb_used_mib(g, k) * 1024 * 1024
            ));
        }
        if k == XID_TICK {
            let (node, gpu, uuid) = GPUS[1];
            out.push_str(&format!("gpu_event,site=dc5,node={node},gpu={gpu},uuid={uuid} kind=\"xid\",xid=79i {t}\n"));
        }
        for (n, node) in NODES.iter().enumerate() {
            out.push_str(&format!("node,site=dc5,node={node} power_w={} {t}\n", node_power_w(n, k)));
        }
        out.push_str(&format!("meter,site=dc5,meter=grid-a,role=facility energy_kwh={},power_w={} {t}\n", grid_wh(k) * SCALE, grid_power_w(k)));
        out.push_str(&format!("meter,site=dc5,meter=ups-1-out,role=it,category=1 energy_kwh={} {t}\n", ups_wh(k) * SCALE));
        out.push_str(&format!("meter,site=dc5,meter=cooling,role=cooling energy_kwh={} {t}\n", cooling_wh(k) * SCALE));
        out.push_str(&format!("water,site=dc5,meter=makeup-1,potable=true volume_m3={} {t}\n", water_l(k) * SCALE));
        out.push_str(&format!("cooling,site=dc5,unit=cu-01 outside_temp_c={} {t}\n", outside_temp_c(k)));
    }
    out
}

fn rfc_ms(ms: i64) -> String {
    kilowatch_model::Timestamp(ms * 1_000_000).to_rfc3339()
}

/// The jobs as a Slurm hook and a Kubernetes controller post them.
fn job_posts() -> Value {
    Value::Array(
        JOBS.iter()
            .map(|j| {
                let mut v = json!({"job": j.id, "node": j.node, "gpus": j.gpus, "start": rfc_ms(t_ms(j.first)), "end": rfc_ms(t_ms(j.last))});
                match j.k8s {
                    // The namespace gives the owner through [kubernetes] namespace_owners.
                    Some((ns, _)) => v["namespace"] = json!(ns),
                    None => v["owner"] = json!(j.owner),
                }
                v
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// (b) What Prometheus sends: one series per label set, samples in the exporters' units.

type Labels = Vec<(String, String)>;

fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = vec![("__name__".into(), name.into())];
    l.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    l
}

/// dcgm-exporter's labels for GPU `g` at tick `k` (its job labels included), with the
/// `instance` and `job` labels Prometheus adds.
fn dcgm_labels(name: &str, g: usize, k: i64) -> Labels {
    let (node, gpu, uuid) = GPUS[g];
    let gpu = gpu.to_string();
    let instance = format!("{node}:9400");
    let mut l = labels(
        name,
        &[
            ("gpu", &gpu),
            ("UUID", uuid),
            ("pci_bus_id", "00000000:18:00.0"),
            ("device", "nvidia0"),
            ("modelName", "NVIDIA H100 80GB HBM3"),
            ("Hostname", node),
            ("DCGM_FI_DRIVER_VERSION", "535.129.03"),
            ("instance", &instance),
            ("job", "dcgm-exporter"),
        ],
    );
    if let Some(j) = job_at(g, k) {
        match j.k8s {
            Some((ns, pod)) => l.extend([("namespace".into(), ns.into()), ("pod".into(), pod.into()), ("container".into(), "vllm".into())]),
            None => l.extend([("hpc_job".into(), j.id.trim_start_matches("slurm:").into()), (OWNER_LABEL.into(), j.owner.into())]),
        }
    }
    l
}

/// Every sample Prometheus holds, by series, in scrape order; a series whose label set goes
/// away (a job's labels) gets Prometheus' staleness marker at the next scrape.
fn prometheus_samples() -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut all: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut add = |l: Labels, t: i64, v: f64| all.entry(l).or_default().push((t, v));
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    for k in 0..=TICKS {
        let t = t_ms(k);
        for g in 0..GPUS.len() {
            add(dcgm_labels("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", g, k), t, gpu_energy_mj(g, k) as f64);
            add(dcgm_labels("DCGM_FI_DEV_POWER_USAGE", g, k), t, gpu_power_w(g, k));
            add(dcgm_labels("DCGM_FI_DEV_GPU_TEMP", g, k), t, gpu_temp_c(g, k));
            add(dcgm_labels("DCGM_FI_DEV_FB_USED", g, k), t, gpu_fb_used_mib(g, k) as f64);
            add(dcgm_labels("DCGM_FI_DEV_XID_ERRORS", g, k), t, if g == 1 && k >= XID_TICK { 79.0 } else { 0.0 });
            if k > 0 && job_at(g, k - 1).map(|j| j.id) != job_at(g, k).map(|j| j.id) {
                for name in ["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_XID_ERRORS"] {
                    add(dcgm_labels(name, g, k - 1), t, stale);
                }
            }
        }
        for (n, node) in NODES.iter().enumerate() {
            // ipmi_exporter's DCMI reading; relabelling names the node.
            add(labels("ipmi_dcmi_power_consumption_watts", &[("node", node), ("instance", &format!("{node}-bmc")), ("job", "ipmi")]), t, node_power_w(n, k));
        }
        let meter = |m: &str, kind: &str| labels("meter_energy_wh_total", &[("meter", m), ("kind", kind), ("instance", "modbus-exporter:9602"), ("job", "facility")]);
        add(meter("grid-a", "grid"), t, grid_wh(k));
        add(labels("meter_power_watts", &[("meter", "grid-a"), ("kind", "grid"), ("instance", "modbus-exporter:9602"), ("job", "facility")]), t, grid_power_w(k));
        add(meter("ups-1-out", "ups_output"), t, ups_wh(k));
        add(meter("cooling", "cooling"), t, cooling_wh(k));
        add(labels("water_meter_volume_liters_total", &[("meter", "makeup-1"), ("supply", "potable"), ("instance", "modbus-exporter:9602"), ("job", "facility")]), t, water_l(k));
        add(labels("cooling_unit_outside_temperature_celsius", &[("unit", "cu-01"), ("instance", "modbus-exporter:9602"), ("job", "facility")]), t, outside_temp_c(k));
    }
    all
}

/// The samples as remote-write requests, `per_request` ticks each (Prometheus batches by time).
fn write_requests(per_request: i64) -> Vec<WriteRequest> {
    let all = prometheus_samples();
    let mut out = Vec::new();
    let mut from = t_ms(0);
    while from <= t_ms(TICKS) {
        let to = from + per_request * STEP_MS;
        let timeseries: Vec<TimeSeries> = all
            .iter()
            .filter_map(|(l, samples)| {
                let s: Vec<Sample> = samples.iter().filter(|(t, _)| *t >= from && *t < to).map(|(t, v)| Sample { timestamp: *t, value: *v }).collect();
                (!s.is_empty()).then(|| TimeSeries { labels: l.iter().map(|(k, v)| Label::new(k, v)).collect(), samples: s })
            })
            .collect();
        out.push(WriteRequest { timeseries });
        from = to;
    }
    out
}

async fn remote_write(s: &Server, req: &WriteRequest) {
    let r = remote_write_common::post(s, req).await;
    let status = r.status();
    assert_eq!(status, 204, "{}", r.text().await.unwrap_or_default());
}

// ---------------------------------------------------------------------------------------------
// Reading both servers and comparing.

fn config() -> Config {
    Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kilowatch-prometheus.toml")).expect("deploy/kilowatch-prometheus.toml")
}

/// Keys that say how a figure was fed, not what it is: a job's allocation comes from the jobs
/// API on one side and from the exporters' job labels (`gpu_job` points) on the other.
const HOW_FED: &[&str] = &["source"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_fed_by_prometheus_alone_gets_the_collectors_kpis_jobs_report_and_statements() {
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let a = Server::start_with(dir_a.path(), "127.0.0.1:0".parse().expect("addr"), config(), false).await;
    let b = Server::start_with(dir_b.path(), "127.0.0.1:0".parse().expect("addr"), config(), false).await;

    // (a) the collector's line protocol and the jobs API.
    let lines = collector_lines();
    for chunk in lines.lines().collect::<Vec<_>>().chunks(2_000) {
        let r = a.write(&(chunk.join("\n") + "\n"), "ms", WRITE).await;
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    }
    let r = reqwest::Client::new().post(a.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&job_posts()).send().await.expect("jobs");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    // (b) remote write only: 30 scrapes a request, as a queue shard's batches.
    for req in write_requests(30) {
        remote_write(&b, &req).await;
    }

    // The XID, as the alerts and the GPU page read it: one event, same time, same code.
    let xids = |s: &Server| -> Vec<(i64, f64)> {
        let ids: Vec<_> = s.store.find_series("gpu_event", "xid", &[("node", "dgx-001"), ("gpu", "1")]).expect("find").into_iter().map(|m| m.id).collect();
        ids.iter().flat_map(|id| s.store.read_with_neighbours(*id, 0, i64::MAX).expect("read")).map(|(t, v)| (t, v.as_f64().expect("number"))).collect()
    };
    assert_eq!(xids(&a), [(t_ms(XID_TICK) * 1_000_000, 79.0)]);
    assert_eq!(xids(&b), xids(&a), "dcgm-exporter's last-XID gauge becomes the collector's event");

    let (from, to) = (rfc_ms(T0_MS - 3_600_000), rfc_ms(t_ms(TICKS) + 3_600_000));
    let kpi_a = a.kpi(&from, &to).await;
    let kpi_b = b.kpi(&from, &to).await;
    // Not vacuous: the figures are there, and from the meters the test wrote.
    let e_it = (ups_wh(TICKS) - ups_wh(0)) * SCALE;
    common::assert_close(&kpi_a["it_energy_kwh"], e_it, "E_IT from the UPS output meter");
    common::assert_close(&kpi_a["pue"], (grid_wh(TICKS) - grid_wh(0)) / (ups_wh(TICKS) - ups_wh(0)), "PUE");
    assert!(kpi_a["wue_l_per_kwh"].as_f64().is_some_and(|w| w > 0.0), "{kpi_a}");
    assert_same("kpi", &kpi_a, &kpi_b, HOW_FED);

    let jobs_path = format!("/api/v1/jobs?from={from}&to={to}");
    let (jobs_a, jobs_b) = (get_json(&a, &jobs_path).await, get_json(&b, &jobs_path).await);
    let ids = |v: &Value| v["jobs"].as_array().expect("jobs").iter().map(|j| (j["job"].as_str().unwrap_or("").to_owned(), j["owner"].as_str().unwrap_or("").to_owned())).collect::<Vec<_>>();
    let want: Vec<(String, String)> = JOBS.iter().map(|j| (j.id.to_owned(), j.owner.to_owned())).collect();
    let mut got = ids(&jobs_a);
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted, "the collector-fed side holds both jobs with their owners");
    let slurm = jobs_a["jobs"].as_array().expect("jobs").iter().find(|j| j["job"] == "slurm:4242").expect("slurm job");
    let counter_kwh = |g: usize, j: &Job| (gpu_energy_mj(g, j.last) - gpu_energy_mj(g, j.first)) as f64 / 3.6e9;
    common::assert_close(&slurm["gpu_energy_kwh"], counter_kwh(0, &JOBS[0]) + counter_kwh(1, &JOBS[0]), "the Slurm job's GPU energy = its GPUs' counter deltas");
    assert_eq!(jobs_a["jobs"].as_array().map(Vec::len), jobs_b["jobs"].as_array().map(Vec::len), "{jobs_b}");
    assert_same("jobs", &jobs_a, &jobs_b, HOW_FED);
    for j in &JOBS {
        assert_eq!(project_of(&jobs_a, j.id), j.project, "a pod's namespace is its project");
    }

    let pinned = "generated_at=2026-12-01T08:00:00Z";
    let report = format!("/api/v1/reports/2026-11.json?{pinned}");
    let (rep_a, rep_b) = (get_json(&a, &report).await, get_json(&b, &report).await);
    assert!(rep_a.to_string().contains("slurm:4242"), "the report lists the jobs");
    assert_same("report", &rep_a, &rep_b, HOW_FED);

    for owner in ["mistral-ai", "mistral-ai%2Ftrain"] {
        let statement = format!("/api/v1/statements/{owner}/2026-11.json?{pinned}");
        let (st_a, st_b) = (get_json(&a, &statement).await, get_json(&b, &statement).await);
        assert!(st_a.to_string().contains("slurm:4242"), "{owner}'s statement holds its Slurm job: {st_a}");
        assert_same(&format!("statement {owner}"), &st_a, &st_b, HOW_FED);
    }
    let _ = READ;
    a.stop().await;
    b.stop().await;
}

fn project_of(v: &Value, id: &str) -> String {
    v["jobs"].as_array().expect("jobs").iter().find(|j| j["job"] == id).and_then(|j| j["project"].as_str()).unwrap_or("").to_owned()
}
