//! DNS at the egress: the transparent UDP listener (`[dns] listen`) for
//! UDP 53 redirected by nftables TPROXY. Each client address and original
//! destination is one flow task (the receive loop of `quic::listen`, the
//! sockets of `quic::socket`, the table and rate limit of `quic::table`); each query name it asks is one flow
//! with its `connection` event (protocol `dns`, the queried name as host,
//! the app of that name).
//!
//! | file | what |
//! |---|---|
//! | [`flow`] | one flow task: queries read, relayed to the resolver, answers read, learnt, rewritten, relayed back |
//! | [`answer`] | what an answer teaches the address book (A/AAAA along CNAME chains) |
//!
//! DNS over TCP 53 is not taken here: it reaches the transparent TCP
//! listener like any redirected TCP flow.
//!
//! May import: `flow`, `state`, `config`, `events`, `policy`, `quic`
//! (its sockets and table); never `gateway` or `cli`.

pub mod answer;
pub mod flow;

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::config::DnsConfig;
use crate::quic::socket;
use crate::state::Current;

use self::flow::Ctx;

/// Receives redirected datagrams until the gateway stops accepting, and
/// hands each to its flow task (started as the table, rate and admission
/// allow; [`crate::quic::listen::run`]).
pub async fn accept_loop(
    socket: UdpSocket,
    current: Current,
    stop: CancellationToken,
    cfg: DnsConfig,
) {
    let limits = crate::quic::listen::Limits {
        section: "dns",
        max_flows: cfg.max_flows,
        new_flows_per_second: cfg.new_flows_per_second,
    };
    crate::quic::listen::run(
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

/// Binds `[dns] listen` (needs `CAP_NET_ADMIN` for `IP_TRANSPARENT`).
pub fn bind(cfg: &DnsConfig) -> std::io::Result<UdpSocket> {
    socket::bind_listener(cfg.listen)
}
