//! XMPP client streams (RFC 6120 §4): the opening stream header, and the
//! STARTTLS exchange that follows it on port 5222.
//!
//! Only the attributes of one start tag are read here, so a scan suffices;
//! message extraction will use a real XML parser.

use memchr::memmem;

use super::sniff::{starts_with, Sniff};

/// The stream header is judged on at most this many bytes.
const MAX_HEADER: usize = 4096;
const TLS_NS: &[u8] = b"urn:ietf:params:xml:ns:xmpp-tls";

/// What an XMPP stream header says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamHeader {
    /// The `to` attribute: the domain the client wants to talk to.
    pub to: Option<String>,
    /// The `from` attribute, if the client gave one.
    pub from: Option<String>,
    /// The default namespace (`jabber:client`, `jabber:server`, ...).
    pub namespace: Option<String>,
    /// The `version` attribute (`1.0` for STARTTLS-capable streams).
    pub version: Option<String>,
}

/// Recognises an XMPP stream header at the start of a stream.
pub fn detect(buf: &[u8]) -> Sniff<StreamHeader> {
    let window = &buf[..buf.len().min(MAX_HEADER)];
    let mut rest = skip_space(window.strip_prefix(b"\xef\xbb\xbf").unwrap_or(window));
    // An XML declaration may come first.
    match starts_with(rest, b"<?xml") {
        None => return Sniff::NeedMore,
        Some(true) => match memmem::find(rest, b"?>") {
            Some(end) => rest = skip_space(&rest[end + 2..]),
            None => return need_more_unless_full(window),
        },
        Some(false) => {}
    }
    match starts_with(rest, b"<stream:stream") {
        Some(false) => return Sniff::No,
        None => return Sniff::NeedMore,
        Some(true) => {}
    }
    let tag = &rest[b"<stream:stream".len()..];
    match tag.first() {
        None => return Sniff::NeedMore,
        Some(b) if !b.is_ascii_whitespace() && *b != b'>' => return Sniff::No,
        _ => {}
    }
    let Some(end) = tag_end(tag) else {
        return need_more_unless_full(window);
    };
    let attrs = &tag[..end];
    Sniff::Yes(StreamHeader {
        to: attr(attrs, b"to"),
        from: attr(attrs, b"from"),
        namespace: attr(attrs, b"xmlns"),
        version: attr(attrs, b"version"),
    })
}

/// Whether the client's bytes hold its STARTTLS request.
pub fn is_starttls_request(client: &[u8]) -> bool {
    memmem::find(client, b"<starttls").is_some() && memmem::find(client, TLS_NS).is_some()
}

/// Whether the server's stream features offer STARTTLS.
pub fn features_offer_starttls(server: &[u8]) -> bool {
    memmem::find(server, b"<stream:features").is_some()
        && memmem::find(server, b"<starttls").is_some()
        && memmem::find(server, TLS_NS).is_some()
}

/// Whether the server answered STARTTLS with `<proceed/>`: TLS starts with
/// the next byte.
pub fn is_proceed(server: &[u8]) -> bool {
    memmem::find(server, b"<proceed").is_some() && memmem::find(server, TLS_NS).is_some()
}

fn need_more_unless_full<T>(window: &[u8]) -> Sniff<T> {
    if window.len() >= MAX_HEADER {
        Sniff::No
    } else {
        Sniff::NeedMore
    }
}

fn skip_space(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Position of the `>` closing the start tag, skipping quoted values.
fn tag_end(tag: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &c) in tag.iter().enumerate() {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The value of attribute `name` in a start tag's attribute text.
fn attr(attrs: &[u8], name: &[u8]) -> Option<String> {
    let mut rest = attrs;
    loop {
        rest = skip_space(rest);
        let eq = rest.iter().position(|c| *c == b'=')?;
        let key = rest[..eq].trim_ascii();
        let after = skip_space(&rest[eq + 1..]);
        let q = *after.first()?;
        if q != b'"' && q != b'\'' {
            return None;
        }
        let len = after[1..].iter().position(|c| *c == q)?;
        let value = &after[1..1 + len];
        if key == name {
            return std::str::from_utf8(value).ok().map(str::to_owned);
        }
        rest = &after[len + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='chat.example.org' \
        xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

    #[test]
    fn stream_header_gives_domain_and_namespace() {
        let Sniff::Yes(h) = detect(HEADER) else {
            panic!()
        };
        assert_eq!(h.to.as_deref(), Some("chat.example.org"));
        assert_eq!(h.namespace.as_deref(), Some("jabber:client"));
        assert_eq!(h.version.as_deref(), Some("1.0"));
        assert_eq!(h.from, None);
    }

    #[test]
    fn prefixes_need_more_and_other_xml_is_no() {
        for cut in 0..HEADER.len() {
            assert_eq!(detect(&HEADER[..cut]), Sniff::NeedMore, "{cut}");
        }
        assert_eq!(detect(b"<html>"), Sniff::No);
        assert_eq!(detect(b"<stream:streamer>"), Sniff::No);
        assert_eq!(detect(b"GET / HTTP/1.1"), Sniff::No);
    }

    #[test]
    fn starttls_exchange_is_recognised() {
        assert!(is_starttls_request(
            b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        ));
        assert!(features_offer_starttls(
            b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>\
              </starttls></stream:features>"
        ));
        assert!(is_proceed(
            b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        ));
        assert!(!is_proceed(
            b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        ));
    }
}
