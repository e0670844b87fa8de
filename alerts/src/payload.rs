//! Wire formats: Alertmanager's webhook payload (version "4"), the postable alerts of its
//! `/api/v2/alerts`, and the HMAC-SHA256 signature header.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use kilowatch_model::{Labels, Timestamp};
use serde::Serialize;
use sha2::Sha256;

use crate::dispatch::Notification;
use crate::engine::{Alert, AlertStatus};

/// Alertmanager writes Go's zero time for "no end yet".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
pub const SIGNATURE_HEADER: &str = "X-Kilowatch-Signature";
pub const ID_HEADER: &str = "X-Kilowatch-Notification-Id";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: &'static str,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub version: &'static str,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub status: &'static str,
    pub receiver: String,
    pub group_labels: Labels,
    pub common_labels: Labels,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

fn status(a: &Alert) -> &'static str {
    if a.status == AlertStatus::Firing { "firing" } else { "resolved" }
}

fn starts(a: &Alert) -> Timestamp {
    a.fired_at.unwrap_or(a.active_since)
}

fn common<V: Clone + PartialEq>(maps: impl Iterator<Item = BTreeMap<String, V>>) -> BTreeMap<String, V> {
    let mut it = maps;
    let Some(mut acc) = it.next() else { return BTreeMap::new() };
    for m in it {
        acc.retain(|k, v| m.get(k) == Some(v));
    }
    acc
}

pub fn webhook(n: &Notification, external_url: &str) -> Webhook {
    let generator = |a: &Alert| format!("{}/api/v1/alerts?fingerprint={}", external_url.trim_end_matches('/'), a.fingerprint);
    Webhook {
        version: "4",
        group_key: n.group_key.clone(),
        truncated_alerts: 0,
        status: if n.firing() { "firing" } else { "resolved" },
        receiver: n.receiver.clone(),
        group_labels: n.group_labels.clone(),
        common_labels: common(n.alerts.iter().map(|a| a.labels.clone())),
        common_annotations: common(n.alerts.iter().map(|a| a.annotations.clone())),
        external_url: external_url.to_owned(),
        alerts: n
            .alerts
            .iter()
            .map(|a| WebhookAlert {
                status: status(a),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: starts(a).to_rfc3339(),
                ends_at: a.resolved_at.filter(|_| a.status == AlertStatus::Resolved).map(|t| t.to_rfc3339()).unwrap_or_else(|| ZERO_TIME.into()),
                generator_url: generator(a),
                fingerprint: a.fingerprint.clone(),
            })
            .collect(),
    }
}

/// Alertmanager's `postableAlert`. A firing alert carries no `endsAt` (Alertmanager applies
/// its `resolve_timeout`); a resolved one carries the time it resolved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

pub fn postable(n: &Notification, external_url: &str) -> Vec<PostableAlert> {
    webhook(n, external_url)
        .alerts
        .into_iter()
        .map(|a| PostableAlert { labels: a.labels, annotations: a.annotations, starts_at: a.starts_at, ends_at: (a.status == "resolved").then_some(a.ends_at), generator_url: a.generator_url })
        .collect()
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), GitHub-style, so receivers can reuse the
/// verification code they already have.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256=");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Constant-time check of a `sha256=` header, for receivers written in Rust (and the tests).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let want = sign(secret, body);
    want.len() == header.len() && want.bytes().zip(header.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(verify(b"Jefe", b"what do ya want for nothing?", "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
        assert!(!verify(b"Jefe", b"x", "sha256=00"));
    }
}
