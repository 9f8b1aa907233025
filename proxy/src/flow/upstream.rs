//! Upstream first: dial the real server (destination access checked before
//! any connection is attempted) and, for TLS, verify it before the client
//! is offered anything.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::error::Side;
use crate::relay::http::{Io, Redial, Redialing};
use crate::state::Shared;
use crate::tls::upstream::Verified;

use super::context::{CloseReason, Decision, Flow, Target};
use super::peek::Hello;

/// Why the real server could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialError {
    /// The destination is in a denied range, or is one of the gateway's
    /// own listeners.
    Denied,
    /// The name did not resolve.
    Unresolved,
    /// Resolving or connecting took longer than `upstream.connect_timeout`.
    TimedOut,
    /// No address accepted the connection.
    Unreachable,
}

impl DialError {
    /// The status the explicit proxy answers with.
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::Denied => http::StatusCode::FORBIDDEN,
            Self::TimedOut => http::StatusCode::GATEWAY_TIMEOUT,
            Self::Unresolved | Self::Unreachable => http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// Connects `flow` to its target: resolves a name, refuses denied
/// addresses before connecting, and tries the allowed ones in turn. On
/// failure the flow is decided `block` with the reason, and the error says
/// what kind of failure it was (the explicit proxy answers with it).
pub async fn dial(flow: &mut Flow, shared: &Shared) -> Result<TcpStream, DialError> {
    let Some(Target { host, port }) = flow.target.clone() else {
        return Err(refuse(
            flow,
            DialError::Denied,
            "no original destination (not redirected?)".into(),
        ));
    };
    let timeout = shared.config.upstream.connect_timeout;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                .await
            {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => {
                    let why = format!("cannot resolve {host}: {e}");
                    return Err(refuse(flow, DialError::Unresolved, why));
                }
                Err(_) => {
                    let why = format!("resolving {host} timed out");
                    return Err(refuse(flow, DialError::TimedOut, why));
                }
            }
        }
    };
    if let Some(own) = addrs.iter().find(|a| shared.own.contains(**a)) {
        // Even with loopback allowed: a tunnel into the gateway nests flows
        // and loses attribution; the admin listener is not for clients.
        let why = format!("destination {own} is one of the gateway's own listeners");
        return Err(refuse(flow, DialError::Denied, why));
    }
    let allowed: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| shared.access.destination_allowed(a.ip()))
        .collect();
    if allowed.is_empty() {
        let why = format!(
            "destination {} is in a private, loopback or link-local range (or embeds such an IPv4 address)",
            flow.target
                .as_ref()
                .map(Target::host_port)
                .unwrap_or_default()
        );
        return Err(refuse(flow, DialError::Denied, why));
    }
    let mut last = (DialError::Unreachable, String::new());
    for addr in allowed {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                flow.server_addr = s.peer_addr().ok();
                return Ok(s);
            }
            Ok(Err(e)) => {
                last = (
                    DialError::Unreachable,
                    format!("cannot connect to {addr}: {e}"),
                )
            }
            Err(_) => {
                last = (
                    DialError::TimedOut,
                    format!("connecting to {addr} timed out"),
                )
            }
        }
    }
    Err(refuse(flow, last.0, last.1))
}

/// A redirected flow addressed to the transparent listener itself would
/// loop back into the gateway: refused like a denied destination.
pub fn refuse_self(flow: &mut Flow, own: Option<SocketAddr>) -> Result<(), DialError> {
    let Some(dst) = flow
        .target
        .as_ref()
        .and_then(|t| Some(SocketAddr::new(t.host.parse().ok()?, t.port)))
    else {
        return Ok(());
    };
    let local = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    if Some(dst) == own || own.is_some_and(|o| o.port() == dst.port() && local(dst.ip())) {
        let why = format!("destination {dst} is one of the gateway's own listeners");
        return Err(refuse(flow, DialError::Denied, why));
    }
    Ok(())
}

fn refuse(flow: &mut Flow, kind: DialError, why: String) -> DialError {
    {
        let _in = flow.span.enter();
        tracing::info!(reason = %why, "flow refused before connecting");
    }
    // A denied destination is policy; a name that does not resolve or a
    // server that does not answer is an error, not a block (browsers'
    // background lookups would otherwise count as blocks).
    let decision = if kind == DialError::Denied {
        Decision::Block
    } else {
        Decision::Error
    };
    flow.decide(decision, why);
    flow.flagged = kind == DialError::Denied;
    let side = if kind == DialError::Denied {
        Side::Client
    } else {
        Side::Upstream
    };
    flow.fail(side, CloseReason::Refused);
    kind
}

/// How an intercepted flow reopens its upstream when the server closed a
/// kept-alive connection: the same server address (already checked), the
/// same name, verified by the same upstream TLS client, offering only the
/// ALPN protocol the relay speaks. `None` when the flow has no server
/// address.
pub fn redialer(flow: &Flow, shared: &Shared, name: &str, alpn: Option<Vec<u8>>) -> Option<Redial> {
    let addr = flow.server_addr?;
    let (shared, name) = (shared.clone(), name.to_string());
    let offer: Vec<Vec<u8>> = alpn.iter().cloned().collect();
    let redial: Redial = Arc::new(move || -> Redialing {
        let (shared, name, offer, alpn) =
            (shared.clone(), name.clone(), offer.clone(), alpn.clone());
        Box::pin(async move {
            let timeout = shared.config.upstream.connect_timeout;
            let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
                Err(_) => return Err(format!("connecting to {addr} timed out")),
            };
            let _ = tcp.set_nodelay(true);
            let v = shared
                .upstream
                .handshake(tcp, &name, &offer)
                .await
                .map_err(|e| {
                    tracing::warn!(host = %name, reason = e.reason(), error = %e, "upstream refused on reconnect");
                    format!("upstream verification failed: {e}")
                })?;
            if v.alpn != alpn {
                return Err("the server chose another protocol on reconnect".into());
            }
            Ok(Box::new(v.stream) as Box<dyn Io>)
        })
    });
    Some(redial)
}

/// Verifies the real server for `name` over `upstream`, offering the
/// client's ALPN list. Records the outcome; `None` when it failed (the
/// flow is then decided `block`, and the client must get an alert).
pub async fn verify(
    flow: &mut Flow,
    shared: &Shared,
    upstream: TcpStream,
    name: &str,
    hello: &Hello,
) -> Option<Verified> {
    match shared.upstream.handshake(upstream, name, &hello.alpn).await {
        Ok(v) => {
            flow.tls.upstream_cert_sha256 = Some(v.fingerprint.clone());
            flow.tls.upstream = Some(format!("{} {}", v.version, v.suite));
            flow.tls.verification = Some(match &v.exception {
                Some(failed) => format!("exception: {failed}"),
                None => "ok".into(),
            });
            flow.tls.alpn = v
                .alpn
                .as_ref()
                .map(|a| String::from_utf8_lossy(a).into_owned());
            Some(v)
        }
        Err(e) => {
            tracing::warn!(host = %name, reason = e.reason(), error = %e, "upstream refused: client gets a TLS alert");
            flow.decide(
                Decision::Block,
                format!("upstream verification failed: {e}"),
            );
            flow.tls.verification = Some(e.reason().into());
            flow.flagged = true;
            flow.end(CloseReason::UpstreamUnverified);
            flow.policy_event(
                &*shared.events,
                "upstream_rejected",
                "block",
                &flow.reason.clone(),
            );
            None
        }
    }
}
