//! `kilowatch serve`'s accept loop: hyper's HTTP/1 server over each accepted connection, with
//! what `axum::serve` cannot set: a cap on open connections, a header read timeout that is
//! also the keep-alive idle timeout, TLS handshakes under the same cap, and a graceful stop
//! with a hard deadline.
//!
//! Past the cap a new connection is accepted and closed at once (and counted), so that the
//! kernel's queue does not fill with clients that wait for nothing. On stop the listener is
//! closed, idle connections are closed, requests in progress finish and live streams end
//! (they watch the same signal); whatever is still open at `server.shutdown_grace_s` is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::events::{ConnectionRefused, InternalEvent};
use crate::metrics::Metrics;

/// File descriptors kept for the store, its SQLite databases, logs and outgoing connections
/// when the connection cap is fitted under the open-files limit.
const RESERVED_FDS: u64 = 256;

/// What bounds connections (from `[server]`, see docs/security.md).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl ConnLimits {
    pub fn from_config(cfg: &crate::config::ServerConfig) -> ConnLimits {
        ConnLimits {
            max_connections: cfg.max_connections,
            header_read_timeout: Duration::from_secs(cfg.header_read_timeout_s),
            write_timeout: Duration::from_secs(cfg.write_timeout_s),
            shutdown_grace: Duration::from_secs(cfg.shutdown_grace_s),
        }
    }

    /// The cap lowered, with a warning, to what the open-files limit `nofile` allows.
    pub fn fitted_to(mut self, nofile: Option<u64>) -> ConnLimits {
        if let Some(n) = nofile {
            let room = usize::try_from(n.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
            if self.max_connections > room {
                tracing::warn!(configured = self.max_connections, open_files_limit = n, used = room, "server.max_connections lowered to fit the open-files limit");
                self.max_connections = room;
            }
        }
        self
    }
}

/// Raises this process's soft limit on open files to its hard limit (the default soft limit,
/// often 1024, is what a thousand idle sockets exhausted) and returns the soft limit now in
/// force.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let (cur, max) = (lim.current, lim.maximum);
    // An unlimited hard limit cannot be a soft limit for open files: keep the soft one.
    let Some(target) = max else {
        tracing::info!(soft = ?cur, hard = "unlimited", "open-files limit left as is");
        return cur;
    };
    if cur.is_some_and(|c| c >= target) {
        tracing::info!(soft = target, hard = target, "open-files limit");
        return Some(target);
    }
    match setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(target), maximum: max }) {
        Ok(()) => {
            tracing::info!(soft = target, hard = target, was = ?cur, "open-files soft limit raised to the hard limit");
            Some(target)
        }
        Err(e) => {
            tracing::warn!(error = %e, soft = ?cur, hard = target, "could not raise the open-files soft limit");
            cur
        }
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` turns true, then stops
/// as the module says.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, app: Router, mut shutdown: watch::Receiver<bool>, limits: ConnLimits, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = ?addr, scheme, max_connections = limits.max_connections, header_read_timeout_s = limits.header_read_timeout.as_secs(), "listening");
    // Live streams end on the same signal (see kilowatch_dashboard::LiveStop).
    let app = app.layer(axum::Extension(kilowatch_dashboard::LiveStop(shutdown.clone())));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    // Every connection task holds a sender; when all are gone, every connection is closed.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            ConnectionRefused { peer, max: limits.max_connections }.emit(&metrics);
            drop(stream);
            continue;
        };
        metrics.connections_accepted.inc();
        let _ = stream.set_nodelay(true);
        let (http, app, tls, stop, open) = (http.clone(), app.clone(), tls.clone(), shutdown.clone(), open_tx.clone());
        let counted = OpenConnection::new(metrics.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let _counted = counted;
            connection(StallGuard::new(stream, limits.write_timeout), peer, tls, http, app, stop, limits.shutdown_grace).await;
        });
    }
    drop(listener);
    drop(open_tx);
    tracing::info!(grace_s = limits.shutdown_grace.as_secs(), "stopping: closing idle connections, finishing requests in progress");
    // Each connection enforces the grace itself; this bounds the wait should one not.
    if tokio::time::timeout(limits.shutdown_grace + Duration::from_secs(1), open_rx.recv()).await.is_err() {
        tracing::warn!("connections still open at the shutdown deadline: dropped");
    }
    Ok(())
}

/// One connection: the TLS handshake (bounded) when asked, then HTTP until it closes or the
/// stop's grace runs out.
async fn connection(stream: StallGuard<TcpStream>, peer: SocketAddr, tls: Option<TlsAcceptor>, http: http1::Builder, app: Router, stop: watch::Receiver<bool>, grace: Duration) {
    match tls {
        None => serve_io(stream, peer, http, app, stop, grace).await,
        Some(acceptor) => match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => serve_io(s, peer, http, app, stop, grace).await,
            Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
        },
    }
}

async fn serve_io<I>(io: I, peer: SocketAddr, http: http1::Builder, app: Router, mut stop: watch::Receiver<bool>, grace: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            return;
        }
        () = stopped(&mut stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(grace, conn).await.is_err() {
        tracing::debug!(peer = %peer, "connection dropped at the shutdown deadline");
    }
}

/// Counted in `kilowatch_connections_open` from accept to close.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(m: Arc<Metrics>) -> OpenConnection {
        m.connections_open.inc();
        OpenConnection(m)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// Resolves when the stop signal turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// A connection whose writes fail once they have waited `limit` for the client to read: an
/// answer (or a live stream) nobody reads would otherwise hold its connection for ever.
struct StallGuard<I> {
    io: I,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> StallGuard<I> {
    fn new(io: I, limit: Duration) -> Self {
        StallGuard { io, limit, stalled: None }
    }

    /// What a write that made progress (or failed) answers: the stall clock stops.
    fn progressed<T>(&mut self, r: std::io::Result<T>) -> Poll<std::io::Result<T>> {
        self.stalled = None;
        Poll::Ready(r)
    }

    /// What a write that must wait answers: pending, or an error once it has waited `limit`.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client stopped reading (server.write_timeout_s)")));
        }
        Poll::Pending
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StallGuard<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for StallGuard<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.waiting(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.waiting(cx),
        }
    }
}
