//! Mattermost API v4: `POST /api/v4/posts` (`message`, `channel_id`,
//! `file_ids`), `PUT /api/v4/posts/{id}[/patch]`, file uploads
//! `POST /api/v4/files` (multipart), and the WebSocket `posted` event whose
//! `data.post` is a JSON string.

use serde_json::Value;

use super::super::body::{nested, str_at};
use super::super::message::{Direction, Extracted, Message};
use super::{id_at, segments, Req};

pub(in super::super) fn http(req: &Req) -> Extracted {
    let segs = segments(req.path);
    let tail: Vec<&str> = segs.iter().map(String::as_str).collect();
    let Some(i) = tail.windows(2).position(|w| w == ["api", "v4"]) else {
        return Extracted::none();
    };
    let mut m = req.message();
    match (&tail[i + 2..], req.method) {
        (["posts"], "POST") | (["posts", _] | ["posts", _, "patch"], "PUT") => {
            let Some(v) = req.json() else {
                return Extracted::none();
            };
            m.conversation = id_at(&v, "channel_id");
            m.push_text("message", str_at(&v, "message").unwrap_or(""));
        }
        (["files"], "POST") => {
            let v = req.json();
            m.conversation = v.as_ref().and_then(|v| id_at(v, "channel_id"));
            if let Some(q) = req.query {
                for (k, val) in form_urlencoded::parse(q.as_bytes()) {
                    match &*k {
                        "channel_id" => m.conversation = Some(val.into_owned()),
                        "filename" => m.attachments.push(val.into_owned()),
                        _ => {}
                    }
                }
            }
        }
        _ => return Extracted::none(),
    }
    Extracted::message(m)
}

pub(in super::super) fn ws(direction: Direction, payload: &[u8]) -> Extracted {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return Extracted::none();
    };
    if !matches!(str_at(&v, "event"), Some("posted" | "post_edited")) {
        return Extracted::none();
    }
    let Some(data) = v.get("data") else {
        return Extracted::none();
    };
    let Some(post) = nested(data, "post") else {
        return Extracted::none();
    };
    let mut m = Message::new("mattermost", direction);
    m.conversation = id_at(&post, "channel_id");
    m.sender = id_at(data, "sender_name").or_else(|| id_at(&post, "user_id"));
    m.push_text("message", str_at(&post, "message").unwrap_or(""));
    Extracted::message(m)
}
