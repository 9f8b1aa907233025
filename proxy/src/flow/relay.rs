//! Relay choice: which relay carries a decrypted flow — HTTP/2 or HTTP/1.1
//! by the ALPN the server chose, HTTP/1.1 by sniffing when there is no
//! ALPN, MQTT packet by packet when the client's first bytes are a CONNECT,
//! XMPP stanza-aware when they are a stream header, else the byte relay with its inspection tap — and the absolute-form
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
use crate::relay::mqtt::{Ended, MqttRelay};
use crate::relay::rewind::Rewind;
use crate::relay::xmpp::Negotiation;
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
    let mut client = client;
    // No HTTP ALPN: the client's first bytes choose (HTTP/1.1 when no ALPN
    // was agreed and it speaks it, MQTT packet by packet, else bytes).
    let first = match alpn.as_deref() {
        Some(b"h2" | b"http/1.1") => None,
        _ => Some(first_bytes(&mut client).await),
    };
    let kind = match &first {
        None => Kind::Http,
        Some(b) if alpn.is_none() && looks_http(b) => Kind::Http,
        Some(b) if is_xmpp(b) => Kind::Xmpp,
        Some(b) if is_mqtt(b) => {
            // Identification names what the TLS carries.
            flow.seen.protocol = Some("mqtt".into());
            flow.seen.app.get_or_insert_with(|| "mqtt".into());
            Kind::Mqtt
        }
        Some(_) => Kind::Bytes,
    };
    let (ctx, hooks) = inspect::open(flow, shared, &host, true);
    let relay = inspect::http_relay_of(flow, shared, &ctx, &hooks);
    let redial = super::upstream::redialer(flow, shared, &host, alpn.clone());
    let updates = flow.updates(
        counters.clone(),
        Some(relay.requests.clone()),
        shared.events.clone(),
        shared.config.events.flow_update_interval,
    );
    let client = Rewind::new(Bytes::from(first.unwrap_or_default()), client);
    let relayed = async {
        match kind {
            Kind::Http => {
                let h2 = alpn.as_deref() == Some(b"h2");
                run_http(client, upstream, h2, relay, redial, shared, counters).await
            }
            Kind::Mqtt => mqtt(client, upstream, shared, &ctx, &hooks).await,
            Kind::Xmpp => xmpp(client, upstream, shared, &ctx, &hooks).await,
            Kind::Bytes => {
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

/// Which relay carries a decrypted flow.
enum Kind {
    Http,
    Mqtt,
    Xmpp,
    Bytes,
}

/// What the client sends first (whatever one read brings within 500 ms;
/// nothing when it waits for the server).
async fn first_bytes<C: AsyncRead + Unpin>(client: &mut C) -> Vec<u8> {
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(500), client.read(&mut first))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    first.truncate(n);
    first
}

fn looks_http(first: &[u8]) -> bool {
    !first.is_empty()
        && first.iter().take_while(|b| b.is_ascii_uppercase()).count() >= 3
        && first.contains(&b' ')
}

/// An MQTT CONNECT (or the start of one).
fn is_mqtt(first: &[u8]) -> bool {
    use gatehouse_inspectors::identify::{mqtt, Sniff};
    first.first() == Some(&0x10) && !matches!(mqtt::detect(first), Sniff::No)
}

/// An XMPP stream header (or the start of one).
fn is_xmpp(first: &[u8]) -> bool {
    use gatehouse_inspectors::identify::{xmpp, Sniff};
    !first.is_empty() && !matches!(xmpp::detect(first), Sniff::No)
}

/// XMPP inside TLS (5223, or 5222 after STARTTLS): every chunk judged
/// before it is passed on; a block ends the stream with a stream error.
async fn xmpp<C, U>(
    mut client: C,
    mut upstream: U,
    shared: &Shared,
    ctx: &Arc<crate::relay::hooks::FlowContext>,
    hooks: &inspect::Hooks,
) -> CloseReason
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let inspected = crate::relay::xmpp::Inspected { flow: ctx, hooks };
    let idle = shared.config.proxy.idle_timeout;
    let ended = crate::relay::xmpp::negotiate(
        &mut client,
        &mut upstream,
        idle,
        &shared.abort,
        Some(inspected),
        false,
    )
    .await;
    match ended {
        Negotiation::Blocked { .. } => CloseReason::Blocked,
        Negotiation::Ended { reason, .. } => match reason {
            "idle_timeout" => CloseReason::IdleTimeout,
            "server_closed" => CloseReason::ServerClosed,
            "shutdown" => CloseReason::Shutdown,
            _ => CloseReason::ClientClosed,
        },
        // Not followed inside TLS.
        Negotiation::StartTls { .. } => CloseReason::Closed,
    }
}

/// MQTT inside TLS (or plain, read transparently): packet by packet.
pub(super) async fn mqtt<C, U>(
    client: C,
    upstream: U,
    shared: &Shared,
    ctx: &Arc<crate::relay::hooks::FlowContext>,
    hooks: &inspect::Hooks,
) -> CloseReason
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let relay = MqttRelay {
        flow: ctx.clone(),
        hooks: hooks.clone(),
        window: shared.config.intercept.inspect_window,
        idle: shared.config.proxy.idle_timeout,
        abort: shared.abort.clone(),
    };
    match crate::relay::mqtt::relay(client, upstream, &relay).await {
        Ended::ClientClosed => CloseReason::ClientClosed,
        Ended::ServerClosed => CloseReason::ServerClosed,
        Ended::Error => CloseReason::IoError,
        Ended::Idle => CloseReason::IdleTimeout,
        Ended::Blocked => CloseReason::Blocked,
        Ended::Shutdown => CloseReason::Shutdown,
    }
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
