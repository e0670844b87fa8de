//! Jobs through the HTTP API: DOMAIN.md examples 8, 9, 10 and 11 as per-job figures, the job
//! ledger's idempotence, the collector's `gpu_job` points as a source, and a job's series.

mod common;

use common::{READ, Server, WRITE, assert_close};
use serde_json::{Value, json};

const T0: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z
const T1: i64 = T0 + 3600;
const FROM: &str = "2026-10-01T00:00:00Z";
const TO: &str = "2026-10-01T01:00:00Z";

fn meters(fac: f64, it: f64) -> String {
    format!(
        "meter,meter=g,role=facility energy_kwh=0 {T0}\nmeter,meter=g,role=facility energy_kwh={fac} {T1}\nmeter,meter=u,role=it,category=1 energy_kwh=0 {T0}\nmeter,meter=u,role=it,category=1 energy_kwh={it} {T1}\n"
    )
}

async fn post(s: &Server, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&body).send().await.expect("send")
}

async fn jobs(s: &Server, from: &str, to: &str) -> Value {
    let r = reqwest::Client::new().get(s.url("/api/v1/jobs")).query(&[("from", from), ("to", to)]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn job<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["jobs"].as_array().expect("jobs").iter().find(|j| j["job"] == id).unwrap_or_else(|| panic!("job {id} missing in {v}"))
}

fn conserved(v: &Value) {
    let it = v["it_energy_kwh"].as_f64().expect("it");
    let sum = v["jobs"].as_array().expect("jobs").iter().map(|j| j["it_energy_kwh"].as_f64().expect("job it")).sum::<f64>()
        + v["idle_kwh"].as_f64().expect("idle")
        + v["unattributed_kwh"].as_f64().expect("unattributed");
    assert!((sum - it).abs() <= 1e-9 * it.abs().max(1e-9), "Σ jobs + idle + unattributed = {sum}, E_IT = {it}");
}

fn ts(t: i64) -> String {
    kilowatch_model::Timestamp::from_secs(t).to_rfc3339()
}

#[tokio::test]
async fn example_8_power_only_gpu_job_with_pue_and_carbon() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut body = meters(1.25, 1.0);
    for (t, p) in [(0, 6000.0), (60, 9000.0), (120, 10000.0), (180, 8000.0)] {
        body.push_str(&format!("gpu,node=n1,gpu=0 power_w={p} {}\n", T0 + t));
    }
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    assert_eq!(post(&s, json!({"job":"j8","owner":"alice","node":"n1","gpus":[0],"start":ts(T0),"end":ts(T0 + 180)})).await.status(), 200);
    let v = jobs(&s, FROM, TO).await;
    let j = job(&v, "j8");
    assert_close(&j["it_energy_kwh"], 1_560_000.0 / 3.6e6, "0.4333 kWh");
    assert_close(&j["facility_energy_kwh"], 1_560_000.0 / 3.6e6 * 1.25, "0.5417 kWh");
    assert_close(&j["co2_kg"], 1_560_000.0 / 3.6e6 * 1.25 * 0.056, "30.33 g");
    assert_eq!(j["estimated"], true);
    assert_eq!(j["confidence"], "low");
    conserved(&v);
}

#[tokio::test]
async fn example_9_and_10_gpu_energy_from_power_and_from_the_nvml_counter() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut body = meters(1.25, 1.0);
    for (t, p) in [(0, 700.0), (10, 700.0), (40, 400.0)] {
        body.push_str(&format!("gpu,node=n1,gpu=0 power_w={p} {}\n", T0 + t));
    }
    body.push_str(&format!("gpu,node=n1,gpu=1 energy_mj=1000000000i {T0}\ngpu,node=n1,gpu=1 energy_mj=1025200000i {}\n", T0 + 40));
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    assert_eq!(post(&s, json!([{"job":"j9","node":"n1","gpus":[0],"start":ts(T0),"end":ts(T0 + 40)}, {"job":"j10","node":"n1","gpus":[1],"start":ts(T0),"end":ts(T0 + 40)}])).await.status(), 200);
    let v = jobs(&s, FROM, TO).await;
    assert_close(&job(&v, "j9")["gpu_energy_kwh"], 23_500.0 / 3.6e6, "23,500 J");
    assert_close(&job(&v, "j10")["gpu_energy_kwh"], 0.007, "25,200 J = 7 Wh");
    assert_eq!(job(&v, "j10")["estimated"], false);
    conserved(&v);
}

#[tokio::test]
async fn example_11_whole_site_job() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut body = meters(1178.56, 1016.0);
    body.push_str(&format!("water,meter=w,potable=true volume_m3=10 {T0}\nwater,meter=w,potable=true volume_m3=10.217424 {T1}\n"));
    let mut allocs = Vec::new();
    for n in 1..=127 {
        let node = format!("dgx-{n:03}");
        body.push_str(&format!("node,node={node} energy_j=0 {T0}\nnode,node={node} energy_j=28800000 {T1}\n"));
        for g in 0..8 {
            // 0.8 kWh per GPU: the node's other 1.6 kWh is shared by the GPUs held.
            body.push_str(&format!("gpu,node={node},gpu={g} energy_mj=0i {T0}\ngpu,node={node},gpu={g} energy_mj=2880000000i {T1}\n"));
        }
        allocs.push(json!({"job":"all","owner":"bob","project":"llm","node":node,"gpus":[0,1,2,3,4,5,6,7],"start":FROM,"end":TO}));
    }
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    assert_eq!(post(&s, Value::Array(allocs)).await.status(), 200);
    let v = jobs(&s, FROM, TO).await;
    let j = job(&v, "all");
    assert_close(&j["it_energy_kwh"], 1016.0, "IT");
    assert_close(&j["gpu_energy_kwh"], 1016.0 * 0.8, "GPU");
    assert_close(&j["facility_energy_kwh"], 1178.56, "facility");
    assert_close(&j["co2_kg"], 65.99936, "CO2");
    assert_close(&j["water_l"], 217.424, "water");
    assert!(v["idle_kwh"].as_f64().expect("idle").abs() < 1e-9);
    assert!(v["unattributed_kwh"].as_f64().expect("unattributed").abs() < 1e-9);
    assert_close(&v["by_owner"]["bob"]["it_energy_kwh"], 1016.0, "by owner");
    assert_close(&v["by_project"]["llm"]["co2_kg"], 65.99936, "by project");
    conserved(&v);
}

#[tokio::test]
async fn ledger_is_idempotent_end_only_closes_and_gpu_job_points_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut body = meters(125.0, 100.0);
    for g in 0..2 {
        body.push_str(&format!("gpu,node=n1,gpu={g} energy_mj=0i {T0}\ngpu,node=n1,gpu={g} energy_mj=36000000000i {T1}\n"));
    }
    // The collector saw job slurm:42 on GPU 1 for the second half hour, every 15 min.
    for t in [1800, 2700, 3600] {
        body.push_str(&format!("gpu_job,node=n1,gpu=1 job=\"slurm:42\",pids=\"7\" {}\n", T0 + t));
    }
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let start = json!({"job":"a","owner":"alice","node":"n1","gpus":[0],"start":FROM});
    assert_eq!(post(&s, start.clone()).await.status(), 200);
    assert_eq!(post(&s, start).await.status(), 200);
    assert_eq!(post(&s, json!({"job":"a","end":"2026-10-01T00:30:00Z"})).await.status(), 200);
    assert_eq!(post(&s, json!({"job":"nope","end":TO})).await.status(), 400);
    assert_eq!(post(&s, json!({"job":"a","node":"n1"})).await.status(), 400);
    let r = reqwest::Client::new().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {READ}")).json(&json!({"job":"x"})).send().await.expect("send");
    assert_eq!(r.status(), 403);
    let v = jobs(&s, FROM, TO).await;
    // GPU 0: 10 kWh over the hour, half of it to job a; GPU 1: half to slurm:42.
    assert_close(&job(&v, "a")["it_energy_kwh"], 5.0, "job a");
    assert_eq!(job(&v, "a")["end"], "2026-10-01T00:30:00Z");
    assert_close(&job(&v, "slurm:42")["it_energy_kwh"], 5.0, "job from gpu_job points");
    assert_eq!(job(&v, "slurm:42")["source"], "gpu_job");
    assert_close(&v["idle_kwh"], 10.0, "idle halves");
    assert_close(&v["unattributed_kwh"], 80.0, "IT not explained by GPUs");
    conserved(&v);
    // One job's series.
    let r = reqwest::Client::new().get(s.url("/api/v1/jobs/a")).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.expect("json");
    let series = d["job"]["series"].as_array().expect("series");
    assert!(series.len() >= 6, "{d}");
    let e: f64 = series.iter().map(|p| p["it_energy_kwh"].as_f64().expect("e")).sum();
    assert!((e - 5.0).abs() < 1e-9, "{e}");
    assert_close(&series[0]["it_power_w"], 10_000.0, "10 kW");
    let r = reqwest::Client::new().get(s.url("/api/v1/jobs/none")).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_job_shorter_than_the_counter_period_is_low_confidence() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut body = meters(125.0, 100.0);
    for (i, t) in (0..=3600).step_by(15).enumerate() {
        body.push_str(&format!("gpu,node=n1,gpu=0 energy_mj={}i {}\n", i as i64 * 10_000_000, T0 + t));
    }
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    post(&s, json!({"job":"short","node":"n1","gpus":[0],"start":"2026-10-01T00:00:01Z","end":"2026-10-01T00:00:06Z"})).await;
    post(&s, json!({"job":"long","node":"n1","gpus":[0],"start":"2026-10-01T00:10:00Z","end":"2026-10-01T00:20:00Z"})).await;
    let v = jobs(&s, FROM, TO).await;
    assert_eq!(job(&v, "short")["confidence"], "low");
    assert_eq!(job(&v, "long")["confidence"], "high");
    assert_close(&job(&v, "long")["gpu_energy_kwh"], 40.0 * 10_000.0 / 3.6e6, "600 s at 40 readings × 10 kJ");
    conserved(&v);
}
