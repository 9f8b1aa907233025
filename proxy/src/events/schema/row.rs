//! The row every event table holds: the searchable columns plus the whole
//! event as JSON (what `show` and `search --json` print).

use std::borrow::Cow;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{EventType, Record};

/// One event as stored in ClickHouse.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    /// Event id (UUID v7); replays collapse on it.
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    /// Seconds since the epoch (the `DateTime` partition key).
    pub ts: u32,
    /// Milliseconds since the epoch.
    pub ts_ms: u64,
    /// Gateway node.
    pub node: String,
    /// The flow.
    #[serde(with = "clickhouse::serde::uuid")]
    pub flow_id: Uuid,
    /// User (the actor of audit events).
    pub user: String,
    /// Device.
    pub device: String,
    /// Client IP, IPv4-mapped addresses written as IPv4; "" if none.
    pub client_ip: String,
    /// App id.
    pub app: String,
    /// SNI / host.
    pub host: String,
    /// What was done.
    pub action: String,
    /// Rule id.
    pub rule: String,
    /// Severity (findings).
    pub severity: String,
    /// Why.
    pub reason: String,
    /// Bytes from client to server.
    pub bytes_up: u64,
    /// Bytes from server to client.
    pub bytes_down: u64,
    /// The whole event, JSON.
    pub event: String,
}

impl EventRow {
    /// The row of `record`, whose JSON form is `json`.
    pub fn new(record: &Record, json: String) -> Self {
        let c = record.event.columns();
        let client_ip = c.client_ip.map_or_else(String::new, |ip| {
            crate::config::canonical_ip(ip).to_string()
        });
        Self {
            id: record.id,
            ts: u32::try_from(record.ts_ms / 1000).unwrap_or(u32::MAX),
            ts_ms: record.ts_ms,
            node: record.node.clone(),
            flow_id: c.flow_id,
            user: c.user.to_string(),
            device: c.device.to_string(),
            client_ip,
            app: c.app.to_string(),
            host: c.host.to_string(),
            action: c.action.to_string(),
            rule: c.rule.to_string(),
            severity: c.severity.map_or("", |s| s.as_str()).to_string(),
            reason: c.reason.to_string(),
            bytes_up: c.bytes_up,
            bytes_down: c.bytes_down,
            event: json,
        }
    }
}

/// The columns of [`EventRow`] with their ClickHouse types, in order.
pub const COLUMNS: &[(&str, &str)] = &[
    ("id", "UUID"),
    ("ts", "DateTime"),
    ("ts_ms", "UInt64"),
    ("node", "String"),
    ("flow_id", "UUID"),
    ("user", "String"),
    ("device", "String"),
    ("client_ip", "String"),
    ("app", "String"),
    ("host", "String"),
    ("action", "String"),
    ("rule", "String"),
    ("severity", "String"),
    ("reason", "String"),
    ("bytes_up", "UInt64"),
    ("bytes_down", "UInt64"),
    ("event", "String"),
];

/// The fields of a journaled event's JSON that rows need, borrowed where
/// the text allows. Decoding this flat shape is several times faster than
/// the typed [`Record`] (whose internally tagged, flattened enum makes serde
/// buffer every field); [`EventRow::from_json`] is tested to agree with
/// [`EventRow::new`] on every event type.
#[derive(Deserialize)]
struct Flat<'a> {
    id: Uuid,
    ts_ms: u64,
    #[serde(borrow)]
    node: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    flow_id: Option<Uuid>,
    #[serde(default, borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    actor: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    device: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    client: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    app: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    destination: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    rule: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    severity: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    class: Option<Cow<'a, str>>,
    #[serde(default)]
    bytes_up: Option<u64>,
    #[serde(default)]
    bytes_down: Option<u64>,
}

impl EventRow {
    /// The row of a journaled event's JSON, and its kind.
    pub fn from_json(json: String) -> Result<(EventType, Self), String> {
        let f: Flat<'_> = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        let kind: EventType = f.kind.parse()?;
        let s = |v: &Option<Cow<'_, str>>| v.as_deref().unwrap_or("").to_string();
        let client_ip = f
            .client
            .as_deref()
            .and_then(|c| c.parse::<std::net::SocketAddr>().ok())
            .map_or_else(String::new, |a| {
                crate::config::canonical_ip(a.ip()).to_string()
            });
        let (user, action, reason, rule) = match kind {
            EventType::Audit => (s(&f.actor), s(&f.action), s(&f.reason), String::new()),
            EventType::Connection => (s(&f.user), s(&f.decision), s(&f.reason), String::new()),
            EventType::OpaqueTunnel => (s(&f.user), s(&f.action), s(&f.class), String::new()),
            EventType::Message => (s(&f.user), s(&f.action), String::new(), String::new()),
            EventType::DlpFinding | EventType::Policy => {
                let reason = if kind == EventType::Policy {
                    s(&f.reason)
                } else {
                    String::new()
                };
                (s(&f.user), s(&f.action), reason, s(&f.rule))
            }
        };
        let host = match (kind, f.host.as_deref()) {
            (EventType::Audit, _) => String::new(),
            (EventType::Connection, None | Some("")) => f
                .destination
                .as_deref()
                .map_or("", crate::events::columns::strip_port)
                .to_string(),
            (_, h) => h.unwrap_or("").to_string(),
        };
        let bytes = matches!(kind, EventType::Connection | EventType::OpaqueTunnel);
        let row = Self {
            id: f.id,
            ts: u32::try_from(f.ts_ms / 1000).unwrap_or(u32::MAX),
            ts_ms: f.ts_ms,
            node: f.node.into_owned(),
            flow_id: if kind == EventType::Audit {
                Uuid::nil()
            } else {
                f.flow_id.unwrap_or_default()
            },
            user,
            device: if kind == EventType::Audit {
                String::new()
            } else {
                s(&f.device)
            },
            client_ip,
            app: if kind == EventType::Audit {
                String::new()
            } else {
                s(&f.app)
            },
            host,
            action,
            rule,
            severity: if kind == EventType::DlpFinding {
                s(&f.severity)
            } else {
                String::new()
            },
            reason,
            bytes_up: if bytes { f.bytes_up.unwrap_or(0) } else { 0 },
            bytes_down: if bytes { f.bytes_down.unwrap_or(0) } else { 0 },
            event: String::new(),
        };
        Ok((kind, Self { event: json, ..row }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;

    fn corpus() -> Vec<Event> {
        let client: std::net::SocketAddr = "[::ffff:10.1.2.3]:5000".parse().unwrap();
        let flow = Uuid::now_v7();
        vec![
            Event::Connection(ConnectionEvent {
                client,
                destination: Some("[2001:db8::1]:443".into()),
                decision: "block".into(),
                reason: "why \"quoted\"".into(),
                bytes_up: 5,
                bytes_down: 6,
                ..Default::default()
            }),
            Event::Connection(ConnectionEvent {
                client,
                destination: Some("x.example:443".into()),
                decision: "intercept".into(),
                reason: "r".into(),
                flow_id: flow,
                user: "ünïcode".into(),
                device: "d".into(),
                host: "sni.example".into(),
                app: Some("slack".into()),
                protocol: Some("tls".into()),
                duration_ms: 9,
                ..Default::default()
            }),
            Event::Message(MessageEvent {
                flow_id: flow,
                client,
                user: "u".into(),
                device: "d".into(),
                app: "teams".into(),
                host: "h".into(),
                direction: Direction::Down,
                conversation: None,
                sender: Some("s".into()),
                chars: 3,
                findings: 0,
                action: "allow".into(),
            }),
            Event::DlpFinding(DlpFindingEvent {
                flow_id: flow,
                message_id: Some(Uuid::now_v7()),
                client,
                user: "u".into(),
                device: "d".into(),
                app: "slack".into(),
                host: "h".into(),
                rule: "pci/card".into(),
                severity: Severity::High,
                score: 80,
                action: "alert".into(),
                evidence: Masked::new("secret value"),
                start: 1,
                end: 2,
            }),
            Event::OpaqueTunnel(OpaqueTunnelEvent {
                flow_id: flow,
                client,
                user: "u".into(),
                device: "d".into(),
                app: None,
                host: "h".into(),
                protocol: "quic".into(),
                class: "e2ee".into(),
                action: "passthrough".into(),
                bytes_up: 1,
                bytes_down: 2,
            }),
            Event::Policy(PolicyEvent {
                flow_id: flow,
                client,
                user: "u".into(),
                device: "d".into(),
                app: Some("x".into()),
                host: "h".into(),
                kind: "pinning_bypass".into(),
                action: "passthrough".into(),
                rule: Some("pinned-apps".into()),
                reason: "pinned".into(),
            }),
            Event::Audit(AuditEvent {
                actor: "inv".into(),
                client: Some("127.0.0.1:9".parse().unwrap()),
                action: "reveal".into(),
                target: Some(flow),
                reason: "case".into(),
                detail: String::new(),
            }),
        ]
    }

    #[test]
    fn the_fast_decoder_agrees_with_the_typed_one_on_every_kind() {
        for e in corpus() {
            let r = Record::stamp(e, "n");
            let json = serde_json::to_string(&r).unwrap();
            let (kind, fast) = EventRow::from_json(json.clone()).unwrap();
            assert_eq!(kind, r.event.kind());
            assert_eq!(fast, EventRow::new(&r, json), "{:?}", r.event.kind());
        }
    }
}
