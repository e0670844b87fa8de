//! What InfluxDB 1.x clients (Telegraf's `outputs.influxdb`, client libraries, load balancers)
//! see of a real `kilowatch serve` (issue 31, items 11, 14 and 15): `GET|HEAD /ping` without a
//! token, the v1 `POST /write` with its precisions and its three ways of giving the token, 404
//! for a route that does not exist, and a Windows path stored exactly as Telegraf sent it.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use common::{READ, WRITE, serve_process};
use kilowatch_store::Store;

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port")
}

fn config(dir: &Path, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kilowatch.toml");
    std::fs::write(&path, format!("[server]\nlisten = \"{addr}\"\ndata_dir = {:?}\n[report]\nenabled = false\n", dir.join("data"))).expect("config");
    path
}

async fn wait_up(addr: SocketAddr) {
    for _ in 0..300 {
        if http().get(format!("http://{addr}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kilowatch serve did not answer on {addr}");
}

fn now_ns() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()).expect("ns")
}

/// The status and body of a POST of `body` to `path_and_query`, with `auth` applied.
async fn post(addr: SocketAddr, path_and_query: &str, body: &str, auth: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> (u16, String) {
    let r = auth(http().post(format!("http://{addr}{path_and_query}")).body(body.to_owned())).send().await.expect("send");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn token(t: &'static str) -> impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    move |r| r.header("Authorization", format!("Token {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_1x_clients_ping_and_write_through_kilowatch_serve() {
    let dir = tempfile::tempdir().expect("tmp");
    let addr = free_addr();
    let server = serve_process(&config(dir.path(), addr), &dir.path().join("kilowatch.log"));
    wait_up(addr).await;

    // /ping, without a token, as load balancers and client libraries probe it.
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let r = http().request(method.clone(), format!("http://{addr}/ping")).send().await.expect("ping");
        assert_eq!(r.status(), 204, "{method} /ping");
        assert!(r.headers().get("x-influxdb-version").is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("1."))), "{method} /ping: {:?}", r.headers());
    }

    // A route that does not exist is 404 with or without a token, and a route that does still
    // wants one.
    let none = |r: reqwest::RequestBuilder| r;
    assert_eq!(post(addr, "/nope", "m v=1", none).await.0, 404);
    assert_eq!(post(addr, "/api/v2/nope", "m v=1", token(WRITE)).await.0, 404);
    assert_eq!(http().get(format!("http://{addr}/nope")).send().await.expect("get").status(), 404);
    assert_eq!(post(addr, "/write?db=telegraf", "m v=1", none).await.0, 401, "the v1 write wants a token");
    assert_eq!(post(addr, "/api/v2/write", "m v=1", none).await.0, 401);

    // The v1 write, the token given three ways (Telegraf: `Authorization: Token` in
    // http_headers, or username/password as basic auth; older clients: u/p in the query).
    let t = now_ns();
    let at_s = t / 1_000_000_000;
    let (s, b) = post(addr, "/write?db=telegraf&precision=s", &format!("probe,how=token v=1 {at_s}"), token(WRITE)).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = post(addr, &format!("/write?db=telegraf&rp=autogen&u=telegraf&p={WRITE}&precision=s"), &format!("probe,how=query v=2 {at_s}"), none).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = post(addr, "/write?db=telegraf&precision=s", &format!("probe,how=basic v=3 {at_s}"), |r| r.basic_auth("telegraf", Some(WRITE))).await;
    assert_eq!(s, 204, "{b}");
    // Telegraf's `content_encoding = "gzip"`.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, format!("probe,how=gzip v=6 {at_s}\n").as_bytes()).expect("gzip");
    let r = http()
        .post(format!("http://{addr}/write?db=telegraf&precision=s"))
        .header("Authorization", format!("Token {WRITE}"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    assert_eq!(post(addr, "/write?db=telegraf&u=telegraf&p=wrong", "probe,how=wrong v=4", none).await.0, 401);
    assert_eq!(post(addr, &format!("/write?db=telegraf&u=grafana&p={READ}"), "probe,how=read v=5", none).await.0, 403);

    // Every precision as InfluxDB 1.x spells it, and an empty one (nanoseconds) on both routes.
    let precisions: [(&str, i64); 7] = [("n", 1), ("u", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("", 1)];
    for (p, unit) in precisions {
        let (s, b) = post(addr, &format!("/write?db=telegraf&precision={p}"), &format!("prec,p=v1{p} v=1 {}", t / unit), token(WRITE)).await;
        assert_eq!(s, 204, "precision={p}: {b}");
    }
    let (s, b) = post(addr, "/api/v2/write?org=dc5&bucket=kw&precision=", &format!("prec,p=v2 v=1 {t}"), token(WRITE)).await;
    assert_eq!(s, 204, "empty precision on /api/v2/write: {b}");

    // Telegraf's win_disk input as its influx serializer writes it (it escapes no backslash
    // in a tag), and a duplicate tag key, refused naming it.
    let (s, b) = post(addr, "/write?db=telegraf&precision=s", &format!("win_disk,host=ws1,instance=\\\\srv\\share free_bytes=1024i {at_s}\n"), token(WRITE)).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = post(addr, "/write?db=telegraf", "cpu,host=a,host=b v=1", token(WRITE)).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("appears twice"), "{b}");

    // Stopped (SIGKILL: what was acknowledged is in the log), and read back from the store.
    drop(server);
    let store = Store::open(&dir.path().join("data")).expect("store");
    let series = |m: &str, f: &str, tags: &[(&str, &str)]| store.find_series(m, f, tags).expect("find");
    for how in ["token", "query", "basic", "gzip"] {
        assert_eq!(series("probe", "v", &[("how", how)]).len(), 1, "written with the token given as {how}");
    }
    assert!(series("probe", "v", &[("how", "wrong")]).is_empty() && series("probe", "v", &[("how", "read")]).is_empty());
    for (p, unit) in precisions {
        let tag = format!("v1{p}");
        let found = series("prec", "v", &[("p", &tag)]);
        let ids: Vec<_> = found.iter().map(|m| m.id).collect();
        let newest = store.latest(&ids).expect("latest");
        assert_eq!(newest.first().cloned().flatten().map(|(ts, _)| ts), Some(t / unit * unit), "precision={p}");
    }
    let found = series("prec", "v", &[("p", "v2")]);
    let ids: Vec<_> = found.iter().map(|m| m.id).collect();
    assert_eq!(store.latest(&ids).expect("latest").first().cloned().flatten().map(|(ts, _)| ts), Some(t));
    let win = series("win_disk", "free_bytes", &[("host", "ws1")]);
    assert_eq!(win.len(), 1);
    assert_eq!(win[0].tag("instance"), Some(r"\\srv\share"), "the path exactly as Telegraf sent it");
    assert!(series("cpu", "v", &[]).is_empty(), "the line with a duplicate tag key is not stored");
}
