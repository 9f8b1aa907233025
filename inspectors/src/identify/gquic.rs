//! Google QUIC (gQUIC) client hellos: the SNI and user agent (UAID) of
//! versions Q043–Q050 and T050/T051, which Chrome and Google's apps spoke
//! before IETF QUIC v1 and which captures still show.
//!
//! Packet layouts, from Chromium's public QUIC wire specification and its
//! `quic_versions.h` / `quic_framer`:
//! - **Q043 and older**: the "public header" (flags, 8-byte connection id,
//!   version, packet number), then a 12-byte null-encryption hash and
//!   gQUIC frames; the CHLO rides in STREAM frames on stream 1.
//! - **Q046, Q047**: the IETF invariant long header with the older packed
//!   one-byte connection-id lengths (Q047 lets the server's id vary in
//!   length), unencrypted like Q043; the CHLO still on stream 1.
//! - **Q048**: as Q047, but the CHLO rides in gQUIC CRYPTO frames (type
//!   0x08, varint offset and length).
//! - **Q049**: the invariants-06 header: one length byte before each
//!   connection id, then (Initial) a token length and the packet's Length,
//!   all varints; still null-encrypted, CRYPTO frames.
//! - **Q050, T050, T051**: as Q049, but the Initial is protected like
//!   RFC 9001's, with version-specific salts; the CHLO (Q050) or the TLS
//!   ClientHello (T05x) rides in CRYPTO frames.
//!
//! A CHLO that does not fit one packet (a full CHLO with cached server
//! config, large padding) continues in the client's next packets by
//! stream offset; [`ChloAssembler`] puts it back together, bounded to
//! [`MAX_HELLO_PACKETS`] packets and the largest hello we accept.
//!
//! Key derivation, AES-128-GCM and header protection are ring's (the
//! provider rustls uses here); rustls's own `quic::Keys` only knows the
//! IETF salts, so it cannot open these.

use std::borrow::Cow;

use ring::aead::quic::{HeaderProtectionKey, AES_128};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf::{self, KeyType, Prk, Salt, HKDF_SHA256};

use super::quic::CryptoStream;
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

/// The most client packets one CHLO may be spread over. Chromium's largest
/// CHLOs (full hello with a cached server config and padding) take two or
/// three; more is an evasion attempt or not gQUIC.
pub const MAX_HELLO_PACKETS: usize = 8;

/// Parses a gQUIC client's first datagram. `Ok(None)`: the hello goes on
/// in a later packet (see [`ChloAssembler`] and [`parse_flow`]).
pub fn parse(d: &[u8]) -> Result<Option<GquicHello>, InspectError> {
    ChloAssembler::new().push(d)
}

/// Parses a flow's first client datagrams in order: the hello once the
/// packets so far hold all of it, `Ok(None)` while they do not.
pub fn parse_flow(datagrams: &[&[u8]]) -> Result<Option<GquicHello>, InspectError> {
    let mut a = ChloAssembler::new();
    for (i, d) in datagrams.iter().take(MAX_HELLO_PACKETS).enumerate() {
        if i > 0 && looks_like_gquic(d) != Some(true) {
            // Not a long- or public-header client packet: the CHLO did not
            // go on (a later packet of the connection, or something else).
            break;
        }
        if let Some(h) = a.push(d)? {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

/// Puts a CHLO (or a T05x ClientHello) back together from a client's
/// packets by stream offset, in any order. Every packet must be of the
/// first one's version and connection id; overlapping copies must agree;
/// at most [`MAX_HELLO_PACKETS`] packets and the largest hello the TLS
/// parser accepts.
#[derive(Debug, Default)]
pub struct ChloAssembler {
    first: Option<(GquicVersion, Vec<u8>)>,
    stream: CryptoStream,
    packets: usize,
}

impl ChloAssembler {
    /// An assembler that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one client datagram: the hello once complete, `Ok(None)`
    /// while more is needed.
    pub fn push(&mut self, d: &[u8]) -> Result<Option<GquicHello>, InspectError> {
        if self.packets >= MAX_HELLO_PACKETS {
            return Err(malformed("CHLO spread over too many packets"));
        }
        self.packets += 1;
        if looks_like_gquic(d) != Some(true) {
            return Err(malformed("not a gQUIC client packet"));
        }
        let version = if d[0] & 0x80 == 0 {
            wire_version(&d[9..13])?
        } else {
            wire_version(&d[1..5])?
        };
        let packet = open(d, version)?;
        match &self.first {
            None => self.first = Some((version, packet.dcid.clone())),
            Some((v, _)) if *v != version => {
                return Err(malformed("packets of different gQUIC versions"))
            }
            Some((_, dcid)) if *dcid != packet.dcid => {
                return Err(malformed("packets of another connection"))
            }
            Some(_) => {}
        }
        let later = self.packets > 1;
        let got = if version.handshake == b'Q' && version.number < 48 {
            stream_frames(&packet.frames, &mut self.stream, later)?
        } else {
            crypto_frames(&packet.frames, &mut self.stream)?
        };
        if !got && !later {
            return Err(malformed("no CHLO in the first packet"));
        }
        let data = self.stream.contiguous();
        if data.is_empty() {
            return Ok(None);
        }
        if version.handshake == b'Q' {
            return chlo(data, version);
        }
        Ok(
            tls::parse_handshake(data, HelloTransport::Quic)?.map(|h| GquicHello {
                version,
                sni: None,
                uaid: None,
                tls: Some(h),
            }),
        )
    }
}

fn wire_version(b: &[u8]) -> Result<GquicVersion, InspectError> {
    let v = u32::from_be_bytes(b.try_into().map_err(|_| malformed("version"))?);
    GquicVersion::from_wire(v).ok_or_else(|| malformed("version"))
}

/// One client packet, opened: its destination connection id and frames
/// (borrowed from the datagram unless decrypted).
struct Opened<'a> {
    dcid: Vec<u8>,
    frames: Cow<'a, [u8]>,
}

fn open(d: &[u8], version: GquicVersion) -> Result<Opened<'_>, InspectError> {
    if d[0] & 0x80 == 0 {
        return public_header(d, version);
    }
    if version.salt().is_some() {
        return protected(d, version);
    }
    match (version.handshake, version.number) {
        (b'Q', 44..=48) => packed_cids(d, version),
        (b'Q', 49) => length_prefixed_cids(d),
        _ => Err(malformed(&format!(
            "gQUIC version {version} is not one we can open"
        ))),
    }
}

/// The frames after a null-encrypted packet's 12-byte hash (the hash is
/// not checked: it protects nothing against a sender).
fn after_hash(payload: Option<&[u8]>) -> Result<Cow<'_, [u8]>, InspectError> {
    payload
        .and_then(|p| p.get(NULL_HASH..))
        .map(Cow::Borrowed)
        .ok_or_else(|| malformed("packet cut short"))
}

/// Q043 and older: flags, connection id, version, packet number.
fn public_header(d: &[u8], version: GquicVersion) -> Result<Opened<'_>, InspectError> {
    let flags = d[0];
    if version.number > 43 {
        return Err(malformed("public header with a long-header version"));
    }
    if flags & 0x04 != 0 {
        // A diversification nonce comes only from servers.
        return Err(malformed("client packet with a diversification nonce"));
    }
    let pn_len = [1, 2, 4, 6][usize::from((flags >> 4) & 3)];
    Ok(Opened {
        dcid: d[1..9].to_vec(),
        frames: after_hash(d.get(13 + pn_len..))?,
    })
}

/// Q044–Q048: long header with packed connection-id lengths, no length
/// field, no encryption.
fn packed_cids(d: &[u8], version: GquicVersion) -> Result<Opened<'_>, InspectError> {
    if d[0] & 0x30 != 0 {
        return Err(malformed("client packet is not an Initial"));
    }
    let cil = *d.get(5).ok_or_else(|| malformed("cut short"))?;
    let cid_len = |n: u8| if n == 0 { 0 } else { usize::from(n) + 3 };
    let (dl, sl) = (cid_len(cil >> 4), cid_len(cil & 0x0f));
    if version.number < 47 && dl != 8 && dl != 0 {
        // Before Q047 connection ids were 64 bits.
        return Err(malformed("connection id is not 8 bytes"));
    }
    let dcid = d
        .get(6..6 + dl)
        .ok_or_else(|| malformed("cut short"))?
        .to_vec();
    let pn_len = usize::from(d[0] & 3) + 1;
    Ok(Opened {
        dcid,
        frames: after_hash(d.get(6 + dl + sl + pn_len..))?,
    })
}

/// Q049: invariants-06 long header (a length byte before each connection
/// id), token length and Length varints; null-encrypted.
fn length_prefixed_cids(d: &[u8]) -> Result<Opened<'_>, InspectError> {
    let h = long_header(d)?;
    let pn_len = usize::from(d[0] & 3) + 1;
    // Bytes past Length belong to a coalesced packet; a datagram cut
    // short keeps what it has, as with Q043.
    let end = h.pn_offset.saturating_add(h.length).min(d.len());
    Ok(Opened {
        dcid: h.dcid.to_vec(),
        frames: after_hash(d[..end].get(h.pn_offset + pn_len..))?,
    })
}

struct LongHeader<'a> {
    dcid: &'a [u8],
    pn_offset: usize,
    length: usize,
}

/// The invariants-06 Initial header up to the packet number.
fn long_header(d: &[u8]) -> Result<LongHeader<'_>, InspectError> {
    let mut r = Reader::new(d);
    let first = r.u8().ok_or_else(|| malformed("cut short"))?;
    r.u32();
    if first & 0x30 != 0 {
        return Err(malformed("client packet is not an Initial"));
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
    Ok(LongHeader {
        dcid,
        pn_offset: r.position(),
        length,
    })
}

/// Q050/T050/T051: an RFC 9001-style protected Initial.
fn protected(d: &[u8], version: GquicVersion) -> Result<Opened<'_>, InspectError> {
    let h = long_header(d)?;
    let cut = || malformed("Initial cut short");
    let end = h.pn_offset.checked_add(h.length).ok_or_else(cut)?;
    let packet = d.get(..end).ok_or_else(cut)?;
    if h.length < 20 {
        return Err(malformed("packet too short for header protection"));
    }
    let keys = InitialKeys::client(version, h.dcid);
    Ok(Opened {
        dcid: h.dcid.to_vec(),
        frames: Cow::Owned(keys.open(packet, h.pn_offset)?),
    })
}

/// gQUIC frames of a Q043–Q047 packet: the CHLO is on stream 1. Whether
/// any of it was there. A later packet may carry frames we do not read
/// (ACK, STOP_WAITING) after its part of the CHLO: reading stops there.
fn stream_frames(
    payload: &[u8],
    stream: &mut CryptoStream,
    later: bool,
) -> Result<bool, InspectError> {
    let mut r = Reader::new(payload);
    let mut got = false;
    while let Some(typ) = r.u8() {
        match typ {
            0x00 => break, // padding to the end
            0x07 => {}     // ping
            t if t & 0x80 != 0 => {
                let id_len = usize::from(t & 0x03) + 1;
                let off_bits = usize::from((t >> 2) & 0x07);
                let off_len = if off_bits == 0 { 0 } else { off_bits + 1 };
                let id = be(r
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
                if id == 1 {
                    stream.insert(offset, data)?;
                    got = true;
                }
            }
            _ if later => break,
            _ => return Err(malformed("unexpected frame before the CHLO")),
        }
    }
    Ok(got)
}

/// gQUIC frames of a Q048+ packet: CRYPTO (0x08) frames carry the
/// handshake by offset. Whether any did.
fn crypto_frames(frames: &[u8], stream: &mut CryptoStream) -> Result<bool, InspectError> {
    let mut r = Reader::new(frames);
    let bad = || malformed("CRYPTO frame cut short");
    let mut got = false;
    while let Some(typ) = r.u8() {
        match typ {
            0x00 | 0x07 => {} // padding, ping
            0x08 => {
                let offset = r.varint().ok_or_else(bad)?;
                let len = usize::try_from(r.varint().ok_or_else(bad)?).map_err(|_| bad())?;
                // A cut-short datagram keeps what it has, as with STREAM.
                let chunk = r.bytes(len.min(r.remaining())).unwrap_or_default();
                stream.insert(offset, chunk)?;
                got = true;
            }
            // ACK and the like: nothing of the hello after them.
            _ => break,
        }
    }
    Ok(got)
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

/// Appends `v` as a QUIC varint of the shortest length.
fn put_varint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend((0x4000 | v as u16).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend((0x8000_0000 | v as u32).to_be_bytes()),
        _ => out.extend((0xc000_0000_0000_0000 | v).to_be_bytes()),
    }
}

/// Header, frame and tag bytes a builder packet adds around its piece of
/// the handshake (at most 45 for every version, rounded up).
const BUILD_OVERHEAD: usize = 64;

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
    build_packet(version, cid, 1, 0, handshake, size)
}

/// Builds the packets a client sends when `handshake` does not fit one
/// packet of `size` bytes: each carries the next piece at its offset.
pub fn build_client_packets(
    version: GquicVersion,
    cid: &[u8; 8],
    handshake: &[u8],
    size: usize,
) -> Vec<Vec<u8>> {
    let room = size.saturating_sub(BUILD_OVERHEAD).max(1);
    handshake
        .chunks(room)
        .enumerate()
        .map(|(i, piece)| build_packet(version, cid, i as u32 + 1, i * room, piece, size))
        .collect()
}

fn build_packet(
    version: GquicVersion,
    cid: &[u8; 8],
    pn: u32,
    offset: usize,
    piece: &[u8],
    size: usize,
) -> Vec<u8> {
    let mut frames = Vec::new();
    if version.handshake == b'Q' && version.number < 48 {
        // STREAM on stream 1: FIN clear, data length present, a 2-byte
        // offset unless it is 0, 1-byte stream id.
        if offset == 0 {
            frames.extend([0xa0, 0x01]);
        } else {
            frames.extend([0xa4, 0x01]);
            frames.extend((offset as u16).to_be_bytes());
        }
        frames.extend((piece.len() as u16).to_be_bytes());
    } else {
        frames.push(0x08);
        put_varint(&mut frames, offset as u64);
        put_varint(&mut frames, piece.len() as u64);
    }
    frames.extend(piece);
    if version.number <= 43 && version.handshake == b'Q' {
        let mut p = vec![0x09];
        p.extend(cid);
        p.extend(version.wire().to_be_bytes());
        p.push(pn as u8);
        p.extend([0u8; NULL_HASH]); // the hash is not checked here
        p.extend(frames);
        p.resize(size.max(p.len()), 0);
        return p;
    }
    if version.handshake == b'Q' && version.number < 49 {
        let mut p = vec![0xc3];
        p.extend(version.wire().to_be_bytes());
        p.push(0x50); // DCID 8 bytes, no SCID
        p.extend(cid);
        p.extend(pn.to_be_bytes());
        p.extend([0u8; NULL_HASH]);
        p.extend(frames);
        p.resize(size.max(p.len()), 0);
        return p;
    }
    // Q049 and the protected versions: invariants-06 header with Length.
    let mut header = vec![0xc3];
    header.extend(version.wire().to_be_bytes());
    header.push(8);
    header.extend(cid);
    header.push(0); // no SCID
    header.push(0); // no token
    let pn_len = 4;
    let (extra, tag) = if version.salt().is_some() {
        (0, 16)
    } else {
        (NULL_HASH, 0)
    };
    let overhead = header.len() + 2 + pn_len + extra + tag;
    frames.resize(size.saturating_sub(overhead).max(frames.len()), 0);
    let length = (pn_len + extra + frames.len() + tag) as u16;
    header.extend((0x4000 | length).to_be_bytes());
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    if version.salt().is_none() {
        header.extend([0u8; NULL_HASH]);
        header.extend(frames);
        return header;
    }
    InitialKeys::client(version, cid).seal(&header, pn_offset, &frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[u8; 4]) -> GquicVersion {
        GquicVersion::from_wire(u32::from_be_bytes(*s)).unwrap()
    }

    const Q_VERSIONS: [&[u8; 4]; 6] = [b"Q043", b"Q046", b"Q047", b"Q048", b"Q049", b"Q050"];

    fn chlo_with_pad(pad: usize) -> Vec<u8> {
        let pad = vec![0x2d; pad];
        build_chlo(&[
            (b"PAD\0", &pad),
            (TAG_SNI, b"www.google.com"),
            (b"VER\0", b"Q050"),
            (TAG_UAID, b"Chrome/120.0.6099.109 Linux x86_64"),
        ])
    }

    fn chlo_sample() -> Vec<u8> {
        chlo_with_pad(40)
    }

    #[test]
    fn every_q_version_layout_yields_sni_and_uaid() {
        for ver in Q_VERSIONS {
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

    /// Q047 (packed lengths) and Q049 (length bytes) read their own
    /// connection-id layouts; each misreads the other's.
    #[test]
    fn q047_and_q049_headers_are_told_apart() {
        let cid = [7u8; 8];
        let q047 = build_client_packet(v(b"Q047"), &cid, &chlo_sample(), 1350);
        assert_eq!(q047[5], 0x50, "packed DCIL/SCIL nibbles");
        let q049 = build_client_packet(v(b"Q049"), &cid, &chlo_sample(), 1350);
        assert_eq!(
            (q049[5], q049[14], q049[15]),
            (8, 0, 0),
            "DCID len, SCID len, token"
        );
        // Q049's Length covers the rest of the datagram.
        assert_eq!(
            usize::from(u16::from_be_bytes([q049[16], q049[17]]) & 0x3fff),
            q049.len() - 18
        );
        let mut swapped = q049.clone();
        swapped[1..5].copy_from_slice(b"Q047");
        assert!(parse(&swapped).is_err());
        // A Q047 server-chosen id of another length (5 bytes: nibble 2).
        let mut short = vec![0xc3];
        short.extend(*b"Q047");
        short.push(0x20);
        short.extend([9u8; 5]);
        short.extend(1u32.to_be_bytes());
        short.extend([0u8; NULL_HASH]);
        let chlo = chlo_sample();
        short.extend([0xa0, 0x01]);
        short.extend((chlo.len() as u16).to_be_bytes());
        short.extend(&chlo);
        assert_eq!(
            parse(&short).unwrap().unwrap().server_name(),
            Some("www.google.com")
        );
        short[1..5].copy_from_slice(b"Q046");
        assert!(parse(&short).is_err(), "Q046 ids are 64 bits");
    }

    #[test]
    fn q049_bytes_after_its_length_are_not_read() {
        // Unpadded, so Length ends right after the CRYPTO frame; then a
        // coalesced "packet" whose bytes would contradict the CHLO.
        let chlo = chlo_sample();
        let mut p = build_client_packet(v(b"Q049"), &[3; 8], &chlo, 0);
        p.extend([0x08, 0x00, 0x40 | (chlo.len() >> 8) as u8, chlo.len() as u8]);
        p.extend(vec![0xee; chlo.len()]);
        let h = parse(&p).unwrap().unwrap();
        assert_eq!(h.server_name(), Some("www.google.com"));
    }

    #[test]
    fn a_chlo_over_several_packets_is_put_back_together() {
        // 3,000 bytes of padding: three 1,350-byte packets.
        let chlo = chlo_with_pad(3000);
        for ver in Q_VERSIONS {
            let packets = build_client_packets(v(ver), &[5; 8], &chlo, 1350);
            assert_eq!(packets.len(), 3, "{ver:?}");
            assert_eq!(parse(&packets[0]).unwrap(), None, "{ver:?}: first alone");
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let h = parse_flow(&refs).unwrap().unwrap();
            assert_eq!(h.server_name(), Some("www.google.com"), "{ver:?}");
            assert!(h.uaid.is_some());
            // Reordered on the way: the offsets still join.
            let mut a = ChloAssembler::new();
            assert_eq!(a.push(&packets[0]).unwrap(), None);
            assert_eq!(a.push(&packets[2]).unwrap(), None);
            assert!(a.push(&packets[1]).unwrap().is_some(), "{ver:?}");
        }
    }

    #[test]
    fn t051_hello_over_two_packets() {
        let hello = rfc9001_hello();
        let packets = build_client_packets(v(b"T051"), &[9; 8], &hello, 200);
        assert!(packets.len() > 1);
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        assert_eq!(
            parse_flow(&refs).unwrap().unwrap().server_name(),
            Some("example.com")
        );
    }

    #[test]
    fn reassembly_is_bounded_and_stays_on_one_connection() {
        // A CHLO that needs more packets than allowed.
        let chlo = chlo_with_pad(12_000);
        let packets = build_client_packets(v(b"Q046"), &[5; 8], &chlo, 1350);
        assert!(packets.len() > MAX_HELLO_PACKETS);
        let mut a = ChloAssembler::new();
        let outcome: Vec<_> = packets.iter().map(|p| a.push(p)).collect();
        assert!(outcome[..MAX_HELLO_PACKETS]
            .iter()
            .all(|r| matches!(r, Ok(None))));
        assert!(outcome[MAX_HELLO_PACKETS].is_err());
        // A short-header packet after an incomplete CHLO: it did not go on.
        let short = [0x40u8; 60];
        assert_eq!(parse_flow(&[&packets[0], &short]).unwrap(), None);
        // A second packet of another connection, or another version.
        let chlo = chlo_with_pad(2000);
        let ours = build_client_packets(v(b"Q048"), &[5; 8], &chlo, 1350);
        let theirs = build_client_packets(v(b"Q048"), &[6; 8], &chlo, 1350);
        assert!(parse_flow(&[&ours[0], &theirs[1]]).is_err());
        let other = build_client_packets(v(b"Q049"), &[5; 8], &chlo, 1350);
        assert!(parse_flow(&[&ours[0], &other[1]]).is_err());
        // Overlapping copies that disagree.
        let mut forged = ours[1].clone();
        let n = forged.len();
        forged[n / 2] ^= 0xff;
        let mut a = ChloAssembler::new();
        a.push(&ours[1]).unwrap();
        assert!(a.push(&forged).is_err());
    }

    fn rfc9001_hello() -> Vec<u8> {
        // RFC 9001 A.2's ClientHello (SNI example.com), as a T05x client
        // would put it in CRYPTO frames.
        let hex = include_str!("../../tests/fixtures/rfc9001_a2_client_hello.hex");
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn t051_carries_a_tls_hello() {
        let hello = rfc9001_hello();
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
        for ver in Q_VERSIONS {
            let p = build_client_packet(v(ver), &[1; 8], &chlo_sample(), 1350);
            for cut in 0..p.len() {
                let _ = parse(&p[..cut]);
            }
        }
        // Cut inside the CHLO's values: the rest comes in another packet.
        let p = build_client_packet(v(b"Q043"), &[1; 8], &chlo_sample(), 1350);
        assert_eq!(parse(&p[..60]).unwrap(), None);
        let p = build_client_packet(v(b"Q048"), &[1; 8], &chlo_sample(), 1350);
        assert_eq!(parse(&p[..70]).unwrap(), None);
    }
}
