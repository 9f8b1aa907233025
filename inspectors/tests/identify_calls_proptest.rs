//! Calls, DNS and gQUIC parsers on every prefix of real captured bytes
//! (the datagrams and streams of `fixtures/captures/calls_dns_quic.pcap`),
//! then on arbitrary input: incomplete input says "need more" where the
//! framing allows it, a prefix never yields a wrong answer, nothing panics.

use gatehouse_inspectors::capture::link::{self, Decoded};
use gatehouse_inspectors::capture::Frames;
use gatehouse_inspectors::identify::catalog::{classify, Catalog, FlowContext};
use gatehouse_inspectors::identify::context::{ClientContext, ContextLimits};
use gatehouse_inspectors::identify::ranges::Ranges;
use gatehouse_inspectors::identify::resolved::{ResolvedLimits, ResolvedNames};
use gatehouse_inspectors::identify::{
    discord_voice, dns, gquic, identify, identify_datagrams, identify_final, rtp, stun, Protocol,
    Sniff, Transport,
};
use proptest::prelude::*;
use std::net::IpAddr;

const CALLS: &[u8] = include_bytes!("fixtures/captures/calls_dns_quic.pcap");

/// (transport, destination port, payload) of every client-to-server
/// segment with a payload (the capture's client is 127.0.10.1 or, for
/// aioquic, 127.0.0.1).
fn client_payloads() -> Vec<(Transport, u16, Vec<u8>)> {
    let mut out = Vec::new();
    for frame in Frames::open(CALLS).unwrap() {
        let f = frame.unwrap();
        if let Ok(Decoded::Segment(s)) = link::decode(f.linktype, f.data) {
            let from_client = matches!(s.src.ip().to_string().as_str(), "127.0.10.1" | "127.0.0.1");
            if from_client && !s.payload.is_empty() {
                out.push((s.transport, s.dst.port(), s.payload.to_vec()));
            }
        }
    }
    out
}

#[test]
fn every_prefix_of_captured_datagrams_is_safe_and_never_wrong() {
    let payloads = client_payloads();
    let mut seen = std::collections::HashMap::new();
    for (transport, port, bytes) in &payloads {
        let whole = identify_final(bytes, *transport, *port);
        *seen.entry(whole.protocol).or_insert(0) += 1;
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            let id = identify(part, *transport, *port);
            let _ = classify(&id, None, *port);
            let _ = identify_final(part, *transport, *port);
            let _ = rtp::media_flow(&[part]);
            let _ = dns::parse(part);
            if let Ok(Some(h)) = gquic::parse(part) {
                // A cut datagram may still hold the whole CHLO; then its
                // SNI must be the same one.
                let full = gquic::parse(bytes).unwrap().unwrap();
                assert_eq!(h.server_name(), full.server_name());
            }
            if let Sniff::Yes(m) = stun::detect(part) {
                panic!("a cut STUN datagram parsed: {m:?}");
            }
            if whole.protocol == Protocol::Stun {
                // Over a stream the same bytes are "need more" until whole.
                assert_eq!(stun::detect_stream(part), Sniff::NeedMore, "cut {cut}");
            }
        }
    }
    for p in [Protocol::Dns, Protocol::Stun, Protocol::Quic, Protocol::Tls] {
        assert!(seen.contains_key(&p), "{p:?} in {seen:?}");
    }
}

#[test]
fn tcp_dns_from_the_capture_needs_more_on_every_prefix() {
    // The client's TCP DNS query is one segment: length prefix and message.
    let (_, _, query) = client_payloads()
        .into_iter()
        .find(|(t, port, _)| *t == Transport::Tcp && *port == 53)
        .expect("a TCP DNS query");
    assert!(matches!(dns::detect_tcp(&query), Sniff::Yes(_)));
    for cut in 0..query.len() {
        assert_eq!(dns::detect_tcp(&query[..cut]), Sniff::NeedMore, "cut {cut}");
        assert!(
            identify(&query[..cut], Transport::Tcp, 53).need_more,
            "cut {cut}"
        );
    }
}

#[test]
fn captured_rtp_needs_its_sequence() {
    let rtp_dgrams: Vec<Vec<u8>> = client_payloads()
        .into_iter()
        .filter(|(t, port, _)| *t == Transport::Udp && *port == 5004)
        .map(|(_, _, b)| b)
        .collect();
    assert!(rtp_dgrams.len() >= 8);
    let refs: Vec<&[u8]> = rtp_dgrams.iter().map(Vec::as_slice).collect();
    assert_eq!(identify_datagrams(&refs[..8], 5004).protocol, Protocol::Rtp);
    // One datagram alone is not enough to say RTP.
    assert_eq!(
        identify_datagrams(&refs[..1], 5004).protocol,
        Protocol::Unknown
    );
    // Shuffled streams (different SSRCs) do not agree.
    let mut other = rtp_dgrams[1].clone();
    other[8] ^= 0xff;
    let mixed = [refs[0], other.as_slice(), refs[2]];
    assert_eq!(identify_datagrams(&mixed, 5004).protocol, Protocol::Unknown);
}

fn everything(bytes: &[u8], port: u16) {
    let _ = stun::detect(bytes);
    let _ = stun::detect_stream(bytes);
    let _ = dns::detect_udp(bytes);
    let _ = dns::detect_tcp(bytes);
    let _ = rtp::rtcp(bytes);
    let _ = rtp::rtp_header(bytes);
    let _ = gquic::looks_like_gquic(bytes);
    let _ = gquic::parse(bytes);
    let _ = discord_voice::detect(bytes);
    let chunks: Vec<&[u8]> = bytes.chunks(97).collect();
    let id = identify_datagrams(&chunks, port);
    assert!(!id.need_more);
    let ctx = FlowContext {
        port,
        server: Some(IpAddr::from([149, 154, 167, 51])),
        ranges: Some(Ranges::builtin()),
        ..FlowContext::default()
    };
    let _ = Catalog::builtin().classify_flow(&id, &ctx);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500), port: u16) {
        everything(&bytes, port);
    }

    #[test]
    fn call_and_dns_looking_starts_never_panic(
        start in prop::sample::select(vec![
            &b"\x00\x01\x00\x08\x21\x12\xa4\x42"[..], b"\x01\x01\x00\x00\x21\x12\xa4\x42",
            b"\x80\x00", b"\x81\xc9\x00\x07", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
            b"\x00\x1c\x12\x34\x01\x00\x00\x01", b"\x09\x01\x02\x03\x04\x05\x06\x07\x08Q043",
            b"\xc3Q046\x50", b"\xc3Q050\x08", b"\xc3T051\x08",
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..1400),
    ) {
        let mut bytes = start.to_vec();
        bytes.extend(tail);
        everything(&bytes, 443);
        let _ = identify(&bytes, Transport::Udp, 3478);
        let _ = identify(&bytes, Transport::Tcp, 53);
    }

    #[test]
    fn built_messages_round_trip(
        name in "[a-z]{1,12}(\\.[a-z]{1,12}){1,3}",
        software in "[ -~]{0,40}",
        seq in any::<u16>(),
        ssrc in any::<u32>(),
    ) {
        let q = dns::build_query(seq, &name, dns::TYPE_AAAA);
        let m = dns::parse(&q).unwrap();
        prop_assert_eq!(m.qname, name);
        let s = stun::build(0x0001, [5; 12], &[(0x8022, software.as_bytes())], true);
        match stun::detect(&s) {
            Sniff::Yes(m) => prop_assert_eq!(m.software.as_deref(), Some(software.as_str())),
            other => prop_assert!(false, "{:?}", other),
        }
        let pkts: Vec<Vec<u8>> = (0..4u16)
            .map(|i| rtp::build_rtp(96, seq.wrapping_add(i), 0, ssrc, &[1; 20]))
            .collect();
        let refs: Vec<&[u8]> = pkts.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(identify_datagrams(&refs, 40000).protocol, Protocol::Rtp);
    }

    #[test]
    fn resolved_names_stay_bounded_and_respect_ttl(
        inserts in proptest::collection::vec((any::<u8>(), 0u32..600, 0u32..1000), 0..300),
        probe in any::<u8>(),
    ) {
        let limits = ResolvedLimits { capacity: 16, min_ttl: 0.0, max_ttl: 3600.0 };
        let mut r = ResolvedNames::new(limits);
        let mut model: std::collections::HashMap<u8, (f64, String)> = Default::default();
        let mut now = 0.0;
        for (last, ttl, dt) in inserts {
            now += f64::from(dt) / 10.0;
            let name = format!("h{last}.example");
            r.insert(IpAddr::from([10, 0, 0, last]), &name, ttl, now);
            model.insert(last, (now + f64::from(ttl), name));
            prop_assert!(r.len() <= 16);
        }
        if let Some(name) = r.lookup(IpAddr::from([10, 0, 0, probe]), now) {
            // Whatever is still remembered is the latest answer, in its TTL.
            let (expires, want) = &model[&probe];
            prop_assert_eq!(name, want.as_str());
            prop_assert!(now <= *expires);
        }
        let mut ctx = ClientContext::new(ContextLimits::default());
        ctx.observe_app(IpAddr::from([10, 0, 0, 1]), IpAddr::from([1, 1, 1, 1]), "slack", now);
        prop_assert_eq!(ctx.signalled(IpAddr::from([10, 0, 0, 1]), now + 1.0), vec!["slack".to_owned()]);
    }
}
