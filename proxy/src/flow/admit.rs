//! Accept → admit: whether a new client connection may start at all. The
//! same for every listener: the client must be in `allowed_clients`, the
//! event journal must be accepting (fail-closed), and a connection slot
//! must be free. Nothing is read from a refused connection.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::state::Shared;

use super::context::Slot;

/// Why a connection was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not in `proxy.allowed_clients`: closed without an answer (never an
    /// open proxy, and nothing to learn for a scanner).
    ClientNotAllowed,
    /// The event journal is full under `events.full_policy = "fail_closed"`:
    /// a flow that could not be recorded is not served.
    JournalFull,
    /// `proxy.max_connections` connections are open.
    AtCapacity,
}

impl Refusal {
    /// Whether the client is told (a listener that speaks a protocol to the
    /// client answers "service unavailable"; the others close).
    pub fn answered(self) -> bool {
        !matches!(self, Self::ClientNotAllowed)
    }
}

/// Admits `peer` or says why not; logs a refusal. The slot it returns is
/// held by every flow of the connection for as long as any of them lives.
pub fn admit(shared: &Shared, peer: SocketAddr) -> Result<Slot, Refusal> {
    let refusal = if !shared.access.client_allowed(peer.ip()) {
        Refusal::ClientNotAllowed
    } else if !shared.events.accepting() {
        Refusal::JournalFull
    } else {
        match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => return Ok(Arc::new(permit)),
            Err(_) => Refusal::AtCapacity,
        }
    };
    match refusal {
        Refusal::ClientNotAllowed => {
            tracing::warn!(client = %peer, "refused: client not in proxy.allowed_clients")
        }
        Refusal::JournalFull => tracing::warn!(
            client = %peer,
            "refused: event journal full (events.full_policy = fail_closed)"
        ),
        Refusal::AtCapacity => {
            tracing::warn!(client = %peer, "refused: proxy.max_connections reached")
        }
    }
    Err(refusal)
}
