//! Per-app knowledge: which endpoints carry messages and which fields hold
//! the text. Each app module exposes `http(&Req) -> Extracted` and, where the
//! app uses WebSockets, a `ws` function or state type.

pub(super) mod discord;
pub(super) mod google_chat;
pub(super) mod matrix;
pub(super) mod mattermost;
pub(super) mod meta;
pub(super) mod rocketchat;
pub(super) mod slack;
pub(super) mod social_dm;
pub(super) mod teams;
pub(super) mod transport_e2ee;
pub(super) mod webex;
pub(super) mod zulip;

use serde_json::Value;

use super::body::Body;
use super::message::{Direction, Message};

/// A decoded HTTP request, as the app modules see it.
pub(super) struct Req<'a> {
    pub app: &'a str,
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: Body,
}

impl Req<'_> {
    pub fn is(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }

    /// The body as one JSON object (see [`Body::to_json`]).
    pub fn json(&self) -> Option<Value> {
        self.body.to_json().map(|v| v.into_owned())
    }

    pub fn message(&self) -> Message {
        let mut m = Message::new(self.app, Direction::Outbound);
        m.attachments = self.body.filenames();
        m
    }
}

/// Path segments, percent-decoded.
pub(super) fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// `%21abc%3Aexample.org` → `!abc:example.org`.
pub(super) fn percent_decode(s: &str) -> String {
    // form_urlencoded also turns '+' into ' ' and splits at '&', which
    // paths do not mean.
    let protected = s.replace('+', "%2B").replace('&', "%26");
    form_urlencoded::parse(format!("x={protected}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The segment after `name`, e.g. `after(&segs, "channels")`.
pub(super) fn after<'s>(segs: &'s [String], name: &str) -> Option<&'s str> {
    segs.iter()
        .position(|s| s == name)
        .and_then(|i| segs.get(i + 1))
        .map(String::as_str)
}

/// Collects every string leaf whose key is one of `keys` below `v`, naming
/// it by its path (`blocks[0].elements[1].text`).
pub(super) fn text_leaves(v: &Value, prefix: &str, keys: &[&str], msg: &mut Message) {
    walk(v, prefix, keys, msg, 0);
}

fn walk(v: &Value, path: &str, keys: &[&str], msg: &mut Message, depth: usize) {
    if depth > 32 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match child {
                    Value::String(s) if keys.contains(&k.as_str()) => msg.push_text(p, s.clone()),
                    _ => walk(child, &p, keys, msg, depth + 1),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), keys, msg, depth + 1);
            }
        }
        _ => {}
    }
}

/// A string or number member as text (ids are either, depending on the app).
pub(super) fn id_at(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
