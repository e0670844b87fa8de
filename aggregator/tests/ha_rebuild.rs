//! A member rebuilt from its twin: `kilowatch restore` (the library call the subcommand makes)
//! downloads the twin's snapshots over HTTP with an admin token into an empty data directory;
//! the member started on it, then fed what its twin received since (as the collectors' spools
//! would, overlapping what the snapshot already holds), answers the same KPIs and jobs as its
//! twin to 1e-9. Only an admin token gets a snapshot, and a restore never writes over a store.

mod common;

use common::{ADMIN, READ, Server, WRITE};
use kilowatch_aggregator::restore::{RestoreError, restore};
use serde_json::{Value, json};

// 2026-10-01T00:00:00Z.
const T0: i64 = 1_790_812_800;
const HOURS: i64 = 4;

/// Hours `[from, to)` of a small site: grid, IT and water meters and two GPUs every minute.
fn site(from: i64, to: i64) -> String {
    let mut s = String::new();
    for m in (from * 60)..(to * 60) {
        let t = T0 + m * 60;
        let x = m as f64;
        s.push_str(&format!("meter,site=dc5,meter=grid-a,role=facility energy_kwh={} {t}\n", x * 11.0 + (x * 0.37).sin()));
        s.push_str(&format!("meter,site=dc5,meter=ups-1-out,role=it,category=1 energy_kwh={} {t}\n", x * 9.0));
        s.push_str(&format!("water,site=dc5,meter=makeup-1,potable=true volume_m3={} {t}\n", x * 0.013));
        for g in 0..2 {
            s.push_str(&format!("gpu,node=n1,gpu={g} power_w={} {t}\n", 400.0 + 250.0 * ((x + g as f64) * 0.11).sin()));
        }
    }
    s
}

fn ts(t: i64) -> String {
    kilowatch_model::Timestamp::from_secs(t).to_rfc3339()
}

async fn get(s: &Server, path: &str, query: &[(&str, String)]) -> Value {
    let r = reqwest::Client::new().get(s.url(path)).query(query).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

/// Every number in `a` equals the one at the same place in `b` to 1e-9 (relative), every
/// other value is equal; `at` names the place for the message.
fn same(a: &Value, b: &Value, at: &str, diffs: &mut Vec<String>) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            if (x - y).abs() > 1e-9 * x.abs().max(y.abs()).max(1e-12) {
                diffs.push(format!("{at}: {x} vs {y}"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                if k != "generated_at" {
                    same(v, y.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"), diffs);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                same(v, w, &format!("{at}[{i}]"), diffs);
            }
        }
        _ if a != b => diffs.push(format!("{at}: {a} vs {b}")),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_rebuilt_from_its_twin_answers_the_same_numbers() {
    let dir = tempfile::tempdir().expect("tmp");
    let twin = Server::start(&dir.path().join("twin")).await;
    assert_eq!(twin.write(&site(0, 3), "s", WRITE).await.status(), 204);
    let job = json!({"job": "train-1", "owner": "mistral-ai/pretrain", "node": "n1", "gpus": [0, 1], "start": ts(T0 + 1800), "end": ts(T0 + 3 * 3600 + 1200)});
    let r = reqwest::Client::new().post(twin.url("/api/v1/jobs")).header("Authorization", format!("Token {WRITE}")).json(&job).send().await.expect("post job");
    assert_eq!(r.status(), 200);

    // Only an admin gets a snapshot; only the two databases are offered.
    let snap = |token: &str, file: &str| reqwest::Client::new().get(twin.url(&format!("/api/v1/admin/snapshot/{file}"))).header("Authorization", format!("Token {token}")).send();
    assert_eq!(snap(READ, "store.db").await.expect("send").status(), 403);
    assert_eq!(snap(WRITE, "store.db").await.expect("send").status(), 403);
    assert_eq!(snap(ADMIN, "alerts.db").await.expect("send").status(), 404);
    assert_eq!(snap(ADMIN, "..%2Fkilowatch.toml").await.expect("send").status(), 404);

    // The rebuild: the twin's data, the samples it has not checkpointed yet included.
    let rebuilt_dir = dir.path().join("rebuilt");
    let r = restore(&twin.url(""), ADMIN, &rebuilt_dir, kilowatch_aggregator::restore::DEFAULT_MAX_BYTES).await.expect("restore");
    assert!(r.series >= 5 && r.newest == Some((T0 + 3 * 3600 - 60) * 1_000_000_000), "{r:?}");
    assert!(
        matches!(restore(&twin.url(""), ADMIN, &rebuilt_dir, kilowatch_aggregator::restore::DEFAULT_MAX_BYTES).await, Err(RestoreError::NotEmpty(_))),
        "a second restore does not write over the store"
    );
    assert!(!std::fs::read_dir(dir.path().join("twin")).expect("dir").any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".snapshot-"))), "the twin keeps no snapshot file");

    // The twin goes on receiving; the rebuilt member gets the same from the collectors'
    // spools, from before its snapshot (an overlap: stored once) to now.
    assert_eq!(twin.write(&site(3, HOURS), "s", WRITE).await.status(), 204);
    let member = Server::start(&rebuilt_dir).await;
    assert_eq!(member.write(&site(2, HOURS), "s", WRITE).await.status(), 204);

    let window = [("from", ts(T0)), ("to", ts(T0 + HOURS * 3600))];
    let mut diffs = Vec::new();
    for path in ["/api/v1/kpi", "/api/v1/jobs"] {
        let (a, b) = (get(&twin, path, &window).await, get(&member, path, &window).await);
        same(&a, &b, path, &mut diffs);
        same(&b, &a, path, &mut diffs);
    }
    assert!(diffs.is_empty(), "the rebuilt member differs from its twin: {diffs:?}");
    let k = get(&member, "/api/v1/kpi", &window).await;
    assert!(k["it_energy_kwh"].as_f64().is_some_and(|e| (e - 9.0 * (HOURS * 60 - 1) as f64).abs() < 1e-6), "{k}");
    let jobs = get(&member, "/api/v1/jobs", &window).await;
    assert!(jobs["jobs"].as_array().is_some_and(|j| j.iter().any(|j| j["job"] == "train-1" && j["gpu_energy_kwh"].as_f64().is_some_and(|e| e > 0.0))), "{jobs}");
}
