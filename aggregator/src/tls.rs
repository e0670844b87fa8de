//! HTTPS for `kilowatch serve` when `[server] tls_cert` and `tls_key` are set: rustls with the
//! aws-lc-rs provider, the one reqwest already links, so one crypto library serves both sides.
//!
//! The handshake runs in the connection's own task (`conn.rs`), under the connection cap and
//! [`HANDSHAKE_TIMEOUT`], so that a slow or silent client cannot hold up accepting the others;
//! HTTPS keeps the same limits and graceful stop as plain HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {path}: {message}")]
    File { key: &'static str, path: PathBuf, message: String },
    #[error("server.tls_cert and server.tls_key do not make a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads the PEM certificate chain and private key; every failure names the config key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let file_err = |key: &'static str, path: &Path, message: String| TlsError::File { key, path: path.to_owned(), message };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).map_err(|e| file_err("server.tls_cert", cert, e.to_string()))?.collect::<Result<_, _>>().map_err(|e| file_err("server.tls_cert", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("server.tls_cert", cert, "no PEM certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err("server.tls_key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_no_client_auth().with_single_cert(certs, private)?;
    // The router speaks HTTP/1.1 only (axum's http1 feature).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
