//! Accept loop of the admin endpoint: the same head timeout and
//! accept-error backoff as the proxy, and its own connection cap so that
//! scrapers cannot starve the proxy of descriptors.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::state::Current;

use super::backoff::AcceptBackoff;
use tokio_util::sync::CancellationToken;

/// Serves admin connections until `stop` (the gateway stops accepting, or
/// a reload moved this listener). `admin.token_file` and
/// `admin.max_connections` are read when the loop starts.
pub async fn accept_loop(listener: TcpListener, current: Current, stop: CancellationToken) {
    let shared = current.snapshot();
    let token = shared
        .config
        .admin
        .token_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let slots = Arc::new(Semaphore::new(shared.config.admin.max_connections.max(1)));
    let mut backoff = AcceptBackoff::new("admin.listen");
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    backoff.failed(&e).await;
                    continue;
                }
            },
        };
        backoff.succeeded();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(client = %peer, "admin: admin.max_connections reached");
            continue; // dropping the stream closes it
        };
        let conn_shared = current.snapshot();
        let stopping = conn_shared.stopping.clone();
        let token = token.clone();
        let head_timeout = conn_shared.config.proxy.header_read_timeout;
        shared.tracker.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| {
                        crate::admin::handle(req, conn_shared.clone(), token.clone())
                    }),
                );
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}
