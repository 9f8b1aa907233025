//! JA4 client fingerprint, per FoxIO's `technical_details/JA4.md`.
//!
//! `a_b_c`: a = transport, version, SNI or IP, cipher and extension counts,
//! first/last ALPN characters; b = truncated SHA-256 of the sorted ciphers;
//! c = truncated SHA-256 of the sorted extensions (SNI and ALPN left out)
//! then `_` and the signature algorithms in wire order. GREASE is ignored
//! everywhere. SHA-256 is ring's, already linked for QUIC packet protection
//! and measured faster here than the `sha2` crate.

use super::hello::{ext, is_grease, ClientHello, HelloTransport};

/// The JA4 fingerprint of a parsed hello.
pub fn fingerprint(hello: &ClientHello, transport: HelloTransport) -> String {
    let parts = Parts::new(hello, transport);
    format!(
        "{}_{}_{}",
        parts.a,
        hash12(&parts.ciphers),
        hash12(&parts.exts_sigs)
    )
}

/// The raw JA4 (`JA4_r`): the same lists before hashing, for debugging a
/// fingerprint that differs from another tool's.
pub fn fingerprint_raw(hello: &ClientHello, transport: HelloTransport) -> String {
    let parts = Parts::new(hello, transport);
    format!("{}_{}_{}", parts.a, parts.ciphers, parts.exts_sigs)
}

struct Parts {
    a: String,
    ciphers: String,
    exts_sigs: String,
}

impl Parts {
    fn new(hello: &ClientHello, transport: HelloTransport) -> Self {
        let ciphers: Vec<u16> = without_grease(&hello.cipher_suites);
        let exts: Vec<u16> = without_grease(&hello.extensions);
        let proto = match transport {
            HelloTransport::Tcp => 't',
            HelloTransport::Quic => 'q',
        };
        let dest = if exts.contains(&ext::SERVER_NAME) {
            'd'
        } else {
            'i'
        };
        let a = format!(
            "{proto}{}{dest}{:02}{:02}{}",
            version_code(hello.max_version()),
            ciphers.len().min(99),
            exts.len().min(99),
            alpn_code(hello.alpn.first().map(Vec::as_slice)),
        );

        let mut sorted_ciphers = ciphers;
        sorted_ciphers.sort_unstable();
        let mut sorted_exts: Vec<u16> = exts
            .into_iter()
            .filter(|e| *e != ext::SERVER_NAME && *e != ext::ALPN)
            .collect();
        sorted_exts.sort_unstable();
        let sigs = without_grease(&hello.signature_algorithms);

        let mut exts_sigs = hex_list(&sorted_exts);
        if !sigs.is_empty() {
            exts_sigs.push('_');
            exts_sigs.push_str(&hex_list(&sigs));
        }
        // The spec writes twelve zeros, not a hash of nothing, for empty lists.
        if sorted_exts.is_empty() {
            exts_sigs.clear();
        }
        Self {
            a,
            ciphers: hex_list(&sorted_ciphers),
            exts_sigs,
        }
    }
}

fn without_grease(list: &[u16]) -> Vec<u16> {
    list.iter().copied().filter(|v| !is_grease(*v)).collect()
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

fn alpn_code(first: Option<&[u8]>) -> String {
    let Some(p) = first.filter(|p| !p.is_empty()) else {
        return "00".to_owned();
    };
    let (f, l) = (p[0], p[p.len() - 1]);
    if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
        format!("{}{}", f as char, l as char)
    } else {
        // Non-alphanumeric: first nibble of the first byte and last nibble of
        // the last byte, as hex.
        format!("{:x}{:x}", f >> 4, l & 0x0f)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

// Hand-rolled hex: `write!` per value cost more than the hashing itself.
fn hex_list(list: &[u16]) -> String {
    let mut s = String::with_capacity(list.len() * 5);
    for (i, v) in list.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        for shift in [12, 8, 4, 0] {
            s.push(char::from(HEX[usize::from((v >> shift) & 0xf)]));
        }
    }
    s
}

fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let digest = digest.as_ref();
    let mut out = String::with_capacity(12);
    for b in &digest[..6] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> ClientHello {
        // The worked example of JA4.md.
        ClientHello {
            legacy_version: 0x0303,
            supported_versions: vec![0x0304, 0x0303],
            cipher_suites: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            sni: Some("example.com".into()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            signature_algorithms: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
            supported_groups: vec![],
            ech: false,
            ja4: String::new(),
        }
    }

    #[test]
    fn spec_example_gives_the_published_fingerprint() {
        let h = hello();
        assert_eq!(
            fingerprint(&h, HelloTransport::Tcp),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert_eq!(
            fingerprint_raw(&h, HelloTransport::Tcp),
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,\
             cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,\
             ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
    }

    #[test]
    fn grease_is_ignored_and_quic_is_q() {
        let mut h = hello();
        h.cipher_suites.insert(0, 0x3a3a);
        h.extensions.insert(0, 0xdada);
        h.supported_versions.insert(0, 0x7a7a);
        h.signature_algorithms.insert(0, 0x8a8a);
        assert_eq!(
            fingerprint(&h, HelloTransport::Quic),
            "q13d1516h2_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn no_signature_algorithms_drops_the_underscore() {
        let mut h = hello();
        h.signature_algorithms.clear();
        // Published in JA4.md: "...,4469,ff01 = 6d807ffa2a79".
        assert!(fingerprint(&h, HelloTransport::Tcp).ends_with("_6d807ffa2a79"));
    }

    #[test]
    fn empty_lists_hash_to_zeros_and_ip_destinations_are_i() {
        let mut h = hello();
        h.cipher_suites.clear();
        h.extensions.clear();
        h.supported_versions.clear();
        h.alpn.clear();
        assert_eq!(
            fingerprint(&h, HelloTransport::Tcp),
            "t12i000000_000000000000_000000000000"
        );
    }

    #[test]
    fn alpn_codes_follow_the_spec_examples() {
        assert_eq!(alpn_code(Some(b"h2")), "h2");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_code(Some(b"h")), "hh");
        assert_eq!(alpn_code(Some(b"")), "00");
        assert_eq!(alpn_code(None), "00");
        assert_eq!(alpn_code(Some(&[0xab])), "ab");
        assert_eq!(alpn_code(Some(&[0xab, 0xcd])), "ad");
        assert_eq!(alpn_code(Some(&[0x30, 0xab])), "3b");
        assert_eq!(alpn_code(Some(&[0x30, 0x31, 0xab, 0xcd])), "3d");
        assert_eq!(alpn_code(Some(&[0x30, 0xab, 0xcd, 0x31])), "01");
    }
}
