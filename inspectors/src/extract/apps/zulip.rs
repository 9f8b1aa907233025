//! Zulip: `POST /api/v1/messages` (and the web app's `/json/messages`),
//! form fields `type`, `to` (channel name/id or a JSON list of users),
//! `topic` (formerly `subject`), `content`; edits `PATCH .../messages/{id}`;
//! uploads `POST .../user_uploads` (multipart).

use super::super::body::str_at;
use super::super::message::Extracted;
use super::{segments, Req};

pub(in super::super) fn http(req: &Req) -> Extracted {
    let segs = segments(req.path);
    let Some(i) = segs
        .iter()
        .position(|s| s == "messages" || s == "user_uploads")
    else {
        return Extracted::none();
    };
    let api = segs[..i].ends_with(&["api".to_owned(), "v1".to_owned()])
        || segs[..i] == ["json".to_owned()];
    if !api {
        return Extracted::none();
    }
    let mut m = req.message();
    let v = req.json();
    match (segs[i].as_str(), segs.len() - i, req.method) {
        ("messages", 1, "POST") | ("messages", 2, "PATCH") => {
            let Some(v) = v else {
                return Extracted::none();
            };
            m.conversation = str_at(&v, "to").map(str::to_owned);
            let topic = str_at(&v, "topic").or_else(|| str_at(&v, "subject"));
            m.push_text("topic", topic.unwrap_or(""));
            m.push_text("content", str_at(&v, "content").unwrap_or(""));
        }
        ("user_uploads", 1, "POST") => {}
        _ => return Extracted::none(),
    }
    Extracted::message(m)
}
