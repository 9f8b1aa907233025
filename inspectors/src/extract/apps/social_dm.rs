//! LinkedIn and X (Twitter) direct messages. Neither publishes its web
//! client's API; these are best-effort mappings of the endpoints the web
//! clients are widely documented to use, kept small so they are easy to
//! correct from a capture.

use super::super::body::{nested, str_at};
use super::super::message::{Extracted, Message};
use super::{after, id_at, segments, text_leaves, Req};

/// LinkedIn voyager messaging:
/// - `POST /voyager/api/messaging/conversations` (new conversation) and
///   `POST /voyager/api/messaging/conversations/{id}/events?action=create`:
///   `...eventCreate.value["com.linkedin.voyager.messaging.create.MessageCreate"].attributedBody.text`;
/// - `POST /voyager/api/voyagerMessagingDashMessengerMessages?action=createMessage`:
///   `message.body.text`, `message.conversationUrn`.
pub(in super::super) fn linkedin(req: &Req) -> Extracted {
    if !req.is("POST") || !req.path.contains("/voyager/api/") {
        return Extracted::none();
    }
    if !req.path.contains("essag") {
        return Extracted::none();
    }
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    let mut m = req.message();
    let segs = segments(req.path);
    m.conversation = after(&segs, "conversations")
        .map(str::to_owned)
        .or_else(|| {
            v.pointer("/message/conversationUrn")
                .and_then(|u| u.as_str())
                .map(str::to_owned)
        });
    let mut texts = Message::new(req.app, m.direction);
    text_leaves(&v, "", &["text"], &mut texts);
    // Only the message body, not e.g. attribute names or recipient data.
    m.texts = texts
        .texts
        .into_iter()
        .filter(|t| t.field.ends_with("attributedBody.text") || t.field.ends_with("body.text"))
        .collect();
    let mut names = Message::new(req.app, m.direction);
    text_leaves(&v, "", &["name"], &mut names);
    m.attachments.extend(
        names
            .texts
            .into_iter()
            .filter(|t| t.field.contains("attachments"))
            .map(|t| t.text),
    );
    Extracted::message(m)
}

/// X direct messages:
/// - web client `POST /i/api/1.1/dm/new2.json` (JSON or form: `conversation_id`, `text`);
/// - API v1.1 `POST /1.1/direct_messages/events/new.json`
///   (`event.message_create.{target.recipient_id, message_data.text}`);
/// - API v2 `POST /2/dm_conversations/{id}/messages` and
///   `/2/dm_conversations/with/{user}/messages` (`text`).
pub(in super::super) fn x(req: &Req) -> Extracted {
    if !req.is("POST") {
        return Extracted::none();
    }
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    let segs = segments(req.path);
    let mut m = req.message();
    if req.path.ends_with("/dm/new2.json") || req.path.ends_with("/dm/new.json") {
        m.conversation = id_at(&v, "conversation_id").or_else(|| id_at(&v, "recipient_ids"));
        m.push_text("text", str_at(&v, "text").unwrap_or(""));
    } else if req.path.ends_with("/direct_messages/events/new.json") {
        let Some(mc) = nested(&v, "event").and_then(|e| e.get("message_create").cloned()) else {
            return Extracted::none();
        };
        m.conversation = mc
            .pointer("/target/recipient_id")
            .and_then(|r| r.as_str())
            .map(str::to_owned);
        m.push_text(
            "event.message_create.message_data.text",
            mc.pointer("/message_data/text")
                .and_then(|t| t.as_str())
                .unwrap_or(""),
        );
    } else if segs.first().map(String::as_str) == Some("2")
        && segs.get(1).map(String::as_str) == Some("dm_conversations")
        && segs.last().map(String::as_str) == Some("messages")
    {
        m.conversation = match after(&segs, "with") {
            Some(user) => Some(format!("with:{user}")),
            None => segs.get(2).cloned(),
        };
        m.push_text("text", str_at(&v, "text").unwrap_or(""));
    } else {
        return Extracted::none();
    }
    Extracted::message(m)
}
