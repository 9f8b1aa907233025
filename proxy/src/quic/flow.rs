//! One QUIC flow through the flow steps: admitted by the listener, its
//! client Initials reassembled (bounded in bytes and time) and identified
//! like a TCP flow's first bytes ([`peek::record`]), decided by the same
//! policy with the rules' `quic` key, then refused (a CONNECTION_CLOSE the
//! client reads at once) or relayed datagram by datagram, and recorded as
//! one `connection` event (`transport = "udp"`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_inspectors::identify::gquic::looks_like_gquic;
use gatehouse_inspectors::identify::quic::{InitialParser, QuicHello};
use gatehouse_inspectors::identify::{
    identify_final, Details, Identification, Protocol, Transport,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use crate::config::{QuicAction, QuicConfig};
use crate::flow::context::{CloseReason, Decision, Flow, Slot};
use crate::flow::peek::{self, Hello, Peeked};
use crate::flow::{FlowStart, Mode, Target};
use crate::relay::count::Counters;
use crate::state::Shared;

use super::gquic::Chlo;
use super::refuse::{connection_close, initial_header, InitialHeader};
use super::socket::{reply_socket, upstream_socket};
use super::table::{FlowKey, FlowTable};

/// What a flow task works with.
pub struct Ctx {
    /// The gateway's state in force when the flow started.
    pub shared: Shared,
    /// `[quic]`.
    pub cfg: QuicConfig,
    /// The flow table (the task removes its entry when it ends).
    pub table: FlowTable,
}

/// Largest datagram a flow reads (a jumbo frame): QUIC keeps datagrams
/// within the path MTU, and a flow's buffers are what the flow table's
/// bound multiplies.
const MAX_DATAGRAM: usize = 9_216;
/// Answers to retransmitted Initials of a refused flow, at most.
const MAX_REFUSALS: u32 = 4;

/// How the client's first datagrams ended.
enum Start {
    /// A complete ClientHello from IETF QUIC Initials.
    Quic(Box<QuicHello>, usize),
    /// A complete gQUIC hello (or another UDP protocol): decided on what it names.
    Other(Box<Identification>),
    /// Initials that cannot be read, or that did not complete in time or size.
    Unreadable(String),
    /// The client went away.
    Gone,
}

/// Serves the flow of `key` whose datagrams arrive on `rx`.
pub async fn serve(key: FlowKey, mut rx: mpsc::Receiver<Bytes>, slot: Slot, ctx: Arc<Ctx>) {
    let (client, dst) = key;
    let shared = &ctx.shared;
    let mut flow = Flow::new(FlowStart {
        mode: Mode::Transparent,
        client,
        identity: shared.identities.by_address(client.ip()),
        target: Some(Target {
            host: dst.ip().to_string(),
            port: dst.port(),
        }),
        slot: Some(slot),
    });
    flow.transport = "udp";
    let span = flow.span.clone();
    async {
        let mut s = Served {
            ctx: &ctx,
            key,
            reply: None,
            header: None,
            held: Vec::new(),
        };
        s.run(&mut flow, &mut rx).await;
        flow.record(&*ctx.shared.events);
        s.linger(&mut rx).await;
    }
    .instrument(span)
    .await;
    ctx.table.remove(&key);
}

pub(super) struct Served<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) key: FlowKey,
    /// Bound to the original destination, connected to the client.
    pub(super) reply: Option<UdpSocket>,
    /// The client's first Initial header, when it had one.
    header: Option<InitialHeader>,
    /// Client datagrams held until the decision.
    pub(super) held: Vec<Bytes>,
}

impl Served<'_> {
    async fn run(&mut self, flow: &mut Flow, rx: &mut mpsc::Receiver<Bytes>) {
        let shared = &self.ctx.shared;
        let start = self.start(rx).await;
        let mut client_hello = None;
        let host = match start {
            Start::Gone => {
                flow.decide(Decision::None, "client sent nothing");
                flow.end(CloseReason::ClientClosed);
                return;
            }
            Start::Unreadable(why) => {
                // Fail closed: what cannot be read is refused, fast.
                flow.seen.protocol = Some("quic".into());
                flow.flagged = true;
                self.refuse(
                    flow,
                    format!("malformed QUIC Initial: {why}"),
                    CloseReason::MalformedClientHello,
                )
                .await;
                flow.policy_event(&*shared.events, "unparsed", "block", &flow.reason.clone());
                return;
            }
            Start::Quic(q, bytes) => {
                let hello = Hello {
                    sni: q.hello.sni.clone(),
                    alpn: q.hello.alpn.clone(),
                    ja4: q.hello.ja4.clone(),
                    ech: q.hello.ech,
                };
                let id = Identification::from_parts(Protocol::Quic, Details::Quic(q), bytes);
                peek::record(flow, shared, &Peeked::Tls(hello.clone(), Box::new(id)));
                client_hello = Some(hello);
                flow.host_name()
            }
            Start::Other(id) => {
                if let Some(h) = id.client_hello() {
                    flow.seen.ja4 = Some(h.ja4.clone());
                }
                flow.seen.sni = id.server_name().map(str::to_string);
                let is_quic = id.protocol == Protocol::Quic && id.error.is_none();
                peek::record(flow, shared, &Peeked::Other(id));
                if !is_quic {
                    let p = flow.seen.protocol.clone().unwrap_or_default();
                    flow.flagged = true;
                    self.refuse(
                        flow,
                        format!("not a QUIC Initial ({p}): dropped"),
                        CloseReason::Blocked,
                    )
                    .await;
                    return;
                }
                flow.host_name()
            }
        };
        let decision =
            shared
                .policy
                .decide_quic(Some(&host), flow.seen.app.as_deref(), &flow.identity);
        let reason = decision.reason;
        match decision.action {
            QuicAction::Block => {
                self.refuse(flow, reason, CloseReason::Blocked).await;
                if decision.by_rule {
                    flow.policy_event(
                        &*shared.events,
                        "policy_block",
                        "block",
                        &flow.reason.clone(),
                    );
                }
            }
            QuicAction::Intercept => match client_hello {
                Some(hello) if hello.sni.is_some() => {
                    self.intercept(flow, rx, host, hello, reason).await
                }
                // No name to verify the server for and mint a leaf (or a
                // gQUIC hello, which cannot be terminated): refused, so the
                // client uses TCP, where the same rule decides.
                _ => {
                    let why = format!("{reason}; QUIC without a server name (or gQUIC) cannot be intercepted: refused so the client uses TCP");
                    self.refuse(flow, why, CloseReason::Blocked).await;
                }
            },
            QuicAction::Pass => {
                self.pass(flow, rx, reason).await;
            }
        }
    }

    /// Reads the client's first datagrams until they say what the flow is.
    async fn start(&mut self, rx: &mut mpsc::Receiver<Bytes>) -> Start {
        let cfg = &self.ctx.cfg;
        let Some(first) = rx.recv().await else {
            return Start::Gone;
        };
        let port = self.key.1.port();
        self.header = initial_header(&first);
        if self.header.is_none() && looks_like_gquic(&first) == Some(true) {
            return match super::gquic::collect(first, rx, cfg, &mut self.held).await {
                Chlo::Done(id) => Start::Other(id),
                Chlo::Unreadable(why) => Start::Unreadable(why),
                Chlo::Gone => Start::Gone,
            };
        }
        if self.header.is_none() {
            let id = identify_final(&first, Transport::Udp, port);
            self.held.push(first);
            return Start::Other(Box::new(id));
        }
        match reply_socket(self.key.1, self.key.0) {
            Ok(s) => self.reply = Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot answer from the original destination (IP_TRANSPARENT?)")
            }
        }
        let deadline = Instant::now() + cfg.initial_timeout;
        let mut parser = InitialParser::new();
        let mut held_bytes = 0;
        let mut datagram = first;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            held_bytes += datagram.len();
            let parsed = parser.push_datagram(&datagram);
            self.held.push(datagram);
            match parsed {
                Ok(Some(h)) => return Start::Quic(Box::new(h), held_bytes),
                Ok(None) => {}
                Err(e) => return Start::Unreadable(e.to_string()),
            }
            if held_bytes >= cfg.initial_max_bytes {
                return Start::Unreadable(format!(
                    "no complete ClientHello in quic.initial_max_bytes ({})",
                    cfg.initial_max_bytes
                ));
            }
            datagram = tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => d,
                    None => return Start::Gone,
                },
                d = recv_opt(self.reply.as_ref(), &mut buf) => match d {
                    Some(d) => d,
                    None => return Start::Gone,
                },
                _ = sleep_until(deadline) => return Start::Unreadable(format!(
                    "ClientHello incomplete after quic.initial_timeout ({:?})",
                    cfg.initial_timeout
                )),
            };
        }
    }

    /// Refuses the flow: a CONNECTION_CLOSE in a server Initial when the
    /// client sent one (it then falls back to TCP at once), else nothing.
    pub(super) async fn refuse(&mut self, flow: &mut Flow, reason: String, close: CloseReason) {
        flow.decide(Decision::Block, reason);
        flow.end(close);
        self.send_close(flow).await;
    }

    pub(super) async fn send_close(&self, flow: &Flow) {
        let (Some(reply), Some(h)) = (self.reply.as_ref(), self.header.as_ref()) else {
            return;
        };
        let scid: [u8; 8] = rand::random();
        let text = format!("blocked by the gateway (flow {})", flow.id);
        if let Some(pkt) = connection_close(h, &scid, &text) {
            if let Err(e) = reply.send(&pkt).await {
                tracing::debug!(error = %e, "refusal not sent");
            }
        }
    }

    /// Relays datagrams both ways unread until the flow is idle.
    async fn pass(&mut self, flow: &mut Flow, rx: &mut mpsc::Receiver<Bytes>, reason: String) {
        let shared = &self.ctx.shared;
        let dst = self.key.1;
        if shared.own.contains(dst) || !shared.access.destination_allowed(dst.ip()) {
            let why = format!(
                "destination {dst} is one of the gateway's own listeners or in a private, loopback or link-local range"
            );
            self.refuse(flow, why, CloseReason::Refused).await;
            return;
        }
        if self.reply.is_none() {
            match reply_socket(dst, self.key.0) {
                Ok(s) => self.reply = Some(s),
                Err(e) => {
                    flow.decide(Decision::Error, format!("cannot answer from {dst}: {e}"));
                    flow.fail(crate::Side::Internal, CloseReason::IoError);
                    return;
                }
            }
        }
        let up = match upstream_socket(dst).await {
            Ok(s) => s,
            Err(e) => {
                flow.decide(Decision::Error, format!("cannot reach {dst}: {e}"));
                flow.fail(crate::Side::Upstream, CloseReason::Refused);
                return;
            }
        };
        flow.server_addr = Some(dst);
        flow.decide(Decision::Passthrough, reason);
        flow.flagged = true;
        let counters = Arc::new(Counters::default());
        let updates = flow.updates(
            counters.clone(),
            None,
            shared.events.clone(),
            shared.config.events.flow_update_interval,
        );
        let reply = self.reply.as_ref().expect("set above");
        let close = tokio::select! {
            c = relay(rx, reply, &up, std::mem::take(&mut self.held), &counters, self.ctx) => c,
            never = updates => match never {},
        };
        flow.bytes_up = counters.read.load(Relaxed);
        flow.bytes_down = counters.written.load(Relaxed);
        flow.end(close);
    }

    /// After a refusal: answer retransmitted Initials again (a few times)
    /// and swallow the rest of the flow's datagrams until it goes quiet, so
    /// a refused flow costs one event, not one per datagram.
    async fn linger(&mut self, rx: &mut mpsc::Receiver<Bytes>) {
        let quiet = self
            .ctx
            .cfg
            .idle_timeout
            .min(std::time::Duration::from_secs(5));
        let mut refusals = 0;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let stopping = self.ctx.shared.stopping.clone();
        loop {
            let d = tokio::select! {
                d = rx.recv() => d,
                d = recv_opt(self.reply.as_ref(), &mut buf) => d,
                _ = tokio::time::sleep(quiet) => None,
                _ = stopping.cancelled() => None,
            };
            let Some(d) = d else { return };
            if refusals < MAX_REFUSALS && initial_header(&d).is_some() && self.header.is_some() {
                refusals += 1;
                if let (Some(reply), Some(h)) = (self.reply.as_ref(), self.header.as_ref()) {
                    let scid: [u8; 8] = rand::random();
                    if let Some(pkt) = connection_close(h, &scid, "blocked by the gateway") {
                        let _ = reply.send(&pkt).await;
                    }
                }
            }
        }
    }
}

/// The next datagram on `socket`; pending forever without one.
async fn recv_opt(socket: Option<&UdpSocket>, buf: &mut [u8]) -> Option<Bytes> {
    match socket {
        None => std::future::pending().await,
        Some(s) => match s.recv(buf).await {
            Ok(n) => Some(Bytes::copy_from_slice(&buf[..n])),
            // An ICMP error from the client's side: nothing to relay.
            Err(_) => std::future::pending().await,
        },
    }
}

/// Datagrams both ways until nothing moves for `quic.idle_timeout`.
///
/// Each readable socket is drained in batches (`recvmmsg`): with `UDP_GRO`
/// one read takes a train of same-size datagrams (as GSO senders such as
/// quinn send them) and one GSO send passes it on, boundaries and ECN
/// marks unchanged (quinn-udp): about three times the bytes per CPU-second
/// of a plain `recv`/`send` per datagram on a quinn transfer
/// (`benches/quic_relay.rs`). The idle timer and the abort wait live as
/// long as the flow, not one per datagram.
async fn relay(
    rx: &mut mpsc::Receiver<Bytes>,
    reply: &UdpSocket,
    up: &UdpSocket,
    held: Vec<Bytes>,
    counters: &Counters,
    ctx: &Ctx,
) -> CloseReason {
    for d in held {
        counters.read.fetch_add(d.len() as u64, Relaxed);
        let _ = up.send(&d).await;
    }
    let (Ok(client), Ok(server)) = (reply.peer_addr(), up.peer_addr()) else {
        return CloseReason::IoError;
    };
    let (Ok(client_side), Ok(server_side)) = (
        quinn_udp::UdpSocketState::new(reply.into()),
        quinn_udp::UdpSocketState::new(up.into()),
    ) else {
        return CloseReason::IoError;
    };
    let idle = ctx.cfg.idle_timeout;
    let mut last = Instant::now();
    let abort = ctx.shared.abort.cancelled();
    tokio::pin!(abort);
    let idle_timer = sleep_until(last + idle);
    tokio::pin!(idle_timer);
    loop {
        tokio::select! {
            _ = &mut abort => return CloseReason::Shutdown,
            _ = &mut idle_timer => {
                if Instant::now() >= last + idle {
                    return CloseReason::IdleTimeout;
                }
                idle_timer.as_mut().reset(last + idle);
                continue;
            }
            d = rx.recv() => {
                let Some(d) = d else { return CloseReason::Shutdown };
                counters.read.fetch_add(d.len() as u64, Relaxed);
                let _ = up.send(&d).await;
            }
            r = reply.readable() => {
                if r.is_ok() {
                    forward((reply, &client_side), (up, &server_side, server), &counters.read);
                }
            }
            r = up.readable() => {
                if r.is_ok() {
                    forward((up, &server_side), (reply, &client_side, client), &counters.written);
                }
            }
        }
        last = Instant::now();
    }
}

/// Reads per wake-up of one socket, at most (the other direction and the
/// timers get their turn after).
const RELAY_BATCH: usize = 8;
/// Messages one read (`recvmmsg`) takes, at most.
const RECV_MESSAGES: usize = 8;
/// One message's buffer: the kernel's most GRO segments (64) of the
/// largest datagram a flow relays.
const GRO_BUFFER: usize = 64 * MAX_DATAGRAM;

thread_local! {
    /// Shared by the flows of a worker thread: filled and sent on without
    /// yielding, so no flow holds it across an await (pages never written
    /// are never resident).
    static SCRATCH: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0; RECV_MESSAGES * GRO_BUFFER]);
}

/// Passes on what `from` has queued to `to`'s peer `dest`. A datagram the
/// other side's socket cannot take now is dropped, as a router would.
fn forward(
    (from, from_state): (&UdpSocket, &quinn_udp::UdpSocketState),
    (to, to_state, dest): (&UdpSocket, &quinn_udp::UdpSocketState, std::net::SocketAddr),
    count: &AtomicU64,
) {
    use std::io::{ErrorKind, IoSliceMut};
    use tokio::io::Interest;
    SCRATCH.with_borrow_mut(|scratch| {
        for _ in 0..RELAY_BATCH {
            let mut meta = [quinn_udp::RecvMeta::default(); RECV_MESSAGES];
            let mut bufs: Vec<IoSliceMut<'_>> = scratch
                .chunks_mut(GRO_BUFFER)
                .map(IoSliceMut::new)
                .collect();
            let got = from.try_io(Interest::READABLE, || {
                from_state.recv(from.into(), &mut bufs, &mut meta)
            });
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // An ICMP error from that side: nothing to relay.
                Err(_) => continue,
            };
            for (m, buf) in meta.iter().zip(bufs.iter()).take(n) {
                count.fetch_add(m.len as u64, Relaxed);
                let stride = m.stride.max(1);
                let per_send = to_state.max_gso_segments().max(1) * stride;
                for chunk in buf[..m.len].chunks(per_send) {
                    let t = quinn_udp::Transmit {
                        destination: dest,
                        ecn: m.ecn,
                        contents: chunk,
                        segment_size: (chunk.len() > stride).then_some(stride),
                        src_ip: None,
                    };
                    let _ = to.try_io(Interest::WRITABLE, || to_state.try_send(to.into(), &t));
                }
            }
        }
    });
}
