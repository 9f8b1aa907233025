//! The transparent listener: VPN traffic redirected by nftables/iptables,
//! its original destination read from the socket (Linux, IPv4 and IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};

use crate::flow::admit::admit;
use crate::flow::context::Slot;
use crate::flow::{self, FlowStart, Mode, Target};
use crate::state::{Current, Shared};

use super::backoff::AcceptBackoff;
use tokio_util::sync::CancellationToken;

/// Accepts redirected connections until `stop` (the gateway stops
/// accepting, or a reload moved this listener). Each connection keeps the
/// state in force when it was accepted.
pub async fn accept_loop(listener: TcpListener, current: Current, stop: CancellationToken) {
    let own = listener.local_addr().ok();
    let mut backoff = AcceptBackoff::new("proxy.transparent_listen");
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    backoff.failed(&e).await;
                    continue;
                }
            },
        };
        backoff.succeeded();
        let shared = current.snapshot();
        // A redirected flow speaks the client's own protocol: a refusal
        // can only close the connection.
        let Ok(slot) = admit(&shared, peer) else {
            continue;
        };
        let conn_shared = shared.clone();
        shared.tracker.spawn(async move {
            serve(stream, peer, own, slot, conn_shared).await;
        });
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    own: Option<SocketAddr>,
    slot: Slot,
    shared: Shared,
) {
    let _ = stream.set_nodelay(true);
    let target = match original_destination(&stream) {
        Ok(dst) => Some(Target {
            host: dst.ip().to_string(),
            port: dst.port(),
        }),
        Err(e) => {
            tracing::info!(client = %peer, error = %e, "no original destination (not redirected?)");
            None
        }
    };
    let start = FlowStart {
        mode: Mode::Transparent,
        client: peer,
        identity: shared.identities.by_address(peer.ip()),
        target,
        slot: Some(slot),
    };
    if let Ok((flow, upstream)) = flow::connect(start, &shared, own).await {
        flow::serve(flow, stream, upstream, shared).await;
    }
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
