//! Relay choice: which relay carries a decrypted flow — HTTP/2 or HTTP/1.1
//! by the ALPN the server chose, HTTP/1.1 by sniffing when there is no
//! ALPN, else the byte relay with its inspection tap — and the absolute-form
//! plain-HTTP request of the explicit proxy.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ::http::{Request, Response};
use bytes::Bytes;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::relay::count::{Counters, Tapped};
use crate::relay::http::{self, Body, HttpRelay, Redial};
use crate::relay::rewind::Rewind;
use crate::relay::{splice, Spliced};
use crate::state::Shared;

use super::context::{CloseReason, Flow};
use super::inspect;

/// Relays a decrypted flow to its end with inspection; records how it
/// ended and the bytes the client leg moved.
pub async fn decrypted<C, U>(
    flow: &mut Flow,
    shared: &Shared,
    client: C,
    upstream: U,
    alpn: Option<Vec<u8>>,
    counters: &Arc<Counters>,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let host = flow.host_name();
    let (ctx, hooks) = inspect::open(flow, shared, &host, true);
    let relay = inspect::http_relay_of(flow, shared, &ctx, &hooks);
    let redial = super::upstream::redialer(flow, shared, &host, alpn.clone());
    let updates = flow.updates(
        counters.clone(),
        Some(relay.requests.clone()),
        shared.events.clone(),
        shared.config.events.flow_update_interval,
    );
    let relayed = async {
        match alpn.as_deref() {
            Some(b"h2") => run_http(client, upstream, true, relay, redial, shared, counters).await,
            Some(b"http/1.1") => {
                run_http(client, upstream, false, relay, redial, shared, counters).await
            }
            None => {
                // No ALPN: HTTP/1.1 if the client speaks it, else bytes.
                let mut client = client;
                let mut first = vec![0u8; 8];
                let n = tokio::time::timeout(Duration::from_millis(500), client.read(&mut first))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                first.truncate(n);
                let looks_http = n > 0
                    && first.iter().take_while(|b| b.is_ascii_uppercase()).count() >= 3
                    && first.contains(&b' ');
                let client = Rewind::new(Bytes::from(first), client);
                if looks_http {
                    run_http(client, upstream, false, relay, redial, shared, counters).await
                } else {
                    let tapped = Tapped::new(client, ctx.clone(), hooks.clone());
                    bytes(tapped, upstream, shared).await
                }
            }
            Some(_) => {
                let tapped = Tapped::new(client, ctx.clone(), hooks.clone());
                bytes(tapped, upstream, shared).await
            }
        }
    };
    let close = tokio::select! {
        close = relayed => close,
        never = updates => match never {},
    };
    inspect::close(&ctx, &hooks);
    flow.end(close);
    flow.bytes_up = counters.read.load(Ordering::Relaxed);
    flow.bytes_down = counters.written.load(Ordering::Relaxed);
}

/// Forwards one absolute-form plain-HTTP request over `upstream`, inspected
/// when `inspected` (policy said intercept).
pub async fn plain_http(
    flow: &mut Flow,
    shared: &Shared,
    req: Request<Incoming>,
    upstream: TcpStream,
    host: &str,
    inspected: bool,
) -> Response<Body> {
    let (ctx, hooks) = inspect::open(flow, shared, host, inspected);
    let relay = inspect::http_relay(shared, &ctx, &hooks);
    let resp = http::forward_plain(req, upstream, &relay).await;
    inspect::close(&ctx, &hooks);
    flow.end(CloseReason::Closed);
    resp
}

/// Non-HTTP protocols inside TLS: bytes both ways, shown to the hooks.
async fn bytes<C, U>(client: C, upstream: U, shared: &Shared) -> CloseReason
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    spliced(client, upstream, shared).await.reason.into()
}

/// Bytes both ways under the gateway's idle timeout and abort.
pub(super) async fn spliced<C, U>(client: C, upstream: U, shared: &Shared) -> Spliced
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    splice(
        client,
        upstream,
        shared.config.proxy.idle_timeout,
        &shared.abort,
    )
    .await
}

async fn run_http<C, U>(
    client: C,
    upstream: U,
    h2: bool,
    relay: HttpRelay,
    redial: Option<Redial>,
    shared: &Shared,
    counters: &Counters,
) -> CloseReason
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // An upgraded (WebSocket) connection outlives hyper's: the flow ends
    // when the last of them does.
    let upgrades = relay.tracker.clone();
    let relayed = async move {
        let r = http::relay(client, upstream, h2, relay, redial).await;
        upgrades.close();
        upgrades.wait().await;
        r
    };
    tokio::select! {
        _ = idle_watch(counters, shared.config.proxy.idle_timeout) => CloseReason::IdleTimeout,
        r = relayed => match r {
            Ok(()) => CloseReason::Closed,
            Err(e) => {
                tracing::debug!(error = %e, "http relay ended");
                CloseReason::HttpError
            }
        },
        _ = shared.abort.cancelled() => CloseReason::Shutdown,
    }
}

/// Resolves once no byte has moved on the client leg for `idle` (keep-alive
/// connections included; hyper itself has no idle timeout).
async fn idle_watch(c: &Counters, idle: Duration) {
    let total = || c.read.load(Ordering::Relaxed) + c.written.load(Ordering::Relaxed);
    let tick = (idle / 4).max(Duration::from_millis(10));
    let (mut seen, mut since) = (total(), tokio::time::Instant::now());
    loop {
        tokio::time::sleep(tick).await;
        let now = total();
        if now != seen {
            (seen, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= idle {
            return;
        }
    }
}
