//! Slack Web API (`chat.*`, `files.*`) and RTM / Socket Mode WebSocket events.
//!
//! Field names from api.slack.com: `chat.postMessage` takes `channel`,
//! `text`, `blocks` (JSON, a string in forms) and legacy `attachments`; the
//! web client posts the same arguments as multipart.

use serde_json::Value;

use super::super::body::{nested, str_at};
use super::super::message::{Direction, Extracted, Message};
use super::{id_at, text_leaves, Req};

const CHAT_METHODS: &[&str] = &[
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "chat.scheduleMessage",
    "chat.meMessage",
];

/// Slack text lives in `text` members (sections, rich_text elements,
/// legacy attachments) plus a few attachment-specific ones.
const BLOCK_KEYS: &[&str] = &["text", "pretext", "fallback", "title", "alt_text"];

pub(in super::super) fn http(req: &Req) -> Extracted {
    let Some(method) = req.path.rsplit_once("/api/").map(|(_, m)| m) else {
        return Extracted::none();
    };
    let Some(args) = req.json() else {
        return Extracted::none();
    };
    let mut m = req.message();
    if CHAT_METHODS.contains(&method) {
        m.conversation = id_at(&args, "channel");
        fill(&args, &mut m);
    } else if method.starts_with("files.") {
        // files.upload (multipart), files.getUploadURLExternal,
        // files.completeUploadExternal: a comment and file names.
        m.conversation = id_at(&args, "channels").or_else(|| id_at(&args, "channel_id"));
        m.push_text(
            "initial_comment",
            str_at(&args, "initial_comment").unwrap_or(""),
        );
        // files.upload takes a text file's content as the `content` argument.
        m.push_text("content", str_at(&args, "content").unwrap_or(""));
        if let Some(name) = str_at(&args, "filename") {
            m.attachments.push(name.to_owned());
        }
        if let Some(Value::Array(files)) = nested(&args, "files") {
            for f in &files {
                if let Some(t) = str_at(f, "title") {
                    m.attachments.push(t.to_owned());
                }
            }
        }
    } else {
        return Extracted::none();
    }
    Extracted::message(m)
}

fn fill(msg_json: &Value, m: &mut Message) {
    m.push_text("text", str_at(msg_json, "text").unwrap_or(""));
    for key in ["blocks", "attachments"] {
        if let Some(v) = nested(msg_json, key) {
            text_leaves(&v, key, BLOCK_KEYS, m);
        }
    }
    if let Some(Value::Array(files)) = msg_json.get("files") {
        m.attachments.extend(
            files
                .iter()
                .filter_map(|f| str_at(f, "name"))
                .map(str::to_owned),
        );
    }
}

/// One RTM or Socket Mode WebSocket message (JSON text).
pub(in super::super) fn ws(app: &str, direction: Direction, payload: &[u8]) -> Extracted {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return Extracted::none();
    };
    // Socket Mode wraps Events API payloads in an envelope.
    let event = v
        .pointer("/payload/event")
        .filter(|_| str_at(&v, "type") == Some("events_api"))
        .unwrap_or(&v);
    if str_at(event, "type") != Some("message") {
        return Extracted::none();
    }
    // Edits carry the new message under `message`.
    let body = match str_at(event, "subtype") {
        Some("message_changed") => event.get("message").unwrap_or(event),
        _ => event,
    };
    let mut m = Message::new(app, direction);
    m.conversation = id_at(event, "channel");
    m.sender = id_at(body, "user").or_else(|| id_at(body, "bot_id"));
    fill(body, &mut m);
    Extracted::message(m)
}
