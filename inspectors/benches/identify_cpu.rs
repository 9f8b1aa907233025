//! Identification cost per flow, in CPU time (a busy shared machine
//! distorts wall time): `cargo bench -p gatehouse-inspectors --bench identify_cpu`.
use gatehouse_inspectors::identify::catalog::classify;
use gatehouse_inspectors::identify::{identify, Transport};
use std::hint::black_box;

const CURL: &[u8] = include_bytes!("../tests/fixtures/curl_client_hello.bin");
const AIOQUIC: &[u8] = include_bytes!("../tests/fixtures/aioquic_initial.bin");
const OBFUSCATED: &[u8] = include_bytes!("../tests/fixtures/telethon_obfuscated2.bin");
const MQTT: &[u8] = include_bytes!("../tests/fixtures/paho_mqtt_connect.bin");

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn measure<T>(name: &str, mut f: impl FnMut() -> T) {
    for _ in 0..1000 {
        black_box(f());
    }
    let start = cpu_seconds();
    let mut n = 0u64;
    while cpu_seconds() - start < 2.0 {
        for _ in 0..100 {
            black_box(f());
        }
        n += 100;
    }
    let secs = cpu_seconds() - start;
    println!("{name:<46} {:>9.2} µs per flow", secs / n as f64 * 1e6);
}

fn main() {
    let random: Vec<u8> = (0..256u32).map(|i| (i * 97 + 13) as u8).collect();
    measure("tls identify+classify (curl)", || {
        let id = identify(black_box(CURL), Transport::Tcp, 443);
        classify(&id, None, 443)
    });
    measure("quic v1 identify+classify (aioquic)", || {
        let id = identify(black_box(AIOQUIC), Transport::Udp, 443);
        classify(&id, None, 443)
    });
    measure("mtproto obfuscated2 identify (telethon)", || {
        identify(black_box(OBFUSCATED), Transport::Tcp, 443)
    });
    measure("mqtt identify (paho)", || {
        identify(black_box(MQTT), Transport::Tcp, 1883)
    });
    measure("tcp unknown 256 random bytes identify", || {
        identify(black_box(&random), Transport::Tcp, 443)
    });
    measure("udp unknown 256 random bytes identify", || {
        identify(black_box(&random), Transport::Udp, 40000)
    });
    // NEW-CASES
    new_cases::run();
}

mod new_cases {
    use super::*;
    use gatehouse_inspectors::identify::catalog::{Catalog, FlowContext};
    use gatehouse_inspectors::identify::ranges::Ranges;
    use gatehouse_inspectors::identify::{dns, gquic, identify_datagrams, rtp, stun};

    pub fn run() {
        let binding = stun::build(0x0001, [7; 12], &[(0x8022, b"libjuice")], true);
        measure("stun identify+classify", || {
            let id = identify(black_box(&binding), Transport::Udp, 3478);
            classify(&id, None, 3478)
        });
        let query = dns::build_query(1, "g.whatsapp.net", dns::TYPE_A);
        measure("dns query identify+classify", || {
            let id = identify(black_box(&query), Transport::Udp, 53);
            classify(&id, None, 53)
        });
        let v = |s: &[u8; 4]| gquic::GquicVersion::from_wire(u32::from_be_bytes(*s)).unwrap();
        let chlo = gquic::build_chlo(&[(b"SNI\0", b"www.google.com"), (b"PAD\0", &[0x2d; 900])]);
        for ver in [b"Q043", b"Q046", b"Q048", b"Q049", b"Q050"] {
            let p = gquic::build_client_packet(v(ver), &[1; 8], &chlo, 1350);
            let name = format!("gquic {} identify+classify", String::from_utf8_lossy(ver));
            measure(&name, || {
                let id = identify(black_box(&p), Transport::Udp, 443);
                classify(&id, None, 443)
            });
        }
        // A CHLO over three packets, put back together.
        let big = gquic::build_chlo(&[(b"SNI\0", b"www.google.com"), (b"PAD\0", &[0x2d; 3000])]);
        for ver in [b"Q046", b"Q050"] {
            let packets = gquic::build_client_packets(v(ver), &[1; 8], &big, 1350);
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let name = format!(
                "gquic {} 3-packet CHLO identify",
                String::from_utf8_lossy(ver)
            );
            measure(&name, || identify_datagrams(black_box(&refs), 443));
        }
        let media: Vec<Vec<u8>> = (0..8u16)
            .map(|i| rtp::build_rtp(111, i, 960 * u32::from(i), 42, &[0x55; 160]))
            .collect();
        let refs: Vec<&[u8]> = media.iter().map(Vec::as_slice).collect();
        measure("rtp 8 datagrams identify", || {
            identify_datagrams(black_box(&refs), 50000)
        });
        // A DNS answer as the gateway's DNS listener handles it: parsed,
        // then its HTTPS record rewritten (h3 and ech out), a CNAME and an
        // A record after it (their pointers move).
        let mut answer = dns::build_response(1, "www.google.com", 65, &[], 0);
        answer[7] = 3;
        let rdata = [
            0, 1, 0, 0, 1, 0, 9, 2, b'h', b'3', 2, b'h', b'2', 2, b'h', b'x', 0, 5, 0, 6, 0, 4, 1,
            2, 3, 4,
        ];
        answer.extend([0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 44, 0, rdata.len() as u8]);
        answer.extend(rdata);
        let cname_target = answer.len() + 12;
        answer.extend([0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 9]);
        answer.extend([3, b'c', b'd', b'n', 3, b'c', b'o', b'm', 0]);
        let owner = (0xc000 | cname_target as u16).to_be_bytes();
        answer.extend([
            owner[0], owner[1], 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 142, 250, 1, 1,
        ]);
        let strip = gatehouse_inspectors::identify::svcb::Strip {
            h3: true,
            ech: true,
        };
        assert!(matches!(
            gatehouse_inspectors::identify::svcb::rewrite(&answer, strip),
            Ok(gatehouse_inspectors::identify::svcb::Rewritten::Changed { .. })
        ));
        assert!(dns::parse(&answer).is_some());
        measure("dns answer parse + HTTPS rewrite (h3, ech)", || {
            let m = dns::parse(black_box(&answer));
            (
                m,
                gatehouse_inspectors::identify::svcb::rewrite(black_box(&answer), strip),
            )
        });
        let addr = "157.240.1.53".parse().unwrap();
        let signalled = vec!["whatsapp".to_owned()];
        let stun_id = identify(&binding, Transport::Udp, 3478);
        measure("stun classify_flow (ranges + signalling)", || {
            let ctx = FlowContext {
                port: 3478,
                server: Some(addr),
                signalled: &signalled,
                signalled_same_server: &[],
                ranges: Some(Ranges::builtin()),
                ..FlowContext::default()
            };
            Catalog::builtin().classify_flow(black_box(&stun_id), &ctx)
        });
    }
}
