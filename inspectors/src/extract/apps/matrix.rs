//! Matrix client-server API: `PUT /_matrix/client/{r0,v3}/rooms/{room}/send/{type}/{txn}`
//! (spec §"Sending events to a room"). `m.room.message` carries `body` and
//! optionally HTML `formatted_body`; `m.room.encrypted` (Megolm) and
//! `sendToDevice/m.room.encrypted` (Olm) are end-to-end encrypted.

use super::super::body::str_at;
use super::super::html::strip_html;
use super::super::message::{Direction, EncryptedMessage, Extracted};
use super::{after, segments, Req};

const FILE_TYPES: &[&str] = &["m.file", "m.image", "m.video", "m.audio"];

pub(in super::super) fn http(req: &Req) -> Extracted {
    if !req.is("PUT") && !req.is("POST") {
        return Extracted::none();
    }
    let segs = segments(req.path);
    if segs.first().map(String::as_str) != Some("_matrix") {
        return Extracted::none();
    }
    let Some(v) = req.json() else {
        return Extracted::none();
    };
    if let Some(event_type) = after(&segs, "sendToDevice") {
        if event_type == "m.room.encrypted" {
            return Extracted::e2ee(req.app, "matrix to-device m.room.encrypted (Olm)");
        }
        return Extracted::none();
    }
    let (Some(room), Some(event_type)) = (after(&segs, "rooms"), after(&segs, "send")) else {
        return Extracted::none();
    };
    match event_type {
        "m.room.encrypted" => {
            let algorithm = str_at(&v, "algorithm").unwrap_or("unknown");
            let evidence = format!("matrix m.room.encrypted algorithm={algorithm} room={room}");
            Extracted::encrypted(
                EncryptedMessage {
                    app: req.app.to_owned(),
                    direction: Direction::Outbound,
                    conversation: Some(room.to_owned()),
                    // The sender is the authenticated user; the payload
                    // names only the sending device, when it still does.
                    sender: str_at(&v, "device_id").map(str::to_owned),
                    algorithm: algorithm.to_owned(),
                    size: str_at(&v, "ciphertext").map_or(0, |c| c.len() as u64),
                },
                evidence,
            )
        }
        "m.room.message" => {
            let mut m = req.message();
            m.conversation = Some(room.to_owned());
            let body = str_at(&v, "body").unwrap_or("");
            let msgtype = str_at(&v, "msgtype").unwrap_or("");
            if FILE_TYPES.contains(&msgtype) {
                // Without `filename`, `body` is the file name; with it, a caption.
                match str_at(&v, "filename") {
                    Some(f) => {
                        m.attachments.push(f.to_owned());
                        m.push_text("body", body);
                    }
                    None => m.attachments.push(body.to_owned()),
                }
            } else {
                m.push_text("body", body);
                if str_at(&v, "format") == Some("org.matrix.custom.html") {
                    let html = str_at(&v, "formatted_body").unwrap_or("");
                    m.push_text("formatted_body", strip_html(html));
                }
            }
            // Edits carry the new text in m.new_content.
            if let Some(new) = v.get("m.new_content") {
                m.push_text("m.new_content.body", str_at(new, "body").unwrap_or(""));
            }
            Extracted::message(m)
        }
        _ => Extracted::none(),
    }
}
