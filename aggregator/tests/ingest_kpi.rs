//! Line protocol in over HTTP, KPIs out: DOMAIN.md's worked examples, and every way a write can
//! be wrong.

mod common;

use common::{READ, Server, WRITE, assert_close};

// 2026-10-01T00:00:00Z and one hour later, in seconds.
const T0: i64 = 1_790_812_800;
const T1: i64 = T0 + 3600;
const FROM: &str = "2026-10-01T00:00:00Z";
const TO: &str = "2026-10-01T01:00:00Z";

fn meters(lines: &[(&str, &str, f64, f64)]) -> String {
    // (tags, field, value at T0, value at T1)
    let mut s = String::new();
    for (tags, field, a, b) in lines {
        s.push_str(&format!("{tags} {field}={a} {T0}\n{tags} {field}={b} {T1}\n"));
    }
    s
}

#[tokio::test]
async fn domain_example_1_pue() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = meters(&[("meter,site=dc5,meter=grid-a,role=facility", "energy_kwh", 0.0, 1_250_000.0), ("meter,site=dc5,meter=ups-1-out,role=it,category=1", "energy_kwh", 0.0, 1_000_000.0)]);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["pue"], 1.25, "pue");
    assert_eq!(k["pue_category"], 1);
    assert_close(&k["facility_energy_kwh"], 1_250_000.0, "E_DC");
    assert_close(&k["it_energy_kwh"], 1_000_000.0, "E_IT");
    assert!(k["pue_label"].as_str().expect("label").contains("Cat 1"), "{}", k["pue_label"]);
}

#[tokio::test]
async fn domain_example_3_generator() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = meters(&[
        ("meter,site=dc5,meter=grid-a,role=facility", "energy_kwh", 5_000.0, 1_205_000.0),
        ("meter,site=dc5,meter=gen-1,role=generator", "energy_kwh", 17.0, 10_017.0),
        ("meter,site=dc5,meter=ups-1-out,role=it,category=1", "energy_kwh", 100.0, 1_000_100.0),
    ]);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["pue"], 1.21, "pue");
    assert_close(&k["generator_energy_kwh"], 10_000.0, "EDC-BG");
    assert_close(&k["grid_energy_kwh"], 1_200_000.0, "grid");
}

#[tokio::test]
async fn domain_example_5_wue() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = meters(&[
        ("meter,site=dc5,meter=grid-a,role=facility", "energy_kwh", 0.0, 1_160_000.0),
        ("meter,site=dc5,meter=ups-1-out,role=it,category=1", "energy_kwh", 0.0, 1_000_000.0),
        ("water,site=dc5,meter=makeup-1,potable=true", "volume_m3", 4_512.3, 4_726.3),
    ]);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["wue_l_per_kwh"], 0.214, "wue");
    assert_close(&k["water_m3"], 214.0, "WIN");
    assert_close(&k["water_potable_m3"], 214.0, "WIN-POT");
}

#[tokio::test]
async fn every_precision_gives_the_same_kpi() {
    for (precision, scale) in [("s", 1i64), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)] {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Server::start(dir.path()).await;
        let body = format!(
            "meter,meter=g,role=facility energy_kwh=0 {a}\nmeter,meter=g,role=facility energy_kwh=125 {b}\n\
             meter,meter=u,role=it energy_kwh=0 {a}\nmeter,meter=u,role=it energy_kwh=100 {b}\n",
            a = T0 * scale,
            b = T1 * scale
        );
        assert_eq!(s.write(&body, precision, WRITE).await.status(), 204, "{precision}");
        assert_close(&s.kpi(FROM, TO).await["pue"], 1.25, precision);
    }
}

#[tokio::test]
async fn a_bad_line_is_refused_with_its_line_number_and_the_others_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = format!("meter,meter=g,role=facility energy_kwh=1 {T0}\nmeter,meter=g,role=facility energy_kwh=oops {T1}\n");
    let r = s.write(&body, "s", WRITE).await;
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().await.expect("json");
    assert_eq!(e["line"], 2, "{e}");
    assert_eq!((e["refused"].as_u64(), e["accepted"].as_u64()), (Some(1), Some(1)), "{e}");
    assert!(e["message"].as_str().expect("msg").starts_with("partial write: 1 line(s) refused, 1 stored; first refused: line 2: unable to parse"), "{e}");
    // The good first line was stored (InfluxDB's partial write), the bad one not.
    assert_eq!(s.store.stats().expect("stats").series, 1);
    let r = s.write("m v=1 1", "minutes", WRITE).await;
    assert_eq!(r.status(), 400, "unknown precision");
}

#[tokio::test]
async fn tokens_are_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = format!("m v=1 {T0}\n");
    assert_eq!(s.write(&body, "s", "wrong-token-0123456789").await.status(), 401);
    assert_eq!(s.write(&body, "s", READ).await.status(), 403);
    let r = reqwest::Client::new().post(s.url("/api/v2/write")).body(body).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let stats = s.store.stats().expect("stats");
    assert_eq!((stats.series, stats.samples_written, stats.requests_written), (0, 0, 0), "nothing stored");
    let r = reqwest::get(s.url(&format!("/api/v1/kpi?from={FROM}&to={TO}"))).await.expect("send");
    assert_eq!(r.status(), 401, "reads need the read token");
    let r = reqwest::get(s.url(&format!("/api/v1/kpi?from={FROM}&to={TO}&token={WRITE}"))).await.expect("send");
    assert_eq!(r.status(), 401, "a write token does not read");
    let r = reqwest::get(s.url("/api/v1/health")).await.expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn escaped_names_are_stored_as_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = format!(
        "meter,meter=grid\\ a\\,1,role=facility energy_kwh=0 {T0}\nmeter,meter=grid\\ a\\,1,role=facility energy_kwh=125 {T1}\n\
         meter,meter=ups\\=1,role=it energy_kwh=0 {T0}\nmeter,meter=ups\\=1,role=it energy_kwh=100 {T1}\n\
         cooling,unit=cu\\ 01 mode=\"free \\\"air\\\"\" {T1}\n"
    );
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["pue"], 1.25, "pue");
    let names: Vec<&str> = k["data_quality"]["meters"].as_array().expect("meters").iter().filter_map(|m| m["meter"].as_str()).collect();
    assert!(names.contains(&"grid a,1") && names.contains(&"ups=1"), "{names:?}");
    let modes = s.store.find_series("cooling", "mode", &[("unit", "cu 01")]).expect("find");
    let latest = s.store.latest(&[modes[0].id]).expect("latest");
    assert_eq!(latest[0].as_ref().and_then(|(_, v)| v.as_text().map(str::to_owned)), Some("free \"air\"".to_owned()));
}

#[tokio::test]
async fn counter_resets_never_make_negative_energy() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // The grid meter is swapped half way: 100 → 200, then a new meter at 50 → 150.
    let body = format!(
        "meter,meter=g,role=facility energy_kwh=100 {a}\nmeter,meter=g,role=facility energy_kwh=200 {b}\n\
         meter,meter=g,role=facility energy_kwh=50 {c}\nmeter,meter=g,role=facility energy_kwh=150 {d}\n\
         meter,meter=u,role=it energy_kwh=0 {a}\nmeter,meter=u,role=it energy_kwh=160 {d}\n",
        a = T0,
        b = T0 + 1200,
        c = T0 + 1800,
        d = T1
    );
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert_close(&k["facility_energy_kwh"], 200.0, "E_DC counts from the new reading");
    assert_close(&k["pue"], 1.25, "pue");
    assert_eq!(k["data_quality"]["counter_resets"], 1);
}

#[tokio::test]
async fn pue_below_one_is_a_fault_not_a_value() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = meters(&[("meter,meter=g,role=facility", "energy_kwh", 0.0, 90.0), ("meter,meter=u,role=it", "energy_kwh", 0.0, 100.0)]);
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    let k = s.kpi(FROM, TO).await;
    assert!(k["pue"].is_null(), "{k}");
    assert!(k["data_quality"]["faults"][0].as_str().expect("fault").contains("below 1"));
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let body = meters(&[("meter,meter=g,role=facility", "energy_kwh", 0.0, 1_250_000.0), ("meter,meter=u,role=it,category=1", "energy_kwh", 0.0, 1_000_000.0)]);
    {
        let s = Server::start(dir.path()).await;
        assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
        // Half checkpointed, half only in the request log.
        s.store.checkpoint().expect("checkpoint");
        let more = format!("meter,meter=g,role=facility energy_kwh=1250125 {}\nmeter,meter=u,role=it,category=1 energy_kwh=1000100 {}\n", T1 + 60, T1 + 60);
        assert_eq!(s.write(&more, "s", WRITE).await.status(), 204);
        s.stop().await;
    }
    let s = Server::start(dir.path()).await;
    assert_close(&s.kpi(FROM, TO).await["pue"], 1.25, "pue after restart");
    let k = s.kpi(FROM, "2026-10-01T01:01:00Z").await;
    assert_close(&k["it_energy_kwh"], 1_000_100.0, "log replayed");
    // The replay of the same request after the restart is stored once.
    assert_eq!(s.write(&body, "s", WRITE).await.status(), 204);
    assert_close(&s.kpi(FROM, TO).await["it_energy_kwh"], 1_000_000.0, "idempotent");
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let body = meters(&[("meter,meter=g,role=facility", "energy_kwh", 0.0, 125.0), ("meter,meter=u,role=it", "energy_kwh", 0.0, 100.0)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).expect("gzip");
    let r = reqwest::Client::new()
        .post(s.url("/api/v2/write?precision=s"))
        .header("Authorization", format!("Token {WRITE}"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    assert_close(&s.kpi(FROM, TO).await["pue"], 1.25, "pue");
}

#[tokio::test]
async fn bad_ranges_are_explained() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let c = reqwest::Client::new();
    for q in ["from=yesterday&to=2026-10-01T00:00:00Z", "to=2026-10-01T00:00:00Z", &format!("from={TO}&to={FROM}")] {
        let r = c.get(s.url(&format!("/api/v1/kpi?{q}"))).header("Authorization", format!("Token {READ}")).send().await.expect("send");
        assert_eq!(r.status(), 400, "{q}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    // The default limit is 32 MiB; send a little more, of valid lines.
    let line = format!("meter,meter=g,role=facility energy_kwh=1 {T0}\n");
    let body = line.repeat((33 << 20) / line.len() + 1);
    let r = s.write(&body, "s", WRITE).await;
    assert_eq!(r.status(), 413);
    let stats = s.store.stats().expect("stats");
    assert_eq!((stats.series, stats.samples_written, stats.requests_written), (0, 0, 0), "nothing stored");
}
