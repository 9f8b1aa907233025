//! The fast refusal of a blocked QUIC flow: a server Initial packet holding
//! only a CONNECTION_CLOSE (CONNECTION_REFUSED), protected with the Initial
//! keys both sides derive from the client's first destination connection id
//! (RFC 9000 §10.2.3 and §17.2.2, RFC 9001 §5.2). A client reads it before
//! any handshake and gives up at once, so it falls back to TCP instead of
//! waiting for its QUIC handshake to time out.
//!
//! Key derivation, AEAD and header protection are rustls's `quic` module
//! (ring provider); only the framing is here.

use rustls::quic::{Keys, Version};
use rustls::Side;

/// CONNECTION_REFUSED (RFC 9000 §20.1).
const CONNECTION_REFUSED: u64 = 0x02;

/// The long-header fields of a client's Initial needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialHeader {
    /// The version on the wire.
    pub version: u32,
    /// The destination connection id the client chose (the Initial keys' seed).
    pub dcid: Vec<u8>,
    /// The client's source connection id (our answer's destination).
    pub scid: Vec<u8>,
}

/// Reads the header of a client Initial of a version whose keys we know;
/// `None` for anything else.
pub fn initial_header(datagram: &[u8]) -> Option<InitialHeader> {
    if gatehouse_inspectors::identify::quic::looks_like_initial(datagram) != Some(true) {
        return None;
    }
    let version = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
    let dcid_len = usize::from(*datagram.get(5)?);
    let dcid = datagram.get(6..6 + dcid_len)?;
    let scid_len = usize::from(*datagram.get(6 + dcid_len)?);
    let scid = datagram.get(7 + dcid_len..7 + dcid_len + scid_len)?;
    // RFC 9000 §17.2: at most 20 bytes in version 1; §7.2: at least 8 for
    // the client's first DCID.
    if dcid_len > 20 || scid_len > 20 || dcid_len < 8 {
        return None;
    }
    Some(InitialHeader {
        version,
        dcid: dcid.to_vec(),
        scid: scid.to_vec(),
    })
}

fn rustls_version(v: u32) -> Option<(Version, u8)> {
    match v {
        1 => Some((Version::V1, 0b00)),
        0x6b33_43cf => Some((Version::V2, 0b01)),
        0xff00_001d..=0xff00_0020 => Some((Version::V1Draft, 0b00)),
        _ => None,
    }
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend_from_slice(&(0x4000 | v as u16).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(0x8000_0000 | v as u32).to_be_bytes()),
        _ => out.extend_from_slice(&(0xc000_0000_0000_0000 | v).to_be_bytes()),
    }
}

/// The server Initial that closes the client's connection attempt with
/// CONNECTION_REFUSED and `reason`; `scid` is the connection id we answer
/// from (any 8 bytes). `None` for a version we hold no keys for.
pub fn connection_close(client: &InitialHeader, scid: &[u8; 8], reason: &str) -> Option<Vec<u8>> {
    let (version, initial_type) = rustls_version(client.version)?;
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
    let keys = Keys::initial(version, suite, suite.quic?, &client.dcid, Side::Server);
    let tag_len = keys.local.packet.tag_len();

    let mut payload = Vec::with_capacity(64);
    payload.push(0x1c);
    put_varint(&mut payload, CONNECTION_REFUSED);
    put_varint(&mut payload, 0); // no frame type at fault
    let reason = &reason.as_bytes()[..reason.len().min(200)];
    put_varint(&mut payload, reason.len() as u64);
    payload.extend_from_slice(reason);
    // Header protection samples 16 bytes from 4 past the packet number.
    let pn_len = 1usize;
    while pn_len + payload.len() < 4 + 16 {
        payload.push(0x00); // PADDING
    }

    let mut packet = Vec::with_capacity(64 + payload.len() + tag_len);
    packet.push(0xc0 | (initial_type << 4) | (pn_len as u8 - 1));
    packet.extend_from_slice(&client.version.to_be_bytes());
    packet.push(client.scid.len() as u8);
    packet.extend_from_slice(&client.scid);
    packet.push(scid.len() as u8);
    packet.extend_from_slice(scid);
    put_varint(&mut packet, 0); // token length
    let length = (pn_len + payload.len() + tag_len) as u64;
    // Always the two-byte form: the length is small.
    packet.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = packet.len();
    packet.push(0); // packet number 0
    let tag = keys
        .local
        .packet
        .encrypt_in_place(0, &packet, &mut payload)
        .ok()?;
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(tag.as_ref());
    let sample: [u8; 16] = packet[pn_offset + 4..pn_offset + 20].try_into().ok()?;
    let (head, rest) = packet.split_at_mut(pn_offset);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut head[0], &mut rest[..pn_len])
        .ok()?;
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9001 Appendix A: the client's DCID and the derived server keys
    /// open what we sealed.
    #[test]
    fn the_close_opens_with_the_client_side_initial_keys() {
        let client = InitialHeader {
            version: 1,
            dcid: hex("8394c8f03e515708"),
            scid: hex("f067a5502a4262b5"),
        };
        let pkt = connection_close(&client, b"\x01\x02\x03\x04\x05\x06\x07\x08", "blocked")
            .expect("v1 keys");
        // Long header, Initial, our CIDs.
        assert_eq!(pkt[0] & 0xf0, 0xc0);
        assert_eq!(&pkt[1..5], &[0, 0, 0, 1]);
        assert_eq!(usize::from(pkt[5]), 8);
        assert_eq!(&pkt[6..14], &client.scid[..]);
        // Open it as the client would.
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
            .tls13()
            .unwrap();
        let keys = Keys::initial(
            Version::V1,
            suite,
            suite.quic.unwrap(),
            &client.dcid,
            Side::Client,
        );
        let pn_offset = 6 + 8 + 1 + 8 + 1 + 2;
        let mut p = pkt.clone();
        let sample: [u8; 16] = p[pn_offset + 4..pn_offset + 20].try_into().unwrap();
        let (head, rest) = p.split_at_mut(pn_offset);
        keys.remote
            .header
            .decrypt_in_place(&sample, &mut head[0], &mut rest[..4])
            .unwrap();
        assert_eq!(p[0] & 0x03, 0, "one-byte packet number");
        let (header, body) = p.split_at_mut(pn_offset + 1);
        let plain = keys
            .remote
            .packet
            .decrypt_in_place(0, header, body)
            .unwrap();
        assert_eq!(plain[0], 0x1c, "CONNECTION_CLOSE");
        assert_eq!(plain[1], 0x02, "CONNECTION_REFUSED");
        assert_eq!(&plain[4..11], b"blocked");
    }

    #[test]
    fn headers_of_other_packets_are_not_answered() {
        assert_eq!(initial_header(&[0x40; 1200]), None, "short header");
        assert_eq!(initial_header(&[]), None);
        let mut unknown = vec![0xc0, 0x0a, 0x0a, 0x0a, 0x0a, 8];
        unknown.resize(1200, 0);
        assert_eq!(
            initial_header(&unknown),
            None,
            "a version we hold no keys for"
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
