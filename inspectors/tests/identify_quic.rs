//! QUIC Initial parsing against the RFC 9001 and RFC 9369 Appendix A vectors.

use gatehouse_inspectors::identify::quic::{self, InitialParser, QuicVersion};

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

const V1: &str = include_str!("fixtures/rfc9001_a2_client_initial.hex");
const V2: &str = include_str!("fixtures/rfc9369_a2_client_initial.hex");
const HELLO: &str = include_str!("fixtures/rfc9001_a2_client_hello.hex");

fn check_rfc_hello(got: &quic::QuicHello, version: QuicVersion) {
    assert_eq!(got.version, version);
    assert_eq!(got.dcid, hex("8394c8f03e515708"));
    assert!(got.scid.is_empty());
    let h = &got.hello;
    assert_eq!(h.sni.as_deref(), Some("example.com"));
    // The RFC's sample hello offers the ALPN id "alpn".
    assert_eq!(h.alpn, vec![b"alpn".to_vec()]);
    assert_eq!(h.cipher_suites, vec![0x1301, 0x1302]);
    assert_eq!(h.supported_versions, vec![0x0304]);
    assert_eq!(h.supported_groups, vec![0x001d, 0x0017, 0x0018]);
    assert_eq!(
        h.extensions,
        vec![
            0x0000, 0xff01, 0x000a, 0x0010, 0x0005, 0x0033, 0x002b, 0x000d, 0x002d, 0x001c, 0x0039
        ]
    );
    assert!(!h.ech);
    assert!(h.ja4.starts_with("q13d0211an_"), "{}", h.ja4);
}

#[test]
fn rfc9001_client_initial_decrypts_to_the_published_hello() {
    let got = quic::parse_initial(&hex(V1))
        .unwrap()
        .expect("complete hello");
    check_rfc_hello(&got, QuicVersion::V1);
    // The hello the RFC prints in A.2 is the one we parsed.
    let direct = gatehouse_inspectors::identify::tls::parse_handshake(
        &hex(HELLO),
        gatehouse_inspectors::identify::tls::HelloTransport::Quic,
    )
    .unwrap()
    .unwrap();
    assert_eq!(direct, got.hello);
}

#[test]
fn rfc9369_v2_client_initial_decrypts_to_the_same_hello() {
    let got = quic::parse_initial(&hex(V2))
        .unwrap()
        .expect("complete hello");
    check_rfc_hello(&got, QuicVersion::V2);
}

#[test]
fn every_prefix_of_the_vectors_needs_more() {
    for vector in [V1, V2] {
        let bytes = hex(vector);
        for cut in 0..bytes.len() {
            assert_eq!(quic::parse_initial(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }
}

#[test]
fn a_flipped_ciphertext_bit_fails_authentication() {
    let mut bytes = hex(V1);
    bytes[100] ^= 1;
    assert!(quic::parse_initial(&bytes).is_err());
}

#[test]
fn version_detection_is_cheap_and_early() {
    assert_eq!(quic::looks_like_initial(&hex(V1)), Some(true));
    assert_eq!(quic::looks_like_initial(&hex(V2)), Some(true));
    assert_eq!(quic::looks_like_initial(&hex(V1)[..3]), None);
    assert_eq!(
        quic::looks_like_initial(b"\x16\x03\x01\x02\x00"),
        Some(false)
    );
}

#[test]
fn parser_state_is_reusable_across_datagrams() {
    let mut p = InitialParser::new();
    let bytes = hex(V1);
    assert_eq!(p.push_datagram(&bytes[..500]), Ok(None));
    assert!(p.push_datagram(&bytes).unwrap().is_some());
}

/// Seals CRYPTO data into a client Initial with rustls, the way a client
/// would, so reassembly can be tested on real packet protection.
fn seal_initial(dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    seal_versioned(rustls::quic::Version::V1, 1, dcid, pn, frames)
}

fn seal_versioned(
    version: rustls::quic::Version,
    wire: u32,
    dcid: &[u8],
    pn: u32,
    frames: &[u8],
) -> Vec<u8> {
    use rustls::quic::Keys;
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .unwrap();
    let keys = Keys::initial(
        version,
        suite,
        suite.quic.unwrap(),
        dcid,
        rustls::Side::Client,
    );
    let mut payload = frames.to_vec();
    payload.resize(payload.len().max(40), 0); // PADDING
    let length = 4 + payload.len() + 16;
    let mut header = vec![0xc3];
    header.extend(wire.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend(dcid);
    header.extend([0, 0]); // no SCID, no token
    header.extend((0x4000u16 | length as u16).to_be_bytes());
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    let tag = keys
        .local
        .packet
        .encrypt_in_place(u64::from(pn), &header, &mut payload)
        .unwrap();
    let mut packet = header;
    packet.extend(payload);
    packet.extend(tag.as_ref());
    let sample: Vec<u8> = packet[pn_offset + 4..pn_offset + 20].to_vec();
    let (first, rest) = packet.split_at_mut(1);
    keys.local
        .header
        .encrypt_in_place(
            &sample,
            &mut first[0],
            &mut rest[pn_offset - 1..pn_offset + 3],
        )
        .unwrap();
    packet
}

fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06, 0x40 | (offset >> 8) as u8, offset as u8];
    f.extend([0x40 | (data.len() >> 8) as u8, data.len() as u8]);
    f.extend(data);
    f
}

#[test]
fn crypto_frames_reassemble_across_datagrams_and_out_of_order() {
    let dcid = hex("0011223344556677");
    let hello = hex(HELLO);
    let (head, tail) = hello.split_at(100);
    let (mid, end) = tail.split_at(70);
    // Datagram 1: the end of the hello, then its middle, in one packet.
    let mut frames = crypto_frame(170, end);
    frames.extend(crypto_frame(100, mid));
    let first = seal_initial(&dcid, 0, &frames);
    // Datagram 2: the beginning.
    let second = seal_initial(&dcid, 1, &crypto_frame(0, head));

    let mut p = InitialParser::new();
    assert_eq!(p.push_datagram(&first), Ok(None));
    let got = p.push_datagram(&second).unwrap().expect("hello complete");
    assert_eq!(got.dcid, dcid);
    assert_eq!(got.hello.sni.as_deref(), Some("example.com"));

    // Both packets coalesced in one datagram work as well.
    let mut both = first.clone();
    both.extend(&second);
    assert!(quic::parse_initial(&both).unwrap().is_some());
}

#[test]
fn draft_29_initials_use_the_draft_salt() {
    let dcid = hex("0102030405060708");
    let packet = seal_versioned(
        rustls::quic::Version::V1Draft,
        0xff00_001d,
        &dcid,
        0,
        &crypto_frame(0, &hex(HELLO)),
    );
    let got = quic::parse_initial(&packet)
        .unwrap()
        .expect("complete hello");
    assert_eq!(got.version, QuicVersion::Draft(29));
    assert_eq!(got.hello.sni.as_deref(), Some("example.com"));
    // The same packet claimed as v1 does not authenticate: the salts differ.
    let mut as_v1 = packet.clone();
    as_v1[1..5].copy_from_slice(&1u32.to_be_bytes());
    assert!(quic::parse_initial(&as_v1).is_err());
}
