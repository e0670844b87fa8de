//! From alerts to notifications, as Alertmanager does it: silences and inhibition mute,
//! the route tree picks receivers, groups collect alerts that belong together and flush on
//! `group_wait` / `group_interval` / `repeat_interval`. Pure and clock-driven; its state
//! serialises with the engine's so a restart neither forgets nor repeats a group.

use std::collections::BTreeMap;

use kilowatch_model::{Labels, Timestamp};
use serde::{Deserialize, Serialize};

use crate::config::{Route, Routing};
use crate::engine::{Alert, AlertStatus};
use crate::rule::{Matcher, all_match};

const NS: i64 = kilowatch_model::time::NANOS_PER_SEC;
/// How often firing alerts are re-pushed to an Alertmanager receiver.
pub const AM_RESEND_S: i64 = 60;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    #[serde(rename = "startsAt")]
    pub starts_at: Timestamp,
    #[serde(rename = "endsAt")]
    pub ends_at: Timestamp,
    #[serde(default, rename = "createdBy")]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    pub fn active(&self, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
    pub fn mutes(&self, labels: &Labels, now: Timestamp) -> bool {
        self.active(now) && !self.matchers.is_empty() && all_match(&self.matchers, labels)
    }
}

/// One message to one receiver about one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable and unique: the receiver dedups on it (header `X-Kilowatch-Notification-Id`).
    pub id: String,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub alerts: Vec<Alert>,
    pub created_at: Timestamp,
}

impl Notification {
    pub fn firing(&self) -> bool {
        self.alerts.iter().any(|a| a.status == AlertStatus::Firing)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub receiver: String,
    pub labels: Labels,
    pub group_interval: i64,
    pub repeat_interval: i64,
    pub next_flush: Timestamp,
    pub last_sent: Option<Timestamp>,
    /// What the last notification said: fingerprint → firing?
    pub last_set: BTreeMap<String, bool>,
    /// Alerts routed here now (firing or resolved), refreshed every tick.
    #[serde(skip)]
    pub current: BTreeMap<String, Alert>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DispatchState {
    pub groups: BTreeMap<String, Group>,
    /// Fingerprint → why it is muted, for the API.
    pub muted: BTreeMap<String, String>,
}

pub struct Dispatcher {
    pub routing: Routing,
    node_units: BTreeMap<String, String>,
    pub state: DispatchState,
}

/// Route parameters after inheritance.
#[derive(Debug, Clone)]
struct Leaf {
    path: String,
    receiver: String,
    group_by: Vec<String>,
    group_wait: i64,
    group_interval: i64,
    repeat_interval: i64,
}

impl Dispatcher {
    pub fn new(routing: Routing, state: DispatchState) -> Self {
        Dispatcher { node_units: routing.node_units(), routing, state }
    }

    /// Adds the `cooling_unit` label that topology-aware inhibition matches on.
    pub fn enrich(&self, labels: &mut Labels) {
        if labels.contains_key("cooling_unit") {
            return;
        }
        let unit = labels.get("node").and_then(|n| self.node_units.get(n)).cloned().or_else(|| labels.get("unit").cloned());
        if let Some(u) = unit {
            labels.insert("cooling_unit".into(), u);
        }
    }

    /// One step at `now`: which notifications to send.
    pub fn tick(&mut self, now: Timestamp, alerts: &[Alert], silences: &[Silence]) -> Vec<Notification> {
        let alerts: Vec<Alert> = alerts
            .iter()
            .filter(|a| a.status != AlertStatus::Pending)
            .map(|a| {
                let mut a = a.clone();
                self.enrich(&mut a.labels);
                a
            })
            .collect();
        self.state.muted.clear();
        for g in self.state.groups.values_mut() {
            g.current.clear();
        }
        for a in &alerts {
            if let Some(why) = self.muted_by(a, &alerts, silences, now) {
                self.state.muted.insert(a.fingerprint.clone(), why);
                continue;
            }
            for leaf in self.leaves(&a.labels) {
                let glabels: Labels = leaf.group_by.iter().filter_map(|k| a.labels.get(k).map(|v| (k.clone(), v.clone()))).collect();
                let key = format!("{}:{}:{}", leaf.receiver, leaf.path, crate::fingerprint(&glabels));
                let g = self.state.groups.entry(key).or_insert_with(|| Group {
                    receiver: leaf.receiver.clone(),
                    labels: glabels,
                    group_interval: leaf.group_interval,
                    repeat_interval: leaf.repeat_interval,
                    next_flush: Timestamp(now.0 + leaf.group_wait * NS),
                    last_sent: None,
                    last_set: BTreeMap::new(),
                    current: BTreeMap::new(),
                });
                g.group_interval = leaf.group_interval;
                g.repeat_interval = leaf.repeat_interval;
                if self.routing.receiver(&leaf.receiver).is_some_and(|r| r.kind == crate::config::ReceiverKind::Alertmanager) {
                    // Alertmanager resolves an alert nobody re-sent within its resolve_timeout
                    // (5 min by default): keep it fed the way Prometheus does, every minute.
                    g.repeat_interval = g.repeat_interval.min(AM_RESEND_S);
                }
                g.current.insert(a.fingerprint.clone(), a.clone());
            }
        }
        let mut out = Vec::new();
        let mut drop_keys = Vec::new();
        for (key, g) in &mut self.state.groups {
            if now < g.next_flush {
                continue;
            }
            // Resolved alerts are news only to a receiver that was told they fired.
            let set: BTreeMap<String, bool> = g
                .current
                .values()
                .filter(|a| a.status == AlertStatus::Firing || g.last_set.get(&a.fingerprint) == Some(&true))
                .map(|a| (a.fingerprint.clone(), a.status == AlertStatus::Firing))
                .collect();
            let any_firing = set.values().any(|f| *f);
            // Compared with what the receiver believes fires: a resolved alert already
            // announced is not news again.
            let believed: BTreeMap<String, bool> = g.last_set.iter().filter(|(_, f)| **f).map(|(k, v)| (k.clone(), *v)).collect();
            if set.is_empty() {
                // Everything it was told about went quiet without resolving (muted): nothing
                // to say, and nothing left to repeat.
                g.last_set.clear();
            }
            let changed = !set.is_empty() && set != believed;
            let repeat_due = any_firing && g.last_sent.is_none_or(|t| now.0 - t.0 >= g.repeat_interval * NS);
            if changed || repeat_due {
                let repeat = (!changed).then(|| repeat_index(&g.current, &set, now, g.repeat_interval));
                let n = Notification {
                    id: notification_id(key, &g.current, &set, &believed, repeat),
                    receiver: g.receiver.clone(),
                    group_key: key.clone(),
                    group_labels: g.labels.clone(),
                    alerts: set.keys().filter_map(|fp| g.current.get(fp).cloned()).collect(),
                    created_at: now,
                };
                tracing::debug!(group = %key, receiver = %g.receiver, alerts = n.alerts.len(), firing = any_firing, "notify");
                out.push(n);
                g.last_sent = Some(now);
                g.last_set = set;
            }
            g.next_flush = Timestamp(now.0 + g.group_interval * NS);
            if !g.current.values().any(|a| a.status == AlertStatus::Firing) && !g.last_set.values().any(|f| *f) {
                drop_keys.push(key.clone());
            }
        }
        for k in drop_keys {
            self.state.groups.remove(&k);
        }
        out
    }

    /// Alertmanager's semantics: a silence matching all its matchers mutes; an inhibit rule
    /// mutes a target while a different firing source matches, with `equal` labels equal
    /// (absent on both sides counts as equal).
    fn muted_by(&self, a: &Alert, all: &[Alert], silences: &[Silence], now: Timestamp) -> Option<String> {
        if let Some(s) = silences.iter().find(|s| s.mutes(&a.labels, now)) {
            return Some(format!("silenced by {}", s.id));
        }
        for rule in &self.routing.inhibit_rules {
            if !all_match(&rule.target_match, &a.labels) {
                continue;
            }
            let src = all.iter().find(|s| {
                s.fingerprint != a.fingerprint && s.status == AlertStatus::Firing && all_match(&rule.source_match, &s.labels) && rule.equal.iter().all(|k| s.labels.get(k) == a.labels.get(k))
            });
            if let Some(s) = src {
                return Some(format!("inhibited by {} ({})", s.labels.get("alertname").map(String::as_str).unwrap_or("?"), s.fingerprint));
            }
        }
        None
    }

    fn leaves(&self, labels: &Labels) -> Vec<Leaf> {
        let root = &self.routing.route;
        let base = Leaf {
            path: "0".into(),
            receiver: root.receiver.clone().unwrap_or_default(),
            group_by: root.group_by.clone().unwrap_or_else(|| vec!["alertname".into()]),
            group_wait: root.group_wait.unwrap_or(30),
            group_interval: root.group_interval.unwrap_or(300),
            repeat_interval: root.repeat_interval.unwrap_or(4 * 3600),
        };
        let mut out = Vec::new();
        walk(root, &base, labels, &mut out);
        out.retain(|l| !l.receiver.is_empty());
        out
    }
}

/// An alert's start in whole seconds: when it fired (Alertmanager's `startsAt`).
fn start_s(a: &Alert) -> i64 {
    a.fired_at.unwrap_or(a.active_since).0.div_euclid(NS)
}

/// Which repeat of an unchanged group this is: whole `repeat_interval`s since its earliest
/// alert started. Counted from the alerts, not from when this process last sent, so that both
/// members of a pair number the same repeat alike.
fn repeat_index(current: &BTreeMap<String, Alert>, set: &BTreeMap<String, bool>, now: Timestamp, repeat_interval: i64) -> i64 {
    let first = set.keys().filter_map(|fp| current.get(fp)).map(start_s).min().unwrap_or(0);
    (now.0.div_euclid(NS) - first).div_euclid(repeat_interval.max(1))
}

/// A notification's id, made only of what it says: the group, each alert's fingerprint, state
/// and start (second), what the receiver was last told, and for a repeat its number. Two
/// aggregators of an active-active pair that see the same alerts therefore send the same id,
/// and a receiver that keeps the ids it has seen drops the twin (docs/ha.md). It does not
/// depend on the tick's time, which differs between the members.
fn notification_id(key: &str, current: &BTreeMap<String, Alert>, set: &BTreeMap<String, bool>, believed: &BTreeMap<String, bool>, repeat: Option<i64>) -> String {
    let mut content = Labels::new();
    for (fp, firing) in set {
        let start = current.get(fp).map_or(0, start_s);
        content.insert(format!("a:{fp}"), format!("{}@{start}", if *firing { "firing" } else { "resolved" }));
    }
    for fp in believed.keys() {
        content.insert(format!("b:{fp}"), String::new());
    }
    if let Some(r) = repeat {
        content.insert("repeat".into(), r.to_string());
    }
    format!("{}-{}", crate::fingerprint(&BTreeMap::from([("k".to_owned(), key.to_owned())])), crate::fingerprint(&content))
}

/// Alertmanager's matching: the deepest matching children win; a route with no matching
/// child is itself the leaf; siblings after a match are skipped unless it has `continue`.
fn walk(route: &Route, inherited: &Leaf, labels: &Labels, out: &mut Vec<Leaf>) {
    let mut matched_child = false;
    for (i, child) in route.routes.iter().enumerate() {
        if !all_match(&child.matchers, labels) {
            continue;
        }
        let leaf = Leaf {
            path: format!("{}.{i}", inherited.path),
            receiver: child.receiver.clone().unwrap_or_else(|| inherited.receiver.clone()),
            group_by: child.group_by.clone().unwrap_or_else(|| inherited.group_by.clone()),
            group_wait: child.group_wait.unwrap_or(inherited.group_wait),
            group_interval: child.group_interval.unwrap_or(inherited.group_interval),
            repeat_interval: child.repeat_interval.unwrap_or(inherited.repeat_interval),
        };
        walk(child, &leaf, labels, out);
        matched_child = true;
        if !child.continue_ {
            break;
        }
    }
    if !matched_child {
        out.push(inherited.clone());
    }
}
