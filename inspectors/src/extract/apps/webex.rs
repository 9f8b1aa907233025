//! Webex: the public REST API `POST /v1/messages` (`roomId` /
//! `toPersonEmail`, `text`, `markdown`, `html`, multipart `files`) and the
//! client's conversation service `POST .../conversation/api/v1/activities`,
//! whose `object.displayName` / `object.content` are compact JWE encrypted
//! with a KMS key — reported opaque with the JWE header as evidence.

use serde_json::Value;

use super::super::body::str_at;
use super::super::html::strip_html;
use super::super::jwe::JweHeader;
use super::super::message::{Direction, EncryptedMessage, Extracted};
use super::{id_at, segments, Req};

pub(in super::super) fn http(req: &Req) -> Extracted {
    if !req.is("POST") && !req.is("PUT") {
        return Extracted::none();
    }
    let segs = segments(req.path);
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    let mut m = req.message();
    if segs.iter().any(|s| s == "activities") {
        let Some(obj) = v.get("object") else {
            return Extracted::none();
        };
        let conversation = v.get("target").and_then(|t| id_at(t, "id"));
        for field in ["displayName", "content"] {
            if let Some(text) = str_at(obj, field) {
                if let Some(jwe) = JweHeader::parse(text) {
                    let evidence = jwe.evidence(&format!("object.{field}"));
                    return encrypted(req, conversation, &jwe, text, evidence);
                }
            }
        }
        m.conversation = conversation;
        m.push_text(
            "object.displayName",
            str_at(obj, "displayName").unwrap_or(""),
        );
        m.push_text(
            "object.content",
            strip_html(str_at(obj, "content").unwrap_or("")),
        );
        if let Some(Value::Array(items)) = obj.pointer("/files/items") {
            m.attachments.extend(
                items
                    .iter()
                    .filter_map(|f| str_at(f, "displayName"))
                    .map(str::to_owned),
            );
        }
    } else if segs.last().map(String::as_str) == Some("messages") {
        let conversation = id_at(&v, "roomId")
            .or_else(|| id_at(&v, "toPersonEmail"))
            .or_else(|| id_at(&v, "toPersonId"));
        for field in ["text", "markdown", "html"] {
            if let Some(text) = str_at(&v, field) {
                if let Some(jwe) = JweHeader::parse(text) {
                    let evidence = jwe.evidence(field);
                    return encrypted(req, conversation, &jwe, text, evidence);
                }
            }
        }
        m.conversation = conversation;
        m.push_text("text", str_at(&v, "text").unwrap_or(""));
        m.push_text("markdown", str_at(&v, "markdown").unwrap_or(""));
        m.push_text("html", strip_html(str_at(&v, "html").unwrap_or("")));
    } else {
        return Extracted::none();
    }
    Extracted::message(m)
}

/// One JWE-encrypted message: its own event, named by its conversation.
fn encrypted(
    req: &Req,
    conversation: Option<String>,
    jwe: &JweHeader,
    text: &str,
    evidence: String,
) -> Extracted {
    Extracted::encrypted(
        EncryptedMessage {
            app: req.app.to_owned(),
            direction: Direction::Outbound,
            conversation,
            sender: None,
            algorithm: format!("jwe {}/{}", jwe.alg, jwe.enc),
            size: text.trim().len() as u64,
        },
        evidence,
    )
}
