//! The investigator's console: its own HTTPS listener serving
//! server-rendered pages and the JSON API under `/api/` (the pages' forms
//! post to the same API endpoints), over the events in ClickHouse (else the
//! journal). Accounts and roles come from `[console]`; every login, logout,
//! triage step, reveal and export is an `audit` event.
//!
//! May import: `config`, `events`, `tls`, the certs crate; nothing that
//! imports it (`gateway` starts it).

mod auth;
mod http;
mod incidents;
mod pages;
mod service;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{hash_password, hex, random_token};
pub use incidents::Status;
pub use service::Console;
pub use tls::server_config;

/// Console connections open at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;

/// Serves the console on `listener` until `stopping` is cancelled.
pub async fn serve(
    listener: TcpListener,
    console: Arc<Console>,
    tls: Arc<rustls::ServerConfig>,
    stopping: CancellationToken,
    tracker: TaskTracker,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stopping.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "console: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let acceptor = acceptor.clone();
        let console = console.clone();
        let stopping = stopping.clone();
        tracker.spawn(async move {
            let _slot = slot;
            serve_one(stream, peer, acceptor, console, stopping).await;
        });
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    console: Arc<Console>,
    stopping: CancellationToken,
) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "console: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(
            TokioIo::new(tls),
            service_fn(move |req| http::handle(req, console.clone(), peer)),
        );
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopping.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
