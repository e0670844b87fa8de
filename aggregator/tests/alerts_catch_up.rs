//! A member back from an outage holds its alerts until its data has caught up, the real
//! `kilowatch serve` binary against a receiver that records what an Alertmanager would be
//! pushed. In its first life the member fires an alert and pushes it; it is SIGKILLed; it
//! restarts with its newest data ten minutes behind the clock (its collectors' spools not yet
//! replayed) and its alert state still "firing". Held, it pushes nothing, not even the re-push
//! of firing alerts Alertmanager expects every minute, which would take an alert its twin saw
//! resolve during the outage for one firing anew. `kilowatch_alerts_catching_up` says so. Once
//! fresh data arrives, the alert is evaluated on it and its resolution is pushed.

mod alerts_common;
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{READ, WRITE, serve_process};
use kilowatch_model::Timestamp;

/// More than the re-push interval of firing alerts (kilowatch_alerts::dispatch::AM_RESEND_S).
const HELD_FOR: Duration = Duration::from_secs(kilowatch_alerts::dispatch::AM_RESEND_S as u64 + 6);

fn config(dir: &Path, addr: SocketAddr, hook: SocketAddr, catch_up_max_s: u64) -> std::path::PathBuf {
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, "[[rule]]\nname = \"ProbeHigh\"\nmetric = \"probe.value\"\nkind = \"threshold\"\nop = \">\"\nthreshold = 0.5\nfor = \"0s\"\nseverity = \"warning\"\n").expect("rules");
    let routing = dir.join("routing.toml");
    std::fs::write(
        &routing,
        format!(
            "[route]\nreceiver = \"am\"\ngroup_by = [\"alertname\"]\ngroup_wait = \"0s\"\ngroup_interval = \"1s\"\n[[receiver]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"http://{hook}\"\n"
        ),
    )
    .expect("routing");
    let path = dir.join("kilowatch.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{addr}\"\ndata_dir = {:?}\n[report]\nenabled = false\n[alerts]\neval_interval_s = 1\ncatch_up_max_s = {catch_up_max_s}\nrules_file = {rules:?}\nrouting_file = {routing:?}\n",
            dir.join("data")
        ),
    )
    .expect("config");
    path
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn write(addr: SocketAddr, value: f64, at: Timestamp) {
    let r = http()
        .post(format!("http://{addr}/api/v2/write?precision=ns"))
        .header("Authorization", format!("Token {WRITE}"))
        .body(format!("probe,site=dc5 value={value} {}", at.0))
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
}

async fn until(what: &str, secs: u64, log: &Path, mut ok: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !ok().await {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s\n{}", std::fs::read_to_string(log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let text = http().get(format!("http://{addr}/metrics")).header("Authorization", format!("Token {READ}")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

/// What was pushed: `(firing, resolved)` counts of ProbeHigh among the pushes from `from` on.
fn pushes(rx: &alerts_common::Receiver, from: usize) -> (usize, usize) {
    let alerts: Vec<serde_json::Value> = rx.all().into_iter().skip(from).flat_map(|r| r.body.as_array().cloned().unwrap_or_default()).filter(|a| a["labels"]["alertname"] == "ProbeHigh").collect();
    let resolved = alerts.iter().filter(|a| a.get("endsAt").is_some()).count();
    (alerts.len() - resolved, resolved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_from_an_outage_holds_its_alerts_until_its_data_catches_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (hook, rx) = alerts_common::start_receiver().await;
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port");
    let log = d.join("kilowatch.log");
    let health = format!("http://{addr}/api/v1/health");
    let up = async || http().get(&health).send().await.is_ok_and(|r| r.status() == 200);

    // First life: the probe reads high (stamped ten minutes ago; a hold of 2 s at most lets
    // this life evaluate it), the alert fires and is pushed.
    let stale = Timestamp(Timestamp::now().0 - 600 * 1_000_000_000);
    let first = serve_process(&config(d, addr, hook, 2), &log);
    until("the first life serves", 60, &log, up).await;
    write(addr, 1.0, stale).await;
    until("the alert is pushed firing", 30, &log, async || pushes(&rx, 0).0 >= 1).await;
    drop(first); // SIGKILL

    // Second life: its newest data is ten minutes old and its state says firing.
    let seen = rx.all().len();
    let _second = serve_process(&config(d, addr, hook, 600), &log);
    until("the second life serves", 60, &log, up).await;
    until("the second life says it holds its alerts", 30, &log, async || metric(addr, "kilowatch_alerts_catching_up").await == Some(1.0)).await;
    tokio::time::sleep(HELD_FOR).await;
    assert_eq!(pushes(&rx, seen), (0, 0), "held: nothing pushed while the data is behind, not even the minutely re-push of the firing alert");
    assert_eq!(metric(addr, "kilowatch_alerts_catching_up").await, Some(1.0), "still held");

    // The spools have caught up: the probe reads low now. The alert is evaluated on it and
    // its resolution pushed; it was never pushed firing again.
    write(addr, 0.0, Timestamp::now()).await;
    until("the hold ends", 30, &log, async || metric(addr, "kilowatch_alerts_catching_up").await == Some(0.0)).await;
    until("the resolution is pushed", 30, &log, async || pushes(&rx, seen).1 >= 1).await;
    assert_eq!(pushes(&rx, seen).0, 0, "never pushed firing after the restart");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("alerts held while the store catches up") && text.contains("alerts evaluated and sent again"), "the log tells the operator: {text}");
}
