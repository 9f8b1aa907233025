//! Property tests: no input makes identification panic, and record
//! boundaries do not change a parsed ClientHello.

use gatehouse_inspectors::identify::catalog::{classify, Catalog};
use gatehouse_inspectors::identify::{
    http, identify, identify_final, mmtls, mqtt, mtproto, quic, tls, whatsapp, xmpp, Transport,
};
use proptest::prelude::*;

const CURL: &[u8] = include_bytes!("fixtures/curl_client_hello.bin");
const AIOQUIC: &[u8] = include_bytes!("fixtures/aioquic_initial.bin");
const FIXTURES: [&[u8]; 6] = [
    CURL,
    AIOQUIC,
    include_bytes!("fixtures/paho_mqtt_connect.bin"),
    include_bytes!("fixtures/slixmpp_stream_header.bin"),
    include_bytes!("fixtures/telethon_obfuscated2.bin"),
    include_bytes!("fixtures/telethon_full.bin"),
];

fn everything(bytes: &[u8], port: u16) {
    for t in [Transport::Tcp, Transport::Udp] {
        let id = identify(bytes, t, port);
        let _ = classify(&id, None, port);
        let fin = identify_final(bytes, t, port);
        assert!(!fin.need_more);
        assert!(fin.entropy.is_none_or(|e| (0.0..=8.0).contains(&e)));
    }
    let _ = tls::parse_client_hello(bytes);
    let _ = tls::parse_handshake(bytes, tls::HelloTransport::Quic);
    let _ = quic::parse_initial(bytes);
    let _ = http::detect(bytes);
    let _ = xmpp::detect(bytes);
    let _ = mqtt::detect(bytes);
    let _ = whatsapp::detect(bytes);
    let _ = mmtls::detect(bytes);
    let _ = mtproto::detect_plain(bytes);
    let _ = mtproto::detect_obfuscated(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500), port: u16) {
        everything(&bytes, port);
    }

    #[test]
    fn protocol_looking_starts_never_panic(
        start in prop::sample::select(vec![
            &b"\x16\x03\x01"[..], b"\xc0\x00\x00\x00\x01", b"\xd0\x6b\x33\x43\xcf", b"GET ",
            b"<stream:stream ", b"\x10", b"ED\x00\x01", b"WA", b"\xef", b"\xee\xee\xee\xee",
            b"\xdd\xdd\xdd\xdd", b"\x16\xf1\x04",
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = start.to_vec();
        bytes.extend(tail);
        everything(&bytes, 443);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = FIXTURES[which].to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        everything(&bytes, 443);
    }

    #[test]
    fn record_boundaries_do_not_change_the_hello(sizes in proptest::collection::vec(1usize..300, 1..40)) {
        let whole = tls::parse_client_hello(CURL).unwrap().unwrap();
        let message = &CURL[5..];
        let mut records = Vec::new();
        let mut rest = message;
        let mut sizes = sizes.into_iter().cycle();
        while !rest.is_empty() {
            let n = sizes.next().unwrap().min(rest.len());
            records.extend([0x16, 0x03, 0x01]);
            records.extend((n as u16).to_be_bytes());
            records.extend(&rest[..n]);
            rest = &rest[n..];
        }
        prop_assert_eq!(tls::parse_client_hello(&records).unwrap(), Some(whole));
        for cut in [records.len() / 3, records.len() - 1] {
            prop_assert_eq!(tls::parse_client_hello(&records[..cut]), Ok(None));
        }
    }

    #[test]
    fn datagram_sequences_never_panic(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5),
    ) {
        let mut p = quic::InitialParser::new();
        let _ = p.push_datagram(AIOQUIC);
        for d in datagrams {
            let _ = p.push_datagram(&d);
        }
    }

    #[test]
    fn host_lookups_never_panic(host in "\\PC{0,80}", path in "\\PC{0,80}", ws: bool) {
        let c = Catalog::builtin();
        let _ = c.lookup_host(&host);
        let _ = c.lookup_http(Some(&host), &path, ws);
    }
}
