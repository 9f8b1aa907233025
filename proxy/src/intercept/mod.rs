//! One client flow from its first bytes to its end: peek, decide, verify the
//! upstream first, mint, relay with inspection, record.

pub mod count;
pub mod hooks;
pub mod http;
pub mod peek;
pub mod rewind;
pub mod tls;
pub mod upstream;
pub mod websocket;
pub mod xmpp;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::config::PolicyAction;
use crate::events::{now_ms, ConnectionEvent, Event};
use crate::gateway::Shared;
use crate::listener::splice;
use crate::policy::Identity;
use gatehouse_inspectors::identify::catalog::{Classification, Reason};
use gatehouse_inspectors::identify::{Identification, Protocol};

use count::{Counted, Counters, Tapped};
use hooks::FlowContext;
use peek::{peek, Hello, Peeked};
use rewind::Rewind;

/// How a flow reached the gateway, and where it goes.
#[derive(Debug)]
pub struct FlowStart {
    /// `explicit` or `transparent`.
    pub mode: &'static str,
    /// The client's address.
    pub client: SocketAddr,
    /// Who the client is.
    pub identity: Identity,
    /// The CONNECT host (a name or an address), or the original destination address.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// The TCP connection to the real server, already made.
    pub upstream: TcpStream,
}

/// Serves one client flow to its end and emits its `connection` event.
pub async fn serve<S>(mut client: S, start: FlowStart, shared: Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ev = ConnectionEvent {
        flow_id: uuid::Uuid::now_v7(),
        mode: start.mode.into(),
        client: start.client,
        user: start.identity.user.clone().unwrap_or_default(),
        device: start.identity.device.clone().unwrap_or_default(),
        destination: Some(host_port(&start.host, start.port)),
        server_addr: start.upstream.peer_addr().ok(),
        started_ms: now_ms(),
        ..ConnectionEvent::default()
    };
    let requested_host = start.host.clone();
    let timeout = shared.config.proxy.header_read_timeout;
    let (peeked, first) = peek(&mut client, start.port, timeout).await;
    let client_stream = Rewind::new(first, client);
    match peeked {
        Peeked::Nothing => {
            ev.decision = "none".into();
            ev.reason = "client sent nothing".into();
            ev.close_reason = "client_closed".into();
        }
        Peeked::Other(id) => {
            let cls = shared.catalog.classify(&id, None, start.port);
            record_identity(&mut ev, &id, &cls);
            let host = id.server_name().map(str::to_string);
            let decision =
                shared
                    .policy
                    .decide(host.as_deref(), cls.app.as_deref(), false, &start.identity);
            if id.protocol == Protocol::Tls {
                // A ClientHello we cannot parse must not become an unread
                // passthrough: that would be a way around inspection.
                ev.decision = "block".into();
                ev.reason = format!(
                    "malformed TLS ClientHello: {}",
                    id.error.as_deref().unwrap_or("unparsable")
                );
                ev.flagged = true;
                ev.close_reason = "malformed_client_hello".into();
            } else if decision.action == PolicyAction::Block {
                ev.decision = "block".into();
                ev.reason = decision.reason;
                ev.close_reason = "blocked".into();
            } else if id.protocol == Protocol::Xmpp && decision.action == PolicyAction::Intercept {
                let domain = host.unwrap_or_else(|| start.host.clone());
                // Boxed: rare, and it would otherwise size every flow's future.
                Box::pin(xmpp_flow(
                    client_stream,
                    start,
                    domain,
                    cls.app.clone(),
                    &shared,
                    &mut ev,
                ))
                .await;
            } else {
                let why = format!("{} is not TLS: relayed unread", id.protocol);
                passthrough(client_stream, start.upstream, &shared, &mut ev, &why).await;
            }
        }
        Peeked::Tls(hello, id) => {
            ev.sni = hello.sni.clone();
            ev.ja4 = Some(hello.ja4.clone());
            ev.ech = hello.ech;
            let cls = shared
                .catalog
                .classify(&id, hello.sni.as_deref(), start.port);
            record_identity(&mut ev, &id, &cls);
            let pinned = cls.reasons.contains(&Reason::Pinned);
            let app = cls.app.clone();
            // Not kept for the life of the flow.
            drop((id, cls));
            let name = hello
                .sni
                .clone()
                .or_else(|| (start.host.parse::<IpAddr>().is_err()).then(|| start.host.clone()));
            match name {
                None => {
                    passthrough(
                        client_stream,
                        start.upstream,
                        &shared,
                        &mut ev,
                        "TLS without a server name",
                    )
                    .await;
                }
                Some(name) => {
                    tls_flow(
                        client_stream,
                        start,
                        hello,
                        name,
                        (app, pinned),
                        &shared,
                        &mut ev,
                    )
                    .await;
                }
            }
        }
    }
    ev.ended_ms = now_ms();
    ev.duration_ms = ev.ended_ms.saturating_sub(ev.started_ms);
    if ev.host.is_empty() {
        ev.host = ev.sni.clone().unwrap_or(requested_host);
    }
    if ev.class.as_deref() == Some("opaque") && ev.decision == "passthrough" {
        shared.events.emit(Event::OpaqueTunnel(opaque_tunnel(&ev)));
    }
    shared.events.emit(Event::Connection(ev));
}

/// XMPP: relay the plaintext negotiation, then intercept the TLS that
/// STARTTLS begins, upstream first as always.
async fn xmpp_flow<S>(
    mut client: Rewind<S>,
    mut start: FlowStart,
    domain: String,
    app: Option<String>,
    shared: &Shared,
    ev: &mut ConnectionEvent,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle = shared.config.proxy.idle_timeout;
    match xmpp::negotiate(&mut client, &mut start.upstream, idle).await {
        xmpp::Negotiation::Ended { up, down, reason } => {
            ev.decision = "passthrough".into();
            ev.reason = "xmpp stream without STARTTLS".into();
            ev.flagged = true;
            (ev.bytes_up, ev.bytes_down) = (up, down);
            ev.close_reason = reason.into();
        }
        xmpp::Negotiation::StartTls { .. } => {
            let timeout = shared.config.proxy.header_read_timeout;
            let (peeked, first) = peek(&mut client, start.port, timeout).await;
            let client = Rewind::new(first, client);
            match peeked {
                Peeked::Tls(hello, _) => {
                    ev.sni = hello.sni.clone();
                    ev.ja4 = Some(hello.ja4.clone());
                    let name = hello.sni.clone().unwrap_or(domain);
                    tls_flow(client, start, hello, name, (app, false), shared, ev).await;
                    ev.reason = format!("xmpp STARTTLS: {}", ev.reason);
                }
                _ => {
                    passthrough(
                        client,
                        start.upstream,
                        shared,
                        ev,
                        "xmpp: no TLS after <proceed/>",
                    )
                    .await;
                }
            }
        }
    }
}

async fn tls_flow<S>(
    client: Rewind<S>,
    start: FlowStart,
    hello: Hello,
    name: String,
    (app, pinned): (Option<String>, bool),
    shared: &Shared,
    ev: &mut ConnectionEvent,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client_ip = start.client.ip();
    if shared.pinning.is_pinned(client_ip, &name, Instant::now()) {
        return passthrough(
            client,
            start.upstream,
            shared,
            ev,
            "learned pinning: client refuses our certificate",
        )
        .await;
    }
    let decision = shared
        .policy
        .decide(Some(&name), app.as_deref(), pinned, &start.identity);
    match decision.action {
        PolicyAction::Block => {
            ev.decision = "block".into();
            ev.reason = decision.reason;
            ev.close_reason = "blocked".into();
            policy_event(
                shared,
                ev,
                &name,
                "policy_block",
                "block",
                &ev.reason.clone(),
            );
            refuse(client, shared).await;
        }
        PolicyAction::Passthrough => {
            let reason = decision.reason;
            passthrough(client, start.upstream, shared, ev, &reason).await;
            ev.flagged = decision.flagged;
        }
        PolicyAction::Intercept => {
            ev.decision = "intercept".into();
            ev.reason = decision.reason;
            intercept(client, start, hello, name, shared, ev).await;
        }
    }
}

async fn intercept<S>(
    client: Rewind<S>,
    start: FlowStart,
    hello: Hello,
    name: String,
    shared: &Shared,
    ev: &mut ConnectionEvent,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    // Boxed: the handshakes' state (two rustls connections mid-handshake,
    // the verified chain, timers) is freed when they finish instead of
    // sizing this flow's future for as long as it relays.
    let legs = Box::pin(handshakes(
        client,
        start.upstream,
        start.client,
        hello,
        &name,
        shared,
        ev,
        &counters,
    ))
    .await;
    let Some(Legs {
        client: client_tls,
        upstream,
        alpn,
    }) = legs
    else {
        fill_bytes(ev, &counters);
        return;
    };

    let flow = Arc::new(FlowContext {
        id: ev.flow_id,
        client: start.client,
        user: start.identity.user.clone(),
        device: start.identity.device.clone(),
        host: name,
        alpn: ev.alpn.clone(),
    });
    let hooks = Arc::new(Mutex::new(shared.interceptor.open(&flow)));
    let relay = http::HttpRelay {
        flow: flow.clone(),
        hooks: hooks.clone(),
        window: shared.config.intercept.inspect_window,
        window_wait: Duration::from_millis(500),
        header_timeout: shared.config.proxy.header_read_timeout,
        max_header_bytes: shared.config.proxy.max_header_bytes,
        idle: shared.config.proxy.idle_timeout,
        abort: shared.abort.clone(),
    };
    let outcome = match alpn.as_deref() {
        Some(b"h2") => run_http(client_tls, upstream, true, relay, shared, &counters).await,
        Some(b"http/1.1") => run_http(client_tls, upstream, false, relay, shared, &counters).await,
        None => {
            // No ALPN: HTTP/1.1 if the client speaks it, else bytes.
            let mut client_tls = client_tls;
            let mut first = vec![0u8; 8];
            let n = tokio::time::timeout(Duration::from_millis(500), client_tls.read(&mut first))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            first.truncate(n);
            let looks_http = n > 0
                && first.iter().take_while(|b| b.is_ascii_uppercase()).count() >= 3
                && first.contains(&b' ');
            let client = Rewind::new(Bytes::from(first), client_tls);
            if looks_http {
                run_http(client, upstream, false, relay, shared, &counters).await
            } else {
                let tapped = Tapped::new(client, flow.clone(), hooks.clone());
                byte_relay(tapped, upstream, shared).await
            }
        }
        Some(_) => {
            let tapped = Tapped::new(client_tls, flow.clone(), hooks.clone());
            byte_relay(tapped, upstream, shared).await
        }
    };
    hooks.lock().expect("hooks lock").on_close(&flow);
    ev.close_reason = outcome;
    fill_bytes(ev, &counters);
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

/// Upstream first (verified), then the client with a leaf for `name`.
/// Records the outcome in `ev`; `None` when the flow ends here.
#[allow(clippy::too_many_arguments)]
async fn handshakes<S>(
    client: Rewind<S>,
    upstream: TcpStream,
    peer: SocketAddr,
    hello: Hello,
    name: &str,
    shared: &Shared,
    ev: &mut ConnectionEvent,
    counters: &Arc<Counters>,
) -> Option<Legs<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Upstream first: only a verified server earns the client a leaf.
    let verified = match shared.upstream.handshake(upstream, name, &hello.alpn).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(host = %name, reason = e.reason(), error = %e, "upstream refused: client gets a TLS alert");
            ev.decision = "block".into();
            ev.verification = Some(e.reason().into());
            ev.reason = format!("upstream verification failed: {e}");
            ev.flagged = true;
            ev.close_reason = "upstream_unverified".into();
            policy_event(
                shared,
                ev,
                name,
                "upstream_rejected",
                "block",
                &ev.reason.clone(),
            );
            refuse(client, shared).await;
            return None;
        }
    };
    ev.upstream_cert_sha256 = Some(verified.fingerprint.clone());
    ev.upstream_tls = Some(format!("{} {}", verified.version, verified.suite));
    ev.verification = Some(match &verified.exception {
        Some(failed) => format!("exception: {failed}"),
        None => "ok".into(),
    });
    ev.alpn = verified
        .alpn
        .as_ref()
        .map(|a| String::from_utf8_lossy(a).into_owned());

    let leaf = match shared.leaf_for(name, &verified.leaf) {
        Ok(l) => l,
        Err(e) => {
            ev.decision = "block".into();
            ev.reason = format!("no leaf for {name}: {e}");
            ev.flagged = true;
            ev.close_reason = "leaf_refused".into();
            refuse(client, shared).await;
            return None;
        }
    };
    let acceptor = TlsAcceptor::from(tls::server_config(leaf, verified.alpn.as_deref()));
    let counted = Counted::new(client, counters.clone());
    let handshake = tokio::time::timeout(
        shared.config.proxy.header_read_timeout,
        acceptor.accept(counted),
    )
    .await;
    let client_tls = match handshake {
        Ok(Ok(s)) => {
            shared.pinning.record_success(peer.ip(), name);
            s
        }
        Ok(Err(e)) => {
            let pin_abort = is_pin_abort(&e);
            ev.close_reason = "client_tls_error".into();
            ev.reason = format!("client handshake failed: {e}");
            if pin_abort && shared.pinning.record_abort(peer.ip(), name, Instant::now()) {
                tracing::warn!(client = %peer, host = %name, "client pins its certificates: passthrough learned");
                ev.reason = format!(
                    "client refused our certificate ({e}); pinning learned: passthrough for {:?}",
                    shared.config.intercept.pinning_ttl
                );
                ev.flagged = true;
                policy_event(
                    shared,
                    ev,
                    name,
                    "pinning_bypass",
                    "passthrough",
                    &ev.reason.clone(),
                );
            }
            return None;
        }
        Err(_) => {
            ev.close_reason = "client_tls_timeout".into();
            return None;
        }
    };
    {
        let (_, conn) = client_tls.get_ref();
        ev.client_tls = Some(format!(
            "{} {}",
            conn.protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            conn.negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default()
        ));
    }
    Some(Legs {
        client: Box::new(client_tls),
        upstream: Box::new(verified.stream),
        alpn: verified.alpn,
    })
}

/// Non-HTTP protocols inside TLS: bytes both ways, shown to the hooks.
async fn byte_relay<C, U>(client: C, upstream: U, shared: &Shared) -> String
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let done = splice(
        client,
        upstream,
        shared.config.proxy.idle_timeout,
        &shared.abort,
    )
    .await;
    done.reason.as_str().to_string()
}

async fn run_http<C, U>(
    client: C,
    upstream: U,
    h2: bool,
    relay: http::HttpRelay,
    shared: &Shared,
    counters: &Counters,
) -> String
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::select! {
        _ = idle_watch(counters, shared.config.proxy.idle_timeout) => "idle_timeout".into(),
        r = http::relay(client, upstream, h2, relay) => match r {
            Ok(()) => "closed".into(),
            Err(e) => {
                tracing::debug!(error = %e, "http relay ended");
                "http_error".into()
            }
        },
        _ = shared.abort.cancelled() => "shutdown".into(),
    }
}

/// Resolves once no byte has moved on the client leg for `idle` (keep-alive
/// connections included; hyper itself has no idle timeout).
async fn idle_watch(c: &Counters, idle: Duration) {
    use std::sync::atomic::Ordering;
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

fn fill_bytes(ev: &mut ConnectionEvent, c: &Counters) {
    use std::sync::atomic::Ordering;
    ev.bytes_up = c.read.load(Ordering::Relaxed);
    ev.bytes_down = c.written.load(Ordering::Relaxed);
}

/// A `policy` event: blocks, upstream rejections, learned pinning bypasses.
fn policy_event(
    shared: &Shared,
    ev: &ConnectionEvent,
    host: &str,
    kind: &str,
    action: &str,
    reason: &str,
) {
    shared
        .events
        .emit(Event::Policy(crate::events::PolicyEvent {
            flow_id: ev.flow_id,
            client: ev.client,
            user: ev.user.clone(),
            device: ev.device.clone(),
            app: ev.app.clone(),
            host: host.to_string(),
            kind: kind.into(),
            action: action.into(),
            rule: None,
            reason: reason.into(),
        }));
}

/// The `opaque_tunnel` event of a flow that passed through unread.
fn opaque_tunnel(ev: &ConnectionEvent) -> crate::events::OpaqueTunnelEvent {
    crate::events::OpaqueTunnelEvent {
        flow_id: ev.flow_id,
        client: ev.client,
        user: ev.user.clone(),
        device: ev.device.clone(),
        app: ev.app.clone(),
        host: ev.host.clone(),
        protocol: ev.protocol.clone().unwrap_or_default(),
        class: "opaque".into(),
        action: ev.decision.clone(),
        bytes_up: ev.bytes_up,
        bytes_down: ev.bytes_down,
        reason: ev.class_reasons.join(","),
        evidence: ev.evidence.join("; "),
        confidence: if ev.app.is_some() { "high" } else { "low" }.into(),
        duration_ms: ev.duration_ms,
    }
}

/// Copies what the identifier and the catalog said into the event.
fn record_identity(ev: &mut ConnectionEvent, id: &Identification, cls: &Classification) {
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(str::to_string))
    };
    ev.protocol = Some(id.protocol.to_string());
    ev.app = cls.app.clone();
    ev.class = name(serde_json::to_value(cls.class));
    ev.class_reasons = cls
        .reasons
        .iter()
        .filter_map(|r| name(serde_json::to_value(r)))
        .collect();
    ev.evidence = cls.evidence.clone();
}

/// Splices the flow unread.
async fn passthrough<S>(
    client: Rewind<S>,
    upstream: TcpStream,
    shared: &Shared,
    ev: &mut ConnectionEvent,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    ev.decision = "passthrough".into();
    ev.reason = reason.into();
    ev.flagged = true;
    let done = splice(
        client,
        upstream,
        shared.config.proxy.idle_timeout,
        &shared.abort,
    )
    .await;
    ev.bytes_up = done.up;
    ev.bytes_down = done.down;
    ev.close_reason = done.reason.as_str().into();
}

/// Fails the client's handshake with an alert, never presenting a certificate.
async fn refuse<S>(client: Rewind<S>, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls::refusing_config());
    let _ = tokio::time::timeout(
        shared.config.proxy.header_read_timeout,
        acceptor.accept(client),
    )
    .await;
}

/// A client that aborts after seeing our leaf: a certificate alert, or a
/// close before the handshake finished.
fn is_pin_abort(e: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    if e.kind() == std::io::ErrorKind::UnexpectedEof
        || e.kind() == std::io::ErrorKind::ConnectionReset
    {
        return true;
    }
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            A::BadCertificate | A::UnknownCA | A::CertificateUnknown
        ))
    )
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
