//! Identification on bytes recorded from real clients (see fixtures/README.md).

use gatehouse_inspectors::identify::catalog::{classify, Class};
use gatehouse_inspectors::identify::mtproto::{MtprotoTransport, ObfuscatedInner};
use gatehouse_inspectors::identify::{
    identify, quic, tls, Details, Identification, Protocol, Transport,
};

const CURL: &[u8] = include_bytes!("fixtures/curl_client_hello.bin");
const PYTHON: &[u8] = include_bytes!("fixtures/python_ssl_client_hello.bin");
const AIOQUIC: &[u8] = include_bytes!("fixtures/aioquic_initial.bin");
const PAHO: &[u8] = include_bytes!("fixtures/paho_mqtt_connect.bin");
const SLIXMPP: &[u8] = include_bytes!("fixtures/slixmpp_stream_header.bin");
const TG_OBFUSCATED: &[u8] = include_bytes!("fixtures/telethon_obfuscated2.bin");
const TG_FULL: &[u8] = include_bytes!("fixtures/telethon_full.bin");
const TG_ABRIDGED: &[u8] = include_bytes!("fixtures/telethon_abridged.bin");
const TG_INTERMEDIATE: &[u8] = include_bytes!("fixtures/telethon_intermediate.bin");

/// Every TCP fixture, with the protocol it must be identified as.
const TCP: [(&str, &[u8], Protocol); 8] = [
    ("curl", CURL, Protocol::Tls),
    ("python", PYTHON, Protocol::Tls),
    ("paho", PAHO, Protocol::Mqtt),
    ("slixmpp", SLIXMPP, Protocol::Xmpp),
    ("telethon obfuscated2", TG_OBFUSCATED, Protocol::Mtproto),
    ("telethon full", TG_FULL, Protocol::Mtproto),
    ("telethon abridged", TG_ABRIDGED, Protocol::Mtproto),
    ("telethon intermediate", TG_INTERMEDIATE, Protocol::Mtproto),
];

fn hello(bytes: &[u8]) -> tls::ClientHello {
    tls::parse_client_hello(bytes)
        .unwrap()
        .expect("complete hello")
}

#[test]
fn curl_hello_parses_with_independently_checked_ja4() {
    let h = hello(CURL);
    assert_eq!(h.sni.as_deref(), Some("chat.example.com"));
    assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(h.max_version(), 0x0304);
    assert!(!h.ech);
    // Cross-checked with the ja4plus 1.4.0 Python package (README.md).
    assert_eq!(h.ja4, "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6");
}

#[test]
fn python_ssl_hello_parses_with_independently_checked_ja4() {
    let h = hello(PYTHON);
    assert_eq!(h.sni.as_deref(), Some("chat.example.com"));
    assert_eq!(h.alpn_strs().collect::<Vec<_>>(), ["h2", "http/1.1"]);
    assert!(h.supported_versions.contains(&0x0304));
    assert_eq!(h.ja4, "t13d1812h2_85036bcba153_d41ae481755e");
}

#[test]
fn aioquic_initial_decrypts_with_independently_checked_ja4() {
    let q = quic::parse_initial(AIOQUIC)
        .unwrap()
        .expect("complete hello");
    assert_eq!(q.version, quic::QuicVersion::V1);
    assert_eq!(q.hello.sni.as_deref(), Some("chat.example.com"));
    assert_eq!(q.hello.alpn, vec![b"h3".to_vec()]);
    assert!(q
        .hello
        .extensions
        .contains(&tls::ext::QUIC_TRANSPORT_PARAMETERS));
    assert_eq!(q.hello.ja4, "q13d0307h3_55b375c5d22e_1cecd519fee8");
    let id = identify(AIOQUIC, Transport::Udp, 443);
    assert_eq!((id.protocol, id.need_more), (Protocol::Quic, false));
    assert_eq!(id.server_name(), Some("chat.example.com"));
}

#[test]
fn every_fixture_is_identified_as_its_protocol() {
    for (name, bytes, want) in TCP {
        let id = identify(bytes, Transport::Tcp, 443);
        assert_eq!(id.protocol, want, "{name}");
        assert!(!id.need_more, "{name}");
        assert_eq!(id.error, None, "{name}");
    }
}

#[test]
fn every_prefix_of_every_fixture_needs_more() {
    for (name, bytes, want) in TCP {
        for cut in 0..bytes.len() {
            let id = identify(&bytes[..cut], Transport::Tcp, 443);
            assert!(id.need_more, "{name}: cut at {cut} gave {:?}", id.protocol);
            assert_eq!(id.error, None, "{name}: cut at {cut}");
            // Once the protocol is the only candidate left, it is named.
            if id.protocol != Protocol::Unknown {
                assert_eq!(id.protocol, want, "{name}: cut at {cut}");
            }
        }
    }
    // aioquic's Initial packet is the first 525 bytes; it pads the datagram
    // to 1200 with zero bytes after the packet, which change nothing.
    const PACKET_END: usize = 525;
    assert!(AIOQUIC[PACKET_END..].iter().all(|b| *b == 0));
    for cut in 0..PACKET_END {
        assert!(
            identify(&AIOQUIC[..cut], Transport::Udp, 443).need_more,
            "quic cut {cut}"
        );
        assert_eq!(quic::parse_initial(&AIOQUIC[..cut]), Ok(None));
    }
    let whole = quic::parse_initial(AIOQUIC).unwrap();
    for cut in PACKET_END..AIOQUIC.len() {
        assert_eq!(
            quic::parse_initial(&AIOQUIC[..cut]).unwrap(),
            whole,
            "quic cut {cut}"
        );
    }
    for bytes in [CURL, PYTHON] {
        for cut in 0..bytes.len() {
            assert_eq!(tls::parse_client_hello(&bytes[..cut]), Ok(None));
        }
    }
}

#[test]
fn paho_connect_and_slixmpp_header_details() {
    let Details::Mqtt(c) = identify(PAHO, Transport::Tcp, 1883).details else {
        panic!("not mqtt")
    };
    assert_eq!((c.protocol_name.as_str(), c.level), ("MQTT", 4));
    assert_eq!(c.client_id.as_deref(), Some("gatehouse-fixture"));

    let id = identify(SLIXMPP, Transport::Tcp, 5222);
    let Details::Xmpp(x) = &id.details else {
        panic!("not xmpp")
    };
    assert_eq!(x.to.as_deref(), Some("chat.example.org"));
    assert_eq!(x.namespace.as_deref(), Some("jabber:client"));
    assert_eq!(id.server_name(), Some("chat.example.org"));
}

fn transport(id: &Identification) -> MtprotoTransport {
    match id.details {
        Details::Mtproto(t) => t,
        ref other => panic!("not mtproto: {other:?}"),
    }
}

#[test]
fn telethon_transports_are_told_apart_and_classified_telegram() {
    let obf = identify(TG_OBFUSCATED, Transport::Tcp, 443);
    assert!(matches!(
        transport(&obf),
        MtprotoTransport::Obfuscated2 {
            inner: ObfuscatedInner::Intermediate
                | ObfuscatedInner::Abridged
                | ObfuscatedInner::PaddedIntermediate,
            ..
        }
    ));
    assert_eq!(
        transport(&identify(TG_FULL, Transport::Tcp, 443)),
        MtprotoTransport::Full
    );
    assert_eq!(
        transport(&identify(TG_ABRIDGED, Transport::Tcp, 443)),
        MtprotoTransport::Abridged
    );
    assert_eq!(
        transport(&identify(TG_INTERMEDIATE, Transport::Tcp, 443)),
        MtprotoTransport::Intermediate
    );
    let c = classify(&obf, None, 443);
    assert_eq!(
        (c.app.as_deref(), c.class),
        (Some("telegram"), Class::Opaque)
    );
}

#[test]
fn a_broken_crc_is_not_the_full_transport() {
    let mut bytes = TG_FULL.to_vec();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    let id = identify(&bytes, Transport::Tcp, 443);
    assert_ne!(id.details, Details::Mtproto(MtprotoTransport::Full));
}

/// Datagrams of a `.dgrams` fixture: each prefixed by a 2-byte length.
fn datagrams(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        out.push(&bytes[2..2 + n]);
        bytes = &bytes[2 + n..];
    }
    out
}

#[test]
fn aioquic_hello_split_over_two_datagrams_reassembles_in_any_order() {
    let split = include_bytes!("fixtures/aioquic_initial_split.dgrams");
    let dgrams = datagrams(split);
    assert_eq!(dgrams.len(), 2);
    // The first datagram alone is not enough, whatever the API.
    assert_eq!(quic::parse_initial(dgrams[0]), Ok(None));
    assert!(identify(dgrams[0], Transport::Udp, 443).need_more);

    for order in [[0, 1], [1, 0]] {
        let mut p = quic::InitialParser::new();
        assert_eq!(p.push_datagram(dgrams[order[0]]), Ok(None), "{order:?}");
        // Every prefix of the second datagram's packet still needs more
        // (aioquic pads the datagram with zeros after the packet).
        let second = dgrams[order[1]];
        let packet_end = second.iter().rposition(|b| *b != 0).unwrap() + 1;
        for cut in 0..packet_end {
            let mut probe = quic::InitialParser::new();
            probe.push_datagram(dgrams[order[0]]).unwrap();
            assert_eq!(
                probe.push_datagram(&second[..cut]),
                Ok(None),
                "{order:?} {cut}"
            );
        }
        let q = p
            .push_datagram(dgrams[order[1]])
            .unwrap()
            .expect("hello complete");
        assert_eq!(q.hello.sni.as_deref(), Some("chat.example.com"));
        assert_eq!(q.hello.alpn.len(), 81);
        assert_eq!(q.hello.alpn[80], b"x-gatehouse-079".to_vec());
        // Same client build as aioquic_initial.bin: ALPN's first entry and
        // the lists are unchanged, so is the JA4 (checked with ja4plus).
        assert_eq!(q.hello.ja4, "q13d0307h3_55b375c5d22e_1cecd519fee8");
    }
}
