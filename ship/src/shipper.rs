//! Sends line protocol to the aggregator's (or any InfluxDB v2-compatible) write endpoint.

use std::time::Duration;

use kilowatch_model::Precision;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot reach {url}: {source}")]
    Network { url: String, source: reqwest::Error },
    #[error("{url} refused the token (HTTP {status}): {message}")]
    Unauthorized { url: String, status: u16, message: String },
    #[error("{url} rejected the batch as invalid (HTTP {status}): {message}")]
    Rejected { url: String, status: u16, message: String },
    #[error("{url} failed (HTTP {status}): {message}")]
    Server { url: String, status: u16, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("the CA file holds no PEM certificate")]
    NoCaCertificate,
}

impl ShipError {
    /// Whether the same batch may succeed later. A batch the server calls invalid never will;
    /// a refused token may, once an operator fixes it, so that data is kept.
    pub fn retryable(&self) -> bool {
        !matches!(self, ShipError::Rejected { .. } | ShipError::Client(_) | ShipError::NoCaCertificate)
    }
}

/// What the server did with a batch it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Lines the server refused while storing the others (a partial write, HTTP 422 with
    /// `refused` and `accepted` counts): resending cannot change that.
    pub refused_lines: u64,
    /// Why, for the first refused line.
    pub reason: Option<String>,
}

/// A partial write's answer: `{"refused": N, "accepted": M, "message": …}` (Kilowatch; a 422,
/// or a 400 when no line of the batch could be parsed). The lines it names are dropped, the
/// others were stored: the batch is delivered, never resent. A 422 or 400 without those counts
/// (InfluxDB's "points beyond retention", an older Kilowatch) is not one: what it stored is
/// unknown, so the batch is treated as rejected.
fn partial_write(body: &str) -> Option<Delivered> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let refused = v.get("refused")?.as_u64()?;
    v.get("accepted")?.as_u64()?;
    Some(Delivered { refused_lines: refused, reason: v.get("message").and_then(|m| m.as_str()).map(str::to_owned) })
}

#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Base URL, e.g. `http://aggregator:8086`.
    pub url: String,
    pub token: String,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub timeout: Duration,
}

pub struct Shipper {
    client: reqwest::Client,
    endpoint: String,
    token: String,
}

impl Shipper {
    pub fn new(cfg: &ShipperConfig) -> Result<Self, ShipError> {
        Self::with_ca(cfg, None)
    }

    /// Like [`Shipper::new`], trusting also the CA certificates of `ca_pem` (PEM, one or
    /// more), for an aggregator whose HTTPS certificate comes from a private CA.
    pub fn with_ca(cfg: &ShipperConfig, ca_pem: Option<&[u8]>) -> Result<Self, ShipError> {
        let mut builder = reqwest::Client::builder().timeout(cfg.timeout);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(ShipError::Client)?;
            if certs.is_empty() {
                return Err(ShipError::NoCaCertificate);
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(ShipError::Client)?;
        let mut endpoint = format!("{}/api/v2/write?precision={}", cfg.url.trim_end_matches('/'), Precision::Ns.as_str());
        for (k, v) in [("org", &cfg.org), ("bucket", &cfg.bucket)] {
            if let Some(v) = v {
                endpoint.push_str(&format!("&{k}={}", encode_query(v)));
            }
        }
        Ok(Shipper { client, endpoint, token: cfg.token.clone() })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Posts one batch of line protocol (timestamps in ns). `Ok` when the server stored it,
    /// or stored it but for the lines it refused (counted in the answer).
    pub async fn send(&self, body: String) -> Result<Delivered, ShipError> {
        let url = self.endpoint.clone();
        let resp = self
            .client
            .post(&self.endpoint)
            .header("Authorization", format!("Token {}", self.token))
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|source| ShipError::Network { url: url.clone(), source })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(Delivered::default());
        }
        let message = resp.text().await.unwrap_or_default();
        if matches!(status, 400 | 422)
            && let Some(d) = partial_write(&message)
        {
            return Ok(d);
        }
        Err(match status {
            401 | 403 => ShipError::Unauthorized { url, status, message },
            400 | 413 | 422 => ShipError::Rejected { url, status, message },
            _ => ShipError::Server { url, status, message },
        })
    }
}

fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_write_is_told_from_a_rejection() {
        let d = partial_write(r#"{"code":"unprocessable entity","message":"partial write: 1 line(s) refused","line":2,"refused":1,"accepted":9}"#).expect("partial");
        assert_eq!(d.refused_lines, 1);
        assert!(d.reason.expect("reason").starts_with("partial write"));
        // InfluxDB's retention answer and an older Kilowatch's whole refusal say nothing stored.
        assert_eq!(partial_write(r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: points beyond retention policy dropped=1"}"#), None);
        assert_eq!(partial_write(r#"{"code":"unprocessable entity","message":"too old","line":3}"#), None);
        assert_eq!(partial_write("not json"), None);
    }
}
