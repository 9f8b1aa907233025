//! QUIC at the egress: the transparent UDP listener (`[quic] listen`) for
//! UDP 443 redirected by nftables TPROXY. Each client address and original
//! destination is one flow that takes the flow steps (admit, identify,
//! decide, act, record) like a TCP flow:
//!
//! | file | what |
//! |---|---|
//! | [`socket`] | the TPROXY socket (original destination per datagram), per-flow reply and upstream sockets |
//! | [`table`] | the bounded flow table and the per-client new-flow rate |
//! | [`listen`] | the receive loop (shared with the DNS listener): datagrams to their flows, new flows admitted |
//! | [`flow`] | one flow: Initials reassembled and identified, decided, refused or relayed, recorded |
//! | `gquic` | a gQUIC CHLO read across the flow's datagrams |
//! | [`refuse`] | the CONNECTION_CLOSE in a server Initial that makes a blocked client fall back to TCP |
//! | [`intercept`] | `intercept`: the server verified over TCP, then QUIC terminated with quinn |
//! | [`udp`] | the flow's datagrams as a quinn socket (one endpoint per flow) |
//! | [`h3`] | each HTTP/3 request bridged into the HTTP relay and its DLP |
//!
//! May import: `flow`, `state`, `config`, `events`, `policy`, `relay`
//! (counters); never `gateway` or `cli`.

pub mod flow;
mod gquic;
pub mod h3;
pub mod intercept;
pub mod listen;
pub mod refuse;
pub mod socket;
pub mod table;
pub mod udp;

use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::config::QuicConfig;
use crate::state::Current;
use tokio_util::sync::CancellationToken;

use self::flow::Ctx;

/// Receives redirected datagrams until the gateway stops accepting, and
/// hands each to its flow task (started as the table, rate and admission
/// allow; [`listen::run`]).
pub async fn accept_loop(
    socket: UdpSocket,
    current: Current,
    stop: CancellationToken,
    cfg: QuicConfig,
) {
    let limits = listen::Limits {
        section: "quic",
        max_flows: cfg.max_flows,
        new_flows_per_second: cfg.new_flows_per_second,
    };
    listen::run(
        socket,
        current,
        stop,
        limits,
        move |key, rx, slot, shared, table| {
            let tracker = shared.tracker.clone();
            let ctx = Arc::new(Ctx {
                shared,
                cfg: cfg.clone(),
                table,
            });
            tracker.spawn(async move { flow::serve(key, rx, slot, ctx).await });
        },
    )
    .await
}

/// Binds `[quic] listen` (needs `CAP_NET_ADMIN` for `IP_TRANSPARENT`).
pub fn bind(cfg: &QuicConfig) -> std::io::Result<UdpSocket> {
    socket::bind_listener(cfg.listen)
}
