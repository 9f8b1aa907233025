//! Microsoft Teams: the web/desktop client's chat service
//! (`POST /v1/users/ME/conversations/{id}/messages`, JSON `content`, HTML
//! for `messagetype: RichText/Html`) and Microsoft Graph
//! (`POST /v1.0/chats/{id}/messages`, `.../channels/{id}/messages[/{id}/replies]`,
//! `body.content` with `body.contentType`).

use serde_json::Value;

use super::super::body::{nested, str_at};
use super::super::html::strip_html;
use super::{after, segments, Req};
use crate::extract::message::Extracted;

pub(in super::super) fn http(req: &Req) -> Extracted {
    if !req.is("POST") && !req.is("PUT") {
        return Extracted::none();
    }
    let segs = segments(req.path);
    if segs.last().map(String::as_str) != Some("messages")
        && segs.last().map(String::as_str) != Some("replies")
    {
        return Extracted::none();
    }
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    let mut m = req.message();
    if let Some(body) = v.get("body").filter(|b| b.is_object()) {
        // Graph API.
        m.conversation = after(&segs, "chats")
            .or_else(|| after(&segs, "channels"))
            .map(str::to_owned);
        let html = str_at(body, "contentType").is_some_and(|t| t.eq_ignore_ascii_case("html"));
        m.push_text("subject", str_at(&v, "subject").unwrap_or(""));
        push_content(&mut m, "body.content", str_at(body, "content"), html);
        if let Some(Value::Array(atts)) = v.get("attachments") {
            m.attachments.extend(
                atts.iter()
                    .filter_map(|a| str_at(a, "name"))
                    .map(str::to_owned),
            );
        }
    } else {
        // Chat service.
        m.conversation = after(&segs, "conversations").map(str::to_owned);
        m.sender = str_at(&v, "imdisplayname").map(str::to_owned);
        let html = str_at(&v, "messagetype").is_some_and(|t| t.contains("Html"));
        push_content(&mut m, "content", str_at(&v, "content"), html);
        if let Some(props) = v.get("properties") {
            if let Some(Value::Array(files)) = nested(props, "files") {
                m.attachments.extend(
                    files
                        .iter()
                        .filter_map(|f| str_at(f, "fileName"))
                        .map(str::to_owned),
                );
            }
        }
    }
    Extracted::message(m)
}

fn push_content(m: &mut crate::extract::Message, field: &str, content: Option<&str>, html: bool) {
    let Some(c) = content else { return };
    if html || c.trim_start().starts_with('<') {
        m.push_text(field, strip_html(c));
    } else {
        m.push_text(field, c);
    }
}
