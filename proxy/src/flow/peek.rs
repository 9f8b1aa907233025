//! Peek: read the first bytes of a flow without consuming them (they are
//! replayed into whichever relay takes the flow), identify them with
//! `gatehouse-inspectors`, and record what was seen in the flow.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatehouse_inspectors::identify::catalog::{Classification, Reason};
use gatehouse_inspectors::identify::{
    identify, identify_final, Identification, Protocol, Transport,
};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::state::Shared;

use super::context::Flow;

/// What the first bytes of a flow are.
#[derive(Debug, Clone)]
pub enum Peeked {
    /// A TLS ClientHello.
    Tls(Hello, Box<Identification>),
    /// Something else, as identified (plain HTTP, XMPP, MTProto, unknown …).
    Other(Box<Identification>),
    /// The client closed, or sent nothing in time.
    Nothing,
}

/// The parts of a ClientHello the proxy decides on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// Server Name Indication, if sent.
    pub sni: Option<String>,
    /// ALPN protocols offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
    /// JA4 fingerprint.
    pub ja4: String,
    /// Encrypted Client Hello offered.
    pub ech: bool,
}

/// Largest prefix we wait for (several records of post-quantum key shares fit).
const MAX_PEEK: usize = 32 * 1024;

/// Reads until the identifier is sure, the peek limit is reached or the
/// client pauses for `timeout`. Returns the verdict and every byte read.
pub async fn peek<S: AsyncRead + Unpin>(
    stream: &mut S,
    port: u16,
    timeout: Duration,
) -> (Peeked, Bytes) {
    let mut buf = BytesMut::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !buf.is_empty() {
            let id = identify(&buf, Transport::Tcp, port);
            if !id.need_more {
                return (verdict(id), buf.freeze());
            }
            if buf.len() >= MAX_PEEK {
                break;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    if buf.is_empty() {
        return (Peeked::Nothing, buf.freeze());
    }
    let id = identify_final(&buf, Transport::Tcp, port);
    (verdict(id), buf.freeze())
}

fn verdict(id: Identification) -> Peeked {
    if id.protocol == Protocol::Tls && id.error.is_none() {
        if let Some(h) = id.client_hello() {
            let hello = Hello {
                sni: h.sni.clone(),
                alpn: h.alpn.clone(),
                ja4: h.ja4.clone(),
                ech: h.ech,
            };
            return Peeked::Tls(hello, Box::new(id));
        }
    }
    Peeked::Other(Box::new(id))
}

/// Classifies what was peeked with the app catalog and records it in
/// `flow` (protocol, app, class, evidence, and the hello's SNI/JA4/ECH).
pub fn record(flow: &mut Flow, shared: &Shared, peeked: &Peeked) {
    let (id, hello) = match peeked {
        Peeked::Nothing => return,
        Peeked::Other(id) => (id, None),
        Peeked::Tls(hello, id) => (id, Some(hello)),
    };
    if let Some(h) = hello {
        flow.seen.sni = h.sni.clone();
        flow.seen.ja4 = Some(h.ja4.clone());
        flow.seen.ech = h.ech;
    }
    let sni = hello.and_then(|h| h.sni.as_deref());
    let cls = shared.catalog.classify(id, sni, flow.port());
    record_identity(flow, id, &cls);
    attribute_by_address(flow, shared, sni);
}

/// Classifies `id` and records it in `flow` without teaching the address
/// book anything: for flows whose server address is not the name they
/// carry (a DNS query goes to a resolver).
pub fn record_unaddressed(flow: &mut Flow, shared: &Shared, id: &Identification) {
    let cls = shared.catalog.classify(id, None, flow.port());
    record_identity(flow, id, &cls);
}

/// Teaches the address book the name this flow reached its server by (its
/// SNI, else a CONNECT host name) and the app it used there; a flow that
/// names nothing and was not recognised is recorded with the app of the
/// name its address was reached by earlier — for the record only: policy
/// and pinning never see it.
fn attribute_by_address(flow: &mut Flow, shared: &Shared, sni: Option<&str>) {
    // Dialed or not yet (a redirected flow is dialed after the decision):
    // the address the client was going to.
    let server = flow.server_addr.map(|a| a.ip()).or_else(|| {
        flow.target
            .as_ref()
            .and_then(|t| t.host.parse::<std::net::IpAddr>().ok())
    });
    let Some(server) = server else {
        return;
    };
    let named = sni.map(str::to_string).or_else(|| {
        flow.target
            .as_ref()
            .filter(|t| t.host.parse::<std::net::IpAddr>().is_err())
            .map(|t| t.host.clone())
    });
    match named {
        Some(name) => shared.addresses.learn_name(&shared.catalog, server, &name),
        None if flow.seen.app.is_none() => {
            if let Some(name) = shared.addresses.name_of(server) {
                // Only for the record: policy decides on what the flow
                // itself shows, so a client that taught the book a name
                // cannot choose which rule its next flow falls under.
                if let Some(app) = shared.catalog.lookup_host(&name) {
                    flow.seen.attributed_app = Some(app.id.clone());
                    flow.seen.evidence.push(format!(
                        "address {server} was reached as {name} by an earlier flow"
                    ));
                }
            }
        }
        None => {}
    }
    if let Some(app) = &flow.seen.app {
        shared.addresses.learn_app(flow.client.ip(), server, app);
    }
}

fn record_identity(flow: &mut Flow, id: &Identification, cls: &Classification) {
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(str::to_string))
    };
    let seen = &mut flow.seen;
    seen.protocol = Some(id.protocol.to_string());
    seen.app = cls.app.clone();
    seen.class = name(serde_json::to_value(cls.class));
    seen.class_reasons = cls
        .reasons
        .iter()
        .filter_map(|r| name(serde_json::to_value(r)))
        .collect();
    seen.evidence = cls.evidence.clone();
    seen.pinned = cls.reasons.contains(&Reason::Pinned);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_is_identified_and_kept() {
        let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (p, bytes) = peek(&mut input, 80, Duration::from_secs(1)).await;
        assert!(matches!(p, Peeked::Other(id) if id.protocol == Protocol::Http));
        assert_eq!(&bytes[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }

    #[tokio::test]
    async fn nothing_from_a_silent_client() {
        let mut input: &[u8] = b"";
        let (p, _) = peek(&mut input, 443, Duration::from_millis(50)).await;
        assert!(matches!(p, Peeked::Nothing));
    }
}
