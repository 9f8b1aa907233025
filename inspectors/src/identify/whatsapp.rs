//! WhatsApp's Noise handshake over TCP (ports 443 and 5222).
//!
//! The stream opens with an optional edge-routing preamble (`ED 00 01`, a
//! 3-byte length, routing bytes), then the 4-byte connection header `WA`,
//! protocol magic, dictionary version; then frames of a 3-byte length and a
//! protobuf `HandshakeMessage` whose first field is the ClientHello with the
//! 32-byte Noise ephemeral key.

use super::reader::Reader;
use super::sniff::{starts_with, Sniff};

const ROUTING: &[u8] = b"ED\x00\x01";

/// What the WhatsApp preamble says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaHandshake {
    /// The edge-routing preamble was present.
    pub routing_prefix: bool,
    /// Protocol magic byte after `WA` (5 or 6 seen in the wild).
    pub magic: u8,
    /// Dictionary version byte.
    pub dict_version: u8,
    /// Length of the first Noise frame.
    pub first_frame_len: usize,
}

/// Recognises the WhatsApp connection header and first handshake frame.
pub fn detect(buf: &[u8]) -> Sniff<WaHandshake> {
    let (routing_prefix, rest) = match starts_with(buf, ROUTING) {
        None => return Sniff::NeedMore,
        Some(true) => {
            let mut r = Reader::new(&buf[ROUTING.len()..]);
            let Some(len) = r.bytes(3) else {
                return Sniff::NeedMore;
            };
            let len = usize::from(len[1]) << 8 | usize::from(len[2]) | usize::from(len[0]) << 16;
            if len > 1024 {
                return Sniff::No;
            }
            match r.bytes(len) {
                Some(_) => (true, &buf[ROUTING.len() + 3 + len..]),
                None => return Sniff::NeedMore,
            }
        }
        Some(false) => (false, buf),
    };
    match starts_with(rest, b"WA") {
        Some(false) => return Sniff::No,
        None => return Sniff::NeedMore,
        Some(true) => {}
    }
    let mut r = Reader::new(&rest[2..]);
    let (Some(magic), Some(dict_version)) = (r.u8(), r.u8()) else {
        return plausible_header(&rest[2..]);
    };
    if !(1..=16).contains(&magic) || dict_version > 16 {
        return Sniff::No;
    }
    let Some(len) = r.bytes(3) else {
        return Sniff::NeedMore;
    };
    let frame_len = usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]);
    if !(34..=64 * 1024).contains(&frame_len) {
        return Sniff::No;
    }
    let Some(frame) = r.bytes(frame_len) else {
        return Sniff::NeedMore;
    };
    if !is_client_hello(frame) {
        return Sniff::No;
    }
    Sniff::Yes(WaHandshake {
        routing_prefix,
        magic,
        dict_version,
        first_frame_len: frame_len,
    })
}

fn plausible_header(after_wa: &[u8]) -> Sniff<WaHandshake> {
    match after_wa.first() {
        Some(m) if !(1..=16).contains(m) => Sniff::No,
        _ => Sniff::NeedMore,
    }
}

/// `HandshakeMessage { clientHello (2): { ephemeral (1): 32 bytes, ... } }`.
fn is_client_hello(frame: &[u8]) -> bool {
    let mut r = Reader::new(frame);
    if r.u8() != Some(0x12) {
        return false;
    }
    let Some(len) = varint(&mut r) else {
        return false;
    };
    let Some(hello) = r.bytes(len) else {
        return false;
    };
    hello.len() >= 34 && hello[0] == 0x0a && hello[1] == 0x20
}

fn varint(r: &mut Reader<'_>) -> Option<usize> {
    let mut v = 0usize;
    for i in 0..3 {
        let b = r.u8()?;
        v |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Builds a WhatsApp-style opening, for tests and fixtures.
#[cfg(test)]
pub(crate) fn sample(routing: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if routing {
        out.extend(ROUTING);
        out.extend([0, 0, 4]);
        out.extend(b"\x08\x01\x10\x02");
    }
    out.extend(b"WA\x06\x03");
    let mut hello = vec![0x0a, 0x20];
    hello.extend([0x42u8; 32]);
    let mut frame = vec![0x12, hello.len() as u8];
    frame.extend(hello);
    out.extend([0, 0, frame.len() as u8]);
    out.extend(frame);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_and_without_routing_is_recognised() {
        for routing in [false, true] {
            let bytes = sample(routing);
            let Sniff::Yes(h) = detect(&bytes) else {
                panic!("routing={routing}")
            };
            assert_eq!(h.routing_prefix, routing);
            assert_eq!((h.magic, h.dict_version), (6, 3));
            for cut in 0..bytes.len() {
                assert_eq!(detect(&bytes[..cut]), Sniff::NeedMore, "{routing} {cut}");
            }
        }
    }

    #[test]
    fn other_bytes_are_no() {
        assert_eq!(detect(b"WX"), Sniff::No);
        assert_eq!(detect(b"WA\x00"), Sniff::No);
        assert_eq!(detect(b"GET"), Sniff::No);
        let mut bad = sample(false);
        bad[7] = 0x13; // not a clientHello field
        assert_eq!(detect(&bad), Sniff::No);
    }
}
