//! The alerts API on a real aggregator: silences created, listed and expired; alerts and
//! rules listed from what the engine committed.

mod common;

use std::sync::Arc;

use common::{READ, Server, WRITE};
use kilowatch_aggregator::alerting;
use kilowatch_alerts::{AlertsConfig, ManualClock};
use kilowatch_model::{Point, Timestamp};
use serde_json::json;

#[tokio::test]
async fn silences_alerts_and_rules_over_http() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Server::start(dir.path()).await;
    let http = reqwest::Client::new();
    let url = |p: &str| srv.url(p);

    // Reads need a token; changes need the write token.
    assert_eq!(http.get(url("/api/v1/silences")).send().await.expect("get").status(), 401);
    let r = http.post(url("/api/v1/silences")).header("Authorization", format!("Token {READ}")).json(&json!({"matchers": ["node=\"dgx-007\""], "duration": "2h"})).send().await.expect("post");
    assert_eq!(r.status(), 403, "a read token cannot silence");
    let r = http
        .post(url("/api/v1/silences"))
        .header("Authorization", format!("Token {WRITE}"))
        .json(&json!({"matchers": ["unit=\"cu-01\"", {"name": "severity", "value": "warning", "isRegex": false, "isEqual": true}], "duration": "2h", "createdBy": "ops", "comment": "filter change"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.expect("json")["silenceID"].as_str().expect("id").to_owned();
    let list: serde_json::Value = http.get(url("/api/v1/silences")).header("Authorization", format!("Token {READ}")).send().await.expect("get").json().await.expect("json");
    assert_eq!(list["silences"][0]["silence"]["id"], id.as_str());
    assert_eq!(list["silences"][0]["active"], true);
    // Times are RFC 3339, as docs/api.md says of every time.
    let ends = list["silences"][0]["silence"]["endsAt"].as_str().expect("endsAt is text");
    assert!(Timestamp::parse_rfc3339(ends).is_ok(), "{ends}");

    // The engine, beside the server, evaluates what the store holds and honours the silence.
    let now = Timestamp::now();
    srv.store.write(&[Point::new("cooling", now).tag("unit", "cu-01").field("supply_temp_c", 29.0), Point::new("cooling", now).tag("unit", "cu-02").field("supply_temp_c", 29.0)]).expect("write");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rule]]\nname = \"Warm\"\nmetric = \"cooling.supply_temp_c\"\nkind = \"threshold\"\nop = \">\"\nthreshold = 27.0\n").expect("rules");
    let cfg = AlertsConfig { rules_file: Some(rules), ..AlertsConfig::default() };
    let (mut p, d) = alerting::open_pipeline(&srv.store, &cfg, Arc::new(ManualClock::new(now))).expect("pipeline");
    alerting::step(&srv.store, &mut p, &d).await.expect("step");

    let alerts: serde_json::Value = http.get(url("/api/v1/alerts?state=firing")).header("Authorization", format!("Token {READ}")).send().await.expect("get").json().await.expect("json");
    let arr = alerts["alerts"].as_array().expect("alerts");
    assert_eq!(arr.len(), 2, "{alerts}");
    for a in arr {
        let unit = a["alert"]["labels"]["unit"].as_str().expect("unit");
        assert_eq!(a["alert"]["status"], "firing");
        assert_eq!(a["alert"]["history"][1]["to"], "firing");
        assert_eq!(a["alert"]["fired_at"], now.to_rfc3339(), "{a}");
        assert_eq!(a["alert"]["history"][1]["at"], now.to_rfc3339(), "{a}");
        if unit == "cu-01" {
            assert!(a["muted"].as_str().is_some_and(|m| m.contains(&id)), "{a}");
        } else {
            assert!(a["muted"].is_null());
        }
    }
    let rules: serde_json::Value = http.get(url("/api/v1/rules")).header("Authorization", format!("Token {READ}")).send().await.expect("get").json().await.expect("json");
    assert_eq!(rules["rules"][0]["rule"]["name"], "Warm");
    assert_eq!(rules["rules"][0]["status"]["series"], 2);
    assert_eq!(rules["rules"][0]["status"]["active"], 2);
    assert_eq!(rules["rules"][0]["status"]["last_eval"], now.to_rfc3339());

    let r = http.delete(url(&format!("/api/v1/silences/{id}"))).header("Authorization", format!("Token {WRITE}")).send().await.expect("delete");
    assert_eq!(r.status(), 204);
    let list: serde_json::Value = http.get(url("/api/v1/silences")).header("Authorization", format!("Token {READ}")).send().await.expect("get").json().await.expect("json");
    assert_eq!(list["silences"][0]["active"], false);
    let r = http.delete(url("/api/v1/silences/nope")).header("Authorization", format!("Token {WRITE}")).send().await.expect("delete");
    assert_eq!(r.status(), 404);
    srv.stop().await;
}
