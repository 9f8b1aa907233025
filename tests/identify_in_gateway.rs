//! Non-TLS messaging protocols through the gateway: identified from their
//! first bytes (recorded from real clients), recorded in the connection
//! event with app and class, and subject to policy by app.

mod common;

use common::inproc::{tunnel, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("inspectors/tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// A TCP server that reads whatever comes and answers "ok".
async fn sink_server() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                if s.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = s.write_all(b"ok").await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn telegram_mtproto_is_identified_passed_through_and_flagged() {
    let server = sink_server().await;
    let gw = TestGateway::start(&[], |_| {}).await;
    let (mut s, status) = tunnel(gw.proxy, server).await;
    assert!(status.contains(" 200"), "{status}");
    s.write_all(&fixture("telethon_obfuscated2.bin"))
        .await
        .unwrap();
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"ok");
    drop(s);
    let ev = wait(&gw, |e| e.protocol.as_deref() == Some("mtproto")).await;
    assert_eq!(ev.app.as_deref(), Some("telegram"));
    assert_eq!(ev.class.as_deref(), Some("opaque"));
    assert_eq!(ev.decision, "passthrough");
    assert!(ev.flagged);
    assert!(!ev.evidence.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn policy_can_block_an_app() {
    let server = sink_server().await;
    let gw = TestGateway::start(&[], |c| {
        c.intercept.rules = vec![gatehouse::config::PolicyRule {
            hosts: vec![],
            apps: vec!["telegram".into()],
            users: vec![],
            groups: vec![],
            action: gatehouse::config::PolicyAction::Block,
            reason: "Telegram is not approved".into(),
            quic: Default::default(),
        }];
    })
    .await;
    let (mut s, _) = tunnel(gw.proxy, server).await;
    s.write_all(&fixture("telethon_abridged.bin"))
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    assert!(reply.is_empty(), "a blocked flow must not reach the server");
    let ev = wait(&gw, |e| e.app.as_deref() == Some("telegram")).await;
    assert_eq!(
        (ev.decision.as_str(), ev.reason.as_str()),
        ("block", "Telegram is not approved")
    );
    gw.stop().await;
}

#[tokio::test]
async fn mqtt_and_xmpp_are_named_in_events() {
    let server = sink_server().await;
    let gw = TestGateway::start(&[], |_| {}).await;
    for (file, proto) in [
        ("paho_mqtt_connect.bin", "mqtt"),
        ("slixmpp_stream_header.bin", "xmpp"),
    ] {
        let (mut s, _) = tunnel(gw.proxy, server).await;
        s.write_all(&fixture(file)).await.unwrap();
        // The sink's "ok" is neither MQTT nor XMPP: what the gateway makes
        // of it does not matter here, only that the flow is named.
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut reply))
            .await;
        drop(s);
        let ev = wait(&gw, |e| e.protocol.as_deref() == Some(proto)).await;
        // Plain MQTT and XMPP are read (issue 12), no longer relayed unread.
        assert_eq!(ev.decision, "intercept", "{ev:?}");
    }
    gw.stop().await;
}

async fn wait(
    gw: &TestGateway,
    pred: impl Fn(&gatehouse::events::ConnectionEvent) -> bool,
) -> gatehouse::events::ConnectionEvent {
    for _ in 0..200 {
        if let Some(e) = gw.events.connections().into_iter().find(|e| pred(e)) {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no matching event: {:#?}", gw.events.connections());
}

#[tokio::test]
async fn a_malformed_client_hello_is_refused_not_spliced() {
    let server = sink_server().await;
    let gw = TestGateway::start(&[], |c| {
        c.proxy.header_read_timeout = std::time::Duration::from_secs(1)
    })
    .await;
    let (mut s, _) = tunnel(gw.proxy, server).await;
    // A handshake record whose ClientHello claims more bytes than it has,
    // then garbage: recognisably TLS, not parsable.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0x00, 0xff, 0xff, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0xAB; 37]);
    s.write_all(&hello).await.unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    assert!(
        reply.is_empty(),
        "nothing may reach or come from the server"
    );
    let ev = wait(&gw, |e| e.reason.contains("malformed TLS ClientHello")).await;
    assert_eq!(ev.decision, "block");
    assert!(ev.flagged);
    gw.stop().await;
}
