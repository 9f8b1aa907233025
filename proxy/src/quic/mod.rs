//! QUIC at the egress: the transparent UDP listener (`[quic] listen`) for
//! UDP 443 redirected by nftables TPROXY. Each client address and original
//! destination is one flow that takes the flow steps (admit, identify,
//! decide, act, record) like a TCP flow:
//!
//! | file | what |
//! |---|---|
//! | [`socket`] | the TPROXY socket (original destination per datagram), per-flow reply and upstream sockets |
//! | [`table`] | the bounded flow table and the per-client new-flow rate |
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
pub mod refuse;
pub mod socket;
pub mod table;
pub mod udp;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;

use crate::config::QuicConfig;
use crate::flow::admit::admit;
use crate::state::Current;
use tokio_util::sync::CancellationToken;

use self::flow::Ctx;
use self::table::{FlowTable, NewFlowRate, Route};

/// Receives redirected datagrams until the gateway stops accepting, and
/// hands each to its flow (starting flows as admission and limits allow).
/// Each new flow takes the state in force when it starts (a reload
/// changes the policy of new flows, not of flows under way).
pub async fn accept_loop(
    socket: UdpSocket,
    current: Current,
    stop: CancellationToken,
    cfg: QuicConfig,
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
                // One bad datagram (truncated, not redirected) ends nothing.
                tracing::debug!(error = %e, "quic.listen: datagram skipped");
                continue;
            }
        };
        let key = (got.from, got.to);
        let datagram = Bytes::copy_from_slice(&buf[..got.len]);
        let rx = match table.route(key, datagram) {
            Route::Existing => continue,
            Route::Full => {
                dropped += 1;
                None
            }
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
                // Not started: the entry goes, its datagram with it.
                table.remove(&key);
                dropped += 1;
                if last_report.elapsed().as_secs() >= 10 {
                    tracing::warn!(
                        dropped,
                        flows = table.len(),
                        "quic.listen: new flows dropped (quic.max_flows, quic.new_flows_per_second or admission)"
                    );
                    dropped = 0;
                    last_report = Instant::now();
                }
            }
        }
    }
}

/// Binds `[quic] listen` (needs `CAP_NET_ADMIN` for `IP_TRANSPARENT`).
pub fn bind(cfg: &QuicConfig) -> std::io::Result<UdpSocket> {
    socket::bind_listener(cfg.listen)
}
