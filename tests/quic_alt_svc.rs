//! Alt-Svc through the interception path: while QUIC is refused, the
//! `h3` alternatives a server advertises are removed from intercepted
//! responses (clients stop trying QUIC); a rule that lets QUIC through keeps
//! them.

mod common;

use common::inproc::{client_config, http_get, tls_through, TestGateway};
use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;

async fn alt_svc_through(tweak: impl FnOnce(&mut gatehouse::config::Config)) -> String {
    let root = TestCa::root("Alt-Svc Test Root");
    let server = https_server("h3.test", root.leaf(&LeafSpec::new(&["h3.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], tweak).await;
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let mut tls = tls_through(gw.proxy, server, "h3.test", cfg)
        .await
        .expect("handshake through gateway");
    let resp = http_get(&mut tls, "h3.test", "/alt-svc").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("alt-svc:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn h3_alternatives_are_stripped_while_quic_is_refused() {
    let alt = alt_svc_through(|_| {}).await;
    assert!(!alt.contains("h3"), "{alt}");
    assert!(
        alt.contains(r#"h2="alt.example:443""#),
        "other alternatives stay: {alt}"
    );
}

#[tokio::test]
async fn a_rule_that_passes_quic_keeps_them() {
    let alt = alt_svc_through(|c| {
        c.quic = Some(gatehouse::config::QuicConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
        c.intercept.rules = vec![gatehouse::config::PolicyRule {
            hosts: vec!["h3.test".into()],
            apps: vec![],
            users: vec![],
            groups: vec![],
            action: gatehouse::config::PolicyAction::Intercept,
            reason: String::new(),
            quic: gatehouse::config::QuicAction::Pass,
        }];
    })
    .await;
    assert!(alt.contains(r#"h3=":443""#), "{alt}");
}
