//! MQTT sessions (3.1, 3.1.1, 5) as inspection reads them: every PUBLISH
//! is a message — topic as conversation, the CONNECT's client id as sender
//! of what the client publishes, the payload decoded as JSON (every string
//! and number, by path) or else as text. A session that does not parse
//! (no CONNECT first, a malformed packet, a packet over the window) is an
//! error: the caller blocks the flow with an event.

use gatehouse_inspectors::dlp::binary;
use gatehouse_inspectors::extract::{Extracted, Message, MqttError, MqttPublish, MqttSession};

use crate::relay::hooks::Direction;

/// Both directions of one MQTT session.
pub(super) struct MqttInspect {
    up: MqttSession,
    down: MqttSession,
}

impl MqttInspect {
    /// A session holding at most `window` bytes of one packet per direction.
    pub(super) fn new(window: usize) -> Self {
        Self {
            up: MqttSession::new(true, window),
            down: MqttSession::new(false, window),
        }
    }

    /// Whether `bytes`, the first the client sent, open an MQTT session
    /// (a CONNECT, or the start of one).
    pub(super) fn opens(bytes: &[u8]) -> bool {
        use gatehouse_inspectors::identify::{mqtt, Sniff};
        bytes.first() == Some(&0x10) && !matches!(mqtt::detect(bytes), Sniff::No)
    }

    /// The messages `bytes` complete, as `app`.
    pub(super) fn feed(
        &mut self,
        app: &str,
        dir: Direction,
        bytes: &[u8],
    ) -> Result<Extracted, MqttError> {
        let published = match dir {
            Direction::Outbound => self.up.push(bytes)?,
            Direction::Inbound => {
                if self.down.level().is_none() {
                    if let Some(level) = self.up.level() {
                        self.down.set_level(level);
                    }
                }
                self.down.push(bytes)?
            }
        };
        let sender = match dir {
            Direction::Outbound => self.up.client_id().map(str::to_owned),
            Direction::Inbound => None,
        };
        let mut out = Extracted::none();
        for p in published {
            out.merge(Extracted::message(message(app, dir, sender.clone(), &p)));
        }
        Ok(out)
    }
}

/// One PUBLISH as a message.
fn message(app: &str, dir: Direction, sender: Option<String>, p: &MqttPublish) -> Message {
    let mut m = Message::new(app, dir);
    m.conversation = Some(p.topic.clone());
    m.sender = sender;
    match serde_json::from_slice::<serde_json::Value>(&p.payload) {
        Ok(v) if v.is_object() || v.is_array() => leaves(&v, "payload", &mut m, 0),
        _ => match std::str::from_utf8(&p.payload) {
            Ok(text) => m.push_text("payload", text),
            // Binary payloads: the printable runs, as binary bodies are read.
            Err(_) => m.push_text("payload", binary::printable_runs(&p.payload)),
        },
    }
    m
}

/// Every string and number of a JSON payload, named by its path.
fn leaves(v: &serde_json::Value, path: &str, m: &mut Message, depth: usize) {
    use serde_json::Value;
    if depth > 64 {
        return;
    }
    match v {
        Value::String(s) => m.push_text(path, s.as_str()),
        Value::Number(n) => m.push_text(path, n.to_string()),
        Value::Object(map) => {
            for (k, child) in map {
                leaves(child, &format!("{path}.{k}"), m, depth + 1);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                leaves(child, &format!("{path}[{i}]"), m, depth + 1);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(id: &str) -> Vec<u8> {
        let mut body = b"\x00\x04MQTT\x04\x02\x00\x3c".to_vec();
        body.extend((id.len() as u16).to_be_bytes());
        body.extend(id.as_bytes());
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    }

    fn publish(topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend(topic.as_bytes());
        body.extend(payload);
        let mut p = vec![0x30, body.len() as u8];
        p.extend(body);
        p
    }

    #[test]
    fn publishes_become_messages_with_topic_sender_and_json_leaves() {
        let mut s = MqttInspect::new(1 << 20);
        assert!(MqttInspect::opens(&connect("dev-1")));
        assert!(!MqttInspect::opens(b"GET / HTTP/1.1"));
        let mut bytes = connect("dev-1");
        bytes.extend(publish(
            "plant/a",
            br#"{"note":"hi","card":4556737586899855}"#,
        ));
        bytes.extend(publish("plant/b", b"plain text"));
        let got = s.feed("mqtt", Direction::Outbound, &bytes).unwrap();
        let m = &got.messages;
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].conversation.as_deref(), Some("plant/a"));
        assert_eq!(m[0].sender.as_deref(), Some("dev-1"));
        assert_eq!(m[0].text("payload.card"), Some("4556737586899855"));
        assert_eq!(m[0].text("payload.note"), Some("hi"));
        assert_eq!(m[1].text("payload"), Some("plain text"));
        // What the broker delivers: read with the client's level, no sender.
        let got = s
            .feed("mqtt", Direction::Inbound, &publish("plant/c", b"x"))
            .unwrap();
        assert_eq!(got.messages[0].sender, None);
        // Garbage after CONNECT ends the session.
        assert!(s
            .feed("mqtt", Direction::Outbound, &[0x30, 0xff, 0xff, 0xff, 0xff])
            .is_err());
    }
}
