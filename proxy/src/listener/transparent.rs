//! The transparent listener: VPN traffic redirected by nftables/iptables,
//! its original destination read from the socket (Linux, IPv4 and IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};

use crate::events::{now_ms, ConnectionEvent, Event};
use crate::gateway::Shared;
use crate::intercept::{self, FlowStart};

/// Accepts redirected connections until the gateway stops accepting.
pub async fn accept_loop(listener: TcpListener, shared: Shared) {
    let own = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.stopping.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "transparent accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !shared.access.client_allowed(peer.ip()) {
            tracing::warn!(client = %peer, "refused: client not in proxy.allowed_clients");
            continue;
        }
        if !shared.events.accepting() {
            tracing::warn!(client = %peer, "refused: event journal full");
            continue;
        }
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, "refused: proxy.max_connections reached");
            continue;
        };
        let conn_shared = shared.clone();
        shared.tracker.spawn(async move {
            serve(stream, peer, own, conn_shared).await;
            drop(slot);
        });
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, own: Option<SocketAddr>, shared: Shared) {
    let _ = stream.set_nodelay(true);
    let identity = shared.identities.by_address(peer.ip());
    let refuse = |reason: String, dst: Option<SocketAddr>| {
        tracing::info!(client = %peer, %reason, "transparent flow refused");
        shared.events.emit(Event::Connection(ConnectionEvent {
            flow_id: uuid::Uuid::now_v7(),
            mode: "transparent".into(),
            client: peer,
            user: identity.user.clone().unwrap_or_default(),
            device: identity.device.clone().unwrap_or_default(),
            destination: dst.map(|d| d.to_string()),
            decision: "block".into(),
            reason,
            flagged: true,
            started_ms: now_ms(),
            ended_ms: now_ms(),
            close_reason: "refused".into(),
            ..ConnectionEvent::default()
        }));
    };
    let dst = match original_destination(&stream) {
        Ok(d) => d,
        Err(e) => {
            return refuse(
                format!("no original destination (not redirected?): {e}"),
                None,
            )
        }
    };
    // A connection made straight to the listener would loop back into us.
    if Some(dst) == own || own.is_some_and(|o| o.port() == dst.port() && is_local(dst.ip())) {
        return refuse(
            "connection addressed to the gateway itself".into(),
            Some(dst),
        );
    }
    if !shared.access.destination_allowed(dst.ip()) {
        return refuse(
            format!("destination {dst} is in a private, loopback or link-local range"),
            Some(dst),
        );
    }
    let timeout = shared.config.upstream.connect_timeout;
    let upstream = match tokio::time::timeout(timeout, TcpStream::connect(dst)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return refuse(format!("cannot connect to {dst}: {e}"), Some(dst)),
        Err(_) => return refuse(format!("connecting to {dst} timed out"), Some(dst)),
    };
    let _ = upstream.set_nodelay(true);
    let start = FlowStart {
        mode: "transparent",
        client: peer,
        identity,
        host: dst.ip().to_string(),
        port: dst.port(),
        upstream,
    };
    intercept::serve(stream, start, shared).await;
}

fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

/// The destination the client addressed before the redirect rewrote it.
pub fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let local = stream.local_addr()?;
    let mapped_v4 = match local {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
        SocketAddr::V4(_) => true,
    };
    if mapped_v4 {
        let sin = getsockopt(stream, sockopt::OriginalDst).map_err(std::io::Error::from)?;
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
    } else {
        let sin6 = getsockopt(stream, sockopt::Ip6tOriginalDst).map_err(std::io::Error::from)?;
        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        Ok(SocketAddr::new(
            IpAddr::V6(ip),
            u16::from_be(sin6.sin6_port),
        ))
    }
}
