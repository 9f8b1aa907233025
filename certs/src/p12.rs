//! A PKCS#12 file (RFC 7292) holding one certificate and no key, for
//! certificate installers that want `.p12`/`.pfx` (Windows, macOS,
//! Android). Written by hand: the structure is a handful of fixed DER
//! wrappers around the certificate, and the crates that write PKCS#12 bring
//! encryption stacks a file with nothing secret in it does not need.
//!
//! Layout: `PFX { version 3, authSafe: data(AuthenticatedSafe [ data(
//! SafeContents [ certBag(x509Certificate(DER)) ]) ]), macData }`. Nothing
//! is encrypted (there is no key). The MAC uses the empty password and
//! HMAC-SHA-1 with the PKCS#12 key derivation, 2048 iterations, which every
//! importer accepts (macOS's does not accept SHA-256 MACs everywhere) and
//! `openssl pkcs12 -passin pass:` verifies.

use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// 1.2.840.113549.1.7.1 (PKCS#7 data).
const OID_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
/// 1.2.840.113549.1.12.10.1.3 (certBag).
const OID_CERT_BAG: &[u8] = &[
    0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x0C, 0x0A, 0x01, 0x03,
];
/// 1.2.840.113549.1.9.22.1 (x509Certificate).
const OID_X509_CERT: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x16, 0x01];
/// 1.3.14.3.2.26 (SHA-1).
const OID_SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];

const MAC_ITERATIONS: u32 = 2048;

/// The PKCS#12 bytes holding `cert_der` alone.
pub(crate) fn cert_only(cert_der: &[u8]) -> Vec<u8> {
    let mut salt = [0u8; 8];
    // The salt only needs to differ between files; a failing system RNG
    // leaves it zero, which is still a valid file.
    let _ = SystemRandom::new().fill(&mut salt);
    cert_only_with_salt(cert_der, &salt)
}

fn cert_only_with_salt(cert_der: &[u8], salt: &[u8]) -> Vec<u8> {
    let cert_bag = seq(&[oid(OID_X509_CERT), explicit0(&octets(cert_der))]);
    let safe_bag = seq(&[oid(OID_CERT_BAG), explicit0(&cert_bag)]);
    let safe_contents = seq(&[safe_bag]);
    let auth_safe = seq(&[data_content_info(&safe_contents)]);

    let key = pkcs12_mac_key(salt, MAC_ITERATIONS);
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key),
        &auth_safe,
    );
    let digest_info = seq(&[seq(&[oid(OID_SHA1), tlv(0x05, &[])]), octets(mac.as_ref())]);
    let mac_data = seq(&[digest_info, octets(salt), integer(MAC_ITERATIONS)]);

    seq(&[integer(3), data_content_info(&auth_safe), mac_data])
}

/// RFC 7292 appendix B.2 with SHA-1 (u = 20, v = 64), ID 3 (MAC key), for
/// the empty password (the BMPString terminator alone, two zero bytes).
/// Twenty bytes are needed: one block, so the I-update step never runs.
fn pkcs12_mac_key(salt: &[u8], iterations: u32) -> Vec<u8> {
    const V: usize = 64;
    let password = [0u8, 0u8];
    let stretch = |s: &[u8]| -> Vec<u8> {
        if s.is_empty() {
            return Vec::new();
        }
        let len = V * s.len().div_ceil(V);
        s.iter().copied().cycle().take(len).collect()
    };
    let mut input = vec![3u8; V];
    input.extend(stretch(salt));
    input.extend(stretch(&password));
    let mut a = digest(&SHA1_FOR_LEGACY_USE_ONLY, &input).as_ref().to_vec();
    for _ in 1..iterations {
        a = digest(&SHA1_FOR_LEGACY_USE_ONLY, &a).as_ref().to_vec();
    }
    a
}

fn data_content_info(content: &[u8]) -> Vec<u8> {
    seq(&[oid(OID_DATA), explicit0(&octets(content))])
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

fn oid(body: &[u8]) -> Vec<u8> {
    tlv(0x06, body)
}

fn octets(body: &[u8]) -> Vec<u8> {
    tlv(0x04, body)
}

fn explicit0(inner: &[u8]) -> Vec<u8> {
    tlv(0xA0, inner)
}

fn integer(n: u32) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(bytes.len() - 1);
    let mut body = bytes[skip..].to_vec();
    if body[0] & 0x80 != 0 {
        body.insert(0, 0);
    }
    tlv(0x02, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers_are_minimal() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2C]);
        let mid = tlv(0x04, &[0; 200]);
        assert_eq!(&mid[..3], &[0x04, 0x81, 200]);
        assert_eq!(integer(3), vec![0x02, 1, 3]);
        assert_eq!(integer(2048), vec![0x02, 2, 0x08, 0x00]);
        assert_eq!(integer(128), vec![0x02, 2, 0x00, 0x80]);
        assert_eq!(integer(0), vec![0x02, 1, 0]);
    }

    #[test]
    fn the_file_holds_the_certificate_and_no_key_bag() {
        let cert = [0x30, 0x03, 0x02, 0x01, 0x05];
        let p12 = cert_only_with_salt(&cert, &[7; 8]);
        assert_eq!(p12[0], 0x30);
        assert!(p12.windows(cert.len()).any(|w| w == cert));
        // pkcs8ShroudedKeyBag (…0C 0A 01 02) and keyBag (…0C 0A 01 01) absent.
        for bag in [[0x0C, 0x0A, 0x01, 0x02], [0x0C, 0x0A, 0x01, 0x01]] {
            assert!(!p12.windows(4).any(|w| w == bag));
        }
        // Deterministic for a given salt; another salt changes the MAC.
        assert_eq!(p12, cert_only_with_salt(&cert, &[7; 8]));
        assert_ne!(p12, cert_only_with_salt(&cert, &[8; 8]));
    }
}
