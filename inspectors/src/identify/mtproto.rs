//! Telegram's MTProto transports (core.telegram.org/mtproto/mtproto-transports):
//! abridged, intermediate, padded intermediate, full, and obfuscated2.
//!
//! The plain transports announce themselves with a tag or a checksum; the
//! obfuscated one is random-looking until its 64-byte header is decrypted
//! with the AES-256-CTR key and IV it carries (RustCrypto `aes` + `ctr`).

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};

use super::sniff::Sniff;
use super::Confidence;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Largest first packet we wait for; Telegram's first message is
/// `req_pq_multi` (40 bytes) or a small encrypted message.
const MAX_FIRST_PACKET: usize = 16 * 1024;
const ABRIDGED: u8 = 0xef;
const INTERMEDIATE: [u8; 4] = [0xee; 4];
const PADDED: [u8; 4] = [0xdd; 4];

/// Which MTProto transport the client chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MtprotoTransport {
    /// `0xef`, then packets with a 1- or 4-byte length in 4-byte words.
    Abridged,
    /// `0xeeeeeeee`, then packets with a 4-byte length.
    Intermediate,
    /// `0xdddddddd`, then padded packets with a 4-byte length.
    PaddedIntermediate,
    /// Length, sequence number and CRC32 around each packet.
    Full,
    /// A 64-byte obfuscation header hiding one of the tagged transports.
    Obfuscated2 {
        /// The transport inside the obfuscation.
        inner: ObfuscatedInner,
        /// The data-centre id the client asked for (negative for media DCs).
        dc: i16,
    },
}

/// The tagged transport inside obfuscated2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObfuscatedInner {
    /// Tag `0xefefefef`.
    Abridged,
    /// Tag `0xeeeeeeee`.
    Intermediate,
    /// Tag `0xdddddddd`.
    PaddedIntermediate,
}

/// How much a transport's recognition proves: a CRC or a 32-bit tag
/// decrypted from random bytes is strong; a 4-byte tag is fair; abridged's
/// one-byte tag is weak even with a well-formed first message.
pub fn confidence(t: MtprotoTransport) -> Confidence {
    match t {
        MtprotoTransport::Full | MtprotoTransport::Obfuscated2 { .. } => Confidence::High,
        MtprotoTransport::Intermediate | MtprotoTransport::PaddedIntermediate => Confidence::Medium,
        MtprotoTransport::Abridged => Confidence::Low,
    }
}

/// Recognises a plain (unobfuscated) MTProto transport.
pub fn detect_plain(buf: &[u8]) -> Sniff<MtprotoTransport> {
    let Some(&first) = buf.first() else {
        return Sniff::NeedMore;
    };
    if first == ABRIDGED {
        return abridged_packet(&buf[1..]).map(|()| MtprotoTransport::Abridged);
    }
    for (tag, transport, padded) in [
        (INTERMEDIATE, MtprotoTransport::Intermediate, false),
        (PADDED, MtprotoTransport::PaddedIntermediate, true),
    ] {
        let n = buf.len().min(4);
        if buf[..n] == tag[..n] {
            if n < 4 {
                return Sniff::NeedMore;
            }
            return length_prefixed(&buf[4..], padded).map(|()| transport);
        }
    }
    full(buf)
}

fn abridged_packet(buf: &[u8]) -> Sniff<()> {
    let Some(&b) = buf.first() else {
        return Sniff::NeedMore;
    };
    let (words, header) = if b < 0x7f {
        (usize::from(b), 1)
    } else if b == 0x7f {
        let Some(l) = buf.get(1..4) else {
            return Sniff::NeedMore;
        };
        (
            usize::from(l[0]) | usize::from(l[1]) << 8 | usize::from(l[2]) << 16,
            4,
        )
    } else {
        return Sniff::No;
    };
    whole_packet(buf, header, words * 4, false)
}

fn length_prefixed(buf: &[u8], padded: bool) -> Sniff<()> {
    let Some(l) = buf.get(..4) else {
        return Sniff::NeedMore;
    };
    let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
    whole_packet(buf, 4, len, padded)
}

/// Waits for a first packet of `len` bytes after a `header`-byte length,
/// then checks that it is an MTProto message.
fn whole_packet(buf: &[u8], header: usize, len: usize, padded: bool) -> Sniff<()> {
    // A first packet holds at least an auth key id, a message id or key,
    // and a length; Telegram's first messages are small.
    if !(20..=MAX_FIRST_PACKET).contains(&len) {
        return Sniff::No;
    }
    match buf.get(header..header + len) {
        Some(packet) if first_message_ok(packet, padded) => Sniff::Yes(()),
        Some(_) => Sniff::No,
        None => Sniff::NeedMore,
    }
}

/// The transport's own checks on the first message
/// (core.telegram.org/mtproto/description): an unencrypted message has
/// auth_key_id 0, a client message id divisible by 4 and a length that
/// fills the packet; an encrypted one has a 16-byte msg_key and a body of
/// whole AES blocks. Padded intermediate adds 0–15 random bytes.
fn first_message_ok(p: &[u8], padded: bool) -> bool {
    let auth_key_id = u64::from_le_bytes(p[..8].try_into().expect("len >= 20"));
    if auth_key_id == 0 {
        let msg_id = u64::from_le_bytes(p[8..16].try_into().expect("len >= 20"));
        let body = u32::from_le_bytes(p[16..20].try_into().expect("len >= 20")) as usize;
        let extra = p.len() - 20;
        msg_id != 0
            && msg_id.is_multiple_of(4)
            && (body == extra || (padded && body < extra && extra - body < 16))
    } else {
        p.len() >= 24 + 16 && (padded || (p.len() - 24).is_multiple_of(16))
    }
}

/// The full transport: `len` (LE, whole packet), `seq` = 0, payload, CRC32.
fn full(buf: &[u8]) -> Sniff<MtprotoTransport> {
    let Some(l) = buf.get(..4) else {
        return Sniff::NeedMore;
    };
    let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
    if !(20..=MAX_FIRST_PACKET).contains(&len) || !len.is_multiple_of(4) {
        return Sniff::No;
    }
    // The first packet has sequence number 0.
    if buf[4..].iter().take(4).any(|b| *b != 0) {
        return Sniff::No;
    }
    let Some(packet) = buf.get(..len) else {
        return Sniff::NeedMore;
    };
    let (body, crc) = packet.split_at(len - 4);
    if crc32fast::hash(body).to_le_bytes() == crc {
        Sniff::Yes(MtprotoTransport::Full)
    } else {
        Sniff::No
    }
}

/// Recognises an obfuscated2 header by decrypting it. Needs 64 bytes; the
/// bytes before that can only be ruled out by the values clients must avoid.
pub fn detect_obfuscated(buf: &[u8]) -> Sniff<MtprotoTransport> {
    if buf.first() == Some(&ABRIDGED) || buf.get(4..8).is_some_and(|b| b == [0, 0, 0, 0]) {
        return Sniff::No;
    }
    if let Some(head) = buf.get(..4) {
        const AVOIDED: [&[u8; 4]; 7] = [
            b"HEAD",
            b"POST",
            b"GET ",
            b"OPTI",
            &PADDED,
            &INTERMEDIATE,
            b"\x16\x03\x01\x02",
        ];
        if AVOIDED.iter().any(|a| a[..] == *head) {
            return Sniff::No;
        }
    }
    let Some(header) = buf.get(..64) else {
        return Sniff::NeedMore;
    };
    let mut plain = [0u8; 64];
    plain.copy_from_slice(header);
    let Ok(mut cipher) = Aes256Ctr::new_from_slices(&header[8..40], &header[40..56]) else {
        return Sniff::No;
    };
    cipher.apply_keystream(&mut plain);
    let inner = match plain[56..60] {
        [0xef, 0xef, 0xef, 0xef] => ObfuscatedInner::Abridged,
        [0xee, 0xee, 0xee, 0xee] => ObfuscatedInner::Intermediate,
        [0xdd, 0xdd, 0xdd, 0xdd] => ObfuscatedInner::PaddedIntermediate,
        _ => return Sniff::No,
    };
    let dc = i16::from_le_bytes([plain[60], plain[61]]);
    // The keystream runs on into the first packet: decrypt what arrived of
    // it and wait for all of it, as for the plain transports.
    let mut first = buf[64..buf.len().min(64 + 4 + MAX_FIRST_PACKET)].to_vec();
    cipher.apply_keystream(&mut first);
    let packet = match inner {
        ObfuscatedInner::Abridged => abridged_packet(&first),
        ObfuscatedInner::Intermediate => length_prefixed(&first, false),
        ObfuscatedInner::PaddedIntermediate => length_prefixed(&first, true),
    };
    packet.map(|()| MtprotoTransport::Obfuscated2 { inner, dc })
}

/// Builds the opening of an obfuscated2 stream the way a client does: the
/// 64-byte header made from `random`, then `packet` framed for `inner` and
/// encrypted with the same keystream. For tests and fixture generators.
pub fn obfuscated2_stream(
    random: [u8; 64],
    inner: ObfuscatedInner,
    dc: i16,
    packet: &[u8],
) -> Vec<u8> {
    let mut init = random;
    init[56..60].copy_from_slice(match inner {
        ObfuscatedInner::Abridged => &[0xef; 4],
        ObfuscatedInner::Intermediate => &INTERMEDIATE,
        ObfuscatedInner::PaddedIntermediate => &PADDED,
    });
    init[60..62].copy_from_slice(&dc.to_le_bytes());
    let mut stream = init.to_vec();
    match inner {
        ObfuscatedInner::Abridged => stream.push((packet.len() / 4) as u8),
        _ => stream.extend((packet.len() as u32).to_le_bytes()),
    }
    stream.extend(packet);
    let mut cipher = Aes256Ctr::new_from_slices(&init[8..40], &init[40..56])
        .expect("32-byte key and 16-byte IV");
    cipher.apply_keystream(&mut stream);
    // The header goes out in the clear except its last eight bytes.
    stream[..56].copy_from_slice(&init[..56]);
    stream
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_pq() -> Vec<u8> {
        // auth_key_id 0, message_id, length 20, req_pq_multi + nonce.
        let mut m = vec![0u8; 8];
        m.extend(0x5f00_0000_0000_0004u64.to_le_bytes());
        m.extend(20u32.to_le_bytes());
        m.extend(0xbe7e_8ef1u32.to_le_bytes());
        m.extend([7u8; 16]);
        m
    }

    fn all_prefixes_need_more(bytes: &[u8], detect: fn(&[u8]) -> Sniff<MtprotoTransport>) {
        for cut in 0..bytes.len() {
            assert_eq!(detect(&bytes[..cut]), Sniff::NeedMore, "cut {cut}");
        }
    }

    #[test]
    fn tagged_transports_are_recognised() {
        let msg = req_pq();
        let mut abridged = vec![0xef, (msg.len() / 4) as u8];
        abridged.extend(&msg);
        let mut inter = INTERMEDIATE.to_vec();
        inter.extend((msg.len() as u32).to_le_bytes());
        inter.extend(&msg);
        let mut padded = PADDED.to_vec();
        padded.extend((msg.len() as u32 + 4).to_le_bytes());
        padded.extend(&msg);
        padded.extend([1, 2, 3, 4]);
        for (bytes, want) in [
            (abridged, MtprotoTransport::Abridged),
            (inter, MtprotoTransport::Intermediate),
            (padded, MtprotoTransport::PaddedIntermediate),
        ] {
            assert_eq!(detect_plain(&bytes), Sniff::Yes(want));
            all_prefixes_need_more(&bytes, detect_plain);
        }
    }

    #[test]
    fn full_transport_needs_a_matching_crc() {
        let msg = req_pq();
        let len = (msg.len() + 12) as u32;
        let mut p = len.to_le_bytes().to_vec();
        p.extend(0u32.to_le_bytes());
        p.extend(&msg);
        let crc = crc32fast::hash(&p);
        p.extend(crc.to_le_bytes());
        assert_eq!(detect_plain(&p), Sniff::Yes(MtprotoTransport::Full));
        all_prefixes_need_more(&p, detect_plain);
        let n = p.len();
        p[n - 1] ^= 1;
        assert_eq!(detect_plain(&p), Sniff::No);
    }

    #[test]
    fn obfuscated2_round_trips_and_random_bytes_do_not_match() {
        let mut random = [0u8; 64];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        for inner in [
            ObfuscatedInner::Abridged,
            ObfuscatedInner::Intermediate,
            ObfuscatedInner::PaddedIntermediate,
        ] {
            let stream = obfuscated2_stream(random, inner, -2, &req_pq());
            assert_eq!(
                detect_obfuscated(&stream),
                Sniff::Yes(MtprotoTransport::Obfuscated2 { inner, dc: -2 })
            );
            all_prefixes_need_more(&stream, detect_obfuscated);
        }
        assert_eq!(detect_obfuscated(&random), Sniff::No);
        assert_eq!(detect_obfuscated(b"GET / HTTP/1.1"), Sniff::No);
    }
}
