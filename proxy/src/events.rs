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
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ConnectionEvent {
    /// The flow (every event of this connection carries it).
    pub flow_id: Option<uuid::Uuid>,
    /// `explicit` or `transparent`.
    pub mode: String,
    /// The client's address.
    pub client: Option<SocketAddr>,
    /// User, if known.
    pub user: Option<String>,
    /// Device, if known.
    pub device: Option<String>,
    /// Where the client wanted to go (`host:port`), if known.
    pub destination: Option<String>,
    /// The server address connected to.
    pub server_addr: Option<SocketAddr>,
    /// TLS server name the client asked for.
    pub sni: Option<String>,
    /// Protocol identified from the first bytes (tls, http, xmpp, mtproto, …).
    pub protocol: Option<String>,
    /// App id from the catalog (slack, whatsapp, …), if recognised.
    pub app: Option<String>,
    /// inspectable, metadata-only or opaque.
    pub class: Option<String>,
    /// Why not inspectable: pinned, e2ee, non-tls-encryption.
    pub class_reasons: Vec<String>,
    /// How the app and class were concluded.
    pub evidence: Vec<String>,
    /// JA4 fingerprint of the ClientHello.
    pub ja4: Option<String>,
    /// The client offered Encrypted Client Hello.
    pub ech: bool,
    /// ALPN protocol in use.
    pub alpn: Option<String>,
    /// Client leg TLS version and suite.
    pub client_tls: Option<String>,
    /// Upstream leg TLS version and suite.
    pub upstream_tls: Option<String>,
    /// SHA-256 of the upstream end-entity certificate.
    pub upstream_cert_sha256: Option<String>,
    /// `ok`, or why upstream verification failed.
    pub verification: Option<String>,
    /// What the gateway decided: intercept, passthrough, block.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// A passthrough or failure the security team should look at.
    pub flagged: bool,
    /// Bytes from client to server.
    pub bytes_up: u64,
    /// Bytes from server to client.
    pub bytes_down: u64,
    /// Start, epoch milliseconds.
    pub started_ms: u64,
    /// End, epoch milliseconds.
    pub ended_ms: u64,
    /// Why the connection ended.
    pub close_reason: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
