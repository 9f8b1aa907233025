//! One DNS flow task: the queries of one client socket to one resolver
//! address. Each query is read (a datagram that is not a DNS query ends
//! the flow, blocked, with an event), relayed to the resolver (the
//! original destination, checked like any flow's, or `dns.upstream`), and
//! its answer read before it goes back: an answer that cannot be parsed
//! is dropped with an event, never relayed unread; a readable one teaches
//! the address book its addresses and loses its HTTPS records' `h3` (when
//! QUIC is blocked for the name) and `ech` (`dns.strip_ech`).
//!
//! One `connection` event per queried name: the A, AAAA and HTTPS
//! queries a client sends for one name from one socket are one flow; a
//! query for another name from the same socket starts the next flow.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_inspectors::identify::dns::{self, DnsMessage};
use gatehouse_inspectors::identify::svcb::{self, Rewritten, Strip};
use gatehouse_inspectors::identify::{
    identify_final, Details, Identification, Protocol, Transport,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use crate::config::{DnsConfig, QuicAction};
use crate::flow::admit::admit;
use crate::flow::context::{CloseReason, Decision, Flow, Slot};
use crate::flow::peek;
use crate::flow::{FlowStart, Mode, Target};
use crate::quic::socket::{reply_socket, upstream_socket};
use crate::quic::table::{FlowKey, FlowTable};
use crate::state::Shared;

use super::answer;

/// What a flow task works with.
pub struct Ctx {
    /// The gateway's state in force when the task started.
    pub shared: Shared,
    /// `[dns]`.
    pub cfg: DnsConfig,
    /// The flow table (the task removes its entry when it ends).
    pub table: FlowTable,
}

/// Queries one task relays at most; the client's next query after that
/// opens a new task (and takes a token of the per-client rate).
const MAX_QUERIES: usize = 64;

/// How one flow (one queried name) ended.
enum Next {
    /// A query for another name opens the next flow.
    Query(Bytes),
    /// The task is over.
    Done,
    /// Blocked: swallow the rest of the client's datagrams until it is quiet.
    Linger,
}

/// Serves the queries of `key` arriving on `rx` (and, once the reply
/// socket exists, on it: TPROXY hands a flow's later datagrams to it).
pub async fn serve(key: FlowKey, mut rx: mpsc::Receiver<Bytes>, slot: Slot, ctx: Arc<Ctx>) {
    let (client, dst) = key;
    let reply = match reply_socket(dst, client) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "dns: cannot answer from the original destination (IP_TRANSPARENT?)");
            None
        }
    };
    let mut s = Task {
        ctx: &ctx,
        key,
        reply,
        up: None,
        queries: 0,
        buf: vec![0u8; ctx.cfg.max_message_bytes + 1],
    };
    let mut slot = Some(slot);
    let mut next = s.next_datagram(&mut rx).await;
    while let Some(first) = next.take() {
        let slot = match slot.take() {
            Some(s) => s,
            None => match admit(&ctx.shared, client) {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let mut flow = Flow::new(FlowStart {
            mode: Mode::Transparent,
            client,
            identity: ctx.shared.identities.by_address(client.ip()),
            target: Some(Target {
                host: dst.ip().to_string(),
                port: dst.port(),
            }),
            slot: Some(slot),
        });
        flow.transport = "udp";
        let span = flow.span.clone();
        let ended = s.one_name(&mut flow, first, &mut rx).instrument(span).await;
        flow.record(&*ctx.shared.events);
        match ended {
            Next::Query(d) => next = Some(d),
            Next::Done => {}
            Next::Linger => s.linger(&mut rx).await,
        }
    }
    ctx.table.remove(&key);
}

struct Task<'a> {
    ctx: &'a Ctx,
    key: FlowKey,
    /// Bound to the original destination, connected to the client.
    reply: Option<UdpSocket>,
    /// Towards the resolver, once the first query was allowed.
    up: Option<(UdpSocket, SocketAddr)>,
    queries: usize,
    buf: Vec<u8>,
}

impl Task<'_> {
    /// The client's next datagram, or `None` after `dns.query_timeout` of
    /// silence (or when the gateway stops).
    async fn next_datagram(&mut self, rx: &mut mpsc::Receiver<Bytes>) -> Option<Bytes> {
        let idle = self.ctx.cfg.query_timeout;
        let stopping = self.ctx.shared.stopping.clone();
        tokio::select! {
            d = rx.recv() => d,
            d = recv_opt(self.reply.as_ref(), &mut self.buf) => d,
            _ = tokio::time::sleep(idle) => None,
            _ = stopping.cancelled() => None,
        }
    }

    /// The queries for one name: the flow's decision, relay and record.
    async fn one_name(
        &mut self,
        flow: &mut Flow,
        first: Bytes,
        rx: &mut mpsc::Receiver<Bytes>,
    ) -> Next {
        let shared = &self.ctx.shared;
        let cfg = &self.ctx.cfg;
        let query = match read_query(&first, cfg) {
            Ok(q) => q,
            Err(id) => {
                flow.seen.protocol = Some(id.protocol.to_string());
                self.junk(flow, &id, first.len());
                return Next::Linger;
            }
        };
        let qname = query.qname.clone();
        let id =
            Identification::from_parts(Protocol::Dns, Details::Dns(query.clone()), first.len());
        peek::record_unaddressed(flow, shared, &id);
        flow.host = Some(qname.clone());
        if let Err(why) = self.resolver().await {
            flow.flagged = true;
            flow.decide(Decision::Block, why);
            flow.end(CloseReason::Refused);
            return Next::Linger;
        }
        let resolver = self.up.as_ref().map(|u| u.1);
        flow.server_addr = resolver;
        flow.decide(
            Decision::Passthrough,
            format!(
                "DNS query relayed to {}; the answer is read",
                resolver.map(|r| r.to_string()).unwrap_or_default()
            ),
        );
        let mut datagram = first;
        let mut query = query;
        loop {
            self.queries += 1;
            if let Err(close) = self.relay_one(flow, &datagram, &query).await {
                flow.end(close);
                return if close == CloseReason::Blocked {
                    Next::Linger
                } else {
                    Next::Done
                };
            }
            if self.queries >= MAX_QUERIES {
                flow.end(CloseReason::Closed);
                return Next::Done;
            }
            let Some(d) = self.next_datagram(rx).await else {
                flow.end(CloseReason::IdleTimeout);
                return Next::Done;
            };
            match read_query(&d, cfg) {
                Ok(q) if q.qname == qname => {
                    datagram = d;
                    query = q;
                }
                Ok(_) => {
                    flow.end(CloseReason::Closed);
                    return Next::Query(d);
                }
                // Junk after queries: it opens a flow of its own, blocked.
                Err(_) => {
                    flow.end(CloseReason::Closed);
                    return Next::Query(d);
                }
            }
        }
    }

    /// A datagram that is not a DNS query: dropped, the flow blocked and
    /// flagged, with a `policy` event.
    fn junk(&self, flow: &mut Flow, id: &Identification, len: usize) {
        let what = match id.protocol {
            Protocol::Dns => "a DNS message that is not a query".to_string(),
            p => format!("not a DNS query ({p})"),
        };
        flow.flagged = true;
        flow.bytes_up = len as u64;
        flow.decide(
            Decision::Block,
            format!("{what} on UDP {}: dropped", self.key.1.port()),
        );
        flow.end(CloseReason::Blocked);
        flow.policy_event(
            &*self.ctx.shared.events,
            "unparsed",
            "block",
            &flow.reason.clone(),
        );
    }

    /// Opens the socket towards the resolver this flow's queries go to,
    /// once: `dns.upstream`, else the original destination if destination
    /// rules (or `dns.resolvers`) allow it.
    async fn resolver(&mut self) -> Result<(), String> {
        if self.up.is_some() {
            return Ok(());
        }
        let shared = &self.ctx.shared;
        let cfg = &self.ctx.cfg;
        let dst = self.key.1;
        let to = match cfg.upstream {
            Some(u) => u,
            None => {
                let listed = cfg.resolvers.iter().any(|c| c.contains(dst.ip()));
                if shared.own.contains(dst)
                    || !(listed || shared.access.destination_allowed(dst.ip()))
                {
                    return Err(format!(
                        "resolver {dst} is one of the gateway's own listeners or in a private, loopback or link-local range not in dns.resolvers or proxy.allowed_destinations"
                    ));
                }
                dst
            }
        };
        match upstream_socket(to).await {
            Ok(s) => {
                self.up = Some((s, to));
                Ok(())
            }
            Err(e) => Err(format!("cannot reach resolver {to}: {e}")),
        }
    }

    /// Relays one query and its answer. `Err` ends the flow with that close
    /// reason (the answer was dropped).
    async fn relay_one(
        &mut self,
        flow: &mut Flow,
        datagram: &[u8],
        query: &DnsMessage,
    ) -> Result<(), CloseReason> {
        let shared = &self.ctx.shared;
        let cfg = &self.ctx.cfg;
        let Some((up, resolver)) = self.up.as_ref() else {
            return Err(CloseReason::Refused);
        };
        let resolver = *resolver;
        flow.bytes_up += datagram.len() as u64;
        if let Err(e) = up.send(datagram).await {
            flow.decide(
                Decision::Error,
                format!("cannot reach resolver {resolver}: {e}"),
            );
            flow.fail(crate::Side::Upstream, CloseReason::IoError);
            return Err(CloseReason::IoError);
        }
        let deadline = Instant::now() + cfg.query_timeout;
        let answer = loop {
            let n = tokio::select! {
                r = up.recv(&mut self.buf) => match r {
                    Ok(n) => n,
                    // An ICMP error (port unreachable): no answer will come.
                    Err(_) => {
                        flow.seen.evidence.push(format!("resolver {resolver} refused the query (ICMP)"));
                        return Ok(());
                    }
                },
                _ = sleep_until(deadline) => {
                    flow.seen.evidence.push(format!(
                        "no answer from {resolver} within dns.query_timeout ({:?})",
                        cfg.query_timeout
                    ));
                    return Ok(());
                }
            };
            let got = &self.buf[..n];
            // Another transaction's (late or spoofed) answer is not this one's.
            if got.len() >= 2 && got[..2] == datagram[..2] {
                break Bytes::copy_from_slice(got);
            }
        };
        flow.bytes_down += answer.len() as u64;
        let parsed = (answer.len() <= cfg.max_message_bytes)
            .then(|| dns::parse(&answer))
            .flatten()
            .filter(|m| m.response && m.qname == query.qname && m.qtype == query.qtype);
        let Some(parsed) = parsed else {
            self.unreadable(flow, resolver, "cannot be read as the answer to the query");
            return Err(CloseReason::Blocked);
        };
        let name_ttl_cap = u32::try_from(cfg.max_ttl.as_secs()).unwrap_or(u32::MAX);
        for (addr, ttl) in answer::addresses(&parsed) {
            shared.addresses.learn_resolved(
                &shared.catalog,
                addr,
                &query.qname,
                ttl.min(name_ttl_cap),
            );
        }
        let strip = Strip {
            h3: self.h3_blocked(flow, &query.qname),
            ech: cfg.strip_ech,
        };
        let out = match svcb::rewrite(&answer, strip) {
            Ok(Rewritten::Unchanged) => answer,
            Ok(Rewritten::Changed {
                message,
                records_rewritten,
                records_dropped,
            }) => {
                let what = [(strip.h3, "h3"), (strip.ech, "ech")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, w)| *w)
                    .collect::<Vec<_>>()
                    .join(" and ");
                let note = format!(
                    "HTTPS records without {what}: {records_rewritten} rewritten, {records_dropped} dropped"
                );
                if !flow.seen.evidence.contains(&note) {
                    flow.seen.evidence.push(note);
                }
                Bytes::from(message)
            }
            Err(e) => {
                self.unreadable(
                    flow,
                    resolver,
                    &format!("has HTTPS records that cannot be rewritten ({e})"),
                );
                return Err(CloseReason::Blocked);
            }
        };
        if let Some(reply) = self.reply.as_ref() {
            if let Err(e) = reply.send(&out).await {
                tracing::debug!(error = %e, "dns: answer not delivered");
            }
        }
        Ok(())
    }

    /// Whether HTTP/3 hints go: QUIC is blocked for the name and the
    /// gateway strips `h3` from Alt-Svc.
    fn h3_blocked(&self, flow: &Flow, qname: &str) -> bool {
        let shared = &self.ctx.shared;
        if !shared.config.strip_alt_svc() {
            return false;
        }
        let name = svcb::https_name(qname);
        let app = shared.catalog.lookup_host(name).map(|a| a.id.clone());
        shared
            .policy
            .decide_quic(Some(name), app.as_deref(), &flow.identity)
            .action
            == QuicAction::Block
    }

    /// An answer that is not relayed: the flow is blocked and flagged.
    fn unreadable(&self, flow: &mut Flow, resolver: SocketAddr, why: &str) {
        flow.flagged = true;
        flow.decide(
            Decision::Block,
            format!("the answer from {resolver} {why}: dropped, not relayed"),
        );
        flow.policy_event(
            &*self.ctx.shared.events,
            "unparsed",
            "block",
            &flow.reason.clone(),
        );
    }

    /// After a block: the client's datagrams are swallowed until it has
    /// been quiet a while, so a stream of junk costs one event.
    async fn linger(&mut self, rx: &mut mpsc::Receiver<Bytes>) {
        let until = Instant::now() + std::time::Duration::from_secs(5);
        while Instant::now() < until {
            if self.next_datagram(rx).await.is_none() {
                return;
            }
        }
    }
}

/// The query in `datagram`, or what it is instead.
fn read_query(datagram: &[u8], cfg: &DnsConfig) -> Result<DnsMessage, Box<Identification>> {
    if datagram.len() > cfg.max_message_bytes {
        return Err(Box::new(Identification::malformed(
            Protocol::Dns,
            "query larger than dns.max_message_bytes",
            datagram.len(),
        )));
    }
    match dns::parse(datagram) {
        Some(m) if !m.response => Ok(m),
        Some(m) => Err(Box::new(Identification::from_parts(
            Protocol::Dns,
            Details::Dns(m),
            datagram.len(),
        ))),
        None => Err(Box::new(identify_final(datagram, Transport::Udp, 53))),
    }
}

/// The next datagram on `socket`; pending forever without one.
async fn recv_opt(socket: Option<&UdpSocket>, buf: &mut [u8]) -> Option<Bytes> {
    match socket {
        None => std::future::pending().await,
        Some(s) => match s.recv(buf).await {
            Ok(n) => Some(Bytes::copy_from_slice(&buf[..n])),
            Err(_) => std::future::pending().await,
        },
    }
}
