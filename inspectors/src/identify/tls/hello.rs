//! The ClientHello handshake message (RFC 8446 §4.1.2), without record framing.
//!
//! TLS over TCP wraps it in records; QUIC carries it bare in CRYPTO frames.
//! Both end up here once the whole message is in hand.

use super::ja4;
use crate::identify::reader::Reader;
use crate::InspectError;

/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Largest ClientHello we wait for. Post-quantum key shares make hellos of
/// ~2 KiB; anything past this is an attempt to make us buffer forever.
pub(crate) const MAX_HELLO_LEN: usize = 64 * 1024;

/// Extension numbers this parser reads (IANA "TLS ExtensionType Values").
pub mod ext {
    /// server_name (SNI).
    pub const SERVER_NAME: u16 = 0x0000;
    /// supported_groups.
    pub const SUPPORTED_GROUPS: u16 = 0x000a;
    /// signature_algorithms.
    pub const SIGNATURE_ALGORITHMS: u16 = 0x000d;
    /// application_layer_protocol_negotiation.
    pub const ALPN: u16 = 0x0010;
    /// supported_versions.
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    /// quic_transport_parameters.
    pub const QUIC_TRANSPORT_PARAMETERS: u16 = 0x0039;
    /// encrypted_client_hello.
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// Which transport carried the hello; it is the first letter of JA4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloTransport {
    /// TLS records over TCP (JA4 `t`).
    Tcp,
    /// CRYPTO frames in QUIC Initial packets (JA4 `q`).
    Quic,
}

/// What a ClientHello tells about the client and where it wants to go.
///
/// Lists keep wire order and GREASE values, so the raw hello can be
/// re-fingerprinted; [`ClientHello::ja4`] already ignores GREASE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientHello {
    /// `legacy_version` of the hello (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// The supported_versions extension's list, empty when absent.
    pub supported_versions: Vec<u16>,
    /// Offered cipher suites, in order.
    pub cipher_suites: Vec<u16>,
    /// Extension types, in order.
    pub extensions: Vec<u16>,
    /// The host_name of the server_name extension.
    pub sni: Option<String>,
    /// ALPN protocol ids, in order of preference.
    pub alpn: Vec<Vec<u8>>,
    /// signature_algorithms, in order.
    pub signature_algorithms: Vec<u16>,
    /// supported_groups, in order.
    pub supported_groups: Vec<u16>,
    /// An encrypted_client_hello extension (0xfe0d) is present: the SNI
    /// above is then the public outer name, not the real destination.
    pub ech: bool,
    /// The JA4 fingerprint (FoxIO spec).
    pub ja4: String,
}

impl ClientHello {
    /// The highest offered version, ignoring GREASE: from supported_versions
    /// when present, else `legacy_version`.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    /// ALPN ids that are valid UTF-8 (all registered ones are ASCII).
    pub fn alpn_strs(&self) -> impl Iterator<Item = &str> {
        self.alpn.iter().filter_map(|p| std::str::from_utf8(p).ok())
    }

    /// Whether the hello offers this ALPN id.
    pub fn offers_alpn(&self, proto: &[u8]) -> bool {
        self.alpn.iter().any(|p| p == proto)
    }
}

/// GREASE values (RFC 8701): 0x?a?a with equal bytes.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn malformed(reason: &str) -> InspectError {
    InspectError::Malformed {
        protocol: "tls",
        reason: reason.to_owned(),
    }
}

/// How many bytes a handshake message starting at `buf` needs in total,
/// once its 4-byte header is there; errors on a non-ClientHello or a length
/// past [`MAX_HELLO_LEN`].
pub(crate) fn hello_message_len(buf: &[u8]) -> Result<Option<usize>, InspectError> {
    let Some(&typ) = buf.first() else {
        return Ok(None);
    };
    if typ != CLIENT_HELLO {
        return Err(malformed("first handshake message is not a ClientHello"));
    }
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_HELLO_LEN {
        return Err(malformed("ClientHello longer than 64 KiB"));
    }
    Ok(Some(4 + len))
}

/// Parses a handshake message that should be a ClientHello. `Ok(None)`: the
/// message is not complete yet.
pub fn parse_handshake(
    buf: &[u8],
    transport: HelloTransport,
) -> Result<Option<ClientHello>, InspectError> {
    let Some(total) = hello_message_len(buf)? else {
        return Ok(None);
    };
    let Some(msg) = buf.get(4..total) else {
        return Ok(None);
    };
    parse_body(msg, transport).map(Some)
}

fn parse_body(body: &[u8], transport: HelloTransport) -> Result<ClientHello, InspectError> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16().ok_or_else(|| malformed("truncated version"))?;
    r.bytes(32).ok_or_else(|| malformed("truncated random"))?;
    let session_id = r.vec8().ok_or_else(|| malformed("truncated session id"))?;
    if session_id.len() > 32 {
        return Err(malformed("session id longer than 32 bytes"));
    }
    let suites = r
        .vec16()
        .ok_or_else(|| malformed("truncated cipher suites"))?;
    let cipher_suites = u16_list(suites).ok_or_else(|| malformed("odd cipher suite list"))?;
    let compression = r
        .vec8()
        .ok_or_else(|| malformed("truncated compression methods"))?;
    if compression.is_empty() {
        return Err(malformed("no compression methods"));
    }
    let mut hello = ClientHello {
        legacy_version,
        supported_versions: Vec::new(),
        cipher_suites,
        extensions: Vec::new(),
        sni: None,
        alpn: Vec::new(),
        signature_algorithms: Vec::new(),
        supported_groups: Vec::new(),
        ech: false,
        ja4: String::new(),
    };
    // A TLS 1.2 hello may end here, without an extensions block.
    if !r.is_empty() {
        let exts = r.vec16().ok_or_else(|| malformed("truncated extensions"))?;
        if !r.is_empty() {
            return Err(malformed("bytes after the extensions"));
        }
        parse_extensions(exts, &mut hello)?;
    }
    hello.ja4 = ja4::fingerprint(&hello, transport);
    Ok(hello)
}

fn parse_extensions(exts: &[u8], hello: &mut ClientHello) -> Result<(), InspectError> {
    let mut r = Reader::new(exts);
    while !r.is_empty() {
        let typ = r
            .u16()
            .ok_or_else(|| malformed("truncated extension header"))?;
        let data = r.vec16().ok_or_else(|| malformed("truncated extension"))?;
        if hello.extensions.contains(&typ) {
            // RFC 8446 §4.2: duplicates are forbidden, and a duplicate SNI is a
            // classic way to show a filter one name and the server another.
            return Err(malformed("duplicate extension"));
        }
        hello.extensions.push(typ);
        match typ {
            ext::SERVER_NAME => hello.sni = parse_sni(data)?,
            ext::ALPN => hello.alpn = parse_alpn(data)?,
            ext::SUPPORTED_VERSIONS => {
                let list = Reader::new(data).vec8();
                hello.supported_versions = list
                    .and_then(u16_list)
                    .ok_or_else(|| malformed("bad supported_versions"))?;
            }
            ext::SIGNATURE_ALGORITHMS => {
                hello.signature_algorithms =
                    prefixed_u16_list(data).ok_or_else(|| malformed("bad signature_algorithms"))?;
            }
            ext::SUPPORTED_GROUPS => {
                hello.supported_groups =
                    prefixed_u16_list(data).ok_or_else(|| malformed("bad supported_groups"))?;
            }
            ext::ENCRYPTED_CLIENT_HELLO => hello.ech = true,
            _ => {}
        }
    }
    Ok(())
}

fn parse_sni(data: &[u8]) -> Result<Option<String>, InspectError> {
    // Some clients send an empty server_name extension; that is not an error.
    if data.is_empty() {
        return Ok(None);
    }
    let mut outer = Reader::new(data);
    let list = outer.vec16().ok_or_else(|| malformed("bad server_name"))?;
    let mut r = Reader::new(list);
    while !r.is_empty() {
        let name_type = r.u8().ok_or_else(|| malformed("bad server_name entry"))?;
        let name = r
            .vec16()
            .ok_or_else(|| malformed("bad server_name entry"))?;
        if name_type == 0 {
            let host = std::str::from_utf8(name)
                .ok()
                .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| malformed("server name is not an ASCII host name"))?;
            return Ok(Some(host.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, InspectError> {
    let list = Reader::new(data)
        .vec16()
        .ok_or_else(|| malformed("bad ALPN extension"))?;
    let mut r = Reader::new(list);
    let mut out = Vec::new();
    while !r.is_empty() {
        let p = r.vec8().ok_or_else(|| malformed("bad ALPN entry"))?;
        out.push(p.to_vec());
    }
    Ok(out)
}

fn prefixed_u16_list(data: &[u8]) -> Option<Vec<u16>> {
    Reader::new(data).vec16().and_then(u16_list)
}

fn u16_list(bytes: &[u8]) -> Option<Vec<u16>> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_recognised() {
        for hi in 0..16u16 {
            let v = (hi << 12) | 0x0a00 | (hi << 4) | 0x0a;
            assert!(is_grease(v), "{v:04x}");
        }
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }

    #[test]
    fn other_handshake_types_are_malformed() {
        assert!(parse_handshake(&[2, 0, 0, 0], HelloTransport::Tcp).is_err());
        assert_eq!(parse_handshake(&[1, 0, 1], HelloTransport::Tcp), Ok(None));
    }
}
