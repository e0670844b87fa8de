//! Tenant scopes through the HTTP API, over a simulated October 2024 (8 nodes, the demo's job
//! stream, 1-hour steps). A token scoped to `mistral-ai/*` reads its own jobs and the site's
//! KPIs, and no other tenant's job, owner, node or GPU in any answer; operator views (the live
//! stream included) answer it 403.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{READ, Server, TENANT};
use kilowatch_aggregator::demo::backfill_with_jobs;
use kilowatch_model::Timestamp;
use kilowatch_sim::{SimConfig, Site};
use kilowatch_store::Store;
use kilowatch_store::jobs::JobStore;
use serde_json::Value;

const MONTH: &str = "2024-10";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(600)).build().expect("client")
}

async fn get(s: &Server, path: &str, token: &str) -> reqwest::Response {
    client().get(s.url(path)).header("Authorization", format!("Token {token}")).send().await.expect("send")
}

async fn json(s: &Server, path: &str, token: &str) -> Value {
    let r = get(s, path, token).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

/// October 2024 backfilled by the demo's code: 8 nodes, 1-hour steps.
fn backfill_october(dir: &std::path::Path) {
    let start = Timestamp::from_secs(1_727_730_000); // an hour before the local month
    let end = Timestamp::from_secs(1_730_415_600 + 3600);
    let store = Store::open(dir).expect("store");
    let jobs = JobStore::open(dir).expect("jobs");
    let mut site = Site::new(SimConfig { start, nodes: 8, site_nodes: 8, ..SimConfig::default() });
    backfill_with_jobs(&store, Some(&jobs), &mut site, end, Duration::from_secs(3600)).expect("backfill");
}

/// What another tenant's data would show: its owners, and the GPUs ("node:index") and nodes
/// only its jobs held.
struct Foreign {
    owners: BTreeSet<String>,
    gpus: BTreeSet<String>,
    nodes: BTreeSet<String>,
}

fn mine(owner: &str) -> bool {
    owner.starts_with("mistral-ai/")
}

fn foreign(all: &Value) -> Foreign {
    let jobs = all["jobs"].as_array().expect("jobs");
    let gpus_of = |keep: bool| -> BTreeSet<String> { jobs.iter().filter(|j| mine(j["owner"].as_str().unwrap_or("")) == keep).flat_map(|j| j["gpus"].as_array().expect("gpus").iter().map(|g| g.as_str().expect("gpu").to_owned())).collect() };
    let (own, other) = (gpus_of(true), gpus_of(false));
    let node = |g: &String| g.split(':').next().unwrap_or("").to_owned();
    let own_nodes: BTreeSet<String> = own.iter().map(node).collect();
    Foreign {
        owners: jobs.iter().map(|j| j["owner"].as_str().unwrap_or("").to_owned()).filter(|o| !o.is_empty() && !mine(o)).collect(),
        gpus: other.difference(&own).cloned().collect(),
        nodes: other.iter().map(node).filter(|n| !own_nodes.contains(n)).collect(),
    }
}

/// No other tenant's owner, GPU or node in `text` (a GPU is checked as `node:index` and, in
/// tables, as the node alone where no job of the tenant ran on it).
fn assert_clean(text: &str, fo: &Foreign, what: &str) {
    for o in &fo.owners {
        assert!(!text.contains(o.as_str()), "{what} names another tenant's owner {o}");
        let account = o.split('/').next().unwrap_or(o);
        assert!(!text.contains(&format!("{account}/")), "{what} names another tenant's account {account}");
    }
    for g in &fo.gpus {
        assert!(!text.contains(&format!("\"{g}\"")), "{what} names another tenant's GPU {g}");
    }
    for n in &fo.nodes {
        assert!(!text.contains(n.as_str()), "{what} names node {n}, where only other tenants' jobs ran");
    }
}

/// October backfilled and served; the operator's jobs answer for it.
async fn october() -> (tempfile::TempDir, Server, Value) {
    let dir = tempfile::tempdir().expect("tmp");
    backfill_october(dir.path());
    let s = Server::start(dir.path()).await;
    let all = json(&s, &format!("/api/v1/jobs?period=month&month={MONTH}"), READ).await;
    (dir, s, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_only_its_own() {
    let (_dir, s, all) = october().await;
    let window = format!("/api/v1/jobs?period=month&month={MONTH}");
    let jobs = all["jobs"].as_array().expect("jobs");
    let own: BTreeMap<String, &Value> = jobs.iter().filter(|j| mine(j["owner"].as_str().unwrap_or(""))).map(|j| (j["job"].as_str().expect("id").to_owned(), j)).collect();
    let fo = foreign(&all);
    assert!(own.len() >= 3, "the month has jobs of mistral-ai ({})", own.len());
    assert!(fo.owners.len() >= 3, "the month has other tenants' jobs: {:?}", fo.owners);
    let foreign_job = jobs.iter().find(|j| !mine(j["owner"].as_str().unwrap_or(""))).expect("a foreign job")["job"].as_str().expect("id").to_owned();

    // The tenant's jobs list: its jobs, with the operator's figures exactly, and nothing else.
    let r = get(&s, &window, TENANT).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    assert_clean(&text, &fo, "GET /api/v1/jobs");
    let t: Value = serde_json::from_str(&text).expect("json");
    let tj = t["jobs"].as_array().expect("jobs");
    assert_eq!(tj.len(), own.len(), "every job of the tenant, no other");
    for j in tj {
        let id = j["job"].as_str().expect("id");
        assert_eq!(j, own[id], "job {id} as the operator sees it");
    }
    for (o, r) in t["by_owner"].as_object().expect("by_owner") {
        assert!(mine(o), "{o}");
        assert_eq!(r, &all["by_owner"][o], "roll-up of {o}");
    }
    for k in ["idle_kwh", "unattributed_kwh", "gpu_energy_kwh", "node_energy_kwh"] {
        assert!(t.get(k).is_none(), "{k} is the site's, not the tenant's");
    }
    assert_eq!(t["it_energy_kwh"], all["it_energy_kwh"], "the site's E_IT, a site KPI");
    assert_eq!(t["pue"], all["pue"]);

    // One job: its own, yes; another tenant's answers as a job that does not exist.
    let (id, _) = own.iter().next().expect("own job");
    let r = get(&s, &format!("/api/v1/jobs/{id}"), TENANT).await;
    assert_eq!(r.status(), 200);
    assert_clean(&r.text().await.expect("body"), &fo, "GET /api/v1/jobs/{id}");
    let r = get(&s, &format!("/api/v1/jobs/{foreign_job}"), TENANT).await;
    assert_eq!(r.status(), 404, "another tenant's job");
    let foreign_body = r.text().await.expect("body");
    let r = get(&s, "/api/v1/jobs/no-such-job", TENANT).await;
    assert_eq!(r.status(), 404);
    assert_eq!(foreign_body, r.text().await.expect("body"), "the same answer as an unknown id");
    assert_eq!(get(&s, &format!("/api/v1/jobs/{foreign_job}"), READ).await.status(), 200, "the operator sees it");

    // Site KPIs its figures rest on.
    let k = json(&s, &format!("/api/v1/kpi?period=month&month={MONTH}"), TENANT).await;
    assert!(k["pue"].as_f64().is_some());

    // Operator views: refused, by header, by `?token=` (the live stream's way) and by basic auth.
    for path in [
        "/dashboard/overview.json",
        "/dashboard/live",
        "/dashboard/power.json",
        "/dashboard/climate.json",
        "/dashboard/cooling.json",
        "/dashboard/water.json",
        "/dashboard/gpus.json",
        "/dashboard/gpus/dgx-001",
        "/dashboard/gpus/dgx-001/0",
        "/api/v1/alerts",
        "/api/v1/alerts/notifications",
        "/api/v1/rules",
        "/api/v1/silences",
        "/api/v1/reports/2024-10.json",
        "/api/v1/reports/2024-10.csv",
        "/api/v1/reports/2024-10.pdf",
        "/api/v1/eu-indicators?year=2024",
        "/metrics",
    ] {
        let r = get(&s, path, TENANT).await;
        assert_eq!(r.status(), 403, "{path}");
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = client().get(s.url(&format!("{path}{sep}token={TENANT}"))).send().await.expect("send");
        assert_eq!(r.status(), 403, "{path} with ?token=");
        let r = client().get(s.url(path)).basic_auth("customer", Some(TENANT)).send().await.expect("send");
        assert_eq!(r.status(), 403, "{path} with basic auth");
    }
    // The live stream an operator opens is there (the 403 above is the scope's, not a 404).
    let r = client().get(s.url(&format!("/dashboard/live?token={READ}"))).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    drop(r);
    // Health: the status only. Writes: refused.
    let h = json(&s, "/api/v1/health", TENANT).await;
    assert!(h.get("store").is_none(), "{h}");
    let r = client().post(s.url("/api/v1/jobs")).header("Authorization", format!("Token {TENANT}")).json(&serde_json::json!({"job": "x", "owner": "mistral-ai/x", "node": "dgx-001", "gpus": [0], "start": "2024-10-10T00:00:00Z"})).send().await.expect("send");
    assert_eq!(r.status(), 403);
    // The pages hold no data and load; the jobs page's data is the filtered list above.
    for page in ["/", "/jobs", "/job", "/gpus"] {
        assert_eq!(get(&s, page, TENANT).await.status(), 200, "{page}");
    }

    s.stop().await;
}
