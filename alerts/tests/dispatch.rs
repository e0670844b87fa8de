//! Routing, grouping timers, repeat, inhibition and silences, with a hand-moved clock.

use std::collections::BTreeMap;

use kilowatch_alerts::config::Routing;
use kilowatch_alerts::dispatch::{DispatchState, Dispatcher, Silence};
use kilowatch_alerts::engine::{Alert, AlertStatus};
use kilowatch_alerts::rule::Matcher;
use kilowatch_model::{Labels, Timestamp};

fn t(s: i64) -> Timestamp {
    Timestamp::from_secs(1_750_000_000 + s)
}

fn alert(labels: &[(&str, &str)], status: AlertStatus) -> Alert {
    let labels: Labels = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    Alert {
        fingerprint: kilowatch_alerts::fingerprint(&labels),
        rule: labels.get("alertname").cloned().unwrap_or_default(),
        labels,
        annotations: BTreeMap::new(),
        status,
        active_since: t(0),
        fired_at: Some(t(0)),
        resolved_at: (status == AlertStatus::Resolved).then_some(t(0)),
        value: 1.0,
        last_eval: t(0),
        history: Vec::new(),
    }
}

const ROUTING: &str = r#"
[route]
receiver = "ops"
group_by = ["alertname"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "1h"
[[route.routes]]
match = ['severity="critical"']
receiver = "pager"
group_wait = "0s"
continue = true
[[route.routes]]
match = ['component="gpu"']
group_by = ["alertname", "node"]
# Alertmanager semantics: once a child matched, the parent is not a leaf; a catch-all child
# keeps critical alerts (matched above with continue) reaching ops too.
[[route.routes]]
receiver = "ops"

[[receiver]]
name = "ops"
url = "http://127.0.0.1:1/"
[[receiver]]
name = "pager"
url = "http://127.0.0.1:2/"

[[inhibit]]
source_match = ['alertname="CoolingUnitFailure"']
target_match = ['component="gpu"']
equal = ["cooling_unit"]
[[inhibit]]
source_match = ['alertname="NodeDown"']
target_match = ['component="gpu"']
equal = ["node"]

[topology]
cu-01 = ["dgx-001..dgx-002"]
cu-02 = ["dgx-003"]
"#;

fn dispatcher() -> Dispatcher {
    Dispatcher::new(Routing::parse(ROUTING).expect("routing"), DispatchState::default())
}

#[test]
fn group_wait_interval_and_repeat() {
    let mut d = dispatcher();
    let a1 = alert(&[("alertname", "Hot"), ("unit", "cu-01")], AlertStatus::Firing);
    let a2 = alert(&[("alertname", "Hot"), ("unit", "cu-02")], AlertStatus::Firing);
    assert!(d.tick(t(0), std::slice::from_ref(&a1), &[]).is_empty(), "group_wait holds the first notification");
    assert!(d.tick(t(20), &[a1.clone(), a2.clone()], &[]).is_empty());
    let n = d.tick(t(30), &[a1.clone(), a2.clone()], &[]);
    assert_eq!(n.len(), 1, "one notification for the group after group_wait");
    assert_eq!(n[0].alerts.len(), 2);
    assert_eq!(n[0].receiver, "ops");
    // Nothing new: nothing until repeat_interval.
    for s in [60, 330, 630, 1800, 3300] {
        assert!(d.tick(t(s), &[a1.clone(), a2.clone()], &[]).is_empty(), "at {s}s");
    }
    // A change waits for group_interval after the last flush (flushes at 30+300k).
    let a1r = Alert { status: AlertStatus::Resolved, resolved_at: Some(t(3400)), ..a1.clone() };
    assert!(d.tick(t(3400), &[a1r.clone(), a2.clone()], &[]).is_empty(), "between flushes");
    let n = d.tick(t(3630), &[a1r.clone(), a2.clone()], &[]);
    assert_eq!(n.len(), 1, "change sent at the next group_interval flush");
    assert_eq!(n[0].alerts.iter().filter(|a| a.status == AlertStatus::Resolved).count(), 1);
    // Repeat: an hour after the last send, the still-firing a2 again.
    assert!(d.tick(t(3630 + 3000), std::slice::from_ref(&a2), &[]).is_empty());
    let n = d.tick(t(3630 + 3600), std::slice::from_ref(&a2), &[]);
    assert_eq!(n.len(), 1, "repeat_interval");
    assert_eq!(n[0].alerts.len(), 1);
    // Everything resolved and announced: the group goes away.
    let a2r = Alert { status: AlertStatus::Resolved, resolved_at: Some(t(8000)), ..a2.clone() };
    let n = d.tick(t(8000), std::slice::from_ref(&a2r), &[]);
    assert_eq!(n.len(), 1);
    assert!(n[0].alerts.iter().all(|a| a.status == AlertStatus::Resolved));
    assert!(d.state.groups.is_empty());
    assert!(d.tick(t(9000), &[a2r], &[]).is_empty(), "a resolved alert is told once");
}

#[test]
fn continue_routes_critical_to_pager_and_ops_and_ids_are_unique() {
    let mut d = dispatcher();
    let c = alert(&[("alertname", "Leak"), ("severity", "critical")], AlertStatus::Firing);
    let n = d.tick(t(0), std::slice::from_ref(&c), &[]);
    assert_eq!(n.iter().map(|n| n.receiver.as_str()).collect::<Vec<_>>(), vec!["pager"], "group_wait 0 on the pager route");
    let n2 = d.tick(t(30), std::slice::from_ref(&c), &[]);
    assert_eq!(n2.iter().map(|n| n.receiver.as_str()).collect::<Vec<_>>(), vec!["ops"]);
    assert_ne!(n[0].id, n2[0].id);
}

#[test]
fn cooling_failure_mutes_gpus_it_cools_and_node_down_mutes_its_gpus() {
    let mut d = dispatcher();
    let cu = alert(&[("alertname", "CoolingUnitFailure"), ("unit", "cu-01")], AlertStatus::Firing);
    let g1 = alert(&[("alertname", "GpuHot"), ("component", "gpu"), ("node", "dgx-001"), ("gpu", "0")], AlertStatus::Firing);
    let g2 = alert(&[("alertname", "GpuHot"), ("component", "gpu"), ("node", "dgx-002"), ("gpu", "3")], AlertStatus::Firing);
    let g3 = alert(&[("alertname", "GpuHot"), ("component", "gpu"), ("node", "dgx-003"), ("gpu", "1")], AlertStatus::Firing);
    let all = [cu.clone(), g1.clone(), g2.clone(), g3.clone()];
    d.tick(t(0), &all, &[]);
    let n = d.tick(t(30), &all, &[]);
    let mut sent: Vec<String> = n.iter().flat_map(|n| n.alerts.iter().map(|a| format!("{}/{}", a.labels["alertname"], a.labels.get("node").cloned().unwrap_or_default()))).collect();
    sent.sort();
    assert_eq!(sent, vec!["CoolingUnitFailure/", "GpuHot/dgx-003"], "dgx-001/002 are cooled by cu-01");
    assert!(d.state.muted[&g1.fingerprint].contains("CoolingUnitFailure"));
    // Node down mutes its own GPUs only.
    let nd = alert(&[("alertname", "NodeDown"), ("node", "dgx-003")], AlertStatus::Firing);
    let mut d = dispatcher();
    d.tick(t(0), &[nd.clone(), g3.clone(), g1.clone()], &[]);
    let n = d.tick(t(30), &[nd, g3.clone(), g1.clone()], &[]);
    let mut names: Vec<String> = n.iter().flat_map(|n| n.alerts.iter().map(|a| a.labels["alertname"].clone() + a.labels.get("node").map(String::as_str).unwrap_or(""))).collect();
    names.sort();
    assert_eq!(names, vec!["GpuHotdgx-001", "NodeDowndgx-003"]);
}

#[test]
fn silences_mute_until_they_expire() {
    let mut d = dispatcher();
    let a = alert(&[("alertname", "Hot"), ("unit", "cu-01")], AlertStatus::Firing);
    let s = Silence { id: "s1".into(), matchers: vec![Matcher::eq("unit", "cu-01")], starts_at: t(0), ends_at: t(600), created_by: "op".into(), comment: "maintenance".into() };
    assert!(d.tick(t(0), std::slice::from_ref(&a), std::slice::from_ref(&s)).is_empty());
    assert!(d.tick(t(300), std::slice::from_ref(&a), std::slice::from_ref(&s)).is_empty(), "silenced past group_wait");
    assert!(d.state.muted[&a.fingerprint].contains("s1"));
    assert!(d.tick(t(600), std::slice::from_ref(&a), std::slice::from_ref(&s)).is_empty(), "new group waits group_wait");
    assert_eq!(d.tick(t(630), std::slice::from_ref(&a), std::slice::from_ref(&s)).len(), 1, "expired silence lets it through");
}

#[test]
fn alertmanager_receivers_are_fed_every_minute() {
    let routing = Routing::parse(
        "[route]\nreceiver = \"am\"\ngroup_wait = \"0s\"\ngroup_interval = \"30s\"\nrepeat_interval = \"4h\"\n[[receiver]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\n",
    )
    .expect("routing");
    let mut d = Dispatcher::new(routing, DispatchState::default());
    let a = alert(&[("alertname", "Hot")], AlertStatus::Firing);
    assert_eq!(d.tick(t(0), std::slice::from_ref(&a), &[]).len(), 1);
    assert!(d.tick(t(30), std::slice::from_ref(&a), &[]).is_empty());
    assert_eq!(d.tick(t(60), std::slice::from_ref(&a), &[]).len(), 1, "re-pushed before Alertmanager's resolve_timeout");
}

/// Two aggregators of an active-active pair tick at different moments but see the same alerts:
/// every notification they make carries the same id, so a receiver drops the twin. Each
/// notification of one member has a different id from the others (a repeat included).
#[test]
fn a_pair_makes_the_same_ids_from_the_same_alerts() {
    let (mut a, mut b) = (dispatcher(), dispatcher());
    let hot = alert(&[("alertname", "Hot"), ("unit", "cu-01")], AlertStatus::Firing);
    let hot2 = alert(&[("alertname", "Hot"), ("unit", "cu-02")], AlertStatus::Firing);
    let hot_r = Alert { status: AlertStatus::Resolved, resolved_at: Some(t(400)), ..hot.clone() };
    // Member b ticks 7 s after member a, all along.
    let script: [(i64, Vec<Alert>); 5] =
        [(0, vec![hot.clone()]), (30, vec![hot.clone()]), (340, vec![hot.clone(), hot2.clone()]), (640, vec![hot_r.clone(), hot2.clone()]), (4300, vec![hot2.clone()])];
    let (mut ids_a, mut ids_b) = (Vec::new(), Vec::new());
    for (s, alerts) in &script {
        ids_a.extend(a.tick(t(*s), alerts, &[]).into_iter().map(|n| n.id));
        ids_b.extend(b.tick(t(*s + 7), alerts, &[]).into_iter().map(|n| n.id));
    }
    assert_eq!(ids_a.len(), 4, "first, a second alert, one resolved, a repeat: {ids_a:?}");
    assert_eq!(ids_a, ids_b);
    let unique: std::collections::BTreeSet<&String> = ids_a.iter().collect();
    assert_eq!(unique.len(), ids_a.len(), "{ids_a:?}");
}
