//! Facebook Messenger and Instagram Direct on the web.
//!
//! Both web clients keep an MQTT session inside a WebSocket
//! (`edge-chat.{messenger,instagram}.com/chat`) and publish JSON on topics
//! such as `/ls_req` (Lightspeed tasks, whose `payload` members are JSON
//! encoded again, twice) or `/send_message2`. The text sits in `text` or
//! `body` members; the thread in `thread_id` / `thread_key` / `thread_fbid`.
//! Instagram's private REST API sends DMs with
//! `POST /api/v1/direct_v2/threads/broadcast/{text,link}/` (form `text`,
//! `link_text`, `thread_ids`).
//!
//! E2EE: Messenger's end-to-end encrypted chats (Labyrinth) and Instagram's
//! E2EE DMs do not publish readable JSON. Our (documented, best-effort)
//! markers are any MQTT topic or HTTP path containing `e2ee` or
//! `secure_message`, and binary MQTT payloads that are not JSON on such
//! sessions are left alone rather than guessed at.

use serde_json::Value;

use super::super::body::str_at;
use super::super::message::{Direction, Extracted, Message};
use super::super::mqtt::{MqttPublish, MqttStream};
use super::{id_at, Req};

const TEXT_KEYS: &[&str] = &["text", "body", "message", "link_text"];
const THREAD_KEYS: &[&str] = &[
    "thread_id",
    "thread_key",
    "thread_fbid",
    "threadKey",
    "thread_ids",
];
const SENDER_KEYS: &[&str] = &["sender_fbid", "sender_id", "actor_id", "user_id"];
/// JSON inside JSON strings goes this deep at most (Lightspeed uses two).
const MAX_NESTING: usize = 4;

fn is_e2ee_marker(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    s.contains("e2ee") || s.contains("secure_message")
}

pub(in super::super) fn http(req: &Req) -> Extracted {
    if is_e2ee_marker(req.path) {
        return Extracted::e2ee(req.app, format!("{} E2EE endpoint {}", req.app, req.path));
    }
    if !req.is("POST") || !req.path.contains("/direct_v2/threads/broadcast/") {
        return Extracted::none();
    }
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    let mut m = req.message();
    m.conversation = id_at(&v, "thread_ids").or_else(|| id_at(&v, "recipient_users"));
    m.push_text("text", str_at(&v, "text").unwrap_or(""));
    m.push_text("link_text", str_at(&v, "link_text").unwrap_or(""));
    Extracted::message(m)
}

/// One MQTT-over-WebSocket connection (a reassembly buffer per direction).
#[derive(Debug, Default)]
pub(in super::super) struct MqttWs {
    up: MqttStream,
    down: MqttStream,
}

impl MqttWs {
    pub fn ws(&mut self, app: &str, direction: Direction, payload: &[u8]) -> Extracted {
        let stream = match direction {
            Direction::Outbound => &mut self.up,
            Direction::Inbound => &mut self.down,
        };
        let mut out = Extracted::none();
        for p in stream.push(payload) {
            out.merge(publish(app, direction, &p));
        }
        out
    }
}

fn publish(app: &str, direction: Direction, p: &MqttPublish) -> Extracted {
    if is_e2ee_marker(&p.topic) {
        return Extracted::e2ee(app, format!("{app} MQTT topic {} (E2EE)", p.topic));
    }
    let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
        return Extracted::none();
    };
    let mut m = Message::new(app, direction);
    walk(&v, "", &mut m, 0, 0);
    Extracted::message(m)
}

fn walk(v: &Value, path: &str, m: &mut Message, depth: usize, nesting: usize) {
    if depth > 32 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if THREAD_KEYS.contains(&k.as_str()) && m.conversation.is_none() {
                    m.conversation = scalar(child);
                }
                if SENDER_KEYS.contains(&k.as_str()) && m.sender.is_none() {
                    m.sender = scalar(child);
                }
                match child {
                    Value::String(s) if nesting < MAX_NESTING && looks_like_json(s) => {
                        match serde_json::from_str::<Value>(s) {
                            Ok(inner) => walk(&inner, &p, m, depth + 1, nesting + 1),
                            Err(_) if TEXT_KEYS.contains(&k.as_str()) => m.push_text(p, s.clone()),
                            Err(_) => {}
                        }
                    }
                    Value::String(s) if TEXT_KEYS.contains(&k.as_str()) => {
                        m.push_text(p, s.clone())
                    }
                    _ => walk(child, &p, m, depth + 1, nesting),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), m, depth + 1, nesting);
            }
        }
        _ => {}
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(a) => a.first().and_then(scalar),
        _ => None,
    }
}

fn looks_like_json(s: &str) -> bool {
    let t = s.trim_start();
    (t.starts_with('{') || t.starts_with('[')) && t.len() > 1
}
