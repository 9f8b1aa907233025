//! Accept loop of the admin endpoint.

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::state::Shared;

/// Serves admin connections until the gateway stops accepting.
pub async fn accept_loop(listener: TcpListener, shared: Shared) {
    let token = shared
        .config
        .admin
        .token_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shared.stopping.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let stopping = shared.stopping.clone();
        let conn_shared = shared.clone();
        let token = token.clone();
        shared.tracker.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(
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
