//! Act: carry out a decision on the flow as a whole — a TLS alert without a
//! certificate, a block (for a TLS flow refused by policy: our own leaf
//! for exactly the SNI and the block page), or a passthrough splice
//! (metadata only, always recorded). Verdicts on single messages are
//! carried out by the relays.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::relay::count::{Counted, Counters};
use crate::relay::http::{blocked_page, wants_json};
use crate::relay::rewind::Rewind;
use crate::state::Shared;
use crate::tls;

use super::context::{CloseReason, Decision, Flow};
use super::decide::Block;
use super::peek::Hello;

/// Fails the client's handshake with an alert, never presenting a certificate.
pub async fn alert<S>(client: Rewind<S>, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls::client::refusing_config());
    let _ = tokio::time::timeout(
        shared.config.proxy.header_read_timeout,
        acceptor.accept(client),
    )
    .await;
}

/// Blocks the flow as decided: recorded, a `policy` event when the block
/// calls for one, and the connection closed (after a TLS alert when asked).
pub async fn block<S>(flow: &mut Flow, shared: &Shared, client: Rewind<S>, block: Block)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tls_alert = block.tls_alert;
    record_block(flow, shared, block);
    if tls_alert {
        alert(client, shared).await;
    }
}

/// Records a block in the flow (and its `policy` event when it calls for one).
fn record_block(flow: &mut Flow, shared: &Shared, block: Block) {
    flow.decide(Decision::Block, block.reason);
    flow.flagged = block.flagged;
    flow.end(block.close);
    if let Some(kind) = block.policy_event {
        flow.policy_event(&*shared.events, kind, "block", &flow.reason.clone());
    }
}

/// Splices the flow unread, recording why and the bytes moved.
pub async fn passthrough<S>(
    flow: &mut Flow,
    shared: &Shared,
    client: Rewind<S>,
    upstream: TcpStream,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    flow.decide(Decision::Passthrough, reason);
    flow.flagged = true;
    let bytes = Arc::new(Counters::default());
    let updates = flow.updates(
        bytes.clone(),
        None,
        shared.events.clone(),
        shared.config.events.flow_update_interval,
    );
    let client = Counted::new(client, bytes);
    let done = tokio::select! {
        done = super::relay::spliced(client, upstream, shared) => done,
        never = updates => match never {},
    };
    flow.bytes_up = done.up;
    flow.bytes_down = done.down;
    flow.end(done.reason.into());
}

/// Blocks a TLS flow the way a browser can show: the client's handshake is
/// completed with a leaf minted for exactly `name` (no upstream connection
/// is made or used), and every HTTP request on it (HTTP/1.1 or HTTP/2) is
/// answered with the block page naming the flow's event; then the
/// connection closes. A client offering only non-HTTP ALPN protocols gets
/// the TLS alert instead.
pub async fn block_page<S>(
    flow: &mut Flow,
    shared: &Shared,
    client: Rewind<S>,
    name: &str,
    hello: &Hello,
    mut block: Block,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let offers = |p: &[u8]| hello.alpn.iter().any(|a| a == p);
    let alpn: Option<&[u8]> = if offers(b"h2") {
        Some(b"h2")
    } else if offers(b"http/1.1") {
        Some(b"http/1.1")
    } else if hello.alpn.is_empty() {
        None
    } else {
        // Not an HTTP client: it could not read a page.
        return self::block(flow, shared, client, block).await;
    };
    let leaf = match super::mint::own_page_leaf(shared, name) {
        Ok(l) => l,
        Err(e) => {
            block.reason = format!("{} (no block-page leaf for {name}: {e})", block.reason);
            return self::block(flow, shared, client, block).await;
        }
    };
    let reason = block.reason.clone();
    record_block(flow, shared, block);
    // The connection event's id is the flow id: the page names it.
    let event = flow.id;
    let acceptor = TlsAcceptor::from(tls::client::server_config(leaf, alpn));
    let timeout = shared.config.proxy.header_read_timeout;
    let tls = match tokio::time::timeout(timeout, acceptor.accept(client)).await {
        Ok(Ok(s)) => s,
        _ => {
            flow.end(CloseReason::Blocked);
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let reason = Arc::new(reason);
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let reason = reason.clone();
        async move {
            let mut page = blocked_page(&reason, Some(event), wants_json(req.headers()));
            if !h2 {
                page.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(page)
        }
    });
    let io = TokioIo::new(tls);
    // Bounded: a client that keeps the connection open gets the idle
    // timeout, no more.
    let idle = shared.config.proxy.idle_timeout.min(timeout * 4);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, svc);
        let _ = tokio::time::timeout(idle, conn).await;
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout)
            .keep_alive(false)
            .serve_connection(io, svc);
        let _ = tokio::time::timeout(idle, conn).await;
    }
}
