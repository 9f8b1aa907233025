//! Flow assembly end to end: synthetic captures around the real first
//! bytes of `inspectors/tests/fixtures/`.

use etherparse::PacketBuilder;
use proptest::prelude::*;

use super::link::linktype;
use super::*;
use crate::identify::{Protocol, Transport};

const CURL_HELLO: &[u8] = include_bytes!("../../tests/fixtures/curl_client_hello.bin");
const MQTT: &[u8] = include_bytes!("../../tests/fixtures/paho_mqtt_connect.bin");
const QUIC_SPLIT: &[u8] = include_bytes!("../../tests/fixtures/aioquic_initial_split.dgrams");

fn tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src.0, dst.0, 64).tcp(src.1, dst.1, seq, 65535);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(1);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// A little-endian microsecond pcap of raw-IP frames.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [
        0xa1b2_c3d4u32,
        0x0004_0002,
        0,
        0,
        65535,
        linktype::RAW as u32,
    ] {
        out.extend(v.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for v in [1_700_000_000u32, i as u32, f.len() as u32, f.len() as u32] {
            out.extend(v.to_le_bytes());
        }
        out.extend(f);
    }
    out
}

fn datagrams(split: &[u8]) -> Vec<&[u8]> {
    let mut rest = split;
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        out.push(&rest[2..2 + len]);
        rest = &rest[2 + len..];
    }
    out
}

const C: [u8; 4] = [10, 0, 0, 1];
const S: [u8; 4] = [10, 0, 0, 2];

#[test]
fn tls_hello_out_of_order_and_retransmitted_is_reassembled() {
    let (a, b) = CURL_HELLO.split_at(200);
    let frames = vec![
        tcp((C, 40000), (S, 443), 100, "S", b""),
        tcp((S, 443), (C, 40000), 900, "SA", b""),
        tcp((C, 40000), (S, 443), 101 + 200, "A", b),
        tcp((C, 40000), (S, 443), 101, "A", a),
        tcp((C, 40000), (S, 443), 101, "A", a),
    ];
    let cap = read(&pcap(&frames), Limits::default()).unwrap();
    assert_eq!(cap.flows.len(), 1);
    let f = &cap.flows[0];
    assert_eq!(f.client, "10.0.0.1:40000".parse().unwrap());
    assert_eq!(f.server, "10.0.0.2:443".parse().unwrap());
    assert_eq!((f.packets, f.syn_seen), (5, true));
    assert_eq!(f.identification.protocol, Protocol::Tls);
    assert_eq!(f.identification.server_name(), Some("chat.example.com"));
}

#[test]
fn syn_ack_seen_first_names_the_receiver_as_client() {
    let frames = vec![
        tcp((S, 1883), (C, 50000), 7, "SA", b""),
        tcp((C, 50000), (S, 1883), 1, "A", MQTT),
    ];
    let cap = read(&pcap(&frames), Limits::default()).unwrap();
    let f = &cap.flows[0];
    assert_eq!(f.client, "10.0.0.1:50000".parse().unwrap());
    assert_eq!(f.identification.protocol, Protocol::Mqtt);
}

#[test]
fn quic_hello_spanning_two_datagrams_is_followed() {
    let dg = datagrams(QUIC_SPLIT);
    assert_eq!(dg.len(), 2);
    let frames = vec![
        udp((C, 51000), (S, 443), dg[0]),
        udp((S, 443), (C, 51000), b"\xc0server reply"),
        udp((C, 51000), (S, 443), dg[1]),
    ];
    let cap = read(&pcap(&frames), Limits::default()).unwrap();
    assert_eq!(cap.flows.len(), 1);
    let f = &cap.flows[0];
    assert_eq!(f.transport, Transport::Udp);
    assert_eq!(f.identification.protocol, Protocol::Quic);
    assert_eq!(f.identification.error, None);
    assert_eq!(f.identification.server_name(), Some("chat.example.com"));
}

#[test]
fn one_datagram_of_a_split_hello_is_quic_but_incomplete() {
    let dg = datagrams(QUIC_SPLIT);
    let cap = read(
        &pcap(&[udp((C, 51000), (S, 443), dg[0])]),
        Limits::default(),
    )
    .unwrap();
    let id = &cap.flows[0].identification;
    assert_eq!(id.protocol, Protocol::Quic);
    assert!(id.error.as_deref().unwrap().contains("incomplete"));
}

#[test]
fn malformed_frames_are_skipped_and_counted() {
    let frames = vec![
        vec![0x45, 0, 0, 99, 1],
        tcp(
            (C, 40000),
            (S, 80),
            1,
            "A",
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        ),
    ];
    let cap = read(&pcap(&frames), Limits::default()).unwrap();
    assert_eq!((cap.frames, cap.malformed), (2, 1));
    assert_eq!(cap.malformed_examples[0].0, 1);
    assert_eq!(cap.flows.len(), 1);
    assert_eq!(cap.flows[0].identification.protocol, Protocol::Http);
}

#[test]
fn a_new_syn_on_the_same_ports_is_a_new_flow() {
    let frames = vec![
        tcp((C, 40000), (S, 1883), 10, "S", b""),
        tcp((C, 40000), (S, 1883), 11, "A", MQTT),
        tcp((C, 40000), (S, 1883), 5000, "S", b""),
        tcp((C, 40000), (S, 1883), 5001, "A", b"GET / HTTP/1.1\r\n\r\n"),
    ];
    let cap = read(&pcap(&frames), Limits::default()).unwrap();
    let protocols: Vec<_> = cap
        .flows
        .iter()
        .map(|f| f.identification.protocol)
        .collect();
    assert_eq!(protocols, [Protocol::Mqtt, Protocol::Http]);
}

#[test]
fn a_flow_without_client_bytes_is_unknown() {
    let cap = read(
        &pcap(&[tcp((C, 40000), (S, 22), 1, "S", b"")]),
        Limits::default(),
    )
    .unwrap();
    let f = &cap.flows[0];
    assert_eq!(
        (f.client_bytes, f.identification.protocol),
        (0, Protocol::Unknown)
    );
}

proptest! {
    /// Arbitrary bytes, bare or behind a valid header, never panic.
    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read(&body, Limits::default());
        let mut file = pcap(&[]);
        file.extend(&body);
        let _ = read(&file, Limits::default());
        let mut ng = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
        ng.extend([0xff; 8]);
        ng.extend([28, 0, 0, 0]);
        ng.extend(&body);
        let _ = read(&ng, Limits::default());
    }

    /// Random payloads in well-formed frames never panic either.
    #[test]
    fn random_payloads_never_panic(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..8),
        seqs in proptest::collection::vec(any::<u32>(), 8),
    ) {
        let mut frames = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            frames.push(tcp((C, 40000), (S, 443), seqs[i], if i == 0 { "S" } else { "A" }, p));
            frames.push(udp((C, 40001), (S, 443), p));
        }
        let cap = read(&pcap(&frames), Limits::default()).unwrap();
        prop_assert_eq!(cap.flows.len(), 2);
    }
}
