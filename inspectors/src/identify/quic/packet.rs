//! Long-header packets and Initial packet protection (RFC 9000 §17.2,
//! RFC 9001 §5, RFC 9369 §3).
//!
//! Key derivation, header protection and AEAD come from rustls's `quic`
//! module (ring provider); only the framing is ours.

use rustls::quic::{DirectionalKeys, Keys};
use rustls::Side;

use crate::identify::reader::Reader;
use crate::InspectError;

/// QUIC versions whose Initial packets can be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuicVersion {
    /// RFC 9000 (0x00000001).
    V1,
    /// RFC 9369 (0x6b3343cf).
    V2,
    /// IETF drafts 29 to 32 (0xff00001d..=0xff000020), which share one salt.
    Draft(u8),
}

impl QuicVersion {
    /// Recognises a version number from the wire.
    pub fn from_wire(v: u32) -> Option<Self> {
        match v {
            0x0000_0001 => Some(Self::V1),
            0x6b33_43cf => Some(Self::V2),
            0xff00_001d..=0xff00_0020 => Some(Self::Draft((v & 0xff) as u8)),
            _ => None,
        }
    }

    /// The version number on the wire.
    pub fn wire(self) -> u32 {
        match self {
            Self::V1 => 1,
            Self::V2 => 0x6b33_43cf,
            Self::Draft(n) => 0xff00_0000 | u32::from(n),
        }
    }

    fn rustls(self) -> rustls::quic::Version {
        match self {
            Self::V1 => rustls::quic::Version::V1,
            Self::V2 => rustls::quic::Version::V2,
            Self::Draft(_) => rustls::quic::Version::V1Draft,
        }
    }

    /// The two-bit long packet type of Initial packets: v2 moved it.
    fn initial_type(self) -> u8 {
        match self {
            Self::V2 => 0b01,
            _ => 0b00,
        }
    }
}

pub(crate) fn malformed(reason: &str) -> InspectError {
    InspectError::Malformed {
        protocol: "quic",
        reason: reason.to_owned(),
    }
}

/// One long-header packet located in a datagram.
#[derive(Debug)]
pub(crate) struct LongPacket<'a> {
    pub(crate) version: QuicVersion,
    pub(crate) is_initial: bool,
    pub(crate) dcid: &'a [u8],
    pub(crate) scid: &'a [u8],
    /// Offset of the (protected) packet number.
    pn_offset: usize,
    /// The whole packet, header included.
    pub(crate) bytes: &'a [u8],
}

/// Locates the long-header packet at the start of `buf`. `Ok(None)`: the
/// packet is cut short.
pub(crate) fn parse_long<'a>(buf: &'a [u8]) -> Result<Option<LongPacket<'a>>, InspectError> {
    let mut r = Reader::new(buf);
    let Some(first) = r.u8() else {
        return Ok(None);
    };
    if first & 0x80 == 0 {
        return Err(malformed("short header packet, not an Initial"));
    }
    let Some(wire) = r.u32() else {
        return Ok(None);
    };
    if wire == 0 {
        return Err(malformed("version negotiation packet"));
    }
    let version = QuicVersion::from_wire(wire).ok_or_else(|| malformed("unknown QUIC version"))?;
    let Some(dcid) = r.vec8() else {
        return Ok(None);
    };
    let Some(scid) = r.vec8() else {
        return Ok(None);
    };
    if dcid.len() > 20 || scid.len() > 20 {
        return Err(malformed("connection id longer than 20 bytes"));
    }
    let typ = (first >> 4) & 0b11;
    let is_initial = typ == version.initial_type();
    let retry = match version {
        QuicVersion::V2 => 0b00,
        _ => 0b11,
    };
    if typ == retry {
        return Err(malformed("retry packet from a client"));
    }
    if is_initial {
        let Some(token_len) = r.varint() else {
            return Ok(None);
        };
        let token_len = usize::try_from(token_len).map_err(|_| malformed("token too long"))?;
        if r.bytes(token_len).is_none() {
            return Ok(None);
        }
    }
    let Some(length) = r.varint() else {
        return Ok(None);
    };
    let pn_offset = r.position();
    let length = usize::try_from(length).map_err(|_| malformed("packet too long"))?;
    // Header protection samples 16 bytes starting 4 after the packet number.
    if length < 20 {
        return Err(malformed(
            "packet too short to carry a header protection sample",
        ));
    }
    let Some(end) = pn_offset.checked_add(length) else {
        return Err(malformed("packet too long"));
    };
    let Some(bytes) = buf.get(..end) else {
        return Ok(None);
    };
    Ok(Some(LongPacket {
        version,
        is_initial,
        dcid,
        scid,
        pn_offset,
        bytes,
    }))
}

/// The client's Initial keys for a connection id, read from the server side.
pub(crate) fn client_initial_keys(version: QuicVersion, dcid: &[u8]) -> DirectionalKeys {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite");
    let quic = suite
        .quic
        .expect("ring's TLS13_AES_128_GCM_SHA256 supports QUIC");
    Keys::initial(version.rustls(), suite, quic, dcid, Side::Server).remote
}

/// Removes header protection and decrypts; returns the frames.
pub(crate) fn open(
    packet: &LongPacket<'_>,
    keys: &DirectionalKeys,
) -> Result<Vec<u8>, InspectError> {
    let mut p = packet.bytes.to_vec();
    let pn_offset = packet.pn_offset;
    let sample_start = pn_offset + 4;
    let sample: [u8; 16] = p[sample_start..sample_start + 16]
        .try_into()
        .map_err(|_| malformed("short header protection sample"))?;
    let (head, rest) = p.split_at_mut(pn_offset);
    keys.header
        .decrypt_in_place(&sample, &mut head[0], &mut rest[..4])
        .map_err(|_| malformed("header protection failed"))?;
    let pn_len = usize::from(p[0] & 0b11) + 1;
    let pn = p[pn_offset..pn_offset + pn_len]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let (header, payload) = p.split_at_mut(pn_offset + pn_len);
    let plain_len = keys
        .packet
        .decrypt_in_place(pn, header, payload)
        .map_err(|_| malformed("Initial packet does not authenticate"))?
        .len();
    let header_len = header.len();
    p.drain(..header_len);
    p.truncate(plain_len);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip() {
        for wire in [1, 0x6b33_43cf, 0xff00_001d, 0xff00_0020] {
            assert_eq!(
                QuicVersion::from_wire(wire).map(QuicVersion::wire),
                Some(wire)
            );
        }
        assert_eq!(QuicVersion::from_wire(0xff00_001c), None);
        assert_eq!(QuicVersion::from_wire(0x5130_3530), None); // gQUIC Q050
    }

    #[test]
    fn short_headers_and_version_negotiation_are_not_initials() {
        assert!(parse_long(&[0x40, 1, 2, 3]).is_err());
        assert!(parse_long(&[0xc0, 0, 0, 0, 0, 0]).is_err());
        assert!(matches!(parse_long(&[0xc0, 0, 0, 0]), Ok(None)));
    }
}
