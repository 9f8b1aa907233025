//! One flow, step by step. A listener accepts a connection and
//! [admits](admit) it, then hands a [`FlowStart`] here; the flow runs in
//! its own `tracing` span (flow id, client, destination), so every log line
//! joins the flow's events. The steps, one file each:
//!
//! | step | file | what |
//! |---|---|---|
//! | accept → admit | [`admit`] | allowed client, journal accepting, a slot |
//! | peek | [`peek`] | first bytes, identified and classified, kept for replay |
//! | decide | [`decide`] | unreadable TLS, non-TLS, no name, domain fronting, policy, then pinning |
//! | upstream | [`upstream`] | dial (destination access first), verify the real server |
//! | mint | [`mint`] | a leaf for the verified name, the client's handshake |
//! | relay | [`relay`] | HTTP/2, HTTP/1.1 or bytes for a decrypted flow; plain HTTP |
//! | inspect | [`inspect`] | the flow's extraction + DLP hooks |
//! | act | [`act`] | alert, block, passthrough splice |
//! | record | [`record`] | the `connection` event, once; every other event stamped |
//!
//! [`context`] holds the per-flow [`Flow`]: identity, target, what was seen,
//! the decision and close reason as enums, the failing side. It is consumed
//! by [`Flow::record`], so a flow has exactly one `connection` event.
//!
//! May import: `state`, `relay`, `tls`, `policy`, `events`, `config`,
//! `error`; never `listener`, `gateway` or `cli`.
//!
//! **How a UDP (QUIC) flow joins** (`crate::quic`). The context, admission,
//! decision and record steps take no socket: the QUIC listener admits the
//! client's address exactly like a TCP listener ([`admit`]), builds a
//! [`FlowStart`] (mode transparent, the original destination as target,
//! `transport = "udp"`), records what its Initials say with the same
//! identification as [`peek::record`], and decides with the same policy
//! rules (their `quic` key, `Policy::decide_quic`). `block` and `pass` are
//! carried out on datagrams by the QUIC listener and recorded through the
//! same [`Flow::record`]. `intercept` dials and verifies the upstream over
//! TCP with [`upstream::dial`] and [`upstream::verify`], mints with
//! [`mint`], terminates QUIC with quinn and hands each HTTP/3 request to
//! the same inspection hooks ([`inspect::open`]) and HTTP relay
//! (`relay::http::Forwarder`). No third pipeline.

pub mod act;
pub mod admit;
pub mod context;
pub mod decide;
pub mod inspect;
pub mod mint;
pub mod peek;
pub mod record;
pub mod relay;
pub mod update;
pub mod upstream;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::config::PolicyAction;
use crate::relay::count::{Counted, Counters};
use crate::relay::http::{blocked_page, wants_json, Body};
use crate::relay::rewind::Rewind;
use crate::relay::xmpp;
use crate::state::Shared;

pub use context::{CloseReason, Decision, Flow, FlowStart, Mode, Target};
use decide::Plan;
use peek::{peek, Peeked};
pub use upstream::DialError;

/// Serves a flow to its end and records it; `upstream` is the server's
/// TCP connection, or `None` when policy refused the flow before dialing
/// (it is then dialed only if a later step needs it). Runs in the flow's
/// span.
pub async fn serve<S>(mut flow: Flow, client: S, upstream: Option<TcpStream>, shared: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let span = flow.span.clone();
    async move {
        run(&mut flow, client, upstream, &shared).await;
        flow.record(&*shared.events);
    }
    .instrument(span)
    .await
}

/// A flow refused before it was connected (already recorded).
#[derive(Debug)]
pub struct Refused {
    /// What kind of failure.
    pub kind: DialError,
    /// Why, in words (as recorded).
    pub reason: String,
}

/// Opens a flow and connects it upstream, refusing a destination that is
/// the listener itself (`own`); a refusal is recorded here. The explicit
/// proxy dials before answering the CONNECT (so it can answer 403/502),
/// except for a target that policy blocks by name: that one is never
/// dialed (`None`), and the client gets the block page without any
/// connection to the server. A redirected (transparent) flow is dialed
/// only after its first bytes are decided, so a flow blocked by its SNI
/// never touches the server either.
pub async fn connect(
    start: FlowStart,
    shared: &Shared,
    own: Option<std::net::SocketAddr>,
) -> Result<(Flow, Option<TcpStream>), Refused> {
    let mut flow = Flow::new(start);
    let span = flow.span.clone();
    let dialed = async {
        upstream::refuse_self(&mut flow, own)?;
        if flow.mode == Mode::Transparent || decide::blocked_before_dial(&flow, shared) {
            return Ok(None);
        }
        upstream::dial(&mut flow, shared).await.map(Some)
    }
    .instrument(span)
    .await;
    match dialed {
        Ok(s) => Ok((flow, s)),
        Err(kind) => {
            let reason = flow.reason.clone();
            flow.record(&*shared.events);
            Err(Refused { kind, reason })
        }
    }
}

async fn run<S>(flow: &mut Flow, mut client: S, upstream: Option<TcpStream>, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = shared.config.proxy.header_read_timeout;
    let (peeked, first) = peek(&mut client, flow.port(), timeout).await;
    let client = Rewind::new(first, client);
    peek::record(flow, shared, &peeked);
    match decide::on_first_bytes(flow, shared, peeked) {
        // Boxed: rare, and it would otherwise size every flow's future.
        Plan::XmppStartTls { domain } => {
            Box::pin(xmpp_flow(flow, shared, client, upstream, domain)).await
        }
        Plan::PlainMqtt => {
            let Some(upstream) = dial_late(flow, shared, upstream).await else {
                return;
            };
            Box::pin(plain_mqtt(flow, shared, client, upstream)).await
        }
        plan => carry_out(flow, shared, client, upstream, plan).await,
    }
}

/// The flow's upstream connection: the one made before the decision, or
/// dialed now when policy had refused the CONNECT target by name but a
/// later step still needs the server. `None` when dialing failed (recorded).
async fn dial_late(
    flow: &mut Flow,
    shared: &Shared,
    upstream: Option<TcpStream>,
) -> Option<TcpStream> {
    match upstream {
        Some(s) => Some(s),
        None => upstream::dial(flow, shared).await.ok(),
    }
}

/// Carries out a plan on a flow whose first bytes are in `client`.
async fn carry_out<S>(
    flow: &mut Flow,
    shared: &Shared,
    client: Rewind<S>,
    upstream: Option<TcpStream>,
    plan: Plan,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match plan {
        Plan::Nothing => {}
        Plan::Block(b) => act::block(flow, shared, client, b).await,
        Plan::BlockPage { name, hello, block } => {
            act::block_page(flow, shared, client, &name, &hello, block).await
        }
        Plan::Passthrough { reason, flagged } => {
            let Some(upstream) = dial_late(flow, shared, upstream).await else {
                return;
            };
            act::passthrough(flow, shared, client, upstream, &reason).await;
            flow.flagged = flagged;
        }
        // Only the first bytes of a flow can start plain XMPP or MQTT;
        // never here.
        Plan::XmppStartTls { .. } | Plan::PlainMqtt => {
            let block = decide::Block {
                reason: "plaintext negotiation inside XMPP".into(),
                close: CloseReason::Blocked,
                flagged: true,
                policy_event: None,
                tls_alert: false,
            };
            act::block(flow, shared, client, block).await
        }
        Plan::Intercept { name, hello } => {
            let Some(upstream) = dial_late(flow, shared, upstream).await else {
                act::alert(client, shared).await;
                return;
            };
            intercept(flow, shared, client, upstream, name, hello).await
        }
    }
}

/// XMPP: relay the plaintext negotiation, then intercept the TLS that
/// STARTTLS begins, upstream first as always.
async fn xmpp_flow<S>(
    flow: &mut Flow,
    shared: &Shared,
    mut client: Rewind<S>,
    upstream: Option<TcpStream>,
    domain: String,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(mut upstream) = dial_late(flow, shared, upstream).await else {
        return;
    };
    let idle = shared.config.proxy.idle_timeout;
    // The plaintext phase is read like the stream inside TLS: a client
    // that never starts TLS has its stanzas judged all the same.
    let (ctx, hooks) = inspect::open(flow, shared, &domain, true);
    let inspected = xmpp::Inspected {
        flow: &ctx,
        hooks: &hooks,
    };
    let negotiated = xmpp::negotiate(
        &mut client,
        &mut upstream,
        idle,
        &shared.abort,
        Some(inspected),
        true,
    )
    .await;
    inspect::close(&ctx, &hooks);
    match negotiated {
        xmpp::Negotiation::Blocked { up, down } => {
            flow.decide(
                Decision::Intercept,
                "xmpp stream without STARTTLS: read in plaintext",
            );
            flow.flagged = true;
            (flow.bytes_up, flow.bytes_down) = (up, down);
            flow.end(CloseReason::Blocked);
        }
        xmpp::Negotiation::Ended { up, down, reason } => {
            flow.decide(
                Decision::Intercept,
                "xmpp stream without STARTTLS: read in plaintext",
            );
            flow.flagged = true;
            (flow.bytes_up, flow.bytes_down) = (up, down);
            flow.end(match reason {
                "idle_timeout" => CloseReason::IdleTimeout,
                "server_closed" => CloseReason::ServerClosed,
                "shutdown" => CloseReason::Shutdown,
                _ => CloseReason::ClientClosed,
            });
        }
        xmpp::Negotiation::StartTls { .. } => {
            let timeout = shared.config.proxy.header_read_timeout;
            let (peeked, first) = peek(&mut client, flow.port(), timeout).await;
            let client = Rewind::new(first, client);
            match peeked {
                Peeked::Tls(hello, _) => {
                    flow.seen.sni = hello.sni.clone();
                    flow.seen.ja4 = Some(hello.ja4.clone());
                    let name = hello.sni.clone().unwrap_or(domain);
                    let plan = match decide::on_tls(flow, shared, name, hello, false) {
                        // An XMPP client cannot read a page: the alert.
                        Plan::BlockPage { block, .. } => Plan::Block(block),
                        plan => plan,
                    };
                    carry_out(flow, shared, client, Some(upstream), plan).await;
                    flow.reason = format!("xmpp STARTTLS: {}", flow.reason);
                }
                Peeked::Other(id)
                    if id.protocol == gatehouse_inspectors::identify::Protocol::Tls =>
                {
                    let why = format!(
                        "xmpp: malformed TLS ClientHello after <proceed/>: {}",
                        id.error.as_deref().unwrap_or("unparsable")
                    );
                    let plan = decide::unparsed(shared, why, CloseReason::MalformedClientHello);
                    carry_out(flow, shared, client, Some(upstream), plan).await;
                }
                _ => {
                    let why = "xmpp: no TLS after <proceed/>".to_string();
                    let plan = decide::unparsed(shared, why, CloseReason::Blocked);
                    carry_out(flow, shared, client, Some(upstream), plan).await;
                }
            }
        }
    }
}

/// MQTT in the clear: every packet judged before it is passed on, as
/// inside TLS.
async fn plain_mqtt<S>(flow: &mut Flow, shared: &Shared, client: Rewind<S>, upstream: TcpStream)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    let client = Counted::new(client, counters.clone());
    flow.seen.app.get_or_insert_with(|| "mqtt".into());
    let host = flow.host_name();
    let (ctx, hooks) = inspect::open(flow, shared, &host, true);
    let close = relay::mqtt(client, upstream, shared, &ctx, &hooks).await;
    inspect::close(&ctx, &hooks);
    flow.end(close);
    flow.bytes_up = counters.read.load(std::sync::atomic::Ordering::Relaxed);
    flow.bytes_down = counters.written.load(std::sync::atomic::Ordering::Relaxed);
}

/// Upstream first (verified), then the client with a leaf for `name`, then
/// the relay with inspection.
async fn intercept<S>(
    flow: &mut Flow,
    shared: &Shared,
    client: Rewind<S>,
    upstream: TcpStream,
    name: String,
    hello: peek::Hello,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    // Boxed: the handshakes' state (two rustls connections mid-handshake,
    // the verified chain, timers) is freed when they finish instead of
    // sizing this flow's future for as long as it relays.
    let legs = Box::pin(handshakes(
        flow, shared, client, upstream, &name, hello, &counters,
    ))
    .await;
    let Some(legs) = legs else {
        flow.bytes_up = counters.read.load(std::sync::atomic::Ordering::Relaxed);
        flow.bytes_down = counters.written.load(std::sync::atomic::Ordering::Relaxed);
        return;
    };
    flow.host = Some(name);
    relay::decrypted(
        flow,
        shared,
        legs.client,
        legs.upstream,
        legs.alpn,
        &counters,
    )
    .await;
}

/// Both TLS legs of an intercepted flow, ready to relay.
///
/// The streams are boxed because they live as long as the flow: every
/// future they pass through by value (relay, hyper's connection) then holds
/// a pointer rather than a rustls connection, and an async state machine
/// keeps the slot of a value even after moving it on.
struct Legs<S> {
    client: Box<tokio_rustls::server::TlsStream<Counted<Rewind<S>>>>,
    upstream: Box<tokio_rustls::client::TlsStream<TcpStream>>,
    alpn: Option<Vec<u8>>,
}

async fn handshakes<S>(
    flow: &mut Flow,
    shared: &Shared,
    client: Rewind<S>,
    upstream: TcpStream,
    name: &str,
    hello: peek::Hello,
    counters: &Arc<Counters>,
) -> Option<Legs<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Upstream first: only a verified server earns the client a leaf.
    let Some(verified) = upstream::verify(flow, shared, upstream, name, &hello).await else {
        act::alert(client, shared).await;
        return None;
    };
    let client_tls =
        mint::client_handshake(flow, shared, client, name, &verified, counters).await?;
    Some(Legs {
        client: Box::new(client_tls),
        upstream: Box::new(verified.stream),
        alpn: verified.alpn,
    })
}

/// One absolute-form plain-HTTP request through the explicit proxy: the
/// same steps as any flow (decide, dial, inspect, relay, record), answered
/// with a response.
pub async fn plain_http(
    start: FlowStart,
    req: Request<Incoming>,
    shared: &Shared,
) -> Response<Body> {
    let mut flow = Flow::new(start);
    let span = flow.span.clone();
    async move {
        let host = flow.host_name();
        let action = decide::on_http_request(&mut flow, shared, &host);
        let reply = if action == PolicyAction::Block {
            flow.end(CloseReason::Blocked);
            flow.policy_event(
                &*shared.events,
                "policy_block",
                "block",
                &flow.reason.clone(),
            );
            // The flow's connection event (its id is the flow id) records it.
            blocked_page(&flow.reason, Some(flow.id), wants_json(req.headers()))
        } else {
            match upstream::dial(&mut flow, shared).await {
                Err(e) => crate::relay::http::refusal_page(e.status(), &flow.reason),
                Ok(upstream) => {
                    let inspected = action == PolicyAction::Intercept;
                    relay::plain_http(&mut flow, shared, req, upstream, &host, inspected).await
                }
            }
        };
        flow.record(&*shared.events);
        reply
    }
    .instrument(span)
    .await
}
