//! Google Chat REST API (chat.googleapis.com): `POST /v1/spaces/{space}/messages`
//! and `PATCH|PUT /v1/spaces/{space}/messages/{id}`, JSON `text`,
//! `cardsV2` widget text, `thread.name`, `attachment[*].contentName`.
//!
//! The web client (dynamite-pa / `mail.google.com/chat`) speaks positional
//! JSPB arrays with no field names; it is left unread rather than guessed.

use serde_json::Value;

use super::super::body::str_at;
use super::super::message::Extracted;
use super::{after, segments, text_leaves, Req};

pub(in super::super) fn http(req: &Req) -> Extracted {
    if !(req.is("POST") || req.is("PATCH") || req.is("PUT")) {
        return Extracted::none();
    }
    let segs = segments(req.path);
    let Some(space) = after(&segs, "spaces") else {
        return Extracted::none();
    };
    if !segs
        .iter()
        .any(|s| s == "messages" || s.ends_with("messages"))
    {
        return Extracted::none();
    }
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    let mut m = req.message();
    m.conversation = Some(format!("spaces/{space}"));
    m.push_text("text", str_at(&v, "text").unwrap_or(""));
    if let Some(cards) = v.get("cardsV2").or_else(|| v.get("cards")) {
        text_leaves(cards, "cardsV2", &["text", "title", "subtitle"], &mut m);
    }
    if let Some(Value::Array(atts)) = v.get("attachment") {
        m.attachments.extend(
            atts.iter()
                .filter_map(|a| str_at(a, "contentName"))
                .map(str::to_owned),
        );
    }
    Extracted::message(m)
}
