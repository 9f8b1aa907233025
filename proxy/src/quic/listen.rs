//! The loop both transparent UDP listeners run (`[quic] listen` and
//! `[dns] listen`): datagrams received with their original destination,
//! routed to their flow's task by (client, original destination), and new
//! flows started as the flow table, the per-client new-flow rate and
//! client admission allow. Each new flow takes the state in force when it
//! starts (a reload changes the policy of new flows, not of flows under
//! way).

use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::flow::admit::admit;
use crate::flow::context::Slot;
use crate::state::{Current, Shared};

use super::socket;
use super::table::{FlowKey, FlowTable, NewFlowRate, Route};

/// One listener's name and bounds, as its config section spells them.
pub struct Limits {
    /// `quic` or `dns`: the section, in log lines.
    pub section: &'static str,
    /// `*.max_flows`.
    pub max_flows: usize,
    /// `*.new_flows_per_second`.
    pub new_flows_per_second: u32,
}

/// What starts one admitted flow: its key, the receiver of its datagrams
/// (the first one queued), its admission slot, the state in force, and the
/// table (whose entry the flow removes when it ends).
pub trait Start: FnMut(FlowKey, mpsc::Receiver<Bytes>, Slot, Shared, FlowTable) {}
impl<F: FnMut(FlowKey, mpsc::Receiver<Bytes>, Slot, Shared, FlowTable)> Start for F {}

/// Receives redirected datagrams until `stop`, handing each to its flow and
/// starting flows through `start`.
pub async fn run(
    socket: UdpSocket,
    current: Current,
    stop: CancellationToken,
    limits: Limits,
    mut start: impl Start,
) {
    let section = limits.section;
    let table = FlowTable::new(limits.max_flows);
    let mut rate = NewFlowRate::new(limits.new_flows_per_second, limits.max_flows);
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
                tracing::debug!(error = %e, "{section}.listen: datagram skipped");
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
            Some((rx, slot, shared)) => start(key, rx, slot, shared, table.clone()),
            None => {
                // Not started: the entry goes, its datagram with it.
                table.remove(&key);
                dropped += 1;
                if last_report.elapsed().as_secs() >= 10 {
                    tracing::warn!(
                        dropped,
                        flows = table.len(),
                        "{section}.listen: new flows dropped ({section}.max_flows, {section}.new_flows_per_second or admission)"
                    );
                    dropped = 0;
                    last_report = Instant::now();
                }
            }
        }
    }
}
