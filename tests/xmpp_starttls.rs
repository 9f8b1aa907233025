//! XMPP on 5222: the gateway relays the plaintext negotiation, follows
//! STARTTLS, and intercepts the TLS that starts mid-stream (upstream first),
//! so the `<message><body>` inside becomes visible to inspection.

mod common;

use std::sync::Arc;

use common::inproc::{client_config, tunnel, TestGateway};
use common::inproc::{ByteTap, TapLog};
use common::pki::{LeafSpec, TestCa};
use gatehouse::relay::hooks::Direction;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

async fn read_until<S: AsyncRead + Unpin>(s: &mut S, marker: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains(marker) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed before {marker}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// What the XMPP server received after TLS, per connection.
type Received = Arc<std::sync::Mutex<Vec<String>>>;

/// A minimal XMPP server: offers STARTTLS, proceeds, then answers one message.
async fn xmpp_server(cert: common::pki::ServerCert) -> std::net::SocketAddr {
    xmpp_server_recording(cert).await.0
}

/// As [`xmpp_server`], for any number of connections, keeping what each
/// received after TLS (also when the client's stream was cut).
async fn xmpp_server_recording(cert: common::pki::ServerCert) -> (std::net::SocketAddr, Received) {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(cert.chain, cert.key)
    .unwrap();
    cfg.alpn_protocols = vec![];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let received: Received = Arc::default();
    let keep = received.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let keep = keep.clone();
            tokio::spawn(async move {
                read_until(&mut tcp, "<stream:stream").await;
                tcp.write_all(
                    format!(
                        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='chat.test' version='1.0'>\
                         <stream:features><starttls xmlns='{TLS_NS}'><required/></starttls></stream:features>"
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
                read_until(&mut tcp, "<starttls").await;
                tcp.write_all(format!("<proceed xmlns='{TLS_NS}'/>").as_bytes())
                    .await
                    .unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !String::from_utf8_lossy(&got).contains("</message>") {
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let text = String::from_utf8_lossy(&got).into_owned();
                let complete = text.contains("</message>");
                keep.lock().unwrap().push(text);
                if complete {
                    let _ = tls
                        .write_all(b"<message from='bob@chat.test'><body>pong</body></message>")
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, received)
}

/// Plaintext negotiation through the gateway, STARTTLS, then one message.
async fn converse(gw: &TestGateway, server: std::net::SocketAddr, body: &str) -> String {
    let mut tls = negotiate(gw, server, body).await;
    read_until(&mut tls, "</message>").await
}

/// As [`converse`], returning whatever came back before the stream ended.
async fn converse_until_closed(
    gw: &TestGateway,
    server: std::net::SocketAddr,
    body: &str,
) -> String {
    let mut tls = negotiate(gw, server, body).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut got),
    )
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

async fn negotiate(
    gw: &TestGateway,
    server: std::net::SocketAddr,
    body: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let (mut tcp, status) = tunnel(gw.proxy, server).await;
    assert!(status.contains(" 200"), "{status}");
    tcp.write_all(b"<?xml version='1.0'?><stream:stream to='chat.test' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        .await
        .unwrap();
    read_until(&mut tcp, "</stream:features>").await;
    tcp.write_all(format!("<starttls xmlns='{TLS_NS}'/>").as_bytes())
        .await
        .unwrap();
    read_until(&mut tcp, "<proceed").await;
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[], false);
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("chat.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(format!("<stream:stream to='chat.test' version='1.0'><message to='bob@chat.test'><body>{body}</body></message>").as_bytes())
        .await
        .unwrap();
    tls
}

#[tokio::test]
async fn messages_after_starttls_are_extracted_and_scanned() {
    use gatehouse::events::Event;
    use gatehouse::inspect::{Inspection, Rules};
    let root = TestCa::root("XMPP Test Root");
    let (server, received) = xmpp_server_recording(root.leaf(&LeafSpec::new(&["chat.test"]))).await;
    let recorded = Arc::new(common::inproc::Collect::default());
    let rules = Arc::new(
        Rules::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules")).unwrap(),
    );
    let inspection = Arc::new(Inspection::new(rules, recorded.clone(), false));
    let gw = TestGateway::start_with(&[&root.pem()], inspection, |_| {}).await;

    // A benign message is delivered and answered.
    let reply = converse(&gw, server, "lunch at noon?").await;
    assert!(reply.contains("pong"), "{reply}");

    // The shipped payment-card rule blocks: the stanza never reaches the
    // server, the stream is cut, and the events say "block".
    let reply = converse_until_closed(&gw, server, "card 4556737586899855 for the order").await;
    assert!(
        !reply.contains("pong"),
        "the blocked message was answered: {reply}"
    );
    // The client is told in XMPP: a policy-violation stream error naming
    // the rule and the event, never the matched data.
    assert!(
        reply.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
            && reply.contains("DLP rule payment-card")
            && reply.contains("(event ")
            && !reply.contains("4556737586899855"),
        "{reply}"
    );
    for _ in 0..100 {
        if received.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let got = received.lock().unwrap().clone();
    assert!(got.iter().any(|t| t.contains("lunch at noon?")), "{got:?}");
    assert!(
        got.iter()
            .all(|t| !t.contains("</message>") || !t.contains("4556737586899855")),
        "the blocked stanza reached the server whole: {got:?}"
    );
    let mut ok = false;
    for _ in 0..100 {
        let ided = recorded.1.lock().unwrap().clone();
        let evs = recorded.0.lock().unwrap().clone();
        let message = ided.iter().find_map(|(id, e)| match e {
            Event::Message(m)
                if m.app == "xmpp"
                    && m.conversation.as_deref() == Some("bob@chat.test")
                    && m.action == "block" =>
            {
                Some(*id)
            }
            _ => None,
        });
        let finding = evs.iter().any(|e| matches!(e, Event::DlpFinding(f) if f.rule == "payment-card" && f.action == "block" && !f.evidence.as_str().contains("4556737586899855") && f.message_id == message && message.is_some()));
        if finding {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ok, "{:#?}", recorded.0.lock().unwrap());
    gw.stop().await;
}

#[tokio::test]
async fn starttls_is_followed_and_intercepted() {
    let root = TestCa::root("XMPP Test Root");
    let server = xmpp_server(root.leaf(&LeafSpec::new(&["chat.test"]))).await;
    let log: TapLog = Arc::default();
    let gw = TestGateway::start_with(&[&root.pem()], Arc::new(ByteTap(log.clone())), |_| {}).await;

    let (mut tcp, status) = tunnel(gw.proxy, server).await;
    assert!(status.contains(" 200"), "{status}");
    tcp.write_all(b"<?xml version='1.0'?><stream:stream to='chat.test' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        .await
        .unwrap();
    let features = read_until(&mut tcp, "</stream:features>").await;
    assert!(features.contains("<starttls"), "{features}");
    tcp.write_all(format!("<starttls xmlns='{TLS_NS}'/>").as_bytes())
        .await
        .unwrap();
    read_until(&mut tcp, "<proceed").await;

    let (cfg, seen) = client_config(std::slice::from_ref(&gw.ca_der), &[], false);
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("chat.test").unwrap(), tcp)
        .await
        .expect("TLS after STARTTLS, with a leaf from the gateway CA");
    assert_eq!(seen.chains().len(), 1);
    tls.write_all(b"<stream:stream to='chat.test' version='1.0'><message to='bob@chat.test'><body>hello from alice</body></message>")
        .await
        .unwrap();
    let reply = read_until(&mut tls, "</message>").await;
    assert!(reply.contains("<body>pong</body>"), "{reply}");
    drop(tls);

    let ev = gw.events.wait_connection("chat.test").await;
    assert_eq!(ev.protocol.as_deref(), Some("xmpp"));
    assert_eq!(ev.decision, "intercept");
    assert!(ev.reason.starts_with("xmpp STARTTLS"), "{}", ev.reason);
    assert_eq!(ev.verification.as_deref(), Some("ok"));
    let log = log.lock().unwrap().clone();
    let out: Vec<u8> = log
        .iter()
        .filter(|e| e.0 == Direction::Outbound)
        .flat_map(|e| e.1.clone())
        .collect();
    assert!(String::from_utf8_lossy(&out).contains("<body>hello from alice</body>"));
    gw.stop().await;
}
