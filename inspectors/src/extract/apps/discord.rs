//! Discord: REST `POST/PATCH /api/v{n}/channels/{id}/messages[/{id}]`
//! (JSON, or multipart with `payload_json` and `files[n]`) and the gateway
//! WebSocket (`op 0`, `t: MESSAGE_CREATE|MESSAGE_UPDATE`, `d.content`),
//! optionally `zlib-stream` compressed.

use serde_json::Value;

use super::super::body::{nested, str_at};
use super::super::message::{Direction, Extracted, Message};
use super::super::MAX_DECODED_BODY;
use super::{after, id_at, segments, text_leaves, Req};
use crate::codec::ZlibStream;

pub(in super::super) fn http(req: &Req) -> Extracted {
    if !req.is("POST") && !req.is("PATCH") {
        return Extracted::none();
    }
    let segs = segments(req.path);
    let Some(channel) = after(&segs, "channels") else {
        return Extracted::none();
    };
    if !segs.iter().any(|s| s == "messages") || segs.iter().any(|s| s == "reactions") {
        return Extracted::none();
    }
    let Some(args) = req.json() else {
        return Extracted::none();
    };
    // Multipart sends the JSON arguments in a `payload_json` part.
    let args = nested(&args, "payload_json").unwrap_or(args);
    let mut m = req.message();
    m.conversation = Some(channel.to_owned());
    fill(&args, &mut m);
    Extracted::message(m)
}

fn fill(v: &Value, m: &mut Message) {
    m.push_text("content", str_at(v, "content").unwrap_or(""));
    if let Some(embeds) = v.get("embeds") {
        text_leaves(
            embeds,
            "embeds",
            &["title", "description", "value", "text"],
            m,
        );
    }
    if let Some(Value::Array(atts)) = v.get("attachments") {
        m.attachments.extend(
            atts.iter()
                .filter_map(|a| str_at(a, "filename"))
                .map(str::to_owned),
        );
    }
    m.attachments.dedup();
}

/// One gateway connection: the inflater lives as long as the connection.
#[derive(Debug, Default)]
pub(in super::super) struct Gateway {
    inflater: Option<ZlibStream>,
}

impl Gateway {
    pub fn ws(&mut self, direction: Direction, is_text: bool, payload: &[u8]) -> Extracted {
        let json;
        let payload = if is_text {
            payload
        } else {
            // Binary frames are zlib-stream (the only binary encoding we
            // read; `compress=zstd-stream` and ETF stay unread).
            let z = self
                .inflater
                .get_or_insert_with(|| ZlibStream::new(MAX_DECODED_BODY));
            match z.push(payload) {
                Ok(Some(out)) => {
                    json = out;
                    &json
                }
                Ok(None) => return Extracted::none(),
                Err(e) => {
                    tracing::debug!(error = %e, "discord gateway inflate failed");
                    return Extracted::none();
                }
            }
        };
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            return Extracted::none();
        };
        if v.get("op").and_then(Value::as_u64) != Some(0)
            || !matches!(str_at(&v, "t"), Some("MESSAGE_CREATE" | "MESSAGE_UPDATE"))
        {
            return Extracted::none();
        }
        let Some(d) = v.get("d") else {
            return Extracted::none();
        };
        let mut m = Message::new("discord", direction);
        m.conversation = id_at(d, "channel_id");
        m.sender = d
            .get("author")
            .and_then(|a| id_at(a, "username").or_else(|| id_at(a, "id")));
        fill(d, &mut m);
        Extracted::message(m)
    }
}
