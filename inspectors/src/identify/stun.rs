//! STUN and TURN messages (RFC 8489, which obsoletes RFC 5389; classic
//! RFC 3489 without the magic cookie), the first packets of nearly every
//! voice and video call: ICE connectivity checks, TURN allocations.
//!
//! What can name the app: the SOFTWARE attribute (a free-text product
//! name), the REALM of a TURN allocation (the provider's domain), and
//! vendor attributes such as Microsoft's MS-TURN/MS-ICE2 ones (public
//! specifications [MS-TURN] and [MS-ICE2]). The app decision itself is
//! the catalog's; this file only reads the message.

use super::sniff::Sniff;
use super::Confidence;

/// RFC 5389 §6: the fixed value at bytes 4..8 of every modern message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER: usize = 20;
/// STUN over UDP stays under the path MTU; over TCP a message has a 16-bit
/// length. Anything longer is not worth waiting for.
const MAX_MESSAGE: usize = 0xffff + HEADER;

const ATTR_USERNAME: u16 = 0x0006;
const ATTR_REALM: u16 = 0x0014;
const ATTR_SOFTWARE: u16 = 0x8022;
const ATTR_FINGERPRINT: u16 = 0x8028;
/// RFC 8489 §14.7: FINGERPRINT is the CRC-32 of the message XORed with this.
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Attributes defined by Microsoft's public [MS-TURN] and [MS-ICE2]
/// specifications (MS-VERSION, MS-SEQUENCE-NUMBER, CANDIDATE-IDENTIFIER,
/// MS-SERVICE-QUALITY, MS-ALTERNATE-HOST-NAME, IMPLEMENTATION-VERSION):
/// only Microsoft's clients (Teams, and formerly Skype for Business) send
/// them.
pub const MICROSOFT_ATTRIBUTES: [u16; 6] = [0x8008, 0x8050, 0x8054, 0x8055, 0x8032, 0x8070];

/// The message class (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StunClass {
    /// A request.
    Request,
    /// An indication.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// One STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StunMessage {
    /// Request, indication or response.
    pub class: StunClass,
    /// The method: 0x001 Binding, 0x003 Allocate (TURN), ...
    pub method: u16,
    /// Classic RFC 3489 (no magic cookie): recognised by structure only.
    pub classic: bool,
    /// The SOFTWARE attribute, when present.
    pub software: Option<String>,
    /// The REALM attribute, when present (TURN).
    pub realm: Option<String>,
    /// A USERNAME attribute was present (its value is not kept: it can
    /// carry user identifiers).
    pub has_username: bool,
    /// The FINGERPRINT attribute was present and matched the message.
    pub fingerprint: bool,
    /// Attribute types, in order (at most 32).
    pub attributes: Vec<u16>,
}

impl StunMessage {
    /// `Binding request`, `Allocate success`, ...
    pub fn describe(&self) -> String {
        let method = match self.method {
            0x001 => "Binding".to_owned(),
            0x003 => "Allocate".to_owned(),
            0x004 => "Refresh".to_owned(),
            0x006 => "Send".to_owned(),
            0x007 => "Data".to_owned(),
            0x008 => "CreatePermission".to_owned(),
            0x009 => "ChannelBind".to_owned(),
            m => format!("method {m:#05x}"),
        };
        let class = match self.class {
            StunClass::Request => "request",
            StunClass::Indication => "indication",
            StunClass::Success => "success response",
            StunClass::Error => "error response",
        };
        format!("STUN {method} {class}")
    }

    /// Whether any of Microsoft's MS-TURN/MS-ICE2 attributes is present.
    pub fn has_microsoft_attributes(&self) -> bool {
        self.attributes
            .iter()
            .any(|a| MICROSOFT_ATTRIBUTES.contains(a))
    }

    /// How sure the protocol verdict is: the cookie and a matching
    /// fingerprint prove it; the cookie alone nearly does; classic STUN is
    /// structure only.
    pub fn confidence(&self) -> Confidence {
        match (self.classic, self.fingerprint) {
            (false, _) => Confidence::High,
            (true, true) => Confidence::Medium,
            (true, false) => Confidence::Low,
        }
    }
}

/// Recognises STUN at the start of a TCP stream (RFC 8489 §6.2.2): only
/// with the magic cookie, since classic STUN never ran over TCP.
pub fn detect_stream(buf: &[u8]) -> Sniff<StunMessage> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match buf.get(4..8.min(buf.len())) {
        Some(c) if !cookie.starts_with(c) => Sniff::No,
        _ if buf.len() >= 4 && !length_is_sane(buf) => Sniff::No,
        _ if buf.first().is_some_and(|b| b & 0xc0 != 0) => Sniff::No,
        _ => detect(buf),
    }
}

/// Recognises a STUN message in a UDP datagram (or, through
/// [`detect_stream`], at the start of a TCP stream). Classic messages
/// without the cookie are accepted only when every attribute parses to
/// the exact end of the datagram.
pub fn detect(buf: &[u8]) -> Sniff<StunMessage> {
    // The two top bits of the type are zero (RFC 8489 §6).
    if buf.first().is_some_and(|b| b & 0xc0 != 0) {
        return Sniff::No;
    }
    if buf.len() < HEADER {
        return match buf.get(4..8.min(buf.len())) {
            Some(c) if MAGIC_COOKIE.to_be_bytes().starts_with(c) => Sniff::NeedMore,
            // Classic STUN cannot be told from other bytes until the
            // header is complete; wait only while the length is sane.
            _ if buf.len() >= 4 && !length_is_sane(buf) => Sniff::No,
            _ => Sniff::NeedMore,
        };
    }
    if !length_is_sane(buf) {
        return Sniff::No;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let classic = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE;
    let total = HEADER + len;
    if total > MAX_MESSAGE {
        return Sniff::No;
    }
    let Some(message) = buf.get(..total) else {
        return Sniff::NeedMore;
    };
    // Over UDP the datagram is the message: trailing bytes are not STUN.
    // Over TCP more may follow; the caller passes what it has, and classic
    // messages must end exactly.
    if classic && buf.len() != total {
        return Sniff::No;
    }
    match parse(message, classic) {
        Some(m) => Sniff::Yes(m),
        None => Sniff::No,
    }
}

fn length_is_sane(buf: &[u8]) -> bool {
    // Attributes are padded to four bytes, so the length is a multiple of 4.
    buf.len() < 4 || u16::from_be_bytes([buf[2], buf[3]]).is_multiple_of(4)
}

fn parse(message: &[u8], classic: bool) -> Option<StunMessage> {
    let typ = u16::from_be_bytes([message[0], message[1]]);
    let class = match ((typ >> 4) & 1) | ((typ >> 7) & 2) {
        0 => StunClass::Request,
        1 => StunClass::Indication,
        2 => StunClass::Success,
        _ => StunClass::Error,
    };
    let method = (typ & 0x000f) | ((typ >> 1) & 0x0070) | ((typ >> 2) & 0x0f80);
    if classic && !(method == 0x001 && class != StunClass::Indication) {
        // RFC 3489 defined Binding (and Shared Secret, long dead) only.
        return None;
    }
    let mut m = StunMessage {
        class,
        method,
        classic,
        software: None,
        realm: None,
        has_username: false,
        fingerprint: false,
        attributes: Vec::new(),
    };
    let mut pos = HEADER;
    while pos < message.len() {
        let head = message.get(pos..pos + 4)?;
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = message.get(pos + 4..pos + 4 + len)?;
        let padded = (len + 3) & !3;
        if classic && !(typ <= 0x002f || typ >= 0x8000) {
            return None;
        }
        if m.attributes.len() < 32 {
            m.attributes.push(typ);
        }
        match typ {
            ATTR_SOFTWARE => m.software = Some(text(value)),
            ATTR_REALM => m.realm = Some(text(value)),
            ATTR_USERNAME => m.has_username = true,
            ATTR_FINGERPRINT if len == 4 => {
                // The CRC covers the message up to this attribute, with the
                // header's length already counting it (RFC 8489 §14.7).
                let crc = crc32fast::hash(&message[..pos]) ^ FINGERPRINT_XOR;
                m.fingerprint = value == crc.to_be_bytes();
                if !m.fingerprint {
                    return None;
                }
            }
            _ => {}
        }
        pos += 4 + padded;
    }
    (pos == message.len()).then_some(m)
}

/// An attribute's UTF-8 text, lossily, at most 128 bytes.
fn text(value: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&value[..value.len().min(128)]).into_owned();
    s.retain(|c| !c.is_control());
    s
}

/// Builds a STUN message (for tests and fixture generators): `attrs` as
/// (type, value) pairs, padded, then a FINGERPRINT when asked.
pub fn build(typ: u16, txid: [u8; 12], attrs: &[(u16, &[u8])], fingerprint: bool) -> Vec<u8> {
    let mut out = typ.to_be_bytes().to_vec();
    out.extend([0, 0]);
    out.extend(MAGIC_COOKIE.to_be_bytes());
    out.extend(txid);
    for (t, v) in attrs {
        out.extend(t.to_be_bytes());
        out.extend((v.len() as u16).to_be_bytes());
        out.extend(*v);
        out.resize((out.len() + 3) & !3, 0);
    }
    let set_len = |out: &mut Vec<u8>, extra: usize| {
        let len = (out.len() - HEADER + extra) as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
    };
    if fingerprint {
        set_len(&mut out, 8);
        let crc = crc32fast::hash(&out) ^ FINGERPRINT_XOR;
        out.extend(ATTR_FINGERPRINT.to_be_bytes());
        out.extend(4u16.to_be_bytes());
        out.extend(crc.to_be_bytes());
    } else {
        set_len(&mut out, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Vec<u8> {
        build(
            0x0001,
            [7; 12],
            &[(ATTR_SOFTWARE, b"Zoom 5.17"), (ATTR_USERNAME, b"abcd:efgh")],
            true,
        )
    }

    #[test]
    fn binding_request_with_software_and_fingerprint() {
        let Sniff::Yes(m) = detect(&binding()) else {
            panic!("not STUN")
        };
        assert_eq!((m.class, m.method), (StunClass::Request, 1));
        assert_eq!(m.software.as_deref(), Some("Zoom 5.17"));
        assert!(m.fingerprint && m.has_username && !m.classic);
        assert_eq!(m.confidence(), Confidence::High);
        assert_eq!(m.describe(), "STUN Binding request");
    }

    #[test]
    fn every_prefix_needs_more_and_a_bad_fingerprint_is_refused() {
        let b = binding();
        for cut in 0..b.len() {
            assert_eq!(detect(&b[..cut]), Sniff::NeedMore, "cut {cut}");
        }
        let mut bad = b.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(detect(&bad), Sniff::No);
    }

    #[test]
    fn classes_and_methods_decode() {
        // 0x0113: Allocate error response; 0x0101: Binding success.
        for (typ, class, method) in [
            (0x0113u16, StunClass::Error, 3u16),
            (0x0101, StunClass::Success, 1),
            (0x0016, StunClass::Indication, 6),
        ] {
            let Sniff::Yes(m) = detect(&build(typ, [1; 12], &[], false)) else {
                panic!("{typ:#x}")
            };
            assert_eq!((m.class, m.method), (class, method), "{typ:#x}");
        }
    }

    #[test]
    fn classic_stun_needs_an_exact_structure() {
        let mut classic = build(0x0001, [3; 12], &[(0x0003, &[0, 0, 0, 0])], false);
        classic[4..8].copy_from_slice(&[9, 9, 9, 9]);
        let Sniff::Yes(m) = detect(&classic) else {
            panic!("classic")
        };
        assert!(m.classic);
        assert_eq!(m.confidence(), Confidence::Low);
        let mut trailing = classic.clone();
        trailing.push(0);
        assert_eq!(detect(&trailing), Sniff::No);
        assert_eq!(detect(b"\x00\x01\x00\x03abcdefghijklmnop"), Sniff::No);
        assert_eq!(detect(b"GET / HTTP/1.1\r\n\r\n...."), Sniff::No);
    }

    #[test]
    fn microsoft_attributes_are_noticed() {
        let m = build(0x0003, [2; 12], &[(0x8008, &[0, 0, 0, 6])], false);
        let Sniff::Yes(m) = detect(&m) else { panic!() };
        assert!(m.has_microsoft_attributes());
    }
}
