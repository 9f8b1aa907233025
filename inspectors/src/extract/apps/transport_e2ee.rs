//! Apps whose payloads inside TLS are end-to-end encrypted as a whole:
//! Signal (`PUT /v1/messages/{destination}` with base64 `messages[*].content`
//! ciphertext, or binary protobuf frames on `/v1/websocket/`) and WhatsApp
//! Web (a Noise session inside WebSocket binary frames, opened by the `WA`
//! connection header).

use serde_json::Value;

use super::super::body::str_at;
use super::super::message::{Direction, Extracted};
use super::{after, segments, Req};
use crate::identify::{whatsapp, Sniff};

pub(in super::super) fn signal_http(req: &Req) -> Extracted {
    let segs = segments(req.path);
    let Some(dest) = after(&segs, "messages") else {
        return Extracted::none();
    };
    if !req.is("PUT") || segs.first().map(String::as_str) != Some("v1") {
        return Extracted::none();
    }
    if dest == "multi_recipient" {
        return Extracted::e2ee(req.app, "signal sealed-sender multi-recipient message");
    }
    let Some(v) = req.json() else {
        return Extracted::e2ee(req.app, format!("signal message to {dest} (unparsed body)"));
    };
    let Some(Value::Array(msgs)) = v.get("messages") else {
        return Extracted::none();
    };
    let types: Vec<String> = msgs
        .iter()
        .filter_map(|m| m.get("type").map(Value::to_string))
        .collect();
    let bytes: usize = msgs
        .iter()
        .filter_map(|m| str_at(m, "content"))
        .map(str::len)
        .sum();
    Extracted::e2ee(
        req.app,
        format!(
            "signal /v1/messages to {dest}: {} ciphertext envelope(s), type [{}], {bytes} base64 bytes",
            msgs.len(),
            types.join(",")
        ),
    )
}

/// Signal's WebSocket carries protobuf `WebSocketMessage`s whose requests
/// hold the same ciphertext envelopes.
pub(in super::super) fn signal_ws(
    direction: Direction,
    is_text: bool,
    payload: &[u8],
) -> Extracted {
    if is_text || payload.is_empty() {
        return Extracted::none();
    }
    Extracted::e2ee(
        "signal",
        format!(
            "signal websocket protobuf frame ({:?}, {} bytes) carrying encrypted envelopes",
            direction,
            payload.len()
        ),
    )
}

pub(in super::super) fn whatsapp_ws(is_text: bool, payload: &[u8]) -> Extracted {
    if is_text || payload.is_empty() {
        return Extracted::none();
    }
    let evidence = match whatsapp::detect(payload) {
        Sniff::Yes(h) => format!(
            "whatsapp web noise handshake: WA header magic={} dict={}",
            h.magic, h.dict_version
        ),
        _ => format!("whatsapp web noise frame ({} bytes)", payload.len()),
    };
    Extracted::e2ee("whatsapp", evidence)
}
