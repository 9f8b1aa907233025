//! `quic = "intercept"`: upstream first — the real server is dialed over
//! TCP to the same address and port and verified for the name exactly as a
//! TCP flow's upstream is ([`upstream::dial`], [`upstream::verify`]: the
//! same destination rules, roots, pinning exceptions) — and only then is
//! QUIC terminated with a leaf minted for that name ([`mint::leaf_for`]).
//! quinn serves the flow on its own datagrams ([`FlowSocket`]), TLS 1.3
//! only, ALPN `h3` only, no 0-RTT (no session tickets, so no replayable
//! early data); h3 reads its requests and [`super::h3`] hands each to the
//! HTTP relay, which sends it upstream over the verified connection
//! (HTTP/2 when the server offers it, else HTTP/1.1).
//!
//! Anything that fails before the client has a connection (destination
//! refused, verification failed, no leaf) refuses the QUIC flow with the
//! CONNECTION_CLOSE a `block` gets, so the client falls back to TCP, where
//! the same rules apply, and the flow's event says why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use tokio::sync::mpsc;

use crate::config::{PinningMode, QuicConfig};
use crate::error::Side;
use crate::flow::context::{CloseReason, Decision, Flow};
use crate::flow::peek::Hello;
use crate::flow::{decide, inspect, mint, upstream};
use crate::relay::count::Counters;
use crate::relay::http::Forwarder;
use crate::tls;

use super::flow::Served;
use super::h3::H3Conn;
use super::udp::FlowSocket;

/// What the upstream is offered: the protocols the relay speaks to it.
const UPSTREAM_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

impl Served<'_> {
    /// Carries out `intercept` on a flow whose Initials are held.
    pub(super) async fn intercept(
        &mut self,
        flow: &mut Flow,
        rx: &mut mpsc::Receiver<Bytes>,
        name: String,
        hello: Hello,
        reason: String,
    ) {
        let shared = self.ctx.shared.clone();
        if shared.config.intercept.pinning == PinningMode::Learn
            && shared
                .pinning
                .is_pinned(&decide::pinning_key(flow), &name, Instant::now())
        {
            // Over TCP the same client gets the learned passthrough.
            let why = format!(
                "learned pinning: client refuses our certificate ({}); QUIC refused so it uses TCP",
                decide::pinning_key(flow)
            );
            self.refuse(flow, why, CloseReason::Blocked).await;
            return;
        }
        // Upstream first, over TCP: the same dial (destination rules, own
        // listeners) and verification as a TCP flow to this name.
        let Ok(tcp) = upstream::dial(flow, &shared).await else {
            self.send_close(flow).await;
            return;
        };
        let offer = Hello {
            alpn: UPSTREAM_ALPN.iter().map(|a| a.to_vec()).collect(),
            ..hello
        };
        let Some(verified) = upstream::verify(flow, &shared, tcp, &name, &offer).await else {
            self.send_close(flow).await;
            return;
        };
        let leaf = match mint::leaf_for(&shared, &name, &verified.leaf) {
            Ok(l) => l,
            Err(e) => {
                flow.decide(Decision::Block, format!("no leaf for {name}: {e}"));
                flow.flagged = true;
                flow.fail(Side::Internal, CloseReason::LeafRefused);
                self.send_close(flow).await;
                return;
            }
        };
        let Some(reply) = self.reply.take() else {
            flow.decide(
                Decision::Error,
                "cannot answer from the original destination (IP_TRANSPARENT?)",
            );
            flow.fail(Side::Internal, CloseReason::IoError);
            return;
        };
        let server =
            match server_config(leaf, &self.ctx.cfg, shared.config.intercept.inspect_window) {
                Ok(s) => s,
                Err(e) => {
                    flow.decide(Decision::Error, format!("QUIC server config: {e}"));
                    flow.fail(Side::Internal, CloseReason::LeafRefused);
                    return;
                }
            };
        flow.decide(Decision::Intercept, reason);
        flow.host = Some(name.clone());
        // The client leg is HTTP/3 whatever the upstream speaks.
        let upstream_alpn = verified.alpn.clone();
        flow.tls.alpn = Some("h3".into());
        flow.tls.client = Some("TLSv1_3 QUIC".into());

        let counters = Arc::new(Counters::default());
        let (client, dst) = self.key;
        let queue = std::mem::replace(rx, mpsc::channel(1).1);
        let socket = FlowSocket::new(
            client,
            dst,
            std::mem::take(&mut self.held),
            queue,
            Arc::new(reply),
            counters.clone(),
        );
        let endpoint = match quinn::Endpoint::new_with_abstract_socket(
            EndpointConfig::default(),
            Some(server),
            Arc::new(socket),
            Arc::new(quinn::TokioRuntime),
        ) {
            Ok(e) => e,
            Err(e) => {
                flow.decide(Decision::Error, format!("QUIC endpoint: {e}"));
                flow.fail(Side::Internal, CloseReason::IoError);
                return;
            }
        };
        let close = Box::pin(self.terminate(
            flow,
            &endpoint,
            &name,
            verified.stream,
            upstream_alpn,
            &counters,
        ))
        .await;
        endpoint.close(VarInt::from_u32(0x100), b"");
        flow.end(close);
        flow.bytes_up = counters.read.load(std::sync::atomic::Ordering::Relaxed);
        flow.bytes_down = counters.written.load(std::sync::atomic::Ordering::Relaxed);
    }

    /// The client's QUIC handshake, then its HTTP/3 requests until the
    /// connection ends; how it ended.
    async fn terminate(
        &self,
        flow: &mut Flow,
        endpoint: &quinn::Endpoint,
        name: &str,
        upstream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        alpn: Option<Vec<u8>>,
        counters: &Arc<Counters>,
    ) -> CloseReason {
        let shared = &self.ctx.shared;
        let timeout = shared.config.proxy.header_read_timeout;
        let handshake = async {
            let incoming = endpoint.accept().await.ok_or("endpoint closed")?;
            let connecting = incoming.accept().map_err(|e| e.to_string())?;
            connecting.await.map_err(|e| e.to_string())
        };
        let conn = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                flow.reason = format!("client QUIC handshake failed: {e}");
                return CloseReason::ClientTlsError;
            }
            Err(_) => return CloseReason::ClientTlsTimeout,
        };
        if shared.config.intercept.pinning == PinningMode::Learn {
            shared
                .pinning
                .record_success(&decide::pinning_key(flow), name);
        }
        let (ctx, hooks) = inspect::open(flow, shared, name, true);
        let relay = inspect::http_relay_of(flow, shared, &ctx, &hooks);
        let requests = relay.requests.clone();
        let h2 = alpn.as_deref() == Some(b"h2");
        let redial = upstream::redialer(flow, shared, name, alpn);
        let fwd = match Forwarder::open(upstream, h2, relay, redial).await {
            Ok(f) => f,
            Err(e) => {
                conn.close(VarInt::from_u32(0x0102), b"upstream failed"); // H3_INTERNAL_ERROR
                flow.reason = format!("{}; upstream HTTP: {e}", flow.reason);
                flow.side = Some(Side::Upstream);
                inspect::close(&ctx, &hooks);
                return CloseReason::HttpError;
            }
        };
        let updates = flow.updates(
            counters.clone(),
            Some(requests),
            shared.events.clone(),
            shared.config.events.flow_update_interval,
        );
        let quic = conn.clone();
        let served = serve_h3(
            conn,
            &fwd,
            shared.config.proxy.max_header_bytes,
            &*shared.events,
        );
        let close = tokio::select! {
            c = served => c,
            never = updates => match never {},
            _ = shared.abort.cancelled() => {
                quic.close(VarInt::from_u32(0x0100), b"gateway shutting down"); // H3_NO_ERROR
                CloseReason::Shutdown
            }
        };
        inspect::close(&ctx, &hooks);
        match quic.close_reason() {
            Some(quinn::ConnectionError::TimedOut) => CloseReason::IdleTimeout,
            Some(
                quinn::ConnectionError::ApplicationClosed(_)
                | quinn::ConnectionError::ConnectionClosed(_),
            ) if close != CloseReason::Shutdown => CloseReason::ClientClosed,
            _ => close,
        }
    }
}

/// Accepts request streams and serves them side by side until the
/// connection ends.
async fn serve_h3(
    conn: quinn::Connection,
    fwd: &Forwarder,
    max_header_bytes: usize,
    events: &dyn crate::events::EventSink,
) -> CloseReason {
    let built = h3::server::builder()
        .max_field_section_size(max_header_bytes as u64)
        .build::<H3Conn, Bytes>(h3_quinn::Connection::new(conn))
        .await;
    let mut h3 = match built {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "h3 connection not set up");
            return CloseReason::HttpError;
        }
    };
    let mut streams = FuturesUnordered::new();
    let mut refusals = 0u32;
    let mut record = |r: Option<super::h3::Refusal>| {
        if let Some(r) = r {
            refusals += 1;
            if refusals <= super::h3::MAX_REFUSAL_EVENTS {
                super::h3::record_refusal(fwd, events, &r);
            }
        }
    };
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => streams.push(super::h3::serve(resolver, fwd)),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "h3 connection ended");
                    break;
                }
            },
            Some(r) = streams.next(), if !streams.is_empty() => record(r),
        }
    }
    // Let the requests under way finish their answers.
    while let Some(r) = streams.next().await {
        record(r);
    }
    CloseReason::Closed
}

/// quinn's server side of one intercepted flow: the leaf, TLS 1.3 and ALPN
/// `h3` only, no tickets (so no 0-RTT), and the `[quic]` bounds.
fn server_config(
    leaf: Arc<rustls::sign::CertifiedKey>,
    cfg: &QuicConfig,
    inspect_window: usize,
) -> Result<quinn::ServerConfig, String> {
    let mut tls = rustls::ServerConfig::builder_with_provider(tls::upstream::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(leaf)));
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport(cfg, inspect_window)?));
    // The flow is one client address: a migrated path is another flow.
    server.migration(false);
    Ok(server)
}

/// Stream flow-control windows: a request body's inspection window fits
/// in one, within bounds.
fn transport(cfg: &QuicConfig, inspect_window: usize) -> Result<TransportConfig, String> {
    const MIN_WINDOW: usize = 64 * 1024;
    const MAX_WINDOW: usize = 4 * 1024 * 1024;
    let stream = inspect_window.clamp(MIN_WINDOW, MAX_WINDOW) as u32;
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(cfg.idle_timeout.min(Duration::from_secs(3600)))
            .map_err(|e| e.to_string())?,
    ));
    t.max_concurrent_bidi_streams(VarInt::from_u32(cfg.max_streams));
    // The client's control and QPACK streams (and a grease one).
    t.max_concurrent_uni_streams(VarInt::from_u32(8));
    t.stream_receive_window(VarInt::from_u32(stream));
    t.receive_window(VarInt::from_u32(stream.saturating_mul(4)));
    t.send_window(u64::from(stream) * 4);
    // No unreliable datagrams (nothing would read them).
    t.datagram_receive_buffer_size(None);
    Ok(t)
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}
