//! The typed events investigators search: one struct per kind, each naming
//! the flow, the user and device, the app and host, and what was decided.
//!
//! Matched data never appears in an event: DLP evidence is a [`Masked`]
//! string, which can only be built by masking.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One decision or observation of the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
// Events are moved once into the queue and then serialised; boxing the
// large connection variant would buy nothing but an allocation per flow.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A client connection (flow) ended or was refused.
    Connection(ConnectionEvent),
    /// A message was read from an inspected flow.
    Message(MessageEvent),
    /// A DLP rule matched a message.
    DlpFinding(DlpFindingEvent),
    /// A tunnel the gateway cannot read (end-to-end encrypted, pinned, not TLS).
    OpaqueTunnel(OpaqueTunnelEvent),
    /// A policy decision worth its own record: block, pinning bypass, upstream rejection.
    Policy(PolicyEvent),
    /// Someone revealed evidence, exported events or changed the gateway.
    Audit(AuditEvent),
    /// A long-lived flow still open: its progress so far (the `connection`
    /// event follows at its end).
    FlowUpdate(FlowUpdateEvent),
}

/// What happened on one client connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectionEvent {
    /// The client's address.
    pub client: SocketAddr,
    /// Where the client wanted to go (`host:port`), if known.
    pub destination: Option<String>,
    /// What the gateway decided (`intercept`, `passthrough`, `block`).
    pub decision: String,
    /// Why.
    pub reason: String,
    /// Bytes from client to server.
    pub bytes_up: u64,
    /// Bytes from server to client.
    pub bytes_down: u64,
    /// The flow this connection is; nil means "a flow of its own" (the sink
    /// then uses the event id).
    #[serde(default)]
    pub flow_id: Uuid,
    /// The user behind the client, when known (VPN pool or proxy auth).
    #[serde(default)]
    pub user: String,
    /// The device, when known.
    #[serde(default)]
    pub device: String,
    /// TLS SNI, else the requested host name.
    #[serde(default)]
    pub host: String,
    /// The messaging app (stable lowercase id), when recognised.
    #[serde(default)]
    pub app: Option<String>,
    /// Protocol seen on the flow (`tls`, `http`, `xmpp`, …).
    #[serde(default)]
    pub protocol: Option<String>,
    /// How long the connection lasted.
    #[serde(default)]
    pub duration_ms: u64,
    /// `explicit`, `explicit-http` or `transparent`.
    #[serde(default)]
    pub mode: String,
    /// The server address connected to.
    #[serde(default)]
    pub server_addr: Option<SocketAddr>,
    /// TLS server name the client asked for.
    #[serde(default)]
    pub sni: Option<String>,
    /// ALPN protocol in use.
    #[serde(default)]
    pub alpn: Option<String>,
    /// inspectable, metadata-only or opaque.
    #[serde(default)]
    pub class: Option<String>,
    /// Why not inspectable: pinned, e2ee, non-tls-encryption.
    #[serde(default)]
    pub class_reasons: Vec<String>,
    /// How the app and class were concluded.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// JA4 fingerprint of the ClientHello.
    #[serde(default)]
    pub ja4: Option<String>,
    /// The client offered Encrypted Client Hello.
    #[serde(default)]
    pub ech: bool,
    /// Client leg TLS version and suite.
    #[serde(default)]
    pub client_tls: Option<String>,
    /// Upstream leg TLS version and suite.
    #[serde(default)]
    pub upstream_tls: Option<String>,
    /// SHA-256 of the upstream end-entity certificate.
    #[serde(default)]
    pub upstream_cert_sha256: Option<String>,
    /// `ok`, `exception: …`, or why upstream verification failed.
    #[serde(default)]
    pub verification: Option<String>,
    /// A passthrough or failure the security team should look at.
    #[serde(default)]
    pub flagged: bool,
    /// Start, epoch milliseconds.
    #[serde(default)]
    pub started_ms: u64,
    /// End, epoch milliseconds.
    #[serde(default)]
    pub ended_ms: u64,
    /// Why the connection ended.
    #[serde(default)]
    pub close_reason: String,
    /// `tcp`, or `udp` for QUIC; events written before it existed were TCP.
    #[serde(default = "tcp")]
    pub transport: String,
}

fn tcp() -> String {
    "tcp".into()
}

impl Default for ConnectionEvent {
    fn default() -> Self {
        Self {
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            destination: None,
            decision: String::new(),
            reason: String::new(),
            bytes_up: 0,
            bytes_down: 0,
            flow_id: Uuid::nil(),
            user: String::new(),
            device: String::new(),
            host: String::new(),
            app: None,
            protocol: None,
            duration_ms: 0,
            mode: String::new(),
            server_addr: None,
            sni: None,
            alpn: None,
            class: None,
            class_reasons: Vec::new(),
            evidence: Vec::new(),
            ja4: None,
            ech: false,
            client_tls: None,
            upstream_tls: None,
            upstream_cert_sha256: None,
            verification: None,
            flagged: false,
            started_ms: 0,
            ended_ms: 0,
            close_reason: String::new(),
            transport: tcp(),
        }
    }
}

/// Which way a message went. Events store it as `"up"` (outbound, from
/// the employee's client) or `"down"` (inbound), as they always have.
pub use gatehouse_inspectors::Direction;

/// Serde for a [`Direction`] in an event: `"up"` / `"down"`.
mod up_down {
    use super::Direction;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Direction, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match d {
            Direction::Outbound => "up",
            Direction::Inbound => "down",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
        match String::deserialize(d)?.as_str() {
            "up" => Ok(Direction::Outbound),
            "down" => Ok(Direction::Inbound),
            other => Err(serde::de::Error::unknown_variant(other, &["up", "down"])),
        }
    }
}

/// A message read from an inspected flow. Its text is never recorded; the
/// findings carry masked evidence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessageEvent {
    /// The flow carrying the message.
    pub flow_id: Uuid,
    /// The client's address.
    pub client: SocketAddr,
    /// The user, when known.
    #[serde(default)]
    pub user: String,
    /// The device, when known.
    #[serde(default)]
    pub device: String,
    /// The messaging app.
    pub app: String,
    /// SNI / host of the flow.
    pub host: String,
    /// Which way it went.
    #[serde(with = "up_down")]
    pub direction: Direction,
    /// Conversation (channel, chat, room) identifier, when the app exposes it.
    #[serde(default)]
    pub conversation: Option<String>,
    /// Sender identifier, when the app exposes it.
    #[serde(default)]
    pub sender: Option<String>,
    /// Length of the text in characters.
    pub chars: u64,
    /// Number of DLP findings in it.
    pub findings: u32,
    /// What the gateway did with it (`allow`, `log`, `alert`, `block`, `redact`).
    pub action: String,
    /// The message text, only when `events.store_message_text` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// What read it: `app` (the app's own extractor) or `fallback` (a
    /// message no extractor understood, scanned whole).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extractor: String,
    /// Set on an end-to-end encrypted message (`extractor = "e2ee"`): how
    /// it is encrypted and how big its ciphertext is; it has no text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2ee: Option<Encryption>,
}

/// What can be seen of an end-to-end encrypted message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Encryption {
    /// The algorithm as the payload names it (`m.megolm.v1.aes-sha2`,
    /// `OMEMO 2`, `OTR`, `jwe dir/A256GCM`, `rocketchat-e2e`).
    pub algorithm: String,
    /// Size of the ciphertext (the XMPP stanza) as sent, in bytes.
    pub bytes: u64,
}

/// How serious a DLP finding is.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording.
    #[default]
    Low,
    /// Worth a look.
    Medium,
    /// Worth an alert.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// The lowercase name used in events and queries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown severity `{s}` (low, medium, high, critical)"))
    }
}

/// Evidence with the matched data masked. Every constructor masks (or takes
/// the DLP engine's already-masked [`gatehouse_inspectors::dlp::Evidence`]),
/// so an event can never carry the raw match.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Masked(String);

impl Masked {
    /// Masks `matched`: every character becomes `•` except the last four of
    /// matches longer than twelve (enough to tell two card numbers apart,
    /// too little to use one).
    pub fn new(matched: &str) -> Self {
        let n = matched.chars().count();
        let keep = if n > 12 { 4 } else { 0 };
        let mut out = String::with_capacity(matched.len() * 3);
        for (i, c) in matched.chars().enumerate() {
            if i + keep >= n || c.is_whitespace() {
                out.push(c);
            } else {
                out.push('•');
            }
        }
        Self(out)
    }

    /// The masked text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Evidence the DLP engine built as the rule's `[rule.evidence]` says
/// (context, `keep_last`, neighbouring matches masked); only the engine
/// makes one, so it is masked already.
impl From<gatehouse_inspectors::dlp::Evidence> for Masked {
    fn from(e: gatehouse_inspectors::dlp::Evidence) -> Self {
        Self(e.into_string())
    }
}

/// A DLP rule matched a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DlpFindingEvent {
    /// The flow carrying the message.
    pub flow_id: Uuid,
    /// The message event this finding belongs to, when recorded.
    #[serde(default)]
    pub message_id: Option<Uuid>,
    /// The client's address.
    pub client: SocketAddr,
    /// The user, when known.
    #[serde(default)]
    pub user: String,
    /// The device, when known.
    #[serde(default)]
    pub device: String,
    /// The messaging app.
    pub app: String,
    /// SNI / host of the flow.
    pub host: String,
    /// Rule id (`pack/rule`).
    pub rule: String,
    /// Which way the message or body went (up: request, down: response).
    #[serde(default, with = "up_down")]
    pub direction: Direction,
    /// How serious.
    pub severity: Severity,
    /// Rule score (0–100).
    pub score: u32,
    /// What the gateway did (`log`, `alert`, `block`, `redact`).
    pub action: String,
    /// The match, masked.
    pub evidence: Masked,
    /// UTF-8 byte offsets of the match in the message text.
    pub start: u64,
    /// End offset (exclusive).
    pub end: u64,
    /// For a rule with `count.conversation` that fired because its
    /// conversation added up: the `message` events whose matches made the
    /// count (this finding's message included), oldest first. Kept in the
    /// event JSON (ClickHouse `event` column); no column of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Uuid>,
    /// The conversation (channel, chat, room) of the message, when the app
    /// exposes one: incidents group by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// The unmasked match and its context, sealed to the console's key
    /// (base64; see [`crate::events::seal`]); absent without a console key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// The evidence to seal, held until the journal sink seals it; never
    /// serialised.
    #[serde(skip)]
    pub unsealed: crate::events::seal::Unsealed,
}

/// A tunnel the gateway cannot read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OpaqueTunnelEvent {
    /// The flow.
    pub flow_id: Uuid,
    /// The client's address.
    pub client: SocketAddr,
    /// The user, when known.
    #[serde(default)]
    pub user: String,
    /// The device, when known.
    #[serde(default)]
    pub device: String,
    /// The app, when recognised.
    #[serde(default)]
    pub app: Option<String>,
    /// SNI / host.
    pub host: String,
    /// Protocol seen (`tls`, `quic`, `whatsapp-noise`, `mtproto`, …).
    pub protocol: String,
    /// Why it is opaque (`e2ee`, `pinned`, `non_tls`, `unknown`).
    pub class: String,
    /// What the gateway did (`passthrough`, `block`).
    pub action: String,
    /// Bytes from client to server.
    pub bytes_up: u64,
    /// Bytes from server to client.
    pub bytes_down: u64,
    /// Why it is unreadable: pinned, e2ee, non-tls-encryption.
    #[serde(default)]
    pub reason: String,
    /// What was seen (never message content).
    #[serde(default)]
    pub evidence: String,
    /// How sure the app guess is: low, medium, high.
    #[serde(default)]
    pub confidence: String,
    /// How long the tunnel lasted.
    #[serde(default)]
    pub duration_ms: u64,
}

/// A policy decision: block, pinning bypass, upstream rejection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyEvent {
    /// The flow.
    pub flow_id: Uuid,
    /// The client's address.
    pub client: SocketAddr,
    /// The user, when known.
    #[serde(default)]
    pub user: String,
    /// The device, when known.
    #[serde(default)]
    pub device: String,
    /// The app, when recognised.
    #[serde(default)]
    pub app: Option<String>,
    /// SNI / host.
    pub host: String,
    /// What kind of decision (`block`, `pinning_bypass`, `upstream_rejected`, …).
    pub kind: String,
    /// What the gateway did.
    pub action: String,
    /// The policy rule that decided, when one did.
    #[serde(default)]
    pub rule: Option<String>,
    /// Why, in words (e.g. the certificate problem of a rejected upstream).
    pub reason: String,
}

/// Someone revealed evidence, exported events or changed the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    /// Who did it (the investigator or operator).
    pub actor: String,
    /// From where, when over the network.
    #[serde(default)]
    pub client: Option<SocketAddr>,
    /// What (`reveal`, `export`, `rules_reload`, …).
    pub action: String,
    /// The event it concerns, if one.
    #[serde(default)]
    pub target: Option<Uuid>,
    /// The reason they gave.
    pub reason: String,
    /// Anything else (filters of an export, rule pack version, …).
    #[serde(default)]
    pub detail: String,
}

/// Who and what of one flow: the fields every event of that flow carries.
/// Events of a flow are built only through its constructors, so they
/// cannot disagree with the flow's `connection` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStamp {
    /// The flow id (UUID v7), also the `connection` event's `flow_id`.
    pub flow_id: Uuid,
    /// The client's address.
    pub client: SocketAddr,
    /// The user, when known.
    pub user: String,
    /// The device, when known.
    pub device: String,
    /// The flow's app, when identified.
    pub app: Option<String>,
    /// SNI, else the requested host.
    pub host: String,
}

impl FlowStamp {
    /// A `policy` event of this flow.
    pub fn policy(&self, kind: &str, action: &str, reason: &str) -> PolicyEvent {
        PolicyEvent {
            flow_id: self.flow_id,
            client: self.client,
            user: self.user.clone(),
            device: self.device.clone(),
            app: self.app.clone(),
            host: self.host.clone(),
            kind: kind.into(),
            action: action.into(),
            rule: None,
            reason: reason.into(),
        }
    }

    /// An `opaque_tunnel` event of this flow; the caller fills in what was
    /// seen (bytes, reason, evidence, confidence, duration).
    pub fn opaque(&self, protocol: &str, action: &str) -> OpaqueTunnelEvent {
        OpaqueTunnelEvent {
            flow_id: self.flow_id,
            client: self.client,
            user: self.user.clone(),
            device: self.device.clone(),
            app: self.app.clone(),
            host: self.host.clone(),
            protocol: protocol.into(),
            class: "opaque".into(),
            action: action.into(),
            bytes_up: 0,
            bytes_down: 0,
            reason: String::new(),
            evidence: String::new(),
            confidence: String::new(),
            duration_ms: 0,
        }
    }

    /// A `message` event of this flow for a message of `app`; the caller
    /// fills in what the message was.
    pub fn message(&self, app: &str, direction: Direction) -> MessageEvent {
        MessageEvent {
            flow_id: self.flow_id,
            client: self.client,
            user: self.user.clone(),
            device: self.device.clone(),
            app: app.into(),
            host: self.host.clone(),
            direction,
            conversation: None,
            sender: None,
            chars: 0,
            findings: 0,
            action: String::new(),
            text: None,
            extractor: "app".into(),
            e2ee: None,
        }
    }

    /// A `dlp_finding` event of this flow; the caller fills in the rule,
    /// the masked evidence and the offsets.
    pub fn finding(
        &self,
        app: &str,
        message_id: Option<Uuid>,
        direction: Direction,
    ) -> DlpFindingEvent {
        DlpFindingEvent {
            flow_id: self.flow_id,
            message_id,
            client: self.client,
            user: self.user.clone(),
            device: self.device.clone(),
            app: app.into(),
            host: self.host.clone(),
            rule: String::new(),
            direction,
            severity: Severity::Low,
            score: 0,
            action: String::new(),
            evidence: Masked::default(),
            start: 0,
            end: 0,
            related: Vec::new(),
            conversation: None,
            sealed: None,
            unsealed: Default::default(),
        }
    }
}

/// Progress of a flow that is still open, recorded every
/// `events.flow_update_interval` while bytes move, so that a crash loses
/// at most that interval of its record. Same flow id as its `connection`
/// event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowUpdateEvent {
    /// The flow.
    pub flow_id: Uuid,
    /// The client's address.
    pub client: SocketAddr,
    /// Where the client wanted to go (`host:port`), if known.
    #[serde(default)]
    pub destination: Option<String>,
    /// What the gateway decided so far (`intercept`, `passthrough`, or "").
    #[serde(default)]
    pub decision: String,
    /// The user, when known.
    #[serde(default)]
    pub user: String,
    /// The device, when known.
    #[serde(default)]
    pub device: String,
    /// SNI or host.
    #[serde(default)]
    pub host: String,
    /// The app, when recognised.
    #[serde(default)]
    pub app: Option<String>,
    /// `explicit`, `explicit-http` or `transparent`.
    #[serde(default)]
    pub mode: String,
    /// Bytes from the client so far (client leg, as the `connection` event counts).
    pub bytes_up: u64,
    /// Bytes to the client so far.
    pub bytes_down: u64,
    /// HTTP requests relayed so far (0 for non-HTTP flows).
    #[serde(default)]
    pub requests: u64,
    /// Start, epoch milliseconds.
    pub started_ms: u64,
    /// How long the flow has been open.
    pub duration_ms: u64,
    /// 1 for the first update of the flow, then 2, 3, …
    pub seq: u32,
}

/// The kinds of event, each stored in its own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// [`ConnectionEvent`]
    Connection,
    /// [`MessageEvent`]
    Message,
    /// [`DlpFindingEvent`]
    DlpFinding,
    /// [`OpaqueTunnelEvent`]
    OpaqueTunnel,
    /// [`PolicyEvent`]
    Policy,
    /// [`AuditEvent`]
    Audit,
    /// [`FlowUpdateEvent`]
    FlowUpdate,
}

impl EventType {
    /// Every kind.
    pub const ALL: [EventType; 7] = [
        Self::Connection,
        Self::Message,
        Self::DlpFinding,
        Self::OpaqueTunnel,
        Self::Policy,
        Self::Audit,
        Self::FlowUpdate,
    ];

    /// The `type` tag of the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Message => "message",
            Self::DlpFinding => "dlp_finding",
            Self::OpaqueTunnel => "opaque_tunnel",
            Self::Policy => "policy",
            Self::Audit => "audit",
            Self::FlowUpdate => "flow_update",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(&s))
            .ok_or_else(|| {
                format!("unknown event type `{s}` (connection, message, dlp_finding, opaque_tunnel, policy, audit, flow_update)")
            })
    }
}

/// An event as journaled and stored: the event plus the envelope the sink
/// stamps on it (id, time, node).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Unique id, UUID v7 (time-ordered): replays of the same record are
    /// recognised by it.
    pub id: Uuid,
    /// When the gateway recorded it, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The gateway node that recorded it.
    pub node: String,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    /// Stamps `event` with a fresh UUID v7, the current time and `node`; an
    /// event without a flow becomes its own flow.
    pub fn stamp(event: Event, node: &str) -> Self {
        Self::stamp_as(Uuid::now_v7(), event, node)
    }

    /// Stamps `event` with `id` (a UUID v7 from [`Uuid::now_v7`], which is
    /// monotonic within the process, so a flow's events sort in the order
    /// they happened), the current time and `node`.
    pub fn stamp_as(id: Uuid, mut event: Event, node: &str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let ts_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        event.set_flow_if_nil(id);
        Self {
            id,
            ts_ms,
            node: node.to_string(),
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Event {
        Event::Connection(ConnectionEvent {
            client: "10.1.2.3:5555".parse().unwrap(),
            destination: Some("chat.example.com:443".into()),
            decision: "block".into(),
            reason: "policy".into(),
            ..Default::default()
        })
    }

    #[test]
    fn records_round_trip_through_json_flat() {
        let r = Record::stamp(conn(), "node-a");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"type\":\"connection\""), "{json}");
        assert!(json.contains("\"node\":\"node-a\""), "{json}");
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn stamping_gives_v7_ids_and_a_flow() {
        let r = Record::stamp(conn(), "n");
        assert_eq!(r.id.get_version_num(), 7);
        assert_eq!(r.event.flow_id(), r.id);
        let c = r.event.columns();
        assert_eq!(c.host, "chat.example.com");
        assert_eq!(c.action, "block");
    }

    #[test]
    fn old_connection_events_without_new_fields_still_parse() {
        let json = r#"{"id":"0193a2b4-0000-7000-8000-000000000001","ts_ms":1,"node":"n","type":"connection","client":"127.0.0.1:1","destination":null,"decision":"block","reason":"r","bytes_up":0,"bytes_down":0}"#;
        let r: Record = serde_json::from_str(json).unwrap();
        assert_eq!(r.event.kind(), EventType::Connection);
        // Written before QUIC was proxied: every such flow was TCP.
        let Event::Connection(c) = &r.event else {
            unreachable!()
        };
        assert_eq!(c.transport, "tcp");
    }

    #[test]
    fn masking_hides_the_match() {
        assert_eq!(
            Masked::new("4111 1111 1111 1234").as_str(),
            "•••• •••• •••• 1234"
        );
        assert_eq!(Masked::new("secret").as_str(), "••••••");
        assert!(!Masked::new("hunter2hunter2x").as_str().contains("hunter"));
    }

    #[test]
    fn directions_are_stored_as_up_and_down() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct D {
            #[serde(default, with = "up_down")]
            direction: Direction,
        }
        for (d, s) in [
            (Direction::Outbound, r#"{"direction":"up"}"#),
            (Direction::Inbound, r#"{"direction":"down"}"#),
        ] {
            assert_eq!(serde_json::to_string(&D { direction: d }).unwrap(), s);
            assert_eq!(serde_json::from_str::<D>(s).unwrap().direction, d);
        }
        let old: D = serde_json::from_str("{}").unwrap();
        assert_eq!(old.direction, Direction::Outbound);
        assert!(serde_json::from_str::<D>(r#"{"direction":"outbound"}"#).is_err());
    }

    #[test]
    fn types_and_severities_parse() {
        assert_eq!(
            "dlp-finding".parse::<EventType>(),
            Ok(EventType::DlpFinding)
        );
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("nope".parse::<Severity>().is_err());
    }
}
