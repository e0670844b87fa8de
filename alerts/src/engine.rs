//! Rule evaluation and alert state. Pure: `evaluate(now, samples)` moves every alert through
//! inactive → pending → firing → resolved and returns what changed. The state serialises so
//! the outbox can keep it across restarts.

use std::collections::{BTreeMap, HashMap};

use kilowatch_model::{Labels, Timestamp};
use serde::{Deserialize, Serialize};

use crate::rule::{Condition, Rule, all_match};
use crate::template::render;

/// One live value: `metric` is `measurement.field` (or `derived.…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub metric: String,
    pub labels: Labels,
    pub value: f64,
    pub ts: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Pending,
    Firing,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Timestamp,
    pub to: AlertStatus,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub rule: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub status: AlertStatus,
    /// When the condition started holding (pending since).
    pub active_since: Timestamp,
    /// When it fired (Alertmanager's `startsAt`).
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub value: f64,
    pub last_eval: Timestamp,
    /// Newest transitions first is awkward to append to; oldest first, bounded.
    pub history: Vec<Transition>,
}

/// Last evaluation of a rule, for `/api/v1/rules`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    pub last_eval: Option<Timestamp>,
    pub series: usize,
    pub active: usize,
    pub error: Option<String>,
}

/// How long a resolved alert stays listed (and notifiable) before it is forgotten.
pub const RESOLVED_RETENTION_S: i64 = 3600;
const HISTORY_MAX: usize = 32;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineState {
    pub alerts: BTreeMap<String, Alert>,
    /// Previous (ts, value) per series, for rate rules. Keyed by rule and series.
    pub prev: BTreeMap<String, (Timestamp, f64)>,
    pub rules: BTreeMap<String, RuleStatus>,
}

pub struct Engine {
    pub rules: Vec<Rule>,
    pub state: EngineState,
}

fn rule_key(r: &Rule) -> String {
    format!("{}/{}/{}", r.name, r.severity, r.metric)
}

impl Engine {
    pub fn new(rules: Vec<Rule>, state: EngineState) -> Self {
        Engine { rules, state }
    }

    /// Evaluates every rule at `now` over `samples` and returns the fingerprints whose status
    /// changed.
    pub fn evaluate(&mut self, now: Timestamp, samples: &[Sample]) -> Vec<String> {
        let mut by_metric: HashMap<&str, Vec<&Sample>> = HashMap::new();
        for s in samples {
            by_metric.entry(s.metric.as_str()).or_default().push(s);
        }
        let mut changed = Vec::new();
        let mut seen: std::collections::BTreeSet<String> = Default::default();
        for rule in &self.rules {
            let series: Vec<&Sample> = by_metric.get(rule.metric.as_str()).map(|v| v.iter().copied().filter(|s| all_match(&rule.matchers, &s.labels)).collect()).unwrap_or_default();
            let mut active_n = 0;
            for s in &series {
                let labels = alert_labels(rule, s);
                let fp = crate::fingerprint(&labels);
                let was_active = self.state.alerts.get(&fp).is_some_and(|a| a.status != AlertStatus::Resolved);
                let active = match &rule.condition {
                    Condition::Threshold { op, threshold, clear } => match (was_active, clear) {
                        // Hysteresis: once active, only crossing back past `clear` ends it.
                        (true, Some(c)) => op.test(s.value, *c),
                        _ => op.test(s.value, *threshold),
                    },
                    Condition::Absent { stale_after } => now.0.saturating_sub(s.ts.0) > stale_after.saturating_mul(kilowatch_model::time::NANOS_PER_SEC),
                    Condition::Rate { op, threshold } => {
                        let key = format!("{}\u{1f}{fp}", rule_key(rule));
                        let prev = self.state.prev.insert(key, (s.ts, s.value));
                        match prev {
                            Some((pt, pv)) if s.ts.0 > pt.0 => op.test((s.value - pv) / ((s.ts.0 - pt.0) as f64 / 3.6e12), *threshold),
                            // Same sample as last time: keep the previous verdict.
                            Some(_) => was_active,
                            None => false,
                        }
                    }
                    Condition::Baseline { baseline, factor } => {
                        by_metric.get(baseline.as_str()).and_then(|b| b.iter().find(|b| b.labels == s.labels)).is_some_and(|b| b.value > 0.0 && s.value > factor * b.value)
                    }
                    Condition::BitsSet { mask } => s.value >= 0.0 && (s.value as u64) & mask != 0,
                };
                active_n += usize::from(active);
                seen.insert(fp.clone());
                if step(&mut self.state, rule, &fp, labels, s.value, active, now) {
                    changed.push(fp);
                }
            }
            self.state.rules.insert(rule_key(rule), RuleStatus { last_eval: Some(now), series: series.len(), active: active_n, error: None });
        }
        // A series that vanished ends its alert: with no reading there is nothing to assert
        // (staleness is what `absent` rules are for).
        let gone: Vec<String> = self.state.alerts.keys().filter(|fp| !seen.contains(*fp)).cloned().collect();
        for fp in gone {
            if let Some(a) = self.state.alerts.get_mut(&fp) {
                match a.status {
                    AlertStatus::Pending => {
                        self.state.alerts.remove(&fp);
                        changed.push(fp);
                    }
                    AlertStatus::Firing => {
                        resolve(a, now);
                        changed.push(fp);
                    }
                    AlertStatus::Resolved => {}
                }
            }
        }
        self.state.alerts.retain(|_, a| a.status != AlertStatus::Resolved || a.resolved_at.is_some_and(|r| now.0 - r.0 < RESOLVED_RETENTION_S * 1_000_000_000));
        changed
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.state.alerts.values()
    }
}

/// One series' state machine step; true when the status changed.
fn step(state: &mut EngineState, rule: &Rule, fp: &str, labels: Labels, value: f64, active: bool, now: Timestamp) -> bool {
    let for_ns = rule.for_s * kilowatch_model::time::NANOS_PER_SEC;
    let annotations: BTreeMap<String, String> = rule.annotations.iter().map(|(k, v)| (k.clone(), render(v, value, &labels))).collect();
    let entry = state.alerts.get_mut(fp);
    match (entry, active) {
        (None, false) => false,
        (None, true) => {
            let mut a = Alert {
                fingerprint: fp.to_owned(),
                rule: rule.name.clone(),
                labels,
                annotations,
                status: AlertStatus::Pending,
                active_since: now,
                fired_at: None,
                resolved_at: None,
                value,
                last_eval: now,
                history: vec![Transition { at: now, to: AlertStatus::Pending, value }],
            };
            if for_ns == 0 {
                fire(&mut a, now);
            }
            if a.status == AlertStatus::Firing {
                tracing::info!(alert = %rule.name, severity = %rule.severity, labels = ?a.labels, value, "alert firing");
            } else {
                tracing::debug!(alert = %rule.name, fingerprint = fp, value, "alert pending");
            }
            state.alerts.insert(fp.to_owned(), a);
            true
        }
        (Some(a), true) => {
            a.value = value;
            a.last_eval = now;
            a.annotations = annotations;
            match a.status {
                AlertStatus::Pending if now.0 - a.active_since.0 >= for_ns => {
                    fire(a, now);
                    tracing::info!(alert = %a.rule, severity = %rule.severity, labels = ?a.labels, value, "alert firing");
                    true
                }
                AlertStatus::Resolved => {
                    // A new episode of the same series: start again from pending.
                    a.status = AlertStatus::Pending;
                    a.active_since = now;
                    a.fired_at = None;
                    a.resolved_at = None;
                    push(a, now, AlertStatus::Pending, value);
                    if for_ns == 0 {
                        fire(a, now);
                    }
                    true
                }
                _ => false,
            }
        }
        (Some(a), false) => {
            a.last_eval = now;
            a.value = value;
            match a.status {
                AlertStatus::Pending => {
                    state.alerts.remove(fp);
                    true
                }
                AlertStatus::Firing => {
                    // The resolved notification shows the value that ended it.
                    a.annotations = annotations;
                    resolve(a, now);
                    tracing::info!(alert = %a.rule, fingerprint = fp, value, "alert resolved");
                    true
                }
                AlertStatus::Resolved => false,
            }
        }
    }
}

fn push(a: &mut Alert, at: Timestamp, to: AlertStatus, value: f64) {
    a.history.push(Transition { at, to, value });
    if a.history.len() > HISTORY_MAX {
        a.history.remove(0);
    }
}

fn fire(a: &mut Alert, now: Timestamp) {
    a.status = AlertStatus::Firing;
    a.fired_at = Some(now);
    let v = a.value;
    push(a, now, AlertStatus::Firing, v);
}

fn resolve(a: &mut Alert, now: Timestamp) {
    a.status = AlertStatus::Resolved;
    a.resolved_at = Some(now);
    let v = a.value;
    push(a, now, AlertStatus::Resolved, v);
}

fn alert_labels(rule: &Rule, s: &Sample) -> Labels {
    let mut l: Labels = match &rule.keep_labels {
        Some(keep) => s.labels.iter().filter(|(k, _)| keep.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => s.labels.clone(),
    };
    for (k, v) in &rule.labels {
        let r = render(v, s.value, &s.labels);
        l.insert(k.clone(), r);
    }
    l.insert("alertname".into(), rule.name.clone());
    l.insert("severity".into(), rule.severity.clone());
    l
}
