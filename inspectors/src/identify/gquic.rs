//! Google QUIC (gQUIC) client hellos: the SNI and user agent (UAID) of
//! versions Q043–Q050 and T050/T051, which Chrome and Google's apps spoke
//! before IETF QUIC v1 and which captures still show.
//!
//! Three packet layouts, from Chromium's public QUIC wire specification and
//! its `quic_framer`:
//! - **Q043 and older**: the "public header" (flags, 8-byte connection id,
//!   version, packet number), then a 12-byte null-encryption hash and
//!   gQUIC frames; the CHLO rides in a STREAM frame on stream 1.
//! - **Q046**: the IETF invariant long header with the older one-byte
//!   connection-id lengths, unencrypted like Q043.
//! - **Q050, T050, T051**: IETF long headers whose Initial packets are
//!   protected like RFC 9001's, with version-specific salts; the CHLO
//!   (Q050) or the TLS ClientHello (T05x) rides in gQUIC CRYPTO frames
//!   (type 0x08).
//!
//! Key derivation, AES-128-GCM and header protection are ring's (the
//! provider rustls uses here); rustls's own `quic::Keys` only knows the
//! IETF salts, so it cannot open these.

use ring::aead::quic::{HeaderProtectionKey, AES_128};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf::{self, KeyType, Prk, Salt, HKDF_SHA256};

use super::reader::Reader;
use super::tls::{self, ClientHello, HelloTransport};
use crate::InspectError;

/// Initial salts of the encrypted gQUIC versions (Chromium's
/// `quic_crypto_utils`: kQ050Salt, kT050Salt, kT051Salt).
const SALT_Q050: [u8; 20] = [
    0x50, 0x45, 0x74, 0xef, 0xd0, 0x66, 0xfe, 0x2f, 0x9d, 0x94, 0x5c, 0xfc, 0xdb, 0xd3, 0xa7, 0xf0,
    0xd3, 0xb5, 0x6b, 0x45,
];
const SALT_T050: [u8; 20] = [
    0x7f, 0xf5, 0x79, 0xe5, 0xac, 0xd0, 0x72, 0x91, 0x55, 0x80, 0x30, 0x4c, 0x43, 0xa2, 0x36, 0x7c,
    0x60, 0x48, 0x83, 0x10,
];
const SALT_T051: [u8; 20] = [
    0x7a, 0x4e, 0xde, 0xf4, 0xe7, 0xcc, 0xee, 0x5f, 0xa4, 0x50, 0x6c, 0x19, 0x12, 0x4f, 0xc8, 0xcc,
    0xda, 0x6e, 0x03, 0x3d,
];
const NULL_HASH: usize = 12;
const CHLO: &[u8; 4] = b"CHLO";
const TAG_SNI: &[u8; 4] = b"SNI\0";
const TAG_UAID: &[u8; 4] = b"UAID";

/// A gQUIC version: `Q` (QUIC crypto) or `T` (TLS) and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GquicVersion {
    /// `b'Q'` or `b'T'`.
    pub handshake: u8,
    /// 43, 46, 50, 51, ...
    pub number: u16,
}

impl GquicVersion {
    /// Recognises `Qnnn`/`Tnnn` in a version field.
    pub fn from_wire(v: u32) -> Option<Self> {
        let b = v.to_be_bytes();
        let digits = &b[1..];
        if !matches!(b[0], b'Q' | b'T') || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let number = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        Some(Self {
            handshake: b[0],
            number,
        })
    }

    /// The four version characters as on the wire.
    pub fn wire(self) -> u32 {
        let n = self.number;
        u32::from_be_bytes([
            self.handshake,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ])
    }

    fn salt(self) -> Option<&'static [u8; 20]> {
        match (self.handshake, self.number) {
            (b'Q', 50) => Some(&SALT_Q050),
            (b'T', 50) => Some(&SALT_T050),
            (b'T', 51) => Some(&SALT_T051),
            _ => None,
        }
    }
}

impl std::fmt::Display for GquicVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{:03}", char::from(self.handshake), self.number)
    }
}

/// What a gQUIC client's first packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GquicHello {
    /// The version.
    pub version: GquicVersion,
    /// The CHLO's SNI tag (Q versions).
    pub sni: Option<String>,
    /// The CHLO's UAID tag: the client's user agent (Q versions).
    pub uaid: Option<String>,
    /// The TLS ClientHello (T versions).
    pub tls: Option<ClientHello>,
}

impl GquicHello {
    /// The server name: the CHLO's SNI, else the TLS hello's.
    pub fn server_name(&self) -> Option<&str> {
        self.sni
            .as_deref()
            .or_else(|| self.tls.as_ref().and_then(|h| h.sni.as_deref()))
    }
}

fn malformed(reason: &str) -> InspectError {
    InspectError::Malformed {
        protocol: "gquic",
        reason: reason.to_owned(),
    }
}

/// Whether a datagram starts like a gQUIC client packet: `None` until the
/// version is in.
pub fn looks_like_gquic(d: &[u8]) -> Option<bool> {
    let first = *d.first()?;
    let at = if first & 0x80 != 0 {
        1
    } else {
        // Public header: version flag and 8-byte connection id set, the two
        // reserved high bits clear.
        if first & 0xc9 != 0x09 {
            return Some(false);
        }
        9
    };
    let v = u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?);
    Some(GquicVersion::from_wire(v).is_some())
}

/// Parses a gQUIC client's first datagram. `Ok(None)`: the hello goes on
/// in a later packet.
pub fn parse(d: &[u8]) -> Result<Option<GquicHello>, InspectError> {
    if looks_like_gquic(d) != Some(true) {
        return Err(malformed("not a gQUIC client packet"));
    }
    if d[0] & 0x80 == 0 {
        return public_header(d);
    }
    let version = GquicVersion::from_wire(u32::from_be_bytes([d[1], d[2], d[3], d[4]]))
        .ok_or_else(|| malformed("version"))?;
    if version.salt().is_some() {
        return protected(d, version);
    }
    if version.handshake == b'Q' && (44..=46).contains(&version.number) {
        return q046(d, version);
    }
    Err(malformed(&format!(
        "gQUIC version {version} is not one we can open"
    )))
}

/// Q043 and older: flags, connection id, version, packet number.
fn public_header(d: &[u8]) -> Result<Option<GquicHello>, InspectError> {
    let flags = d[0];
    let version = GquicVersion::from_wire(u32::from_be_bytes([d[9], d[10], d[11], d[12]]))
        .ok_or_else(|| malformed("version"))?;
    if version.number > 43 {
        return Err(malformed("public header with a long-header version"));
    }
    let pn_len = [1, 2, 4, 6][usize::from((flags >> 4) & 3)];
    let mut pos = 13;
    if flags & 0x04 != 0 {
        // A diversification nonce comes only from servers.
        return Err(malformed("client packet with a diversification nonce"));
    }
    pos += pn_len;
    let payload = d
        .get(pos + NULL_HASH..)
        .ok_or_else(|| malformed("packet cut short"))?;
    stream_frames(payload, version)
}

/// Q044–Q046: long header with packed connection-id lengths, no
/// encryption.
fn q046(d: &[u8], version: GquicVersion) -> Result<Option<GquicHello>, InspectError> {
    if d[0] & 0x30 != 0 {
        return Err(malformed("first packet is not an Initial"));
    }
    let cil = *d.get(5).ok_or_else(|| malformed("cut short"))?;
    let cid_len = |n: u8| if n == 0 { 0 } else { usize::from(n) + 3 };
    let pn_len = usize::from(d[0] & 3) + 1;
    let pos = 6 + cid_len(cil >> 4) + cid_len(cil & 0x0f) + pn_len;
    let payload = d
        .get(pos + NULL_HASH..)
        .ok_or_else(|| malformed("packet cut short"))?;
    stream_frames(payload, version)
}

/// gQUIC frames of an unencrypted packet: the CHLO is on stream 1.
fn stream_frames(
    payload: &[u8],
    version: GquicVersion,
) -> Result<Option<GquicHello>, InspectError> {
    let mut r = Reader::new(payload);
    while let Some(typ) = r.u8() {
        match typ {
            0x00 => break, // padding to the end
            0x07 => {}     // ping
            t if t & 0x80 != 0 => {
                let id_len = usize::from(t & 0x03) + 1;
                let off_bits = usize::from((t >> 2) & 0x07);
                let off_len = if off_bits == 0 { 0 } else { off_bits + 1 };
                let stream = be(r
                    .bytes(id_len)
                    .ok_or_else(|| malformed("STREAM cut short"))?);
                let offset = be(r
                    .bytes(off_len)
                    .ok_or_else(|| malformed("STREAM cut short"))?);
                let data = if t & 0x20 != 0 {
                    let n = r.u16().ok_or_else(|| malformed("STREAM cut short"))?;
                    // A cut-short datagram keeps what it has of the CHLO.
                    r.bytes(usize::from(n).min(r.remaining()))
                        .unwrap_or_default()
                } else {
                    r.bytes(r.remaining()).unwrap_or_default()
                };
                if stream == 1 && offset == 0 {
                    return chlo(data, version);
                }
            }
            _ => return Err(malformed("unexpected frame before the CHLO")),
        }
    }
    Err(malformed("no CHLO in the first packet"))
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, x| (acc << 8) | u64::from(*x))
}

/// A CHLO handshake message: tag, entry count, then (tag, end offset)
/// pairs and the values they delimit (little-endian, Chromium's
/// `CryptoFramer`).
fn chlo(data: &[u8], version: GquicVersion) -> Result<Option<GquicHello>, InspectError> {
    if data.len() < 8 {
        return Ok(None);
    }
    if &data[..4] != CHLO {
        return Err(malformed("handshake message is not a CHLO"));
    }
    let n = usize::from(u16::from_le_bytes([data[4], data[5]]));
    if n > 128 {
        return Err(malformed("CHLO with too many tags"));
    }
    let values = 8 + 8 * n;
    let Some(index) = data.get(8..values) else {
        return Ok(None);
    };
    let mut hello = GquicHello {
        version,
        sni: None,
        uaid: None,
        tls: None,
    };
    let mut start = 0usize;
    for entry in index.chunks_exact(8) {
        let end = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]) as usize;
        if end < start {
            return Err(malformed("CHLO tag offsets go backwards"));
        }
        let Some(value) = data.get(values + start..values + end) else {
            // The CHLO continues in the next packet.
            return Ok(None);
        };
        let text = || {
            std::str::from_utf8(value)
                .map(str::to_owned)
                .map_err(|_| malformed("CHLO text tag is not UTF-8"))
        };
        match &entry[..4] {
            t if t == TAG_SNI => hello.sni = Some(text()?.to_ascii_lowercase()),
            t if t == TAG_UAID => hello.uaid = Some(text()?),
            _ => {}
        }
        start = end;
    }
    Ok(Some(hello))
}

/// Q050/T050/T051: an RFC 9001-style protected Initial.
fn protected(d: &[u8], version: GquicVersion) -> Result<Option<GquicHello>, InspectError> {
    let mut r = Reader::new(d);
    let first = r.u8().ok_or_else(|| malformed("cut short"))?;
    r.u32();
    if first & 0x30 != 0 {
        return Err(malformed("first packet is not an Initial"));
    }
    let cut = || malformed("Initial cut short");
    let dcid = r.vec8().ok_or_else(cut)?;
    let scid = r.vec8().ok_or_else(cut)?;
    if dcid.len() > 20 || scid.len() > 20 {
        return Err(malformed("connection id longer than 20 bytes"));
    }
    let token = r.varint().ok_or_else(cut)?;
    r.bytes(usize::try_from(token).map_err(|_| cut())?)
        .ok_or_else(cut)?;
    let length = usize::try_from(r.varint().ok_or_else(cut)?).map_err(|_| cut())?;
    let pn_offset = r.position();
    let end = pn_offset.checked_add(length).ok_or_else(cut)?;
    let packet = d.get(..end).ok_or_else(cut)?;
    if length < 20 {
        return Err(malformed("packet too short for header protection"));
    }
    let keys = InitialKeys::client(version, dcid);
    let frames = keys.open(packet, pn_offset)?;
    crypto_frames(&frames, version)
}

/// gQUIC frames of a decrypted Initial: CRYPTO (0x08) carries the
/// handshake from offset 0.
fn crypto_frames(frames: &[u8], version: GquicVersion) -> Result<Option<GquicHello>, InspectError> {
    let mut r = Reader::new(frames);
    let mut data: Vec<u8> = Vec::new();
    let bad = || malformed("CRYPTO frame cut short");
    while let Some(typ) = r.u8() {
        match typ {
            0x00 => {}
            0x07 => {}
            0x08 => {
                let offset = r.varint().ok_or_else(bad)?;
                let len = usize::try_from(r.varint().ok_or_else(bad)?).map_err(|_| bad())?;
                let chunk = r.bytes(len).ok_or_else(bad)?;
                // Only the in-order start is kept: one packet's worth.
                if offset == data.len() as u64 {
                    data.extend_from_slice(chunk);
                }
            }
            _ => break,
        }
    }
    if data.is_empty() {
        return Err(malformed("no CRYPTO data in the Initial"));
    }
    if version.handshake == b'Q' {
        return chlo(&data, version);
    }
    Ok(
        tls::parse_handshake(&data, HelloTransport::Quic)?.map(|h| GquicHello {
            version,
            sni: None,
            uaid: None,
            tls: Some(h),
        }),
    )
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &Prk, label: &[u8], out: &mut [u8]) {
    let full_len = (6 + label.len()) as u8;
    let len = (out.len() as u16).to_be_bytes();
    let info: [&[u8]; 5] = [&len, &[full_len], b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("output lengths are within HKDF-SHA256's limit");
}

/// The client's Initial packet keys of an encrypted gQUIC version.
struct InitialKeys {
    key: LessSafeKey,
    iv: [u8; 12],
    hp: HeaderProtectionKey,
}

impl InitialKeys {
    fn client(version: GquicVersion, dcid: &[u8]) -> Self {
        let salt = version.salt().expect("only encrypted versions get here");
        let initial = Salt::new(HKDF_SHA256, salt).extract(dcid);
        let mut secret = [0u8; 32];
        expand_label(&initial, b"client in", &mut secret);
        let secret = Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
        expand_label(&secret, b"quic key", &mut key);
        expand_label(&secret, b"quic iv", &mut iv);
        expand_label(&secret, b"quic hp", &mut hp);
        Self {
            key: LessSafeKey::new(
                UnboundKey::new(&AES_128_GCM, &key).expect("16-byte AES-128 key"),
            ),
            iv,
            hp: HeaderProtectionKey::new(&AES_128, &hp).expect("16-byte AES-128 key"),
        }
    }

    fn mask(&self, packet: &[u8], pn_offset: usize) -> Result<[u8; 5], InspectError> {
        let sample = packet
            .get(pn_offset + 4..pn_offset + 20)
            .ok_or_else(|| malformed("short header protection sample"))?;
        self.hp
            .new_mask(sample)
            .map_err(|_| malformed("header protection failed"))
    }

    fn nonce(&self, pn: u64) -> Nonce {
        let mut n = self.iv;
        for (b, p) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
            *b ^= p;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Removes header protection and decrypts; returns the frames.
    fn open(&self, packet: &[u8], pn_offset: usize) -> Result<Vec<u8>, InspectError> {
        let mask = self.mask(packet, pn_offset)?;
        let mut p = packet.to_vec();
        p[0] ^= mask[0] & 0x0f;
        let pn_len = usize::from(p[0] & 3) + 1;
        for i in 0..pn_len {
            p[pn_offset + i] ^= mask[1 + i];
        }
        let pn = be(&p[pn_offset..pn_offset + pn_len]);
        let (header, payload) = p.split_at_mut(pn_offset + pn_len);
        let plain = self
            .key
            .open_in_place(self.nonce(pn), Aad::from(&header[..]), payload)
            .map_err(|_| malformed("Initial packet does not authenticate"))?;
        Ok(plain.to_vec())
    }

    fn seal(&self, header: &[u8], pn_offset: usize, frames: &[u8]) -> Vec<u8> {
        let pn_len = usize::from(header[0] & 3) + 1;
        let pn = be(&header[pn_offset..pn_offset + pn_len]);
        let mut payload = frames.to_vec();
        self.key
            .seal_in_place_append_tag(self.nonce(pn), Aad::from(header), &mut payload)
            .expect("payload within AES-GCM's limit");
        let mut p = header.to_vec();
        p.extend(payload);
        let mask = self
            .mask(&p, pn_offset)
            .expect("sealed packets are long enough");
        p[0] ^= mask[0] & 0x0f;
        for i in 0..pn_len {
            p[pn_offset + i] ^= mask[1 + i];
        }
        p
    }
}

/// Builds a CHLO message with the given tags (sorted as Chromium sends
/// them). For tests and fixture generators.
pub fn build_chlo(tags: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut tags = tags.to_vec();
    tags.sort_by_key(|(t, _)| u32::from_le_bytes(**t));
    let mut out = CHLO.to_vec();
    out.extend((tags.len() as u16).to_le_bytes());
    out.extend([0, 0]);
    let mut end = 0u32;
    for (t, v) in &tags {
        end += v.len() as u32;
        out.extend(*t);
        out.extend(end.to_le_bytes());
    }
    for (_, v) in &tags {
        out.extend(*v);
    }
    out
}

/// Builds a gQUIC client's first packet carrying `handshake` (a CHLO, or a
/// TLS ClientHello for T versions), padded to `size` bytes, the way the
/// public format describes each version. For tests and fixture
/// generators: no gQUIC client exists here.
pub fn build_client_packet(
    version: GquicVersion,
    cid: &[u8; 8],
    handshake: &[u8],
    size: usize,
) -> Vec<u8> {
    let stream_frame = |data: &[u8]| {
        // FIN clear, data length present, no offset, 1-byte stream id.
        let mut f = vec![0xa0, 0x01];
        f.extend((data.len() as u16).to_be_bytes());
        f.extend(data);
        f
    };
    if version.salt().is_none() {
        let mut p = if version.number <= 43 {
            let mut p = vec![0x09];
            p.extend(cid);
            p.extend(version.wire().to_be_bytes());
            p.push(1); // packet number
            p
        } else {
            let mut p = vec![0xc3];
            p.extend(version.wire().to_be_bytes());
            p.push(0x50); // DCID 8 bytes, no SCID
            p.extend(cid);
            p.extend(1u32.to_be_bytes());
            p
        };
        p.extend([0u8; NULL_HASH]); // the hash is not checked here
        p.extend(stream_frame(handshake));
        p.resize(size.max(p.len()), 0);
        return p;
    }
    let mut frames = vec![0x08, 0x00];
    let n = handshake.len() as u64;
    frames.extend(((0x4000 | n) as u16).to_be_bytes());
    frames.extend(handshake);
    let mut header = vec![0xc3];
    header.extend(version.wire().to_be_bytes());
    header.push(8);
    header.extend(cid);
    header.push(0);
    header.push(0); // no token
    let pn_len = 4;
    let overhead = header.len() + 2 + pn_len + 16;
    frames.resize(size.saturating_sub(overhead).max(frames.len()), 0);
    let length = (pn_len + frames.len() + 16) as u16;
    header.extend((0x4000 | length).to_be_bytes());
    let pn_offset = header.len();
    header.extend(1u32.to_be_bytes());
    InitialKeys::client(version, cid).seal(&header, pn_offset, &frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[u8; 4]) -> GquicVersion {
        GquicVersion::from_wire(u32::from_be_bytes(*s)).unwrap()
    }

    fn chlo_sample() -> Vec<u8> {
        build_chlo(&[
            (b"PAD\0", &[0x2d; 40]),
            (TAG_SNI, b"www.google.com"),
            (b"VER\0", b"Q050"),
            (TAG_UAID, b"Chrome/120.0.6099.109 Linux x86_64"),
        ])
    }

    #[test]
    fn every_q_version_layout_yields_sni_and_uaid() {
        for ver in [b"Q043", b"Q046", b"Q050"] {
            let p = build_client_packet(v(ver), &[1, 2, 3, 4, 5, 6, 7, 8], &chlo_sample(), 1350);
            assert_eq!(looks_like_gquic(&p), Some(true), "{ver:?}");
            let h = parse(&p).unwrap().unwrap();
            assert_eq!(h.version, v(ver));
            assert_eq!(h.server_name(), Some("www.google.com"));
            assert_eq!(
                h.uaid.as_deref(),
                Some("Chrome/120.0.6099.109 Linux x86_64")
            );
        }
    }

    #[test]
    fn t051_carries_a_tls_hello() {
        // RFC 9001 A.2's ClientHello (SNI example.com), as a T05x client
        // would put it in CRYPTO frames.
        let hex = include_str!("../../tests/fixtures/rfc9001_a2_client_hello.hex");
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        let hello: Vec<u8> = digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect();
        for ver in [b"T050", b"T051"] {
            let p = build_client_packet(v(ver), &[9; 8], &hello, 1350);
            let h = parse(&p).unwrap().unwrap();
            assert_eq!(h.server_name(), Some("example.com"), "{ver:?}");
            assert!(h.tls.unwrap().ja4.starts_with('q'));
        }
    }

    #[test]
    fn a_wrong_salt_does_not_authenticate() {
        let mut p = build_client_packet(v(b"Q050"), &[1; 8], &chlo_sample(), 1200);
        p[1..5].copy_from_slice(b"T050");
        assert!(parse(&p).is_err());
    }

    #[test]
    fn versions_print_and_round_trip() {
        let q = v(b"Q046");
        assert_eq!((q.to_string().as_str(), q.number), ("Q046", 46));
        assert_eq!(q.wire(), u32::from_be_bytes(*b"Q046"));
        assert_eq!(GquicVersion::from_wire(1), None);
        assert_eq!(GquicVersion::from_wire(0xff00_001d), None);
    }

    #[test]
    fn prefixes_never_panic_and_a_cut_chlo_is_incomplete() {
        let p = build_client_packet(v(b"Q043"), &[1; 8], &chlo_sample(), 1350);
        for cut in 0..p.len() {
            let _ = parse(&p[..cut]);
        }
        // Cut inside the CHLO's values: the rest comes in another packet.
        assert_eq!(parse(&p[..60]).unwrap(), None);
    }
}
