//! The row every event table holds: the searchable columns plus the whole
//! event as JSON (what `show` and `search --json` print).

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::Record;

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
    /// `tcp` or `udp` for connection events; "" for the others.
    pub transport: String,
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
            transport: match &record.event {
                crate::events::Event::Connection(e) => e.transport.clone(),
                _ => String::new(),
            },
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
    ("transport", "String"),
];
