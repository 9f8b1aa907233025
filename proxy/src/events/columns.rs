//! The columns every event shares, read from whichever kind it is: what
//! the ClickHouse tables index and what investigators filter on.

use std::net::IpAddr;

use uuid::Uuid;

use super::model::{Event, EventType, Severity};

/// The columns every event has, borrowed: what investigators filter on.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns<'a> {
    /// The kind.
    pub kind: EventType,
    /// The flow (nil for audit events).
    pub flow_id: Uuid,
    /// The user (the actor for audit events).
    pub user: &'a str,
    /// The device.
    pub device: &'a str,
    /// The client's IP address, if any.
    pub client_ip: Option<IpAddr>,
    /// The app id, or "".
    pub app: &'a str,
    /// SNI or host, or "".
    pub host: &'a str,
    /// What was done.
    pub action: &'a str,
    /// The rule, or "".
    pub rule: &'a str,
    /// Severity (findings only).
    pub severity: Option<Severity>,
    /// Why.
    pub reason: &'a str,
    /// Bytes from client to server.
    pub bytes_up: u64,
    /// Bytes from server to client.
    pub bytes_down: u64,
}

impl Event {
    /// Which kind of event this is.
    pub fn kind(&self) -> EventType {
        self.columns().kind
    }

    /// The flow this event belongs to (nil when it has none yet).
    pub fn flow_id(&self) -> Uuid {
        self.columns().flow_id
    }

    /// Gives a flow-less event a flow id (the sink uses the event's own id).
    pub(crate) fn set_flow_if_nil(&mut self, id: Uuid) {
        let f = match self {
            Self::Connection(e) => &mut e.flow_id,
            Self::Message(e) => &mut e.flow_id,
            Self::DlpFinding(e) => &mut e.flow_id,
            Self::OpaqueTunnel(e) => &mut e.flow_id,
            Self::Policy(e) => &mut e.flow_id,
            Self::FlowUpdate(e) => &mut e.flow_id,
            Self::Audit(_) => return,
        };
        if f.is_nil() {
            *f = id;
        }
    }

    /// The conversation (channel, chat, room) the event is about, if it names one.
    pub fn conversation(&self) -> Option<&str> {
        match self {
            Self::Message(e) => e.conversation.as_deref(),
            Self::DlpFinding(e) => e.conversation.as_deref(),
            _ => None,
        }
    }

    /// The searchable columns of this event.
    pub fn columns(&self) -> Columns<'_> {
        match self {
            Self::Connection(e) => Columns {
                kind: EventType::Connection,
                flow_id: e.flow_id,
                user: &e.user,
                device: &e.device,
                client_ip: Some(e.client.ip()),
                app: e.app.as_deref().unwrap_or(""),
                host: if e.host.is_empty() {
                    e.destination.as_deref().map_or("", strip_port)
                } else {
                    &e.host
                },
                action: &e.decision,
                rule: "",
                severity: None,
                reason: &e.reason,
                bytes_up: e.bytes_up,
                bytes_down: e.bytes_down,
            },
            Self::Message(e) => Columns {
                kind: EventType::Message,
                flow_id: e.flow_id,
                user: &e.user,
                device: &e.device,
                client_ip: Some(e.client.ip()),
                app: &e.app,
                host: &e.host,
                action: &e.action,
                rule: "",
                severity: None,
                reason: "",
                bytes_up: 0,
                bytes_down: 0,
            },
            Self::DlpFinding(e) => Columns {
                kind: EventType::DlpFinding,
                flow_id: e.flow_id,
                user: &e.user,
                device: &e.device,
                client_ip: Some(e.client.ip()),
                app: &e.app,
                host: &e.host,
                action: &e.action,
                rule: &e.rule,
                severity: Some(e.severity),
                reason: "",
                bytes_up: 0,
                bytes_down: 0,
            },
            Self::OpaqueTunnel(e) => Columns {
                kind: EventType::OpaqueTunnel,
                flow_id: e.flow_id,
                user: &e.user,
                device: &e.device,
                client_ip: Some(e.client.ip()),
                app: e.app.as_deref().unwrap_or(""),
                host: &e.host,
                action: &e.action,
                rule: "",
                severity: None,
                reason: &e.class,
                bytes_up: e.bytes_up,
                bytes_down: e.bytes_down,
            },
            Self::Policy(e) => Columns {
                kind: EventType::Policy,
                flow_id: e.flow_id,
                user: &e.user,
                device: &e.device,
                client_ip: Some(e.client.ip()),
                app: e.app.as_deref().unwrap_or(""),
                host: &e.host,
                action: &e.action,
                rule: e.rule.as_deref().unwrap_or(""),
                severity: None,
                reason: &e.reason,
                bytes_up: 0,
                bytes_down: 0,
            },
            Self::FlowUpdate(e) => Columns {
                kind: EventType::FlowUpdate,
                flow_id: e.flow_id,
                user: &e.user,
                device: &e.device,
                client_ip: Some(e.client.ip()),
                app: e.app.as_deref().unwrap_or(""),
                host: if e.host.is_empty() {
                    e.destination.as_deref().map_or("", strip_port)
                } else {
                    &e.host
                },
                action: &e.decision,
                rule: "",
                severity: None,
                reason: "",
                bytes_up: e.bytes_up,
                bytes_down: e.bytes_down,
            },
            Self::Audit(e) => Columns {
                kind: EventType::Audit,
                flow_id: Uuid::nil(),
                user: &e.actor,
                device: "",
                client_ip: e.client.map(|c| c.ip()),
                app: "",
                host: "",
                action: &e.action,
                rule: "",
                severity: None,
                reason: &e.reason,
                bytes_up: 0,
                bytes_down: 0,
            },
        }
    }
}

fn strip_port(dest: &str) -> &str {
    match dest.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
            h.trim_start_matches('[').trim_end_matches(']')
        }
        _ => dest,
    }
}
