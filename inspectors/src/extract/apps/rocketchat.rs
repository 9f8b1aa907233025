//! Rocket.Chat: REST (`/api/v1/chat.sendMessage` `message.{rid,msg}`,
//! `chat.postMessage` `{roomId|channel, text}`, `chat.update`,
//! `rooms.upload/{rid}` multipart) and DDP over WebSocket, raw or SockJS
//! framed (`["..."]` up, `a["..."]` down): method `sendMessage` /
//! `updateMessage` with `params[0].{rid,msg}`, and `stream-room-messages`
//! `changed` events. Messages of E2E rooms have `t: "e2e"` and ciphertext
//! in `msg`.

use serde_json::Value;

use super::super::body::str_at;
use super::super::message::{Direction, EncryptedMessage, Extracted, Message};
use super::{id_at, segments, text_leaves, Req};

pub(in super::super) fn http(req: &Req) -> Extracted {
    if !req.is("POST") {
        return Extracted::none();
    }
    let Some(method) = req.path.rsplit_once("/api/v1/").map(|(_, m)| m) else {
        return Extracted::none();
    };
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    let mut m = req.message();
    match method {
        "chat.sendMessage" => {
            let Some(msg) = v.get("message") else {
                return Extracted::none();
            };
            return from_message(req.app, Direction::Outbound, msg);
        }
        "chat.postMessage" | "chat.update" => {
            m.conversation = id_at(&v, "roomId").or_else(|| id_at(&v, "channel"));
            m.push_text("text", str_at(&v, "text").unwrap_or(""));
            if let Some(atts) = v.get("attachments") {
                text_leaves(atts, "attachments", &["text", "title", "pretext"], &mut m);
            }
        }
        _ if method.starts_with("rooms.upload") || method.starts_with("rooms.media") => {
            let segs = segments(req.path);
            m.conversation = segs.last().cloned();
            m.push_text("msg", str_at(&v, "msg").unwrap_or(""));
            m.push_text("description", str_at(&v, "description").unwrap_or(""));
        }
        _ => return Extracted::none(),
    }
    Extracted::message(m)
}

/// A Rocket.Chat message object (`IMessage`: `rid`, `msg`, `t`, `u`).
fn from_message(app: &str, direction: Direction, msg: &Value) -> Extracted {
    let rid = id_at(msg, "rid");
    // E2E messages say so by `t: "e2e"`, by their `e2e` state ("pending",
    // "done"), or (Rocket.Chat 6+) by an encrypted `content` object.
    let content_algorithm = msg.pointer("/content/algorithm").and_then(Value::as_str);
    if str_at(msg, "t") == Some("e2e")
        || msg.get("e2e").is_some_and(Value::is_string)
        || content_algorithm.is_some()
    {
        let evidence = format!(
            "rocket.chat e2e message (t=e2e) room={}",
            rid.as_deref().unwrap_or("?")
        );
        let ciphertext = msg
            .pointer("/content/ciphertext")
            .and_then(Value::as_str)
            .or_else(|| str_at(msg, "msg"));
        return Extracted::encrypted(
            EncryptedMessage {
                app: app.to_owned(),
                direction,
                conversation: rid,
                sender: msg.get("u").and_then(|u| id_at(u, "username")),
                // Older messages name no algorithm of their own.
                algorithm: content_algorithm.unwrap_or("rocketchat-e2e").into(),
                size: ciphertext.map_or(0, |c| c.len() as u64),
            },
            evidence,
        );
    }
    let mut m = Message::new(app, direction);
    m.conversation = rid;
    m.sender = msg.get("u").and_then(|u| id_at(u, "username"));
    m.push_text("msg", str_at(msg, "msg").unwrap_or(""));
    if let Some(atts) = msg.get("attachments") {
        text_leaves(
            atts,
            "attachments",
            &["text", "title", "description"],
            &mut m,
        );
    }
    if let Some(Value::Array(files)) = msg.get("files") {
        m.attachments.extend(
            files
                .iter()
                .filter_map(|f| str_at(f, "name"))
                .map(str::to_owned),
        );
    }
    Extracted::message(m)
}

/// One WebSocket text message: raw DDP or SockJS-framed DDP.
pub(in super::super) fn ws(app: &str, direction: Direction, payload: &[u8]) -> Extracted {
    let payload = payload.trim_ascii();
    let mut out = Extracted::none();
    // SockJS: `a[...]` from the server, a bare array from the client; each
    // element is a DDP message encoded as a JSON string.
    let sockjs = payload.strip_prefix(b"a").unwrap_or(payload);
    if sockjs.first() == Some(&b'[') {
        if let Ok(Value::Array(frames)) = serde_json::from_slice::<Value>(sockjs) {
            for f in frames.iter().filter_map(Value::as_str) {
                if let Ok(v) = serde_json::from_str::<Value>(f) {
                    out.merge(ddp(app, direction, &v));
                }
            }
        }
        return out;
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) => ddp(app, direction, &v),
        Err(_) => out,
    }
}

fn ddp(app: &str, direction: Direction, v: &Value) -> Extracted {
    let mut out = Extracted::none();
    match str_at(v, "msg") {
        Some("method") if matches!(str_at(v, "method"), Some("sendMessage" | "updateMessage")) => {
            if let Some(msg) = v.pointer("/params/0") {
                out.merge(from_message(app, direction, msg));
            }
        }
        Some("changed") if str_at(v, "collection") == Some("stream-room-messages") => {
            if let Some(Value::Array(args)) = v.pointer("/fields/args") {
                for msg in args.iter().filter(|a| a.get("rid").is_some()) {
                    out.merge(from_message(app, direction, msg));
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2e_messages_are_one_encrypted_message_each() {
        for (msg, algorithm) in [
            (
                r#"{"rid":"R1","msg":"a7sd8f","t":"e2e","e2e":"pending","u":{"username":"ann"}}"#,
                "rocketchat-e2e",
            ),
            (r#"{"rid":"R1","msg":"","e2e":"done"}"#, "rocketchat-e2e"),
            (
                r#"{"rid":"R1","content":{"algorithm":"rc.v1.aes-sha2","ciphertext":"kid+abcdef"}}"#,
                "rc.v1.aes-sha2",
            ),
        ] {
            let v: Value = serde_json::from_str(msg).unwrap();
            let out = from_message("rocketchat", Direction::Inbound, &v);
            assert!(out.messages.is_empty(), "{msg}");
            assert_eq!(out.encrypted.len(), 1, "{msg}");
            let e = &out.encrypted[0];
            assert_eq!(e.conversation.as_deref(), Some("R1"));
            assert_eq!(e.algorithm, algorithm);
        }
        let v: Value =
            serde_json::from_str(r#"{"rid":"R1","msg":"a7sd8f","t":"e2e","u":{"username":"ann"}}"#)
                .unwrap();
        let e = &from_message("rocketchat", Direction::Inbound, &v).encrypted[0];
        assert_eq!((e.sender.as_deref(), e.size), (Some("ann"), 6));
    }
}
