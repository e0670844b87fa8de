//! HTTPS: the real server with a certificate from a private CA made here, written to over
//! TLS by a client and by the collector's shipper trusting that CA, read back; plain HTTP to
//! the TLS port gets nowhere; a bad certificate file stops startup naming its key.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::{READ, WRITE};
use kilowatch_aggregator::api::AppState;
use kilowatch_aggregator::auth::Auth;
use kilowatch_aggregator::config::Config;
use kilowatch_aggregator::{server, tls};
use kilowatch_ship::{ShipError, Shipper, ShipperConfig};
use kilowatch_store::Store;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::sync::watch;

/// A CA, and a server certificate for localhost signed by it; PEM files in `dir`.
fn private_ca(dir: &Path) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params").signed_by(&key, &ca).expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    ca.pem()
}

#[tokio::test]
async fn writes_and_reads_over_https() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca_pem = private_ca(dir.path());
    let acceptor = tls::acceptor(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).expect("tls config");
    let store = Arc::new(Store::open(&dir.path().join("data")).expect("store"));
    let state =
        AppState { store: store.clone(), auth: Arc::new(Auth::new(vec![WRITE.into()], vec![READ.into()], false)), config: Arc::new(Config::default()), sink: None, metrics: Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server::serve_tls(listener, acceptor, server::router(state), rx));

    let client = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca")]).resolve("localhost", addr).build().expect("client");
    let base = format!("https://localhost:{}", addr.port());
    let r = client
        .post(format!("{base}/api/v2/write?precision=s"))
        .header("Authorization", format!("Token {WRITE}"))
        .body("meter,meter=grid-a,role=facility energy_kwh=12.5 1790812800\n")
        .send()
        .await
        .expect("https write");
    assert_eq!(r.status(), 204);
    let health: serde_json::Value = client.get(format!("{base}/api/v1/health")).header("Authorization", format!("Token {READ}")).send().await.expect("https read").json().await.expect("json");
    assert_eq!(health["store"]["series"], 1, "{health}");
    let ids = store.find_series("meter", "energy_kwh", &[("meter", "grid-a")]).expect("find");
    assert_eq!(store.latest(&[ids[0].id]).expect("latest")[0].as_ref().and_then(|(_, v)| v.as_f64()), Some(12.5));

    // The collector's shipper, trusting the private CA from its ca_file.
    let shipper = Shipper::with_ca(
        &ShipperConfig { url: format!("https://127.0.0.1:{}", addr.port()), token: WRITE.into(), org: None, bucket: None, timeout: std::time::Duration::from_secs(5) },
        Some(ca_pem.as_bytes()),
    )
    .expect("shipper");
    shipper.send("meter,meter=grid-a,role=facility energy_kwh=13 1790812801000000000\n".into()).await.expect("shipped over https");
    assert_eq!(store.stats().expect("stats").samples_written, 2);
    // Without the CA, the certificate is refused (and that is worth retrying: not dropped).
    let untrusting =
        Shipper::new(&ShipperConfig { url: format!("https://127.0.0.1:{}", addr.port()), token: WRITE.into(), org: None, bucket: None, timeout: std::time::Duration::from_secs(5) }).expect("shipper");
    let e = untrusting.send("m v=1 1\n".into()).await.expect_err("unknown CA");
    assert!(matches!(e, ShipError::Network { .. }) && e.retryable(), "{e}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new().get(format!("http://{addr}/api/v1/health")).timeout(std::time::Duration::from_secs(5)).send().await;
    assert!(plain.is_err() || !plain.as_ref().is_ok_and(|r| r.status().is_success()), "{plain:?}");
    assert_eq!(store.stats().expect("stats").samples_written, 2);

    let _ = stop.send(true);
    task.await.expect("join").expect("serve");
}

fn refusal(cert: &Path, key: &Path) -> String {
    match tls::acceptor(cert, key) {
        Ok(_) => panic!("{} and {} were accepted", cert.display(), key.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_certificate_files_name_their_key() {
    let dir = tempfile::tempdir().expect("tmp");
    private_ca(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let missing = dir.path().join("missing.pem");
    let e = refusal(&missing, &key);
    assert!(e.starts_with("server.tls_cert ") && e.contains("missing.pem"), "{e}");
    let e = refusal(&cert, &missing);
    assert!(e.starts_with("server.tls_key "), "{e}");
    let e = refusal(&key, &key);
    assert!(e.starts_with("server.tls_cert "), "{e}");
    let e = refusal(&cert, &cert);
    assert!(e.starts_with("server.tls_key "), "{e}");
    // The config checks that both are given.
    let cfg: Config = toml::from_str("[server]\ntls_cert = \"/x.pem\"\n").expect("parse");
    assert!(cfg.validate().expect_err("no key").to_string().starts_with("server.tls_key"));
}

#[test]
fn serve_stops_at_startup_on_a_missing_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    private_ca(dir.path());
    let config = dir.path().join("kilowatch.toml");
    let text = format!("[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n", dir.path().join("data"), dir.path().join("nowhere.pem"), dir.path().join("key.pem"));
    std::fs::write(&config, text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kilowatch"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("KILOWATCH_WRITE_TOKEN", WRITE)
        .env("KILOWATCH_READ_TOKEN", READ)
        .output()
        .expect("run kilowatch");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.tls_cert") && stderr.contains("nowhere.pem"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "stopped before opening the store");
}
