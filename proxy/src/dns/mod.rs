//! DNS at the egress: the transparent UDP listener (`[dns] listen`) for
//! UDP 53 redirected by nftables TPROXY. Each client address and original
//! destination is one flow task (the sockets of `quic::socket`, the table
//! and rate limit of `quic::table`); each query name it asks is one flow
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
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::config::DnsConfig;
use crate::flow::admit::admit;
use crate::quic::socket;
use crate::quic::table::{FlowTable, NewFlowRate, Route};
use crate::state::Current;

use self::flow::Ctx;

/// Receives redirected queries until the gateway stops accepting, and
/// hands each to its flow task (starting tasks as admission and limits
/// allow). Each task takes the state in force when it starts.
pub async fn accept_loop(
    socket: UdpSocket,
    current: Current,
    stop: CancellationToken,
    cfg: DnsConfig,
) {
    let table = FlowTable::new(cfg.max_flows);
    let mut rate = NewFlowRate::new(cfg.new_flows_per_second, cfg.max_flows);
    let mut buf = vec![0u8; 65_535];
    let mut dropped: u64 = 0;
    let mut last_report = Instant::now();
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            r = socket::recv(&socket, &mut buf) => r,
        };
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(error = %e, "dns.listen: datagram skipped");
                continue;
            }
        };
        let key = (got.from, got.to);
        let datagram = Bytes::copy_from_slice(&buf[..got.len]);
        let rx = match table.route(key, datagram) {
            Route::Existing => continue,
            Route::Full => None,
            Route::New(rx) => Some(rx),
        };
        let started = rx.and_then(|rx| {
            if !rate.allow(got.from.ip(), Instant::now()) {
                return None;
            }
            let shared = current.snapshot();
            let slot = admit(&shared, got.from).ok()?;
            Some((rx, slot, shared))
        });
        match started {
            Some((rx, slot, shared)) => {
                let tracker = shared.tracker.clone();
                let ctx = Arc::new(Ctx {
                    shared,
                    cfg: cfg.clone(),
                    table: table.clone(),
                });
                tracker.spawn(async move { flow::serve(key, rx, slot, ctx).await });
            }
            None => {
                table.remove(&key);
                dropped += 1;
                if last_report.elapsed().as_secs() >= 10 {
                    tracing::warn!(
                        dropped,
                        flows = table.len(),
                        "dns.listen: new flows dropped (dns.max_flows, dns.new_flows_per_second or admission)"
                    );
                    dropped = 0;
                    last_report = Instant::now();
                }
            }
        }
    }
}

/// Binds `[dns] listen` (needs `CAP_NET_ADMIN` for `IP_TRANSPARENT`).
pub fn bind(cfg: &DnsConfig) -> std::io::Result<UdpSocket> {
    socket::bind_listener(cfg.listen)
}
