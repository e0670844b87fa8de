//! `GET /api/v1/models` for real sites (issue 29, items 12 and 9), through the real server:
//! a window lists only the models and tenants that served in it, and a site without a
//! facility meter gets facility energy and CO2 per token as null with the reason, never 0.

mod common;

use common::{READ, Server, WRITE, assert_close};
use serde_json::Value;

const T0: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z
const H: i64 = 3600;

fn ts(t: i64) -> String {
    kilowatch_model::Timestamp::from_secs(t).to_rfc3339()
}

async fn models(s: &Server, from: i64, to: i64) -> Value {
    let r = reqwest::Client::new().get(s.url("/api/v1/models")).query(&[("from", ts(from)), ("to", ts(to))]).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// GPUs 0 and 1 of node n1 at 500 W each from `T0` to `T0 + hours`, read every 30 minutes; an
/// IT meter at 100 kW; a grid meter at 120 kW when `facility`.
fn site(hours: i64, facility: bool) -> String {
    let mut b = String::new();
    for k in 0..=hours {
        let t = T0 + k * H;
        b.push_str(&format!("meter,meter=u,role=it,category=1 energy_kwh={} {t}\n", 100 * k));
        if facility {
            b.push_str(&format!("meter,meter=g,role=facility energy_kwh={} {t}\n", 120 * k));
        }
    }
    for k in 0..=2 * hours {
        let t = T0 + k * 1800;
        for gpu in 0..4 {
            b.push_str(&format!("gpu,node=n1,gpu={gpu} energy_mj={}i {t}\n", 500 * 1800 * 1000 * k));
        }
    }
    b
}

/// A vLLM server's counters every 15 minutes from `from_h` to `to_h` (hours after `T0`).
fn server(server: &str, model: &str, tenant: &str, gpus: &str, from_h: i64, to_h: i64) -> String {
    let mut b = String::new();
    for k in 0..=(to_h - from_h) * 4 {
        let t = T0 + from_h * H + k * 900;
        let n = k as f64;
        b.push_str(&format!(
            "inference,node=n1,server={server},engine=vllm,model={model},tenant={tenant} prompt_tokens={},generation_tokens={},requests={},gpus=\"{gpus}\" {t}\n",
            n * 40_000.0,
            n * 10_000.0,
            n * 20.0
        ));
    }
    b
}

/// Item 12: model `late` (tenant `beta`) first serves at 03:00. The window 00:00–02:00 lists
/// only `early` (tenant `acme`), not `late` with zero tokens and zero energy; 03:00–05:00 lists
/// only `late`.
#[tokio::test]
async fn a_window_lists_only_the_models_that_served_in_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = site(5, true) + &server("s1", "early", "acme", "0", 0, 2) + &server("s2", "late", "beta", "1", 3, 5);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let names = |v: &Value| -> Vec<(String, String)> {
        v["models"].as_array().expect("models").iter().map(|m| (m["model"].as_str().unwrap_or("").to_owned(), m["tenant"].as_str().unwrap_or("").to_owned())).collect()
    };
    let first = models(&s, T0, T0 + 2 * H).await;
    assert_eq!(names(&first), [("early".to_owned(), "acme".to_owned())], "{first:#}");
    let later = models(&s, T0 + 3 * H, T0 + 5 * H).await;
    assert_eq!(names(&later), [("late".to_owned(), "beta".to_owned())], "{later:#}");
    assert!(later["models"][0]["generation_tokens"].as_f64().expect("tokens") > 0.0);
    s.stop().await;
}

/// Item 9: an IT meter but no facility meter. GPU and IT energy per token stand; facility
/// energy and CO2 (totals and per token) are null, with the reason, never 0.
#[tokio::test]
async fn without_a_facility_meter_facility_and_co2_per_token_are_null() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = site(2, false) + &server("s1", "m", "acme", "0", 0, 2);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let v = models(&s, T0, T0 + 2 * H).await;
    let m = &v["models"][0];
    assert_close(&m["energy_kwh"]["gpu"], 1.0, &format!("GPU 0 at 500 W for two hours: {m:#}"));
    assert!(m["energy_kwh"]["it"].as_f64().is_some_and(|x| x > 0.0), "{m:#}");
    assert!(m["per_token"]["j_per_token"]["gpu"].as_f64().is_some_and(|x| x > 0.0), "{m:#}");
    for (what, x) in [
        ("facility energy", &m["energy_kwh"]["facility"]),
        ("CO2", &m["co2_kg"]),
        ("facility J per token", &m["per_token"]["j_per_token"]["facility"]),
        ("facility J per generated token", &m["per_token"]["j_per_generated_token"]["facility"]),
        ("split per generated token", &m["per_token"]["split_j_per_generated_token"]),
        ("Wh per request", &m["per_token"]["wh_per_request"]),
        ("g CO2 per million tokens", &m["per_token"]["co2_g_per_mtok"]),
        ("an hour's facility energy", &m["hours"][0]["energy_kwh"]["facility"]),
        ("an hour's CO2", &m["hours"][0]["co2_kg"]),
    ] {
        assert!(x.is_null(), "{what} is unknown, not {x}: {m:#}");
    }
    assert!(v["facility_unavailable"].as_str().is_some_and(|r| r.contains("role=facility")), "the reason: {v:#}");

    // With a grid meter the same figures are numbers and no reason is given.
    let dir2 = tempfile::tempdir().expect("tmp");
    let s2 = Server::start(dir2.path()).await;
    assert_eq!(s2.write(&(site(2, true) + &server("s1", "m", "acme", "0", 0, 2)), "s", WRITE).await.status(), 204);
    let v2 = models(&s2, T0, T0 + 2 * H).await;
    let m2 = &v2["models"][0];
    assert!(m2["energy_kwh"]["facility"].as_f64().is_some_and(|x| x > 0.0) && m2["co2_kg"].as_f64().is_some_and(|x| x > 0.0), "{m2:#}");
    assert!(v2.get("facility_unavailable").is_none(), "{v2:#}");
    s.stop().await;
    s2.stop().await;
}
