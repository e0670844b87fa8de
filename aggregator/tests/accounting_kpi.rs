//! DOMAIN.md worked examples 2, 4, 6, 7, 8 (power-only meter), 12 and 13 through the HTTP API,
//! from ingested line protocol, to 1e-9 relative; calendar periods in Europe/Paris.

mod common;

use common::{READ, Server, WRITE, assert_close};

const T0: i64 = 1_790_812_800; // 2026-10-01T00:00:00Z
const T1: i64 = T0 + 3600;
const FROM: &str = "2026-10-01T00:00:00Z";
const TO: &str = "2026-10-01T01:00:00Z";

fn two(tags: &str, field: &str, a: f64, b: f64) -> String {
    format!("{tags} {field}={a} {T0}\n{tags} {field}={b} {T1}\n")
}

async fn get(s: &Server, q: &str) -> serde_json::Value {
    let r = reqwest::Client::new().get(s.url(&format!("/api/v1/kpi?{q}"))).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200, "{q}");
    r.json().await.expect("json")
}

#[tokio::test]
async fn example_2_energy_weighted_over_two_months() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // 2025-01-01, 2025-02-01, 2025-03-01 (UTC): month A 1,150/1,000 MWh, month B 650/500 MWh.
    let (a, b, c) = (1_735_689_600i64, 1_738_368_000i64, 1_740_787_200i64);
    let body = format!(
        "meter,meter=g,role=facility energy_kwh=0 {a}\nmeter,meter=g,role=facility energy_kwh=1150000 {b}\nmeter,meter=g,role=facility energy_kwh=1800000 {c}\n\
         meter,meter=u,role=it,category=1 energy_kwh=0 {a}\nmeter,meter=u,role=it,category=1 energy_kwh=1000000 {b}\nmeter,meter=u,role=it,category=1 energy_kwh=1500000 {c}\n"
    );
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi("2025-01-01T00:00:00Z", "2025-03-01T00:00:00Z").await;
    assert_close(&k["pue"], 1.2, "two-month PUE");
    assert_close(&s.kpi("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z").await["pue"], 1.15, "month A");
}

#[tokio::test]
async fn example_4_wue_erf_ref_and_the_cap() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = [
        two("meter,meter=g,role=facility", "energy_kwh", 0.0, 10_000_000.0),
        two("meter,meter=u,role=it,category=1", "energy_kwh", 0.0, 8_000_000.0),
        two("water,meter=w,potable=false", "volume_m3", 100.0, 12_100.0),
        two("meter,meter=heat-out,role=reuse", "energy_kwh", 0.0, 1_500_000.0),
        two("meter,meter=ppa,role=renewable", "energy_kwh", 0.0, 6_000_000.0),
    ]
    .concat();
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["pue"], 1.25, "pue");
    assert_close(&k["wue_l_per_kwh"], 1.5, "wue");
    assert_close(&k["erf"], 0.15, "erf");
    assert_close(&k["ref"], 0.6, "ref");
    assert_eq!(k["ref_capped"], false);
    assert_eq!(k["water_potable_m3"], 0.0, "WIN-POT counts potable water only");
    // More renewables than E_DC: REF is capped at 1 and flagged.
    let dir2 = tempfile::tempdir().expect("tmp");
    let s2 = Server::start(dir2.path()).await;
    let body =
        [two("meter,meter=g,role=facility", "energy_kwh", 0.0, 100.0), two("meter,meter=u,role=it", "energy_kwh", 0.0, 80.0), two("meter,meter=ppa,role=renewable", "energy_kwh", 0.0, 150.0)].concat();
    assert_eq!(s2.write(&body, "s", WRITE).await.status(), 204);
    let k = s2.kpi(FROM, TO).await;
    assert_eq!(k["ref"], 1.0);
    assert_eq!(k["ref_capped"], true);
    assert_eq!(k["co2_market_kg"], 0.0, "fully covered by renewables");
}

#[tokio::test]
async fn example_6_co2_and_cue_configured_and_ingested() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = [two("meter,meter=g,role=facility", "energy_kwh", 0.0, 1_250_000.0), two("meter,meter=u,role=it,category=1", "energy_kwh", 0.0, 1_000_000.0)].concat();
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["co2_location_kg"], 70_000.0, "70.0 t CO2");
    assert_close(&k["cue_kg_per_kwh"], 0.070, "CUE");
    assert_eq!(k["carbon_factor"]["source"], "Ember");
    assert_eq!(k["carbon_factor"]["year"], 2024);
    assert_eq!(k["carbon_factor"]["kind"], "configured");
    // An ingested hourly series takes over, hour by hour: 56 g/kWh gives the same figure.
    assert_eq!(s.write(&format!("carbon,site=dc5,source=RTE intensity_g_per_kwh=56 {T0}\n"), "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["co2_location_kg"], 70_000.0, "70.0 t CO2 from the series");
    assert_eq!(k["carbon_factor"]["kind"], "ingested hourly series");
    assert_eq!(k["carbon_factor"]["source"], "RTE");
}

#[tokio::test]
async fn example_7_partial_pue() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = [
        two("meter,meter=g,role=facility", "energy_kwh", 0.0, 1_250_000.0),
        two("meter,meter=u,role=it,category=1", "energy_kwh", 0.0, 1_000_000.0),
        two("meter,meter=c,role=cooling", "energy_kwh", 0.0, 100_000.0),
        two("meter,meter=l,role=power_losses", "energy_kwh", 0.0, 120_000.0),
        two("meter,meter=o,role=other", "energy_kwh", 0.0, 30_000.0),
    ]
    .concat();
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    let sub = &k["subsystems"];
    assert_close(&sub["cooling"]["ppue"], 1.10, "pPUE cooling");
    assert_close(&sub["power_losses"]["ppue"], 1.12, "pPUE losses");
    assert_close(&sub["other"]["ppue"], 1.03, "pPUE other");
    let sum: f64 = ["cooling", "power_losses", "other"].iter().map(|x| sub[x]["ppue"].as_f64().expect("ppue") - 1.0).sum();
    assert_close(&serde_json::json!(1.0 + sum), 1.25, "1 + Σ(pPUE − 1)");
    assert_close(&k["pue"], 1.25, "pue");
}

#[tokio::test]
async fn example_8_power_only_meter_is_estimated() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let mut body = String::new();
    for (t, p) in [(0, 6000.0), (60, 9000.0), (120, 10000.0), (180, 8000.0)] {
        body.push_str(&format!("meter,meter=rack,role=it,category=3 power_w={p} {}\n", T0 + t));
    }
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, "2026-10-01T00:03:00Z").await;
    assert_close(&k["it_energy_kwh"], 1_560_000.0 / 3.6e6, "0.4333 kWh");
    assert_eq!(k["data_quality"]["estimated_meters"], 1);
    assert_eq!(k["pue_category"], 3);
}

#[tokio::test]
async fn example_12_month_boundary_paris_vs_utc() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // 8 kW from 2024-01-31T22:00Z to 2024-02-01T00:00Z, read hourly.
    let t = 1_706_738_400i64;
    let body = format!("meter,meter=u,role=it energy_kwh=0 {t}\nmeter,meter=u,role=it energy_kwh=8 {}\nmeter,meter=u,role=it energy_kwh=16 {}\n", t + 3600, t + 7200);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let utc_jan = s.kpi("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z").await;
    assert_close(&utc_jan["it_energy_kwh"], 16.0, "January in UTC");
    let jan = get(&s, "period=month&month=2024-01").await;
    assert_close(&jan["it_energy_kwh"], 8.0, "January in Europe/Paris");
    let feb = get(&s, "period=month&month=2024-02").await;
    assert_close(&feb["it_energy_kwh"], 8.0, "February in Europe/Paris");
    assert!(jan["window"].as_str().expect("window").contains("calendar month 2024-01 (Europe/Paris)"), "{}", jan["window"]);
}

#[tokio::test]
async fn example_13_local_month_and_year_lengths() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // 1 kW from Paris' March 1 00:00 (2024-02-29T23:00Z) to April 1 00:00 (2024-03-31T22:00Z).
    let (a, b) = (1_709_247_600i64, 1_711_922_400i64);
    let body =
        format!("meter,meter=u,role=it energy_kwh=0 {a}\nmeter,meter=u,role=it energy_kwh=743 {b}\nmeter,meter=g,role=facility energy_kwh=0 {a}\nmeter,meter=g,role=facility energy_kwh=860 {b}\n");
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let m = get(&s, "period=month&month=2024-03").await;
    assert_eq!(m["hours"], 743.0);
    assert_close(&m["it_energy_kwh"], 743.0, "1 kW over local March");
    assert_eq!(m["official"], false);
    assert!(m["pue_label"].as_str().expect("label").contains("PUE (Cat 1), calendar month 2024-03"), "{}", m["pue_label"]);
    assert_eq!(get(&s, "period=month&month=2024-10").await["hours"], 745.0);
    let y = get(&s, "period=year&year=2024").await;
    assert_eq!(y["hours"], 8784.0);
    // One month metered of the year: the year's figure is not the official one.
    let cov = y["data_quality"]["coverage_pct"].as_f64().expect("coverage");
    assert!((cov - 743.0 / 8784.0 * 100.0).abs() < 0.5, "{cov}");
    assert_eq!(y["official"], false, "a year {cov:.1} % metered is not official");
    assert_eq!(y["official_min_coverage_pct"], 100.0);
    assert_eq!(get(&s, "period=rolling12&month=2024-12").await["hours"], 8784.0);
    for p in ["live", "hour", "day", "month", "ytd", "rolling12", "year"] {
        get(&s, &format!("period={p}&at=2024-03-15T12:00:00Z")).await;
    }
    let r = reqwest::Client::new().get(s.url("/api/v1/kpi?period=fortnight")).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn pue_below_one_is_a_fault_and_eu_indicators_list_what_is_missing() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = [two("meter,meter=g,role=facility", "energy_kwh", 0.0, 90.0), two("meter,meter=u,role=it,category=1", "energy_kwh", 0.0, 100.0)].concat();
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert!(k["pue"].is_null());
    assert!(k["data_quality"]["faults"][0].as_str().expect("fault").contains("below 1"));
    let r = reqwest::Client::new().get(s.url("/api/v1/eu-indicators?year=2026")).header("Authorization", format!("Token {READ}")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let e: serde_json::Value = r.json().await.expect("json");
    let ii = e["annex_ii"].as_array().expect("annex ii");
    let find = |k: &str| ii.iter().find(|i| i["key"] == k).cloned().expect(k);
    assert_close(&find("edc_kwh")["value"], 90.0, "EDC");
    // Two hours of a year: partial (the filing's own status, issue 29 items 4 and 7).
    assert_eq!(find("edc_kwh")["status"], "partial");
    assert_eq!(find("pdit_kw")["status"], "missing");
}

/// `accounting.official_min_coverage_pct` decides when a year or rolling 12 months is the
/// official figure: here 8 %, and a year with March metered (8.5 %) passes it.
#[tokio::test]
async fn official_needs_the_configured_coverage() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = kilowatch_aggregator::config::Config::default();
    config.accounting.official_min_coverage_pct = 8.0;
    let s = Server::start_with(dir.path(), "127.0.0.1:0".parse().expect("addr"), config, false).await;
    let (a, b) = (1_709_247_600i64, 1_711_922_400i64);
    let body =
        format!("meter,meter=u,role=it energy_kwh=0 {a}\nmeter,meter=u,role=it energy_kwh=743 {b}\nmeter,meter=g,role=facility energy_kwh=0 {a}\nmeter,meter=g,role=facility energy_kwh=860 {b}\n");
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let y = get(&s, "period=year&year=2024").await;
    assert_eq!(y["official"], true, "{}", y["data_quality"]["coverage_pct"]);
    assert_eq!(y["official_min_coverage_pct"], 8.0);
    assert_eq!(get(&s, "period=month&month=2024-03").await["official"], false, "a month is never official");
}
