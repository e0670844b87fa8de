//! Sends what the outbox holds: webhooks (Alertmanager v4 payload, HMAC-signed) and pushes to
//! a real Alertmanager. Retries back off exponentially, a `429`'s `Retry-After` is honoured,
//! and after `max_attempts` the notification moves to the receiver's fallback.

use std::sync::Arc;
use std::time::Duration;

use kilowatch_model::Timestamp;

use crate::clock::Clock;
use crate::config::{Receiver, ReceiverKind, Routing};
use crate::outbox::{Delivery, Outbox, OutboxError};
use crate::payload;

const NS: i64 = kilowatch_model::time::NANOS_PER_SEC;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again no earlier than this many seconds from now.
    Retry {
        after_s: i64,
        error: String,
    },
}

pub struct Deliverer {
    pub outbox: Arc<Outbox>,
    pub routing: Routing,
    pub clock: Arc<dyn Clock>,
    pub external_url: String,
    client: reqwest::Client,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    pub delivered: usize,
    pub retried: usize,
    pub failed_over: usize,
}

impl Deliverer {
    pub fn new(outbox: Arc<Outbox>, routing: Routing, clock: Arc<dyn Clock>, external_url: String) -> Self {
        Deliverer { outbox, routing, clock, external_url, client: reqwest::Client::new() }
    }

    /// Attempts every due delivery once.
    pub async fn round(&self) -> Result<RoundStats, OutboxError> {
        let mut stats = RoundStats::default();
        let due = self.outbox.due(self.clock.now(), 100)?;
        for d in due {
            let Some(rx) = self.routing.receiver(&d.receiver) else {
                tracing::error!(receiver = %d.receiver, id = %d.id, "receiver no longer configured; notification dropped to the log as dead");
                self.outbox.fail_over(&d, None, self.clock.now())?;
                continue;
            };
            let outcome = self.send(rx, &d).await;
            let now = self.clock.now();
            match outcome {
                Outcome::Delivered => {
                    self.outbox.mark_delivered(&d.id, &d.receiver, now)?;
                    tracing::info!(receiver = %d.receiver, id = %d.id, alerts = d.notification.alerts.len(), attempt = d.attempts + 1, "notification delivered");
                    stats.delivered += 1;
                }
                Outcome::Retry { after_s, error } => {
                    let attempts = d.attempts + 1;
                    let backoff = backoff_s(rx, attempts).max(after_s);
                    if attempts >= rx.max_attempts {
                        tracing::warn!(receiver = %d.receiver, id = %d.id, attempts, error = %error, fallback = ?rx.fallback, "receiver keeps failing; failing over");
                        self.outbox.mark_retry(&d.id, &d.receiver, now, &error)?;
                        self.outbox.fail_over(&d, rx.fallback.as_deref(), now)?;
                        stats.failed_over += 1;
                    } else {
                        tracing::warn!(receiver = %d.receiver, id = %d.id, attempts, retry_in_s = backoff, error = %error, "delivery failed; will retry");
                        self.outbox.mark_retry(&d.id, &d.receiver, Timestamp(now.0 + backoff * NS), &error)?;
                        stats.retried += 1;
                    }
                }
            }
        }
        Ok(stats)
    }

    async fn send(&self, rx: &Receiver, d: &Delivery) -> Outcome {
        let (url, body) = match rx.kind {
            ReceiverKind::Webhook => (rx.url.clone(), serde_json::to_vec(&payload::webhook(&d.notification, &self.external_url))),
            ReceiverKind::Alertmanager => (format!("{}/api/v2/alerts", rx.url.trim_end_matches('/')), serde_json::to_vec(&payload::postable(&d.notification, &self.external_url))),
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => return Outcome::Retry { after_s: 0, error: format!("cannot encode: {e}") },
        };
        let mut req = self.client.post(&url).timeout(Duration::from_secs(rx.timeout.max(1) as u64)).header("Content-Type", "application/json").header(payload::ID_HEADER, &d.id);
        if let Some(secret) = rx.secret() {
            req = req.header(payload::SIGNATURE_HEADER, payload::sign(secret.as_bytes(), &body));
        }
        match req.body(body).send().await {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => {
                let status = r.status();
                let after_s = if status.as_u16() == 429 || status.as_u16() == 503 {
                    r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| retry_after_s(v, self.clock.now())).unwrap_or(0)
                } else {
                    0
                };
                Outcome::Retry { after_s, error: format!("HTTP {status}") }
            }
            Err(e) => Outcome::Retry { after_s: 0, error: e.to_string() },
        }
    }
}

/// `backoff × 2^(attempts−1)`, capped.
pub fn backoff_s(rx: &Receiver, attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(30);
    rx.backoff.max(1).saturating_mul(1i64 << shift).min(rx.max_backoff.max(1))
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub fn retry_after_s(v: &str, now: Timestamp) -> Option<i64> {
    if let Ok(s) = v.trim().parse::<i64>() {
        return Some(s.clamp(0, 86_400));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    Some(((Timestamp::from_datetime(t).0 - now.0) / NS).clamp(0, 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = Timestamp::parse_rfc3339("2015-10-21T07:27:00Z").expect("t");
        assert_eq!(retry_after_s("7", now), Some(7));
        assert_eq!(retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(60));
        assert_eq!(retry_after_s("soon", now), None);
    }
}
