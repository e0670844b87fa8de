//! Tenant scopes and customer statements through the HTTP API, over a simulated October 2024
//! (8 nodes, the demo's job stream, 1-hour steps). A token scoped to `mistral-ai/*` reads its
//! own jobs and statements and the site's KPIs, and no other tenant's job, owner, node or GPU
//! in any answer (JSON, CSV, the PDF's text through `pdftotext`, the live stream); operator
//! views answer it 403. Every account's statement equals `/api/v1/jobs` to 1e-9, and the
//! statements of all accounts plus idle and unattributed energy add up to metered E_IT.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{READ, Server, TENANT};
use serde_json::Value;

const MONTH: &str = "2024-10";
const GENERATED: &str = "2024-11-02T06:00:00Z";

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

fn close(a: f64, b: f64, what: &str) {
    let scale = a.abs().max(b.abs()).max(1e-12);
    assert!((a - b).abs() / scale <= 1e-9, "{what}: {a} vs {b}");
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// What another tenant's data would show: its owners, and the GPUs ("node:index") and nodes
/// only its jobs held.
struct Foreign {
    jobs: BTreeSet<String>,
    owners: BTreeSet<String>,
    gpus: BTreeSet<String>,
    nodes: BTreeSet<String>,
}

fn mine(owner: &str) -> bool {
    owner.starts_with("mistral-ai/")
}

fn foreign(all: &Value) -> Foreign {
    let jobs = all["jobs"].as_array().expect("jobs");
    let gpus_of = |keep: bool| -> BTreeSet<String> {
        jobs.iter().filter(|j| mine(j["owner"].as_str().unwrap_or("")) == keep).flat_map(|j| j["gpus"].as_array().expect("gpus").iter().map(|g| g.as_str().expect("gpu").to_owned())).collect()
    };
    let (own, other) = (gpus_of(true), gpus_of(false));
    let node = |g: &String| g.split(':').next().unwrap_or("").to_owned();
    let own_nodes: BTreeSet<String> = own.iter().map(node).collect();
    Foreign {
        jobs: jobs.iter().filter(|j| !mine(j["owner"].as_str().unwrap_or(""))).map(|j| j["job"].as_str().expect("id").to_owned()).collect(),
        owners: jobs.iter().map(|j| j["owner"].as_str().unwrap_or("").to_owned()).filter(|o| !o.is_empty() && !mine(o)).collect(),
        gpus: other.difference(&own).cloned().collect(),
        nodes: other.iter().map(node).filter(|n| !own_nodes.contains(n)).collect(),
    }
}

/// Whether `tok` occurs in `text` as a whole word (not followed by a letter or digit: job
/// `sim:12` is not in `sim:123`).
fn has(text: &str, tok: &str) -> bool {
    text.match_indices(tok).any(|(i, _)| !text[i + tok.len()..].starts_with(|c: char| c.is_ascii_alphanumeric()))
}

/// No other tenant's job, owner, GPU or node in `text` (a GPU is checked as `node:index` and, in
/// tables, as the node alone where no job of the tenant ran on it).
fn assert_clean(text: &str, fo: &Foreign, what: &str) {
    for j in &fo.jobs {
        assert!(!has(text, j), "{what} names another tenant's job {j}");
    }
    for o in &fo.owners {
        assert!(!text.contains(o.as_str()), "{what} names another tenant's owner {o}");
        let account = o.split('/').next().unwrap_or(o);
        assert!(!text.contains(&format!("{account}/")), "{what} names another tenant's account {account}");
    }
    for g in &fo.gpus {
        assert!(!text.contains(&format!("\"{g}\"")), "{what} names another tenant's GPU {g}");
    }
    for n in &fo.nodes {
        assert!(!has(text, n), "{what} names node {n}, where only other tenants' jobs ran");
    }
}

/// October backfilled and served; the operator's jobs answer for it.
async fn october() -> (tempfile::TempDir, Server, Value) {
    let dir = tempfile::tempdir().expect("tmp");
    common::backfill_october_2024(dir.path());
    let s = Server::start(dir.path()).await;
    let all = json(&s, &format!("/api/v1/jobs?period=month&month={MONTH}"), READ).await;
    (dir, s, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_only_its_own() {
    let (dir, s, all) = october().await;
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

    // Its statement, in every format, names no one else.
    let st = json(&s, &format!("/api/v1/statements/mistral-ai/{MONTH}.json?generated_at={GENERATED}"), TENANT).await;
    assert_eq!(st["jobs"].as_array().expect("jobs").len(), own.len());
    for fmt in ["json", "csv", "html"] {
        let r = get(&s, &format!("/api/v1/statements/mistral-ai/{MONTH}.{fmt}?generated_at={GENERATED}"), TENANT).await;
        assert_eq!(r.status(), 200, "{fmt}");
        assert_clean(&r.text().await.expect("body"), &fo, &format!("statement .{fmt}"));
    }
    let pdf = get(&s, &format!("/api/v1/statements/mistral-ai/{MONTH}.pdf?generated_at={GENERATED}"), TENANT).await;
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf = pdf.bytes().await.expect("pdf");
    let path = dir.path().join("statement.pdf");
    std::fs::write(&path, &pdf).expect("write pdf");
    // To look at the pages: the month's statement, and the year's beside it (`….year.pdf`).
    if let Ok(keep) = std::env::var("KILOWATCH_KEEP_STATEMENT_PDF") {
        std::fs::copy(&path, &keep).expect("keep pdf");
        let year = get(&s, &format!("/api/v1/statements/mistral-ai/2024.pdf?generated_at={GENERATED}"), TENANT).await;
        assert_eq!(year.status(), 200);
        std::fs::write(format!("{keep}.year.pdf"), year.bytes().await.expect("pdf")).expect("keep year pdf");
    }
    if common::require_tool("pdftotext", "poppler-utils") {
        let out = std::process::Command::new("pdftotext").args(["-layout"]).arg(&path).arg("-").output().expect("pdftotext");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("energy statement for mistral-ai"), "{text}");
        assert!(text.contains("mistral-ai/pretrain") || text.contains("mistral-ai/finetune"));
        assert!(text.contains("Methodology") && text.contains("Data quality"));
        assert_clean(&text, &fo, "statement PDF text");
    }

    // Other owners' statements, and owners it cannot see, are "no statement".
    for other in ["kyutai", "mistral", "mistral-ai-evil", "scaleway/inference"] {
        let r = get(&s, &format!("/api/v1/statements/{}/{MONTH}.json", other.replace('/', "%2F")), TENANT).await;
        assert_eq!(r.status(), 404, "statement of {other}");
    }
    assert_eq!(get(&s, &format!("/api/v1/statements/kyutai/{MONTH}.json"), READ).await.status(), 200, "the operator reads any");
    let one = json(&s, &format!("/api/v1/statements/mistral-ai%2Fpretrain/{MONTH}.json"), TENANT).await;
    assert_eq!(one["meta"]["owner"], "mistral-ai/pretrain", "an owner with a `/`, percent-encoded");
    assert!(one["jobs"].as_array().expect("jobs").iter().all(|j| j["owner"] == "mistral-ai/pretrain"));

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
    let r = client()
        .post(s.url("/api/v1/jobs"))
        .header("Authorization", format!("Token {TENANT}"))
        .json(&serde_json::json!({"job": "x", "owner": "mistral-ai/x", "node": "dgx-001", "gpus": [0], "start": "2024-10-10T00:00:00Z"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    // The pages hold no data and load; the jobs page's data is the filtered list above.
    for page in ["/", "/jobs", "/job", "/gpus"] {
        assert_eq!(get(&s, page, TENANT).await.status(), 200, "{page}");
    }

    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_equal_the_jobs_api_and_add_up() {
    let (dir, s, all) = october().await;
    let jobs = all["jobs"].as_array().expect("jobs");
    let k = json(&s, &format!("/api/v1/kpi?period=month&month={MONTH}"), READ).await;
    // Every account's statement equals the jobs API; all of them + idle + unattributed = E_IT.
    let accounts: BTreeSet<String> = jobs.iter().map(|j| j["owner"].as_str().unwrap_or("").split('/').next().unwrap_or("").to_owned()).collect();
    assert!(!accounts.contains(""), "every job of the demo has an owner");
    let by_id: BTreeMap<&str, &Value> = jobs.iter().map(|j| (j["job"].as_str().expect("id"), j)).collect();
    let mut sum_it = 0.0;
    let mut listed = 0;
    for a in &accounts {
        let st = json(&s, &format!("/api/v1/statements/{a}/{MONTH}.json"), READ).await;
        let mut it = 0.0;
        for j in st["jobs"].as_array().expect("jobs") {
            let api = by_id[j["job"].as_str().expect("id")];
            assert!(api["owner"].as_str().expect("owner").starts_with(&format!("{a}/")));
            for k in ["gpu_energy_kwh", "it_energy_kwh", "facility_energy_kwh", "co2_kg"] {
                close(f(&j[k]), f(&api[k]), &format!("{a} job {} {k}", j["job"]));
            }
            match (j["water_l"].as_f64(), api["water_l"].as_f64()) {
                (Some(x), Some(y)) => close(x, y, "water"),
                (x, y) => assert_eq!(x, y, "water metered in both or neither"),
            }
            it += f(&j["it_energy_kwh"]);
            listed += 1;
        }
        let tot = &st["totals"];
        close(f(&tot["it_energy_kwh"]), it, &format!("{a} total IT"));
        let api_owners: f64 = all["by_owner"].as_object().expect("by_owner").iter().filter(|(o, _)| o.starts_with(&format!("{a}/"))).map(|(_, r)| f(&r["it_energy_kwh"])).sum();
        close(f(&tot["it_energy_kwh"]), api_owners, &format!("{a} total IT = the API's owners"));
        // Each hour's PUE, WUE and factor give the totals.
        let hourly = st["hourly"].as_array().expect("hourly");
        let hsum = |k: &str| hourly.iter().map(|h| f(&h[k])).sum::<f64>();
        if it > 0.0 {
            close(hsum("it_energy_kwh"), it, &format!("{a} hourly IT"));
            close(hsum("facility_energy_kwh"), f(&tot["facility_energy_kwh"]), &format!("{a} hourly facility"));
            close(hsum("co2_location_kg"), f(&tot["co2_kg"]), &format!("{a} hourly CO2"));
            for h in hourly {
                assert!(f(&h["it_energy_kwh"]) > 0.0 || f(&h["gpu_energy_kwh"]) > 0.0, "an hour listed used energy: {h}");
                close(f(&h["facility_energy_kwh"]), f(&h["it_energy_kwh"]) * f(&h["pue"]), "an hour's facility = IT × its PUE");
            }
        }
        assert_eq!(st["site"]["pue"], k["pue"], "the site's PUE for the month");
        sum_it += it;
    }
    assert_eq!(listed, jobs.len(), "every job in exactly one account's statement");
    let e_it = f(&all["it_energy_kwh"]);
    close(sum_it + f(&all["idle_kwh"]) + f(&all["unattributed_kwh"]), e_it, "Σ accounts + idle + unattributed = metered E_IT");
    close(e_it, f(&k["it_energy_kwh"]), "the jobs API's E_IT is the KPI's");

    // A year's statement: per month.
    let y = json(&s, "/api/v1/statements/mistral-ai/2024.json", TENANT).await;
    assert_eq!(y["breakdown_unit"], "month");
    assert_eq!(y["breakdown"].as_array().expect("months").len(), 12);
    let m = json(&s, &format!("/api/v1/statements/mistral-ai/{MONTH}.json"), TENANT).await;
    assert!(f(&y["totals"]["it_energy_kwh"]) >= f(&m["totals"]["it_energy_kwh"]) - 1e-9, "the year holds the month");

    // `kilowatch statement` writes the API's bytes.
    let api = get(&s, &format!("/api/v1/statements/mistral-ai/{MONTH}.csv?generated_at={GENERATED}"), READ).await.bytes().await.expect("csv");
    s.stop().await;
    let out = dir.path().join("cli.csv");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_kilowatch"))
        .args(["statement", "--owner", "mistral-ai", "--month", MONTH, "--format", "csv", "--generated-at", GENERATED, "--data-dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("kilowatch statement");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(std::fs::read(&out).expect("cli csv"), api.to_vec(), "the CLI's statement is the API's");
}
