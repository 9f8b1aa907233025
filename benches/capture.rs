//! `gatehouse identify`'s core: capture bytes in, identified flows out
//! (container walk, IP/TCP decode, start-of-stream reassembly, identify),
//! then catalog classification.
//!
//! `cargo bench --bench capture -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_inspectors::capture::{self, Limits};
use gatehouse_inspectors::identify::catalog::{Catalog, Class};

const LOOPBACK: &[u8] = include_bytes!("../tests/fixtures/pcap/loopback.pcap");
const CURL: &[u8] = include_bytes!("../inspectors/tests/fixtures/curl_client_hello.bin");

/// IPv4 + TCP headers (checksums left zero: nothing here verifies them).
fn tcp(src: u32, sport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend([0x45, 0]);
    p.extend(((40 + payload.len()) as u16).to_be_bytes());
    p.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend(src.to_be_bytes());
    p.extend([198, 51, 100, 7]);
    p.extend(sport.to_be_bytes());
    p.extend(443u16.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p.extend([0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend(payload);
    p
}

/// A raw-IP pcap of `flows` TLS flows: SYN, SYN-ACK, then curl's hello in
/// three segments, the last two swapped, then a bulk server segment.
fn synthetic(flows: u32) -> Vec<u8> {
    let mut frames = Vec::new();
    for i in 0..flows {
        let (src, port, isn) = (0x0a00_0000 + i, 40000 + (i % 20000) as u16, i * 7919);
        frames.push(tcp(src, port, isn, 0x02, &[]));
        let mut synack = tcp(src, port, 1, 0x12, &[]);
        // Swap addresses and ports: server to client.
        synack[12..20].rotate_left(4);
        synack[20..24].rotate_left(2);
        frames.push(synack.clone());
        let (a, rest) = CURL.split_at(200);
        let (b, c) = rest.split_at(200);
        frames.push(tcp(src, port, isn + 1, 0x18, a));
        frames.push(tcp(src, port, isn + 401, 0x18, c));
        frames.push(tcp(src, port, isn + 201, 0x18, b));
        let mut bulk = tcp(src, port, 2, 0x18, &[0x17; 1400]);
        bulk[12..20].rotate_left(4);
        bulk[20..24].rotate_left(2);
        frames.push(bulk);
    }
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 101] {
        out.extend(v.to_le_bytes());
    }
    for f in frames {
        for v in [0u32, 0, f.len() as u32, f.len() as u32] {
            out.extend(v.to_le_bytes());
        }
        out.extend(f);
    }
    out
}

fn read(c: &mut Criterion) {
    let mut g = c.benchmark_group("capture");
    g.throughput(Throughput::Bytes(LOOPBACK.len() as u64));
    g.bench_function("read loopback.pcap (8 flows)", |b| {
        b.iter(|| capture::read(black_box(LOOPBACK), Limits::default()).unwrap())
    });
    const FLOWS: u32 = 2000;
    let big = synthetic(FLOWS);
    let check = capture::read(&big, Limits::default()).unwrap();
    assert_eq!(check.flows.len(), FLOWS as usize);
    assert!(check
        .flows
        .iter()
        .all(|f| f.identification.server_name() == Some("chat.example.com")));
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("read 2000 TLS flows (bytes)", |b| {
        b.iter(|| capture::read(black_box(&big), Limits::default()).unwrap())
    });
    g.throughput(Throughput::Elements(u64::from(FLOWS)));
    g.bench_function("read+classify 2000 TLS flows (flows)", |b| {
        b.iter(|| {
            let cap = capture::read(black_box(&big), Limits::default()).unwrap();
            cap.flows
                .iter()
                .map(|f| Catalog::builtin().classify(&f.identification, None, f.server.port()))
                .filter(|c| c.class == Class::Inspectable)
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
