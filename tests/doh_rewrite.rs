//! DNS over HTTPS through the interception path: an intercepted
//! `application/dns-message` answer loses the `h3` of its HTTPS records
//! while QUIC is refused for the name (kept where a rule passes QUIC), and
//! its `ech` parameter (`dns.strip_ech`).

mod common;

use common::inproc::{client_config, tls_through, TestGateway};
use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use gatehouse_inspectors::identify::dns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// POSTs a DoH query for `name` type HTTPS through the gateway; the
/// response status and body.
async fn doh_through(
    name: &str,
    tweak: impl FnOnce(&mut gatehouse::config::Config),
) -> (String, Vec<u8>) {
    let root = TestCa::root("DoH Test Root");
    let server = https_server("doh.test", root.leaf(&LeafSpec::new(&["doh.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], tweak).await;
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let mut tls = tls_through(gw.proxy, server, "doh.test", cfg)
        .await
        .expect("handshake through gateway");
    let query = dns::build_query(0x4242, name, 65);
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: doh.test\r\nContent-Type: application/dns-message\r\n\
         Accept: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        query.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&query).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let status = String::from_utf8_lossy(&out[..split])
        .lines()
        .next()
        .unwrap()
        .to_string();
    (status, out[split + 4..].to_vec())
}

fn alpn_and_ech(body: &[u8]) -> (bool, bool) {
    assert!(dns::parse(body).is_some(), "a well-formed answer: {body:?}");
    (
        body.windows(3).any(|w| w == [2, b'h', b'3']),
        body.windows(4).any(|w| w == [0, 5, 0, 4]),
    )
}

#[tokio::test]
async fn doh_answers_lose_h3_while_quic_is_refused_and_ech() {
    let (status, body) = doh_through("blocked.test", |_| {}).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (h3, ech) = alpn_and_ech(&body);
    assert!(!h3 && !ech, "h3 {h3}, ech {ech}");
    assert!(body.windows(3).any(|w| w == [2, b'h', b'2']), "h2 stays");
}

#[tokio::test]
async fn a_rule_that_passes_quic_keeps_h3_and_strip_ech_can_be_off() {
    let (status, body) = doh_through("pass.test", |c| {
        c.quic = Some(gatehouse::config::QuicConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            strip_alt_svc: Some(true),
            ..Default::default()
        });
        c.dns = Some(gatehouse::config::DnsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            strip_ech: false,
            ..Default::default()
        });
        c.intercept.rules = vec![gatehouse::config::PolicyRule {
            hosts: vec!["pass.test".into()],
            apps: vec![],
            users: vec![],
            groups: vec![],
            action: gatehouse::config::PolicyAction::Intercept,
            reason: String::new(),
            quic: gatehouse::config::QuicAction::Pass,
        }];
    })
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(alpn_and_ech(&body), (true, true));
}
