//! Prometheus remote write into the ledger: Debian's real `prometheus` scrapes a page in
//! dcgm-exporter's format served by the test (counters advancing, one exporter restart that
//! resets them, one missed scrape) and remote-writes to Kilowatch; the ledger's per-job and
//! idle GPU energy equal the deltas the test computes from what it served. Then the answers to
//! bad input, the collector winning for a GPU both report, and idempotence, with requests the
//! test encodes itself.

mod common;
mod remote_write_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{READ, Server, WRITE, assert_close};
use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::http::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use remote_write_common::{post, post_raw, snappy};
use serde_json::{Value, json};

const MJ_PER_KWH: f64 = 3.6e9;

fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    let mut l = vec![Label::new("__name__", name)];
    l.extend(labels.iter().map(|(k, v)| Label::new(k, v)));
    TimeSeries { labels: l, samples: samples.iter().map(|(t, v)| Sample { timestamp: *t, value: *v }).collect() }
}

/// `GET /api/v1/jobs` over `[from, to]` (RFC 3339 in UTC: nothing to escape).
async fn jobs(s: &Server, from: &str, to: &str) -> Value {
    let r = s.get(&format!("/api/v1/jobs?from={from}&to={to}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// A job allocation through `POST /api/v1/jobs`.
async fn post_job(s: &Server, body: Value) {
    let r = reqwest::Client::new().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&body).send().await.expect("job");
    assert_eq!(r.status(), 200);
}

fn job<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["jobs"].as_array().expect("jobs").iter().find(|j| j["job"] == id).unwrap_or_else(|| panic!("job {id} missing in {v}"))
}

fn rfc(t: kilowatch_model::Timestamp) -> String {
    t.to_rfc3339()
}

/// The newest stored value of field `field` of the `measurement` series of (node, gpu).
fn newest(s: &Server, measurement: &str, field: &str, node: &str, gpu: &str) -> Option<f64> {
    newest_of(s, measurement, field, &[("node", node), ("gpu", gpu)])
}

/// The newest stored value of a meter's (or water meter's) field.
fn newest_meter(s: &Server, measurement: &str, field: &str, meter: &str) -> Option<f64> {
    newest_of(s, measurement, field, &[("meter", meter)])
}

fn newest_of(s: &Server, measurement: &str, field: &str, tags: &[(&str, &str)]) -> Option<f64> {
    let ids: Vec<_> = s.store.find_series(measurement, field, tags).expect("find").into_iter().map(|m| m.id).collect();
    s.store.latest(&ids).expect("latest").into_iter().flatten().map(|(_, v)| v.as_f64().expect("number")).next()
}

fn metric(page: &str, name_and_labels: &str) -> f64 {
    page.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0)
}

/// Σ of the positive deltas between consecutive readings: a decrease is a reset, whose pair
/// adds nothing (DOMAIN.md, "Counters").
fn counter_deltas(values: &[f64]) -> f64 {
    values.windows(2).map(|w| w[1] - w[0]).filter(|d| *d >= 0.0).sum()
}

// ---------------------------------------------------------------------------------------------
// A dcgm-exporter page served by the test.

/// Scrape number (from 1) answered 503: a missed scrape.
const MISSED: u32 = 7;
/// From this scrape on, the counters restart from near zero: the exporter (and driver) restarted.
const RESTART: u32 = 10;
/// From this scrape on, GPU 0's last-XID gauge says 43.
const XID: u32 = 12;
/// From this scrape on, the counters stop advancing, so the test knows the last value.
const LAST: u32 = 16;

struct Gpu {
    index: u32,
    uuid: &'static str,
    base_mj: f64,
    after_restart_mj: f64,
    mj_per_scrape: f64,
}

const GPUS: [Gpu; 2] = [
    Gpu { index: 0, uuid: "GPU-11111111-2222-3333-4444-555555555555", base_mj: 1_234_567_890.0, after_restart_mj: 4_321.0, mj_per_scrape: 700_123.0 },
    Gpu { index: 1, uuid: "GPU-11111111-2222-3333-4444-666666666666", base_mj: 2_000_000_000.0, after_restart_mj: 17.0, mj_per_scrape: 98_765.0 },
];

/// The facility exporter's counters (a Modbus exporter's names): metric, labels, start value,
/// increase per scrape, and the `[prometheus.map]` scale of deploy/kilowatch-prometheus.toml.
const FACILITY: [(&str, &str, f64, f64, f64); 4] = [
    ("meter_energy_wh_total", "meter=\"grid-a\",kind=\"grid\"", 1_000_000_000.0, 4_640.25, 0.001),
    ("meter_energy_wh_total", "meter=\"ups-1-out\",kind=\"ups_output\"", 800_000_000.0, 4_000.5, 0.001),
    ("meter_energy_wh_total", "meter=\"cooling\",kind=\"cooling\"", 50_000_000.0, 410.0, 0.001),
    ("water_meter_volume_liters_total", "meter=\"makeup-1\",supply=\"potable\"", 4_512_300.0, 0.875, 0.001),
];

#[derive(Default)]
struct Exporter {
    scrapes: u32,
    /// Per GPU, the energy values served, in order.
    served: Vec<Vec<f64>>,
    facility_scrapes: u32,
}

impl Exporter {
    fn energy(g: &Gpu, k: u32) -> f64 {
        let k = k.min(LAST);
        if k < RESTART { g.base_mj + f64::from(k) * g.mj_per_scrape } else { g.after_restart_mj + f64::from(k - RESTART) * g.mj_per_scrape }
    }

    fn facility_value(i: usize, k: u32) -> f64 {
        let (_, _, start, step, _) = FACILITY[i];
        start + f64::from(k.min(LAST)) * step
    }

    /// The facility exporter's page: its counters advance every scrape until `LAST`.
    fn facility(&mut self) -> String {
        self.facility_scrapes += 1;
        let k = self.facility_scrapes;
        let mut page = String::new();
        for (i, (name, labels, ..)) in FACILITY.iter().enumerate() {
            page.push_str(&format!("{name}{{{labels}}} {}\n", Self::facility_value(i, k)));
        }
        page.push_str(&format!("meter_power_watts{{meter=\"grid-a\",kind=\"grid\"}} {}\n", FACILITY[0].3 * 3600.0));
        page.push_str("cooling_unit_outside_temperature_celsius{unit=\"cu-01\"} 24.5\n");
        page
    }

    /// The page of the next scrape, or `None` for the missed one.
    fn scrape(&mut self) -> Option<String> {
        self.scrapes += 1;
        let k = self.scrapes;
        if k == MISSED {
            return None;
        }
        self.served.resize(GPUS.len(), Vec::new());
        let mut page = String::new();
        let families: [(&str, &str, &str); 5] = [
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
            ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
            ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
            ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
            ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
        ];
        for (name, kind, help) in families {
            page.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (i, g) in GPUS.iter().enumerate() {
                let value = match name {
                    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" => {
                        let e = Self::energy(g, k);
                        self.served[i].push(e);
                        e
                    }
                    "DCGM_FI_DEV_POWER_USAGE" => g.mj_per_scrape / 1000.0,
                    "DCGM_FI_DEV_GPU_TEMP" => 61.0,
                    // GPU 0 reports XID 43 from scrape XID on, and keeps reporting it.
                    "DCGM_FI_DEV_XID_ERRORS" => f64::from(if g.index == 0 && k >= XID { 43 } else { 0 }),
                    _ => 3.0,
                };
                // GPU 1 runs Slurm job 777, which dcgm-exporter's HPC job mapping labels.
                let job = if g.index == 1 { ",hpc_job=\"777\"" } else { "" };
                page.push_str(&format!(
                    "{name}{{gpu=\"{}\",UUID=\"{}\",pci_bus_id=\"00000000:1{}:00.0\",device=\"nvidia{}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"dgx-101\",DCGM_FI_DRIVER_VERSION=\"535.129.03\"{job}}} {value}\n",
                    g.index, g.uuid, g.index, g.index
                ));
            }
        }
        Some(page)
    }
}

async fn serve_exporter(exporter: Arc<Mutex<Exporter>>) -> std::net::SocketAddr {
    use axum::http::StatusCode;
    let facility = exporter.clone();
    let app = axum::Router::new()
        .route(
            "/facility",
            axum::routing::get(move || {
                let page = facility.lock().map(|mut e| e.facility()).unwrap_or_default();
                async move { page }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let e = exporter.clone();
                async move {
                    let page = e.lock().map(|mut e| e.scrape()).ok().flatten();
                    match page {
                        Some(p) => (StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], p),
                        None => (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "text/plain")], "DCGM not ready\n".to_owned()),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn start_prometheus(dir: &std::path::Path, exporter: std::net::SocketAddr, kilowatch: std::net::SocketAddr) -> common::Reaped {
    remote_write_common::start_prometheus(
        dir,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n  - job_name: dcgm\n    static_configs:\n      - targets: [\"{exporter}\"]\n\
             \x20 - job_name: facility\n    metrics_path: /facility\n    static_configs:\n      - targets: [\"{exporter}\"]\n\
             remote_write:\n  - url: http://{kilowatch}/api/v1/write\n    authorization:\n      credentials: {WRITE}\n\
             \x20   queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n"
        ),
    )
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_dcgm_exporter_and_the_ledger_holds_the_counters_deltas() {
    scenario(None).await;
}

/// Kilowatch killed (no checkpoint: its log replays) for a minute in the middle: Prometheus
/// keeps what it could not send in its WAL and sends it when Kilowatch is back; the ledger ends
/// equal to the counters' deltas, as the uninterrupted run's does (nothing lost, nothing
/// doubled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kilowatch_down_for_a_minute_loses_and_doubles_nothing() {
    scenario(Some(Duration::from_secs(60))).await;
}

async fn scenario(outage: Option<Duration>) {
    if !common::require_tool("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let kw = tempfile::tempdir().expect("tmp");
    // The facility's mapping is the shipped example's.
    let config = Config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kilowatch-prometheus.toml")).expect("deploy/kilowatch-prometheus.toml");
    let mut s = Server::start_with(kw.path(), "127.0.0.1:0".parse().expect("addr"), config.clone(), false).await;
    let t0 = kilowatch_model::Timestamp::now();
    let start = kilowatch_model::Timestamp(t0.0 - 60_000_000_000);
    // GPU 0 runs a job posted through the jobs API; GPU 1 one that only its hpc_job label names.
    post_job(&s, json!({"job": "train-1", "owner": "alice", "node": "dgx-101", "gpus": [0], "start": rfc(start), "end": null})).await;

    let exporter = Arc::new(Mutex::new(Exporter::default()));
    let exporter_addr = serve_exporter(exporter.clone()).await;
    let prom = start_prometheus(dir.path(), exporter_addr, s.addr);

    // Until every GPU's final value is stored (scrapes after LAST repeat it, adding nothing).
    let finals: Vec<f64> = GPUS.iter().map(|g| Exporter::energy(g, LAST)).collect();
    let deadline = Instant::now() + Duration::from_secs(90) + outage.unwrap_or_default();
    let mut down: Option<(i64, i64)> = None;
    loop {
        let scrapes = exporter.lock().map(|e| e.scrapes).unwrap_or(0);
        if let Some(d) = outage
            && down.is_none()
            && scrapes >= 4
        {
            let addr = s.addr;
            s.stop().await;
            let stopped = kilowatch_model::Timestamp::now().0;
            tokio::time::sleep(d).await;
            s = Server::start_with(kw.path(), addr, config.clone(), false).await;
            down = Some((stopped, kilowatch_model::Timestamp::now().0));
        }
        let facility_done = newest_meter(&s, "meter", "energy_kwh", "ups-1-out") == Some(Exporter::facility_value(1, LAST) * 0.001)
            && newest_meter(&s, "water", "volume_m3", "makeup-1") == Some(Exporter::facility_value(3, LAST) * 0.001);
        let done = scrapes > LAST + 1 && facility_done && GPUS.iter().zip(&finals).all(|(g, f)| newest(&s, "gpu", "energy_mj", "dgx-101", &g.index.to_string()) == Some(*f));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not deliver the final counters in time ({scrapes} scrapes); its log: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(prom);
    if let Some((from, to)) = down {
        let id = s.store.find_series("gpu", "energy_mj", &[("node", "dgx-101"), ("gpu", "0")]).expect("find")[0].id;
        let inside = s.store.read_with_neighbours(id, from, to).expect("read").into_iter().filter(|(t, _)| *t > from && *t < to).count();
        assert!(inside >= 3, "the scrapes made while Kilowatch was down arrived later ({inside})");
    }
    let served = exporter.lock().map(|e| e.served.clone()).expect("served");
    let want: Vec<f64> = served.iter().map(|v| counter_deltas(v) / MJ_PER_KWH).collect();
    assert!(want.iter().all(|w| *w > 0.0));

    let facility_scrapes = exporter.lock().map(|e| e.facility_scrapes).expect("scrapes");
    let to = kilowatch_model::Timestamp(kilowatch_model::Timestamp::now().0 + 60_000_000_000);
    let from = rfc(kilowatch_model::Timestamp(start.0 - 60_000_000_000));
    let v = jobs(&s, &from, &rfc(to)).await;
    let j = job(&v, "train-1");
    assert_close(&j["gpu_energy_kwh"], want[0], "GPU 0's energy in the job = its counter's deltas, the reset pair adding nothing");
    assert_eq!(j["estimated"], false, "from the counter, not from power: {j}");
    let hpc = job(&v, "slurm:777");
    assert_close(&hpc["gpu_energy_kwh"], want[1], "GPU 1's energy in the job its hpc_job label names");
    assert_eq!(hpc["gpus"], json!(["dgx-101:1"]), "{hpc}");
    assert!(v["idle_kwh"].as_f64().expect("idle").abs() < 1e-12, "no GPU was idle: {v}");

    // E_DC, E_IT, water and PUE from the facility exporter alone; jobs + idle + unattributed = E_IT.
    let delta = |i: usize| {
        let served: Vec<f64> = (1..=facility_scrapes).map(|k| Exporter::facility_value(i, k) * FACILITY[i].4).collect();
        counter_deltas(&served)
    };
    let (e_dc, e_it, water) = (delta(0), delta(1), delta(3));
    let kpi = s.kpi(&from, &rfc(to)).await;
    assert_close(&kpi["facility_energy_kwh"], e_dc, "E_DC from the grid meter's Wh counter");
    assert_close(&kpi["it_energy_kwh"], e_it, "E_IT from the UPS output's Wh counter");
    assert_eq!(kpi["pue_category"], 1, "{kpi}");
    assert_close(&kpi["pue"], e_dc / e_it, "PUE");
    assert_close(&kpi["water_m3"], water, "water from the litres counter");
    assert_close(&kpi["wue_l_per_kwh"], water * 1000.0 / e_it, "WUE");
    assert_close(&v["it_energy_kwh"], e_it, "the jobs' E_IT is the KPI's");
    let sum = v["jobs"].as_array().expect("jobs").iter().map(|j| j["it_energy_kwh"].as_f64().expect("job it")).sum::<f64>()
        + v["idle_kwh"].as_f64().expect("idle")
        + v["unattributed_kwh"].as_f64().expect("unattributed");
    assert!((sum - e_it).abs() <= 1e-9 * e_it, "Σ jobs + idle + unattributed = {sum}, E_IT = {e_it}");

    // The wire schema the collector writes: same tags (plus the source), integer mJ, MiB → bytes.
    let meta = s.store.find_series("gpu", "energy_mj", &[("node", "dgx-101"), ("gpu", "0")]).expect("find");
    assert_eq!(meta.len(), 1, "one series per GPU and field: {meta:?}");
    let tags: Vec<(String, String)> = meta[0].tags.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let want_tags: Vec<(String, String)> =
        [("gpu", "0"), ("node", "dgx-101"), ("site", "dc5"), ("source", "prometheus"), ("uuid", GPUS[0].uuid)].iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    assert_eq!(tags, want_tags);
    assert_eq!(newest(&s, "gpu", "mem_used_bytes", "dgx-101", "0"), Some(3.0 * 1024.0 * 1024.0));
    assert_eq!(newest(&s, "gpu", "temp_c", "dgx-101", "1"), Some(61.0));
    // The last-XID gauge: one event, however many scrapes repeat the code (and across the outage).
    let events = s.store.find_series("gpu_event", "xid", &[("node", "dgx-101")]).expect("find");
    assert_eq!(events.len(), 1, "{events:?}");
    let xids = s.store.read_with_neighbours(events[0].id, 0, i64::MAX).expect("read");
    assert_eq!(xids.iter().map(|(_, v)| v.as_f64().expect("number")).collect::<Vec<_>>(), [43.0], "{xids:?}");

    // Health says what feeds the ledger.
    let health: Value = s.get("/api/v1/health").await.json().await.expect("health");
    let src = &health["sources"];
    assert_eq!((src["remote_write"]["gpus"].as_u64(), src["line_protocol"]["gpus"].as_u64()), (Some(2), Some(0)), "{health}");
    assert!(src["remote_write"]["last_write"].is_string() && src["line_protocol"]["last_write"].is_null(), "{health}");
    assert_eq!(src["silent_gpus"], json!([]));

    // The missed scrape's staleness markers were skipped, not refused; nothing was refused.
    let page = s.get("/metrics").await.text().await.expect("metrics");
    assert!(metric(&page, "kilowatch_remote_write_samples_total{outcome=\"stale\"}") > 0.0, "{page}");
    assert!(metric(&page, "kilowatch_remote_write_samples_total{outcome=\"mapped\"}") >= f64::from(LAST - 1) * 8.0);
    assert_eq!(metric(&page, "kilowatch_remote_write_samples_total{outcome=\"refused\"}"), 0.0);
    assert!(metric(&page, "kilowatch_remote_write_requests_total{outcome=\"stored\"}") > 0.0);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Requests the test encodes itself.

const GPU0: &[(&str, &str)] = &[("gpu", "0"), ("UUID", "GPU-a"), ("Hostname", "dgx-201"), ("job", "dcgm"), ("instance", "10.0.0.1:9400")];
const GPU1: &[(&str, &str)] = &[("gpu", "1"), ("UUID", "GPU-b"), ("Hostname", "dgx-201"), ("job", "dcgm"), ("instance", "10.0.0.1:9400")];

fn now_ms() -> i64 {
    kilowatch_model::Timestamp::now().0 / 1_000_000
}

async fn message(r: reqwest::Response) -> String {
    let v: Value = r.json().await.expect("json");
    v["message"].as_str().expect("message").to_owned()
}

/// `kilowatch serve`'s write policy (out-of-order window, name lengths) on.
async fn with_policy(dir: &std::path::Path) -> Server {
    Server::start_with(dir, "127.0.0.1:0".parse().expect("addr"), Config::default(), true).await
}

#[tokio::test]
async fn bad_input_gets_the_right_answer_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = with_policy(dir.path()).await;
    let t = now_ms();

    // Corrupt snappy: nothing to store, 400 naming the encoding.
    // A declared length of 5, then a copy from before the start of the output.
    let r = post_raw(&s, vec![0x05, 0xff, 0xff, 0xff, 0xff], WRITE).await;
    assert_eq!(r.status(), 400);
    assert!(message(r).await.contains("snappy"));
    // Valid snappy around bytes that are no WriteRequest.
    let r = post_raw(&s, snappy(b"\x0a\xff\xff\xff\xff\x0fgarbage"), WRITE).await;
    assert_eq!(r.status(), 400);
    assert!(message(r).await.contains("prometheus.WriteRequest"));
    // No token, then a read token.
    let good = snappy(&WriteRequest { timeseries: vec![series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(t, 1.0)])] }.encode_to_vec());
    assert_eq!(post_raw(&s, good.clone(), "wrong-token").await.status(), 401);
    assert_eq!(post_raw(&s, good, READ).await.status(), 403);
    assert_eq!(newest(&s, "gpu", "power_w", "dgx-201", "0"), None, "refused requests store nothing");

    // NaN in a counter, a 1 MB label and a sample out of the out-of-order window, each beside a
    // good series: 400 naming each, the good ones stored.
    let first = WriteRequest { timeseries: vec![series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU1, &[(t, 5_000.0)])] };
    assert_eq!(post(&s, &first).await.status(), 204);
    let huge = "x".repeat(1 << 20);
    let huge_labels: Vec<(&str, &str)> = vec![("gpu", "2"), ("UUID", &huge), ("Hostname", "dgx-201")];
    let req = WriteRequest {
        timeseries: vec![
            series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(t, f64::NAN)]),
            series("DCGM_FI_DEV_POWER_USAGE", GPU0, &[(t, 512.5)]),
            series("DCGM_FI_DEV_POWER_USAGE", &huge_labels, &[(t, 1.0)]),
            series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU1, &[(t - 3 * 86_400_000, 1_000.0), (t + 1000, 6_000.0)]),
        ],
    };
    let r = post(&s, &req).await;
    assert_eq!(r.status(), 400, "never acceptable: the sender must not retry");
    let m = message(r).await;
    assert!(m.starts_with("3 series refused"), "{m}");
    assert!(m.contains("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\"") && m.contains("NaN"), "{m}");
    assert!(m.contains("label UUID is 1048576 bytes"), "{m}");
    assert!(m.contains("out_of_order_window_s"), "the store's reason for the old sample: {m}");
    assert!(m.len() < 4096, "the message names the series without repeating the 1 MB label");
    assert_eq!(newest(&s, "gpu", "power_w", "dgx-201", "0"), Some(512.5), "the good series is stored");
    assert_eq!(newest(&s, "gpu", "energy_mj", "dgx-201", "1"), Some(6_000.0), "the good sample of the series with an old one is stored");
    assert_eq!(newest(&s, "gpu", "energy_mj", "dgx-201", "0"), None);

    let page = s.get("/metrics").await.text().await.expect("metrics");
    assert_eq!(metric(&page, "kilowatch_remote_write_requests_total{outcome=\"invalid\"}"), 3.0, "{page}");
    assert_eq!(metric(&page, "kilowatch_remote_write_requests_total{outcome=\"unauthorized\"}"), 1.0);
    assert_eq!(metric(&page, "kilowatch_remote_write_requests_total{outcome=\"forbidden\"}"), 1.0);
    assert_eq!(metric(&page, "kilowatch_remote_write_samples_total{outcome=\"refused\"}"), 2.0, "NaN and the 1 MB label: refused before the store");
    assert_eq!(metric(&page, "kilowatch_ingest_lines_refused_total{reason=\"out_of_order_window_s\"}"), 1.0, "{page}");
    s.stop().await;
}

#[tokio::test]
async fn unmapped_series_are_dropped_and_counted_and_a_resent_request_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let t = now_ms();
    let req = WriteRequest {
        timeseries: vec![
            series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(t, 1_000.0), (t + 1000, 1_700.0)]),
            series("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle"), ("instance", "n:9100")], &[(t, 12.0)]),
        ],
    };
    for _ in 0..2 {
        assert_eq!(post(&s, &req).await.status(), 204);
    }
    let id = s.store.find_series("gpu", "energy_mj", &[("node", "dgx-201")]).expect("find")[0].id;
    let samples = s.store.read_with_neighbours(id, 0, i64::MAX).expect("read");
    assert_eq!(samples.len(), 2, "the same series at the same timestamp is stored once");
    assert!(s.store.find_series("node_cpu_seconds_total", "value", &[]).expect("find").is_empty());
    let page = s.get("/metrics").await.text().await.expect("metrics");
    assert_eq!(metric(&page, "kilowatch_remote_write_samples_total{outcome=\"unmapped\"}"), 2.0, "{page}");
    s.stop().await;
}

#[tokio::test]
async fn a_gpu_the_collector_reports_is_counted_once_from_the_collector() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let t = now_ms() / 1000 * 1000 - 60_000;
    // The collector's line protocol for dgx-201 GPU 0: 25,200 J over 40 s (DOMAIN.md example 10).
    let body = format!("gpu,site=dc5,node=dgx-201,gpu=0,uuid=GPU-a energy_mj=1000000000i {t}\ngpu,site=dc5,node=dgx-201,gpu=0,uuid=GPU-a energy_mj=1025200000i {}\n", t + 40_000);
    assert_eq!(s.write(&body, "ms", WRITE).await.status(), 204);
    // dcgm-exporter for the same GPU, with a counter of its own (another origin, another rate).
    let req = WriteRequest { timeseries: vec![series("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", GPU0, &[(t + 10_000, 7_000.0), (t + 30_000, 9_999_000.0)])] };
    assert_eq!(post(&s, &req).await.status(), 204);
    let gpu = s.store.find_series("gpu", "energy_mj", &[("node", "dgx-201"), ("gpu", "0")]).expect("find");
    assert_eq!(gpu.len(), 1, "only the collector's series is a `gpu` series: {gpu:?}");
    assert_eq!(gpu[0].tags.get("source"), None);
    assert_eq!(newest(&s, "gpu_dcgm", "energy_mj", "dgx-201", "0"), Some(9_999_000.0), "dcgm's readings are kept apart");
    post_job(
        &s,
        json!({"job": "j", "owner": "o", "node": "dgx-201", "gpus": [0], "start": rfc(kilowatch_model::Timestamp(t * 1_000_000)), "end": rfc(kilowatch_model::Timestamp((t + 40_000) * 1_000_000))}),
    )
    .await;
    let v = jobs(&s, &rfc(kilowatch_model::Timestamp((t - 3_600_000) * 1_000_000)), &rfc(kilowatch_model::Timestamp((t + 3_600_000) * 1_000_000))).await;
    assert_close(&job(&v, "j")["gpu_energy_kwh"], 0.007, "the collector's 25,200 J, once");
    let page = s.get("/metrics").await.text().await.expect("metrics");
    assert_eq!(metric(&page, "kilowatch_remote_write_samples_total{outcome=\"shadowed\"}"), 2.0, "{page}");
    let health: Value = s.get("/api/v1/health").await.json().await.expect("health");
    let src = &health["sources"];
    assert_eq!((src["line_protocol"]["gpus"].as_u64(), src["remote_write"]["gpus"].as_u64(), src["remote_write"]["shadowed_gpus"].as_u64()), (Some(1), Some(0), Some(1)), "{health}");
    assert!(metric(&page, "kilowatch_ingest_last_write_timestamp_seconds{source=\"remote_write\"}") > 1.7e9, "{page}");
    s.stop().await;
}

#[test]
fn the_deploy_remote_write_example_passes_promtool_check_config() {
    if !common::require_tool("promtool", "prometheus") {
        return;
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus-remote-write.yml");
    let check = |path: &std::path::Path| std::process::Command::new("promtool").args(["check", "config"]).arg(path).output().expect("promtool");
    let out = check(&example);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // promtool does refuse a broken one: a misspelt key in the remote_write block.
    let dir = tempfile::tempdir().expect("tmp");
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, std::fs::read_to_string(&example).expect("read").replace("queue_config:", "queue_confg:")).expect("write");
    assert!(!check(&broken).status.success(), "promtool accepted a misspelt key");
}

/// A million new series in four requests (a fleet's dcgm-exporters all new, or a label that
/// changes on every scrape) beside one 1 MB label: the store's new-series cap per token answers
/// 429 with `Retry-After` naming the key, what fits under the cap is stored, the 1 MB label is
/// named, and `/metrics` counts each refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_new_series_meet_the_new_series_cap_and_the_rest_is_stored() {
    const PER_REQUEST: usize = 250_000;
    let dir = tempfile::tempdir().expect("tmp");
    let s = with_policy(dir.path()).await;
    let cap = Config::default().store.max_new_series_per_minute_per_token as usize;
    assert!(cap < PER_REQUEST, "the default cap ({cap}) is under one request's new series");
    let t = now_ms();
    let huge = "x".repeat(1 << 20);
    let mut stored = 0.0;
    for r in 0..4 {
        let mut timeseries: Vec<TimeSeries> = (0..PER_REQUEST)
            .map(|i| {
                let n = r * PER_REQUEST + i;
                let (node, gpu, uuid) = (format!("node-{:06}", n / 8), (n % 8).to_string(), format!("GPU-{n:08}"));
                series("DCGM_FI_DEV_POWER_USAGE", &[("gpu", &gpu), ("UUID", &uuid), ("Hostname", &node)], &[(t, 300.0)])
            })
            .collect();
        if r == 0 {
            timeseries.push(series("DCGM_FI_DEV_POWER_USAGE", &[("gpu", "0"), ("UUID", &huge), ("Hostname", "dgx-huge")], &[(t, 1.0)]));
        }
        let resp = post(&s, &WriteRequest { timeseries }).await;
        assert_eq!(resp.status(), 429, "request {r}: over the new-series cap, the sender retries later");
        assert!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)), "{:?}", resp.headers());
        let v: Value = resp.json().await.expect("json");
        let m = v["message"].as_str().expect("message");
        assert!(m.contains("max_new_series_per_minute_per_token"), "{m}");
        assert!(m.len() < 4096, "five series named, not a million: {} bytes", m.len());
        if r == 0 {
            assert!(m.contains("label UUID is 1048576 bytes"), "{m}");
            assert_eq!(v["refused"], PER_REQUEST - cap + 1, "{v}");
        }
        stored += v["stored_samples"].as_f64().expect("stored");
    }
    // The cap is per minute: a slow machine's later requests may find it partly refilled.
    assert!(stored < (4 * PER_REQUEST) as f64 / 2.0, "{stored}");
    assert_eq!(s.store.find_series("gpu", "power_w", &[]).expect("find").len() as f64, stored, "what each answer says was stored is, once");
    let page = s.get("/metrics").await.text().await.expect("metrics");
    assert_eq!(
        metric(&page, "kilowatch_ingest_lines_refused_total{reason=\"max_new_series_per_minute_per_token\"}"),
        (4 * PER_REQUEST) as f64 - stored,
        "{}",
        page.lines().filter(|l| l.contains("refused")).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(metric(&page, "kilowatch_remote_write_samples_total{outcome=\"refused\"}"), 1.0, "the 1 MB label, refused before the store");
    s.stop().await;
}
