//! `GET /api/v1/export`: what was written comes out, sample for sample, as line protocol.

mod common;

use common::{READ, Server, TENANT, WRITE};

#[tokio::test]
async fn export_returns_what_was_written() {
    let dir = tempfile::tempdir().expect("dir");
    let srv = Server::start(dir.path()).await;
    // One field a line, tags in order, nanosecond timestamps, floats that print long, text with
    // quotes, tag values with spaces and commas: line protocol's escapes.
    let mut lines = Vec::new();
    for i in 0..50i64 {
        let t = 1_700_000_000_123_456_789 + i * 1_000_000_007;
        lines.push(format!("gpu,gpu=0,node=dgx-001 power_w={} {t}", 0.1 + 0.2 * i as f64));
        lines.push(format!("meter,meter=grid\\ a\\,b,role=facility energy_kwh={} {t}", 1e15 + i as f64 / 3.0));
        lines.push(format!("cooling,unit=cu-01 mode=\"free \\\"cool\\\"\" {t}"));
    }
    let r = srv.write(&(lines.join("\n") + "\n"), "ns", WRITE).await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    let get = |q: &'static str, token: &'static str| {
        let url = srv.url("/api/v1/export");
        async move { reqwest::Client::new().get(url).query(&[("match[]", q)]).header("Authorization", format!("Bearer {token}")).send().await.expect("send") }
    };
    let r = get("{__name__=~\"gpu_power_w|meter_energy_kwh|cooling_mode\"}", READ).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    let mut got: Vec<&str> = body.lines().collect();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    // A window and one selector.
    let r = reqwest::Client::new()
        .get(srv.url("/api/v1/export"))
        .query(&[("match[]", "gpu_power_w"), ("start", "1700000010"), ("end", "1700000019.5")])
        .header("Authorization", format!("Bearer {READ}"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.text().await.expect("body").lines().count(), 10);
    assert_eq!(get("gpu_power_w", TENANT).await.status(), 403, "an export is the operator's");
    assert_eq!(get("gpu_power_w", "nope").await.status(), 401);
}
