//! Events: every decision the gateway makes, handed to a sink.
//!
//! The durable journal and the ClickHouse shipper implement [`EventSink`];
//! until one is configured, [`LogSink`] writes events to the log.

use std::net::SocketAddr;

use serde::Serialize;

/// One decision or observation of the gateway.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A client connection ended.
    Connection(ConnectionEvent),
}

/// What happened on one client connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnectionEvent {
    /// The client's address.
    pub client: SocketAddr,
    /// Where the client wanted to go (`host:port`), if known.
    pub destination: Option<String>,
    /// What the gateway decided.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// Bytes from client to server.
    pub bytes_up: u64,
    /// Bytes from server to client.
    pub bytes_down: u64,
}

/// Where events go. Implementations must not lose an event they accepted.
pub trait EventSink: Send + Sync + 'static {
    /// Hands over one event.
    fn emit(&self, event: Event);
    /// Makes every accepted event durable; called at shutdown.
    fn flush(&self) {}
}

/// Writes each event to the log at info level.
#[derive(Debug, Default)]
pub struct LogSink;

impl EventSink for LogSink {
    fn emit(&self, event: Event) {
        match serde_json::to_string(&event) {
            Ok(json) => tracing::info!(target: "gatehouse::event", event = %json, "event"),
            Err(e) => tracing::error!(error = %e, "event not serialisable"),
        }
    }
}
