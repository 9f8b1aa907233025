//! Identification cost per flow: ClientHello parse + JA4, QUIC Initial
//! decrypt + parse, first-bytes protocol detection, catalog lookups.
//!
//! `cargo bench --bench identify -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_inspectors::identify::catalog::{classify, Catalog};
use gatehouse_inspectors::identify::{identify, quic, tls, Transport};

const CURL: &[u8] = include_bytes!("../inspectors/tests/fixtures/curl_client_hello.bin");
const AIOQUIC: &[u8] = include_bytes!("../inspectors/tests/fixtures/aioquic_initial.bin");
const RFC9001: &str = include_str!("../inspectors/tests/fixtures/rfc9001_a2_client_initial.hex");
const OBFUSCATED: &[u8] = include_bytes!("../inspectors/tests/fixtures/telethon_obfuscated2.bin");
const MQTT: &[u8] = include_bytes!("../inspectors/tests/fixtures/paho_mqtt_connect.bin");
const XMPP: &[u8] = include_bytes!("../inspectors/tests/fixtures/slixmpp_stream_header.bin");

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn tls_hello(c: &mut Criterion) {
    let mut g = c.benchmark_group("tls");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_client_hello+ja4 (curl)", |b| {
        b.iter(|| tls::parse_client_hello(black_box(CURL)).unwrap().unwrap())
    });
    let hello = tls::parse_client_hello(CURL).unwrap().unwrap();
    g.bench_function("ja4 only (curl)", |b| {
        b.iter(|| tls::ja4::fingerprint(black_box(&hello), tls::HelloTransport::Tcp))
    });
    g.bench_function("identify (curl)", |b| {
        b.iter(|| identify(black_box(CURL), Transport::Tcp, 443))
    });
    g.bench_function("identify+classify (curl)", |b| {
        b.iter(|| {
            let id = identify(black_box(CURL), Transport::Tcp, 443);
            classify(&id, None, 443)
        })
    });
    g.finish();
}

fn quic_initial(c: &mut Criterion) {
    let rfc = hex(RFC9001);
    let mut g = c.benchmark_group("quic");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_initial (RFC 9001 A.2)", |b| {
        b.iter(|| quic::parse_initial(black_box(&rfc)).unwrap().unwrap())
    });
    g.bench_function("parse_initial (aioquic)", |b| {
        b.iter(|| quic::parse_initial(black_box(AIOQUIC)).unwrap().unwrap())
    });
    g.finish();
}

fn first_bytes(c: &mut Criterion) {
    let random: Vec<u8> = (0..256u32).map(|i| (i * 97 + 13) as u8).collect();
    let mut g = c.benchmark_group("first_bytes");
    g.throughput(Throughput::Elements(1));
    for (name, bytes) in [
        ("mtproto obfuscated2 (telethon)", OBFUSCATED),
        ("mqtt connect (paho)", MQTT),
        ("xmpp header (slixmpp)", XMPP),
        ("unknown 256 random bytes", &random[..]),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| identify(black_box(bytes), Transport::Tcp, 443))
        });
    }
    g.finish();
}

fn catalog(c: &mut Criterion) {
    let cat = Catalog::builtin();
    let mut g = c.benchmark_group("catalog");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lookup_host suffix hit", |b| {
        b.iter(|| cat.lookup_host(black_box("edge-chat.messenger.com")))
    });
    g.bench_function("lookup_host miss", |b| {
        b.iter(|| cat.lookup_host(black_box("static.cdn.example.org")))
    });
    g.bench_function("lookup_http endpoint", |b| {
        b.iter(|| {
            cat.lookup_http(
                black_box(Some("matrix.corp.example")),
                black_box("/_matrix/client/v3/rooms/!a:b/send/m.room.message/1"),
                false,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, tls_hello, quic_initial, first_bytes, catalog);
criterion_main!(benches);
