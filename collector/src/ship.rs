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

    /// Posts one batch of line protocol (timestamps in ns).
    pub async fn send(&self, body: String) -> Result<(), ShipError> {
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
            return Ok(());
        }
        let message = resp.text().await.unwrap_or_default();
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
