//! XMPP `<message>` stanzas from a byte stream (RFC 6120/6121), fed in
//! whatever chunks the proxy relays, both directions.
//!
//! Each feed re-reads the unconsumed tail from the start of the pending
//! stanza with `quick-xml` and acts only on stanzas that are complete, so
//! chunk boundaries can fall anywhere (inside a tag, an entity or a UTF-8
//! sequence). Also reads RFC 7395 XMPP-over-WebSocket framing, where
//! stanzas are top-level elements.
//!
//! End-to-end encrypted messages are reported opaque: OMEMO
//! (`eu.siacs.conversations.axolotl`, `urn:xmpp:omemo:2`), OpenPGP for XMPP
//! (`urn:xmpp:openpgp:0`), legacy OpenPGP (`jabber:x:encrypted`) and OTR
//! (a body starting `?OTR`). Their plaintext fallback bodies are not
//! reported as text.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::message::{Direction, EncryptedMessage, Extracted, Message};

/// A stanza larger than this is dropped with the rest of the buffer. Prosody's
/// default limit is 256 KiB (ejabberd's 64 KiB); the cap also bounds the
/// cost of re-reading a pending stanza on every feed.
const MAX_STANZA: usize = 256 << 10;

const E2EE_NAMESPACES: &[(&str, &str, &str)] = &[
    (
        "encrypted",
        "eu.siacs.conversations.axolotl",
        "OMEMO (legacy axolotl)",
    ),
    ("encrypted", "urn:xmpp:omemo:2", "OMEMO 2"),
    (
        "openpgp",
        "urn:xmpp:openpgp:0",
        "OpenPGP for XMPP (XEP-0373)",
    ),
    ("x", "jabber:x:encrypted", "legacy OpenPGP (XEP-0027)"),
];

/// Message extraction for one XMPP connection. Feed it every plaintext
/// byte in both directions (for STARTTLS: the bytes before the TLS
/// handshake, then the decrypted bytes after it).
#[derive(Debug)]
pub struct XmppExtractor {
    up: Stream,
    down: Stream,
}

impl Default for XmppExtractor {
    fn default() -> Self {
        Self::new()
    }
}

impl XmppExtractor {
    /// A fresh connection.
    pub fn new() -> Self {
        Self {
            up: Stream::default(),
            down: Stream::default(),
        }
    }

    /// Adds bytes sent in `direction`; returns what the stanzas they
    /// completed contain. At most one opaque evidence is returned per call
    /// (the first); every readable message is returned.
    pub fn feed(&mut self, direction: Direction, bytes: &[u8]) -> Extracted {
        let stream = match direction {
            Direction::Outbound => &mut self.up,
            Direction::Inbound => &mut self.down,
        };
        stream.feed(direction, bytes)
    }
}

#[derive(Debug, Default)]
struct Stream {
    buf: Vec<u8>,
}

/// What one `<message>` stanza holds.
#[derive(Default)]
struct Stanza {
    is_message: bool,
    to: Option<String>,
    from: Option<String>,
    body: Option<String>,
    subject: Option<String>,
    /// What encrypts it, and the element that says so.
    e2ee: Option<(&'static str, String)>,
    /// Bytes of the whole stanza, as sent.
    size: usize,
    oob_urls: Vec<String>,
    /// Element path below the stanza, by local name.
    path: Vec<String>,
}

impl Stream {
    fn feed(&mut self, direction: Direction, bytes: &[u8]) -> Extracted {
        self.buf.extend_from_slice(bytes);
        // Only a '>' can complete a stanza: skip the re-read otherwise.
        if memchr::memchr(b'>', bytes).is_none() {
            if self.buf.len() > MAX_STANZA {
                self.buf.clear();
            }
            return Extracted::none();
        }
        let valid = match std::str::from_utf8(&self.buf) {
            Ok(s) => s.len(),
            // A sequence cut by the chunk boundary: wait for the rest.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                tracing::debug!("xmpp stream is not UTF-8; dropping buffer");
                self.buf.clear();
                return Extracted::none();
            }
        };
        let text = std::str::from_utf8(&self.buf[..valid]).unwrap_or_default();
        let (out, consumed) = parse(direction, text);
        self.buf.drain(..consumed);
        if self.buf.len() > MAX_STANZA {
            tracing::debug!("xmpp stanza over the size cap; dropping buffer");
            self.buf.clear();
        }
        out
    }
}

/// Reads complete top-level items of `text`; returns what they hold and how
/// many bytes they span.
fn parse(direction: Direction, text: &str) -> (Extracted, usize) {
    let mut reader = Reader::from_str(text);
    let cfg = reader.config_mut();
    cfg.check_end_names = false;
    cfg.allow_unmatched_ends = true;
    cfg.allow_dangling_amp = true;
    let mut out = Extracted::none();
    let mut consumed = 0usize;
    // Depth inside the current stanza (0: between stanzas).
    let mut depth = 0usize;
    let mut stanza = Stanza::default();
    loop {
        let begin = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(e) => e,
        };
        let end = reader.buffer_position() as usize;
        match event {
            Event::Start(e) if depth == 0 => {
                if e.local_name().as_ref() == "stream" {
                    // Stream header (or its restart after STARTTLS/SASL).
                    consumed = end;
                } else {
                    stanza = Stanza {
                        size: begin,
                        ..Stanza::default()
                    };
                    stanza.is_message = e.local_name().as_ref() == "message";
                    stanza.to = attr(&e, "to");
                    stanza.from = attr(&e, "from");
                    depth = 1;
                }
            }
            Event::Start(e) => {
                stanza.open(&e);
                depth += 1;
            }
            Event::Empty(e) if depth > 0 => {
                stanza.open(&e);
                stanza.path.pop();
            }
            Event::End(_) if depth > 1 => {
                stanza.path.pop();
                depth -= 1;
            }
            Event::End(_) if depth == 1 => {
                depth = 0;
                consumed = end;
                stanza.size = end.saturating_sub(stanza.size);
                out.merge(std::mem::take(&mut stanza).finish(direction));
            }
            Event::Text(t) if depth > 0 => stanza.text(&t.xml10_content()),
            Event::CData(t) if depth > 0 => stanza.text(&t.xml10_content()),
            Event::GeneralRef(r) if depth > 0 => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => match r.as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    },
                };
                if let Some(c) = ch {
                    stanza.text(c.encode_utf8(&mut [0; 4]));
                }
            }
            // Between stanzas: declarations, keep-alive whitespace, the
            // stream end, empty top-level elements (`<r/>`, RFC 7395 `<open/>`).
            _ if depth == 0 => consumed = end,
            _ => {}
        }
    }
    (out, consumed)
}

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.try_get_attribute(name).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.into_owned())
    })
}

impl Stanza {
    fn open(&mut self, e: &BytesStart) {
        let local = e.local_name().as_ref().to_owned();
        if self.e2ee.is_none() {
            if let Some(ns) = attr(e, "xmlns") {
                if let Some((_, _, what)) = E2EE_NAMESPACES
                    .iter()
                    .find(|(n, x, _)| *n == local && *x == ns)
                {
                    self.e2ee = Some((*what, format!("<{local} xmlns='{ns}'>")));
                }
            }
        }
        if local == "x" && attr(e, "xmlns").as_deref() == Some("jabber:x:oob") {
            self.oob_urls.push(String::new());
        }
        self.path.push(local);
    }

    fn text(&mut self, t: &str) {
        let target = match self.path.as_slice() {
            [b] if b == "body" => &mut self.body,
            [s] if s == "subject" => &mut self.subject,
            [x, u] if x == "x" && u == "url" => {
                if let Some(url) = self.oob_urls.last_mut() {
                    url.push_str(t);
                }
                return;
            }
            _ => return,
        };
        target.get_or_insert_with(String::new).push_str(t);
    }

    fn finish(self, direction: Direction) -> Extracted {
        if !self.is_message {
            return Extracted::none();
        }
        let jids = format!(
            "from={} to={}",
            self.from.as_deref().unwrap_or("?"),
            self.to.as_deref().unwrap_or("?")
        );
        let otr = self
            .body
            .as_deref()
            .is_some_and(|b| b.trim_start().starts_with("?OTR"));
        if self.e2ee.is_some() || otr {
            let (algorithm, evidence) = match self.e2ee {
                Some((what, element)) => (what, format!("xmpp {what} {element} {jids}")),
                None => ("OTR", format!("xmpp OTR (?OTR body) {jids}")),
            };
            // A chat's conversation is the peer: whom it goes to when sent,
            // who sent it when received.
            let conversation = match direction {
                Direction::Outbound => self.to.clone(),
                Direction::Inbound => self.from.clone(),
            };
            return Extracted::encrypted(
                EncryptedMessage {
                    app: "xmpp".into(),
                    direction,
                    conversation,
                    sender: self.from,
                    algorithm: algorithm.into(),
                    size: self.size as u64,
                },
                evidence,
            );
        }
        let mut m = Message::new("xmpp", direction);
        m.conversation = self.to;
        m.sender = self.from;
        m.push_text("subject", self.subject.unwrap_or_default());
        m.push_text("body", self.body.unwrap_or_default());
        m.attachments = self
            .oob_urls
            .iter()
            .filter_map(|u| u.trim().rsplit('/').next())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        Extracted::message(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] =
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    #[test]
    fn utf8_split_inside_a_character() {
        let stanza = "<message to='a@b'><body>gr\u{fc}\u{df}e \u{1F600}</body></message>";
        let mut x = XmppExtractor::new();
        x.feed(Direction::Outbound, HEADER);
        let bytes = stanza.as_bytes();
        let cut = stanza.find('\u{1F600}').unwrap() + 2;
        assert!(x.feed(Direction::Outbound, &bytes[..cut]).is_empty());
        let out = x.feed(Direction::Outbound, &bytes[cut..]);
        assert_eq!(
            out.messages[0].text("body"),
            Some("gr\u{fc}\u{df}e \u{1F600}")
        );
    }

    #[test]
    fn oversized_stanza_is_dropped_and_stream_recovers() {
        let mut x = XmppExtractor::new();
        x.feed(Direction::Outbound, HEADER);
        x.feed(Direction::Outbound, b"<message to='a@b'><body>");
        x.feed(Direction::Outbound, &vec![b'a'; MAX_STANZA + 1]);
        assert!(x.up.buf.is_empty());
        let out = x.feed(
            Direction::Outbound,
            b"<message to='c@d'><body>ok</body></message>",
        );
        assert_eq!(out.messages[0].conversation.as_deref(), Some("c@d"));
    }

    #[test]
    fn omemo2_and_legacy_pgp_and_oob() {
        let mut x = XmppExtractor::new();
        x.feed(Direction::Inbound, HEADER);
        let o = x.feed(Direction::Inbound, b"<message from='a@b'><encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/><payload>AA==</payload></encrypted></message>");
        assert!(o.opaque.unwrap().evidence.contains("OMEMO 2"));
        let o = x.feed(Direction::Inbound, b"<message from='a@b'><body>This message is encrypted.</body><x xmlns='jabber:x:encrypted'>hQEMA</x></message>");
        assert!(o.opaque.unwrap().evidence.contains("XEP-0027"));
        assert!(o.messages.is_empty());
        let m = x.feed(Direction::Inbound, b"<message from='a@b'><body>https://up.example/x/report.pdf</body><x xmlns='jabber:x:oob'><url>https://up.example/x/report.pdf</url></x></message>");
        assert_eq!(m.messages[0].attachments, ["report.pdf"]);
    }
}
