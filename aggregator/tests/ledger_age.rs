//! Issue 13's defects, one regression test each, through the HTTP API: every figure is the same
//! whatever the age of the data it reads (raw samples, minute or hour roll-ups), and right on
//! the inputs real sites produce (power-only meters, swaps, phases, retired meters, …).

mod common;

use common::{READ, Server, WRITE, assert_close};
use kilowatch_aggregator::config::Config;
use kilowatch_store::Retention;
use kilowatch_store::jobs::{JobStore, recorder};
use serde_json::Value;

const H: i64 = 3600;
const NS_H: i64 = 3_600_000_000_000;
/// 2026-10-01T00:00:00Z, seconds.
const T0: i64 = 1_790_812_800;

fn at(s: i64) -> String {
    kilowatch_model::Timestamp::from_secs(s).to_rfc3339()
}

async fn start() -> (tempfile::TempDir, Server) {
    start_with(Config::default()).await
}

async fn start_with(cfg: Config) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start_with(dir.path(), "127.0.0.1:0".parse().expect("addr"), cfg, false).await;
    (dir, s)
}

async fn write(s: &Server, body: &str) {
    let r = s.write(body, "s", WRITE).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
}

/// Rolls up what is complete and expires raw samples older than `raw_h` hours and minute
/// buckets older than `minute_h` hours behind the newest data, recording job runs as the
/// server's maintenance does.
fn expire(s: &Server, raw_h: i64, minute_h: i64) {
    s.store.checkpoint().expect("checkpoint");
    let jobs = JobStore::beside(&s.store).expect("jobs");
    let keep = Retention { raw: raw_h * NS_H, minute: minute_h * NS_H, hour: None };
    s.store.maintain_with(&keep, i64::MAX, &mut recorder(Some(&jobs))).expect("maintain");
    let h = s.store.horizons().expect("horizons");
    assert!(h.raw_from > i64::MIN, "raw samples expired: {h:?}");
}

async fn get(s: &Server, path: &str) -> Value {
    let r = reqwest::Client::new().get(s.url(path)).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

fn close(a: &Value, b: &Value, what: &str) {
    let (x, y) = (a.as_f64().unwrap_or_else(|| panic!("{what}: {a}")), b.as_f64().unwrap_or_else(|| panic!("{what}: {b}")));
    assert!((x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-12), "{what}: {x} vs {y}");
}

/// A facility counter at a steady 1,000 kWh an hour, read every minute, from `from` to `to`.
fn grid(from: i64, to: i64) -> String {
    (from..=to).step_by(60).map(|t| format!("meter,meter=grid,role=facility energy_kwh={} {t}\n", (t - T0) as f64 / 3.6)).collect()
}

/// Data an hour past `to` so that the window's hours can be rolled up and expired.
async fn filler(s: &Server, to: i64) {
    write(s, &grid(to, to + 4 * H)).await;
}

#[tokio::test]
async fn defect_1_power_only_meter_is_exact_after_expiry() {
    // DOMAIN example 14: a UPS output reporting power every 10 s, alternating 100 and 300 kW:
    // 200 kWh an hour from raw samples and equally after they expire.
    let (_d, s) = start().await;
    let body: String = (0..=360).map(|i| format!("meter,meter=ups,role=it,category=1 power_w={} {}\n", if i % 2 == 0 { 100_000 } else { 300_000 }, T0 + i * 10)).collect();
    write(&s, &body).await;
    write(&s, &grid(T0, T0 + H)).await;
    let raw = s.kpi(&at(T0), &at(T0 + H)).await;
    assert_close(&raw["it_energy_kwh"], 200.0, "raw E_IT");
    filler(&s, T0 + H).await;
    // More power readings so the meter is not retired.
    write(&s, &(361..=1800).map(|i| format!("meter,meter=ups,role=it,category=1 power_w={} {}\n", if i % 2 == 0 { 100_000 } else { 300_000 }, T0 + i * 10)).collect::<String>()).await;
    expire(&s, 1, 2);
    let old = s.kpi(&at(T0), &at(T0 + H)).await;
    assert_close(&old["it_energy_kwh"], 200.0, "E_IT from hour buckets");
    close(&old["pue"], &raw["pue"], "PUE");
}

#[tokio::test]
async fn defect_2_a_meter_swap_inside_a_minute_keeps_the_minute() {
    // DOMAIN example 16: read 10:20:00 = 500.00, 10:20:30 = 500.10 (old meter), 10:20:40 = 0.02,
    // 10:21:00 = 0.05 (new meter): the minute is 0.13 kWh with one reset.
    let (_d, s) = start().await;
    let t = T0 + 10 * H + 20 * 60;
    let mut body = String::new();
    for (dt, v) in [(-60, 499.9), (0, 500.0), (30, 500.10), (40, 0.02), (60, 0.05), (120, 0.15)] {
        body.push_str(&format!("meter,meter=ups,role=it,category=1 energy_kwh={v} {}\n", t + dt));
    }
    write(&s, &body).await;
    write(&s, &grid(T0 + 10 * H, T0 + 11 * H)).await;
    let raw = s.kpi(&at(t), &at(t + 60)).await;
    assert_close(&raw["it_energy_kwh"], 0.13, "raw minute");
    assert_eq!(raw["data_quality"]["counter_resets"], 1);
    filler(&s, T0 + 11 * H).await;
    write(&s, &format!("meter,meter=ups,role=it,category=1 energy_kwh=1.0 {}\n", T0 + 14 * H)).await;
    expire(&s, 1, 48);
    let old = s.kpi(&at(t), &at(t + 60)).await;
    assert_close(&old["it_energy_kwh"], 0.13, "minute from its bucket");
    assert_eq!(old["data_quality"]["counter_resets"], 1);
}

#[tokio::test]
async fn defect_3_a_half_hour_window_after_minute_expiry() {
    // An IT meter at 10 kWh in the first hour and 100 kWh in the second, steady within each:
    // 00:15–00:45 is 5 kWh and 00:45–01:15 is 2.5 + 25 kWh, raw or from hour buckets.
    let (_d, s) = start().await;
    let mut body = String::new();
    for m in 0..=240 {
        let t = T0 + m * 60;
        let kwh = if m <= 60 { m as f64 / 6.0 } else { 10.0 + (m - 60) as f64 * 100.0 / 60.0 };
        body.push_str(&format!("meter,meter=ups,role=it,category=1 energy_kwh={kwh} {t}\n"));
    }
    write(&s, &body).await;
    write(&s, &grid(T0, T0 + 4 * H)).await;
    expire(&s, 1, 2);
    let k = s.kpi(&at(T0 + 900), &at(T0 + 2700)).await;
    assert_close(&k["it_energy_kwh"], 5.0, "00:15–00:45");
    let k = s.kpi(&at(T0 + 2700), &at(T0 + 4500)).await;
    assert_close(&k["it_energy_kwh"], 27.5, "00:45–01:15");
}

#[tokio::test]
async fn defect_4_jobs_from_gpu_job_points_survive_retention() {
    let (_d, s) = start().await;
    let mut body = String::new();
    for t in (T0..=T0 + 3 * H).step_by(10) {
        body.push_str(&format!("gpu,node=n1,gpu=0 energy_mj={} {t}\n", ((t - T0) * 500_000) as f64));
        body.push_str(&format!("meter,meter=ups,role=it,category=1 energy_kwh={} {t}\n", (t - T0) as f64 / 3.6));
        if (T0 + 1800..=T0 + 5400).contains(&t) {
            body.push_str(&format!("gpu_job,node=n1,gpu=0 job=\"slurm:7\" {t}\n"));
        }
    }
    write(&s, &body).await;
    write(&s, &grid(T0, T0 + 3 * H)).await;
    let path = format!("/api/v1/jobs?from={}&to={}", at(T0), at(T0 + 2 * H));
    let raw = get(&s, &path).await;
    let job = |v: &Value| v["jobs"].as_array().and_then(|j| j.iter().find(|j| j["job"] == "slurm:7").cloned()).unwrap_or_else(|| panic!("no job in {v}"));
    // 500 W for an hour.
    assert_close(&job(&raw)["gpu_energy_kwh"], 0.5, "raw");
    filler(&s, T0 + 3 * H).await;
    expire(&s, 1, 2);
    let old = get(&s, &path).await;
    close(&job(&old)["gpu_energy_kwh"], &job(&raw)["gpu_energy_kwh"], "job GPU energy after minute expiry");
    close(&job(&old)["it_energy_kwh"], &job(&raw)["it_energy_kwh"], "job IT energy");
    assert_eq!(job(&old)["start"], job(&raw)["start"]);
}

#[tokio::test]
async fn defect_5_category_and_coverage_come_from_the_window() {
    let (_d, s) = start().await;
    // A stray Cat 1 sample years ago, a retired facility meter, and the meters of today (Cat 3).
    write(&s, &format!("meter,meter=old-ups,role=it,category=1 energy_kwh=5 {}\n", T0 - 3 * 365 * 24 * H)).await;
    write(&s, &format!("meter,meter=grid-old,role=facility energy_kwh=1 {}\nmeter,meter=grid-old,role=facility energy_kwh=2 {}\n", T0 - 10 * 24 * H, T0 - 9 * 24 * H)).await;
    write(&s, &grid(T0, T0 + H)).await;
    write(&s, &format!("meter,meter=nodes,role=it,category=3 energy_kwh=0 {T0}\nmeter,meter=nodes,role=it,category=3 energy_kwh=800 {}\n", T0 + H)).await;
    let k = s.kpi(&at(T0), &at(T0 + H)).await;
    assert_eq!(k["pue_category"], 3, "{k}");
    assert_close(&k["it_energy_kwh"], 800.0, "E_IT at Cat 3");
    assert_close(&k["pue"], 1.25, "PUE");
    assert_close(&k["data_quality"]["coverage_pct"], 100.0, "a retired meter does not lower coverage");
    assert_eq!(k["data_quality"]["missing_meters"], serde_json::json!([]));
}

#[tokio::test]
async fn defect_6_pue_over_the_span_both_cover() {
    // DOMAIN example 15: facility 0 → 116 kWh from 00:00 to 01:00; IT 0 at 00:00 and 50 kWh at
    // 00:30, then silent: PUE over 00:00–00:30 is 58 / 50 = 1.16, with a fault.
    let (_d, s) = start().await;
    write(&s, &format!("meter,meter=g,role=facility energy_kwh=0 {T0}\nmeter,meter=g,role=facility energy_kwh=116 {}\n", T0 + H)).await;
    write(&s, &format!("meter,meter=u,role=it,category=1 energy_kwh=0 {T0}\nmeter,meter=u,role=it,category=1 energy_kwh=50 {}\n", T0 + 1800)).await;
    let k = s.kpi(&at(T0), &at(T0 + H)).await;
    assert_close(&k["pue"], 1.16, "PUE over the common span");
    assert_close(&k["facility_energy_kwh"], 116.0, "E_DC over the window");
    assert!(k["data_quality"]["faults"].as_array().is_some_and(|f| f.iter().any(|x| x.as_str().is_some_and(|x| x.contains("both cover only")))), "{k}");
    // Meters read at different phases (facility at :00, IT at :30) over 5 minutes: PUE is the
    // ratio of the rates, 1.2, not skewed by the phase.
    let (_d2, s2) = start().await;
    let mut body = String::new();
    for m in 0..=10 {
        body.push_str(&format!("meter,meter=g,role=facility energy_kwh={} {}\n", m as f64 * 1.2, T0 + m * 60));
        body.push_str(&format!("meter,meter=u,role=it,category=1 energy_kwh={} {}\n", (m as f64 + 0.5) * 1.0, T0 + m * 60 + 30));
    }
    write(&s2, &body).await;
    let k = s2.kpi(&at(T0 + 60), &at(T0 + 360)).await;
    assert_close(&k["pue"], 1.2, "phase-skewed 5 minutes");
}

#[tokio::test]
async fn defect_7_co2_with_a_carbon_series_counts_power_only_meters() {
    let (_d, s) = start().await;
    let mut body = String::new();
    for i in 0..=360 {
        let t = T0 + i * 10;
        body.push_str(&format!("meter,meter=grid,role=facility power_w=1000000 {t}\nmeter,meter=ups,role=it,category=1 power_w=800000 {t}\n"));
    }
    body.push_str(&format!("carbon,source=test intensity_g_per_kwh=100 {T0}\n"));
    body.push_str(&format!("gpu,node=n1,gpu=0 energy_mj=0 {T0}\ngpu,node=n1,gpu=0 energy_mj={} {}\n", 100.0 * 3.6e9, T0 + H));
    write(&s, &body).await;
    post_job(&s, &format!("{{\"job\":\"j1\",\"owner\":\"a\",\"node\":\"n1\",\"gpus\":[0],\"start\":\"{}\"}}", at(T0 - 60))).await;
    let k = s.kpi(&at(T0), &at(T0 + H)).await;
    // 1,000 kWh at 100 g/kWh.
    assert_close(&k["co2_location_kg"], 100.0, "location CO2 of a power-only facility meter");
    let jobs = get(&s, &format!("/api/v1/jobs?from={}&to={}", at(T0), at(T0 + H))).await;
    let job_co2: f64 = jobs["jobs"].as_array().expect("jobs").iter().map(|j| j["co2_kg"].as_f64().unwrap_or(0.0)).sum();
    assert!(job_co2 > 0.0 && job_co2 <= 100.0 + 1e-9, "Σ job CO2 {job_co2} within the site's 100 kg");
}

async fn post_job(s: &Server, body: &str) {
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/jobs"))
        .header("Authorization", format!("Token {WRITE}"))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test]
async fn defect_8_cached_answers_follow_edge_neighbours_and_retention() {
    let (_d, s) = start().await;
    // An IT meter read at 00:00 and then not again until 02:00: the window 00:00–01:00 is
    // interpolated from the 02:00 reading, so that reading arriving must change the answer.
    write(&s, &grid(T0, T0 + 3 * H)).await;
    write(&s, &format!("meter,meter=u,role=it,category=1 energy_kwh=0 {T0}\n")).await;
    let k1 = s.kpi(&at(T0), &at(T0 + H)).await;
    assert!(k1["pue"].is_null(), "no IT pair yet: {k1}");
    write(&s, &format!("meter,meter=u,role=it,category=1 energy_kwh=1600 {}\n", T0 + 2 * H)).await;
    let k2 = s.kpi(&at(T0), &at(T0 + H)).await;
    assert_close(&k2["it_energy_kwh"], 800.0, "the new neighbour is seen");
    // Retention moves the window to roll-ups: the cached answer is not reused blindly, and the
    // figure is the same.
    write(&s, &format!("meter,meter=u,role=it,category=1 energy_kwh=4000 {}\n", T0 + 5 * H)).await;
    filler(&s, T0 + 3 * H).await;
    let before = s.kpi(&at(T0 + 1800), &at(T0 + 2 * H)).await;
    expire(&s, 1, 2);
    let after = s.kpi(&at(T0 + 1800), &at(T0 + 2 * H)).await;
    close(&after["it_energy_kwh"], &before["it_energy_kwh"], "E_IT across expiry");
    assert_ne!(after["data_quality"]["meters"], serde_json::Value::Null);
}

#[tokio::test]
async fn defect_9_job_list_and_job_page_agree() {
    let (_d, s) = start().await;
    // PUE 1.1 in the first hour, 1.3 in the second; a job from 00:20 to 01:40 on one GPU.
    let mut body = String::new();
    for m in 0..=180 {
        let t = T0 + m * 60;
        let it = m as f64 * 10.0; // 600 kWh an hour
        let fac = if m <= 60 { it * 1.1 } else { 660.0 + (it - 600.0) * 1.3 };
        body.push_str(&format!("meter,meter=g,role=facility energy_kwh={fac} {t}\nmeter,meter=u,role=it,category=1 energy_kwh={it} {t}\n"));
        body.push_str(&format!("gpu,node=n1,gpu=0 energy_mj={} {t}\n", (m * 60 * 700_000) as f64));
        body.push_str(&format!("water,meter=w,potable=true volume_m3={} {t}\n", m as f64 * 0.01));
    }
    write(&s, &body).await;
    post_job(&s, &format!("{{\"job\":\"j9\",\"owner\":\"a\",\"node\":\"n1\",\"gpus\":[0],\"start\":\"{}\",\"end\":\"{}\"}}", at(T0 + 1200), at(T0 + 6000))).await;
    let list = get(&s, &format!("/api/v1/jobs?from={}&to={}", at(T0), at(T0 + 3 * H))).await;
    let from_list = list["jobs"].as_array().and_then(|j| j.iter().find(|j| j["job"] == "j9").cloned()).expect("listed");
    let page = get(&s, "/api/v1/jobs/j9").await;
    for k in ["gpu_energy_kwh", "it_energy_kwh", "facility_energy_kwh", "water_l", "co2_kg"] {
        close(&page["job"][k], &from_list[k], k);
    }
    // 40 min at 700 W in each hour: 0.4667 kWh × 1.1 + 0.4667 kWh × 1.3.
    assert_close(&page["job"]["facility_energy_kwh"], 0.7 * 40.0 / 60.0 * (1.1 + 1.3), "facility energy, hour by hour");
}

#[tokio::test]
async fn defect_10_no_water_meter_is_not_metered_not_zero() {
    let (_d, s) = start().await;
    write(&s, &grid(T0, T0 + H)).await;
    write(&s, &format!("meter,meter=u,role=it,category=1 energy_kwh=0 {T0}\nmeter,meter=u,role=it,category=1 energy_kwh=800 {}\n", T0 + H)).await;
    let k = s.kpi(&at(T0), &at(T0 + H)).await;
    assert!(k["water_m3"].is_null() && k["wue_l_per_kwh"].is_null() && k["water_potable_m3"].is_null(), "{k}");
    let eu = get(&s, "/api/v1/eu-indicators?year=2026").await;
    let win = eu["annex_ii"].as_array().and_then(|a| a.iter().find(|i| i["key"] == "win_m3").cloned()).expect("WIN");
    assert!(win["value"].is_null(), "{win}");
    assert_eq!(win["status"], "missing");
}

#[tokio::test]
async fn defect_11_declared_renewables_make_ref_and_market_co2() {
    // DOMAIN example 4 from declarations: EDC 10,000,000 kWh, ERES 6,000,000 kWh declared as
    // guarantees of origin and a PPA → REF 0.60; market-based CO2 on the 4,000,000 kWh left.
    let mut cfg = Config::default();
    cfg.eu.eres_goo_kwh = Some(4_000_000.0);
    cfg.eu.eres_ppa_kwh = Some(2_000_000.0);
    cfg.carbon.residual_factor_kg_per_kwh = Some(0.1);
    let (_d, s) = start_with(cfg).await;
    let y0 = 1_735_686_000; // 2025-01-01T00:00:00+01:00
    let y1 = 1_767_222_000; // 2026-01-01T00:00:00+01:00
    write(&s, &format!("meter,meter=g,role=facility energy_kwh=0 {y0}\nmeter,meter=g,role=facility energy_kwh=10000000 {y1}\nmeter,meter=u,role=it,category=1 energy_kwh=0 {y0}\nmeter,meter=u,role=it,category=1 energy_kwh=8000000 {y1}\n")).await;
    let eu = get(&s, "/api/v1/eu-indicators?year=2025").await;
    let item = |annex: &str, key: &str| eu[annex].as_array().and_then(|a| a.iter().find(|i| i["key"] == key).cloned()).unwrap_or_else(|| panic!("{key} in {eu}"));
    assert_close(&item("annex_iii", "ref")["value"], 0.6, "REF");
    assert_close(&item("annex_iii", "pue")["value"], 1.25, "PUE");
    assert_close(&item("annex_ii", "eres_tot_kwh")["value"], 6_000_000.0, "ERES-TOT");
}

#[tokio::test]
async fn defect_12_generator_energy_has_its_own_factor() {
    // Grid 1,000 kWh at 0.056 and generator 100 kWh at 0.72 kg/kWh: 56 + 72 = 128 kg.
    let (_d, s) = start().await;
    write(&s, &grid(T0, T0 + H)).await;
    write(&s, &format!("meter,meter=gen,role=generator energy_kwh=0 {T0}\nmeter,meter=gen,role=generator energy_kwh=100 {}\n", T0 + H)).await;
    let k = s.kpi(&at(T0), &at(T0 + H)).await;
    assert_close(&k["co2_location_kg"], 128.0, "CO2 with the generator's own factor");
    assert_eq!(k["generator_factor"]["fuel"], "diesel");
}
