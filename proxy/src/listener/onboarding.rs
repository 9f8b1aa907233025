//! Accept loops of the onboarding page: `onboarding.listen` (plain HTTP)
//! and `onboarding.https_listen` (HTTPS with a leaf for `onboarding.host`).
//! Only `allowed_clients` are answered, with their own connection cap so
//! that page loads cannot starve the proxy.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use tokio_util::sync::CancellationToken;

use crate::state::Current;

use super::backoff::AcceptBackoff;

/// Onboarding connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;

/// Serves the page on `listener` until the gateway stops accepting.
pub async fn accept_loop(
    listener: TcpListener,
    current: Current,
    stop: CancellationToken,
    tls: bool,
) {
    let what = if tls {
        "onboarding.https_listen"
    } else {
        "onboarding.listen"
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::new(what);
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
        let shared = current.snapshot();
        let Some(onboarding) = shared.onboarding.clone() else {
            continue; // no page: the listener is going away
        };
        if !shared.access.client_allowed(peer.ip()) {
            tracing::warn!(client = %peer, "{what}: client not in proxy.allowed_clients");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(client = %peer, "{what}: too many connections");
            continue;
        };
        let head_timeout = shared.config.proxy.header_read_timeout;
        let stopping = shared.stopping.clone();
        let ob = onboarding;
        shared.tracker.spawn(async move {
            let _slot = slot;
            let serve = async move {
                if tls {
                    ob.serve_tls(stream, head_timeout).await;
                } else {
                    ob.serve(stream, false, head_timeout).await;
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = stopping.cancelled() => {}
            }
        });
    }
}
