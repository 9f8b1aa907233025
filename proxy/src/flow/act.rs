//! Act: carry out a decision on the flow as a whole — a TLS alert without a
//! certificate, a block, or a passthrough splice (metadata only, always
//! recorded). Verdicts on single messages are carried out by the relays.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::relay::count::{Counted, Counters};
use crate::relay::rewind::Rewind;
use crate::state::Shared;
use crate::tls;

use super::context::{Decision, Flow};
use super::decide::Block;

/// Fails the client's handshake with an alert, never presenting a certificate.
pub async fn alert<S>(client: Rewind<S>, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls::client::refusing_config());
    let _ = tokio::time::timeout(
        shared.config.proxy.header_read_timeout,
        acceptor.accept(client),
    )
    .await;
}

/// Blocks the flow as decided: recorded, a `policy` event when the block
/// calls for one, and the connection closed (after a TLS alert when asked).
pub async fn block<S>(flow: &mut Flow, shared: &Shared, client: Rewind<S>, block: Block)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    flow.decide(Decision::Block, block.reason);
    flow.flagged = block.flagged;
    flow.end(block.close);
    if let Some(kind) = block.policy_event {
        flow.policy_event(&*shared.events, kind, "block", &flow.reason.clone());
    }
    if block.tls_alert {
        alert(client, shared).await;
    }
}

/// Splices the flow unread, recording why and the bytes moved.
pub async fn passthrough<S>(
    flow: &mut Flow,
    shared: &Shared,
    client: Rewind<S>,
    upstream: TcpStream,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    flow.decide(Decision::Passthrough, reason);
    flow.flagged = true;
    let bytes = Arc::new(Counters::default());
    let updates = flow.updates(
        bytes.clone(),
        None,
        shared.events.clone(),
        shared.config.events.flow_update_interval,
    );
    let client = Counted::new(client, bytes);
    let done = tokio::select! {
        done = super::relay::spliced(client, upstream, shared) => done,
        never = updates => match never {},
    };
    flow.bytes_up = done.up;
    flow.bytes_down = done.down;
    flow.end(done.reason.into());
}
