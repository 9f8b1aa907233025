//! Nothing a client controls gets content past inspection: TLS without SNI
//! to an address is intercepted against the address; a ClientHello with an
//! odd record-layer version is still TLS; TLS-looking bytes that cannot be
//! read follow `intercept.unparsed_action`; aborted handshakes do not teach
//! passthrough unless `intercept.pinning = "learn"` (and then per user,
//! never over a block); CONNECT target, SNI and `Host`/`:authority` must
//! name one host; and a policy block of a TLS flow answers with the block
//! page over our own leaf, without touching the server.
//!
//! Real clients: curl, `openssl s_client`, Python `ssl` with a rewritten
//! record header, rustls.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::inproc::{client_config, http_get, TestGateway};
use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use common::Gatehouse;
use gatehouse::config::{PinningMode, PolicyAction, PolicyRule, UnparsedAction};
use gatehouse::events::ConnectionEvent;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x509_parser::prelude::*;

fn rule(hosts: &[&str], users: &[&str], action: PolicyAction, reason: &str) -> PolicyRule {
    PolicyRule {
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        apps: vec![],
        users: users.iter().map(|s| s.to_string()).collect(),
        groups: vec![],
        action,
        reason: reason.into(),
        quic: Default::default(),
    }
}

async fn wait(gw: &TestGateway, pred: impl Fn(&ConnectionEvent) -> bool) -> ConnectionEvent {
    for _ in 0..400 {
        if let Some(e) = gw.events.connections().into_iter().find(|e| pred(e)) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no matching event: {:#?}", gw.events.connections());
}

/// A TCP listener that only counts the connections it accepts.
async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

/// curl through the gateway, trusting its CA; returns (status, headers+body, stderr).
async fn curl(gw: &TestGateway, args: &[&str]) -> (String, String, String) {
    let ca = gw.ca_file();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--noproxy", ""])
        .args(["--proxy", &format!("http://{}", gw.proxy)])
        .args(["--cacert", ca.to_str().unwrap()])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text.lines().last().unwrap_or("").trim().to_string();
    (
        code,
        text,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn issuer_of(der: &CertificateDer<'_>) -> String {
    X509Certificate::from_der(der)
        .unwrap()
        .1
        .issuer()
        .to_string()
}

fn subject_of(der: &CertificateDer<'_>) -> String {
    X509Certificate::from_der(der)
        .unwrap()
        .1
        .subject()
        .to_string()
}

// ---------------------------------------------------------------- item 1

#[tokio::test]
async fn tls_without_sni_to_an_address_is_intercepted_against_the_address() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("ip-only", root.leaf(&LeafSpec::new(&["127.0.0.1"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    // curl sends no SNI for an address; it verifies the address against IP SANs.
    let url = format!("https://{server}/hello");
    for flag in ["--http1.1", "--http2"] {
        let (code, text, err) = curl(&gw, &[flag, &url]).await;
        assert_eq!(code, "200", "{flag}: {text} {err}");
        assert!(text.contains("hello from ip-only"), "{text}");
    }
    let ev = wait(&gw, |e| e.decision == "intercept").await;
    assert_eq!(ev.sni, None, "{ev:?}");
    assert_eq!(ev.host, "127.0.0.1");
    // The leaf names the address, as an IP SAN, issued by the gateway.
    let (cfg, seen) = client_config(std::slice::from_ref(&gw.ca_der), &[], false);
    let (tcp, status) = common::inproc::tunnel(gw.proxy, server).await;
    assert!(status.contains(" 200"), "{status}");
    let ip = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ip, tcp)
        .await
        .expect("our leaf verifies for the address");
    let resp = http_get(&mut tls, "127.0.0.1", "/hello").await;
    assert!(resp.contains("hello from ip-only"), "{resp}");
    let leaf = &seen.chains()[0][0];
    assert_eq!(issuer_of(leaf), subject_of(&gw.ca_der));
    let (_, cert) = X509Certificate::from_der(leaf).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(
        san.value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::IPAddress(b) if *b == [127, 0, 0, 1])),
        "{:?}",
        san.value.general_names
    );
    gw.stop().await;
}

#[tokio::test]
async fn tls_without_sni_to_a_connect_name_is_intercepted_for_that_name() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("by-name", root.leaf(&LeafSpec::new(&["localhost"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    let ca = gw.ca_file();
    // openssl without SNI, CONNECT localhost:PORT, verifying our leaf for
    // the name.
    let mut child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-noservername",
            "-verify_return_error",
        ])
        .args(["-verify_hostname", "localhost", "-CAfile"])
        .arg(&ca)
        .args(["-proxy", &gw.proxy.to_string()])
        .args(["-connect", &format!("localhost:{}", server.port())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hello from by-name"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = wait(&gw, |e| e.decision == "intercept").await;
    assert_eq!((ev.sni.as_deref(), ev.host.as_str()), (None, "localhost"));
    gw.stop().await;
}

#[tokio::test]
async fn no_sni_is_blocked_where_policy_blocks_the_address_or_by_default() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("ip-only", root.leaf(&LeafSpec::new(&["127.0.0.1"]))).await;
    // default_action = "block": a name-less hello is no way around it.
    let gw = TestGateway::start(&[&root.pem()], |c| {
        c.intercept.default_action = PolicyAction::Block;
    })
    .await;
    let (code, text, err) = curl(&gw, &["--http1.1", &format!("https://{server}/hello")]).await;
    assert_eq!(code, "403", "{text} {err}");
    assert!(!text.contains("hello from"), "{text}");
    let ev = wait(&gw, |e| e.decision == "block").await;
    assert_eq!(ev.host, "127.0.0.1");
    assert!(
        !gw.events
            .connections()
            .iter()
            .any(|e| e.decision == "passthrough"),
        "{:#?}",
        gw.events.connections()
    );
    gw.stop().await;
}

// ---------------------------------------------------------------- item 2

/// Python `ssl` through a CONNECT tunnel, with the record-layer version of
/// its ClientHello rewritten to `version` (hex, e.g. "0305").
const PY_REWRITE: &str = r#"
import socket, ssl, sys
proxy, target, sni, cafile, version = sys.argv[1:6]
host, port = proxy.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=15)
s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
head = b""
while b"\r\n\r\n" not in head:
    c = s.recv(1)
    if not c:
        break
    head += c
if b" 200" not in head.split(b"\r\n")[0]:
    print("CONNECT refused", head); sys.exit(2)
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["http/1.1"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname=sni)
state = {"first": True}
def flush():
    data = out.read()
    if data and state["first"]:
        assert data[0] == 0x16, data[:5]
        data = data[:1] + bytes.fromhex(version) + data[3:]
        state["first"] = False
    if data:
        s.sendall(data)
def feed():
    d = s.recv(65536)
    if not d:
        print("CLOSED during handshake"); sys.exit(3)
    inc.write(d)
while True:
    try:
        obj.do_handshake()
        flush()
        break
    except ssl.SSLWantReadError:
        flush()
        feed()
obj.write(("GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sni).encode())
flush()
resp = b""
while True:
    try:
        chunk = obj.read(65536)
        if not chunk:
            break
        resp += chunk
    except ssl.SSLWantReadError:
        d = s.recv(65536)
        if not d:
            break
        inc.write(d)
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
print("ISSUER", dict(x[0] for x in obj.getpeercert()["issuer"]).get("commonName"))
print(resp.decode(errors="replace"))
"#;

#[tokio::test]
async fn a_client_hello_with_an_odd_record_version_is_intercepted() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("odd.test", root.leaf(&LeafSpec::new(&["odd.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    let ca = gw.ca_file();
    let ca_cn = X509Certificate::from_der(&gw.ca_der)
        .unwrap()
        .1
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    for version in ["0305", "03ff", "0301"] {
        let out = tokio::process::Command::new("python3")
            .args(["-c", PY_REWRITE])
            .arg(gw.proxy.to_string())
            .arg(server.to_string())
            .args(["odd.test", ca.to_str().unwrap(), version])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{version}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("ISSUER {ca_cn}")),
            "{version}: {text}"
        );
        assert!(text.contains("hello from odd.test"), "{version}: {text}");
    }
    let evs = gw.events.connections();
    assert_eq!(
        evs.iter()
            .filter(|e| e.sni.as_deref() == Some("odd.test") && e.decision == "intercept")
            .count(),
        3,
        "{evs:#?}"
    );
    assert!(!evs.iter().any(|e| e.decision == "passthrough"), "{evs:#?}");
    gw.stop().await;
}

/// A handshake record with an odd version whose hello is garbage: TLS
/// that cannot be read. Returns what came back through the tunnel.
async fn send_unreadable_tls(gw: &TestGateway, server: SocketAddr) -> Vec<u8> {
    let (mut s, status) = common::inproc::tunnel(gw.proxy, server).await;
    assert!(status.contains(" 200"), "{status}");
    let mut hello = vec![
        0x16, 0x03, 0xff, 0x00, 0x30, 0x01, 0x00, 0xff, 0xff, 0x03, 0x03,
    ];
    hello.extend_from_slice(&[0xAB; 37]);
    s.write_all(&hello).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply)).await;
    reply
}

/// A server that answers "ok" to whatever it reads.
async fn sink_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
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
async fn unreadable_tls_follows_unparsed_action() {
    let server = sink_server().await;
    let fast = |c: &mut gatehouse::config::Config| {
        c.proxy.header_read_timeout = Duration::from_secs(1);
    };
    // Default: blocked, flagged, with a policy event.
    let gw = TestGateway::start(&[], fast).await;
    assert_eq!(
        gatehouse::config::Config::default()
            .intercept
            .unparsed_action,
        UnparsedAction::Block
    );
    let reply = send_unreadable_tls(&gw, server).await;
    assert!(
        reply.is_empty(),
        "nothing may reach or come from the server"
    );
    let ev = wait(&gw, |e| e.reason.contains("malformed TLS ClientHello")).await;
    assert_eq!(ev.decision, "block");
    assert!(ev.flagged);
    assert!(gw.events.policies().iter().any(|p| p.kind == "unparsed"));
    gw.stop().await;
    // Only where an administrator says so: relayed unread, flagged.
    let gw = TestGateway::start(&[], |c| {
        fast(c);
        c.intercept.unparsed_action = UnparsedAction::Passthrough;
    })
    .await;
    let reply = send_unreadable_tls(&gw, server).await;
    assert_eq!(reply, b"ok");
    let ev = wait(&gw, |e| e.reason.contains("malformed TLS ClientHello")).await;
    assert_eq!(ev.decision, "passthrough");
    assert!(ev.flagged);
    assert!(ev.reason.contains("unparsed_action"), "{}", ev.reason);
    gw.stop().await;
}

// ---------------------------------------------------------------- items 3 + 8

fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"gatehouse-test-salt").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn users(c: &mut gatehouse::config::Config) {
    c.identity.users = ["alice", "bob", "carol"]
        .iter()
        .map(|n| gatehouse::config::ProxyUser {
            name: n.to_string(),
            password_hash: hash("pw"),
            groups: vec![],
        })
        .collect();
}

/// `openssl s_client` through the proxy as `user`, trusting `wrong_ca`
/// only: it aborts the handshake on our leaf, as a pinning app does.
async fn aborted_handshake(gw: &TestGateway, server: SocketAddr, user: &str, wrong_ca: &str) {
    let out = tokio::process::Command::new("openssl")
        .args(["s_client", "-verify_return_error", "-CAfile", wrong_ca])
        .args(["-proxy", &gw.proxy.to_string()])
        .args(["-proxy_user", user, "-proxy_pass", "pass:pw"])
        .args(["-connect", &server.to_string()])
        .args(["-servername", "pinned.test"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "s_client must refuse our leaf: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Whose certificate `user` is shown for pinned.test: the gateway's
/// ("gateway", intercepted), the real server's ("server", passthrough).
async fn shown_to(gw: &TestGateway, server: SocketAddr, user: &str, root: &TestCa) -> String {
    shown_from(gw, server, Some(user), "127.0.0.1", root).await
}

/// As [`shown_to`], from the client address `from`, logged in as `user`
/// if given (else identified by address alone).
async fn shown_from(
    gw: &TestGateway,
    server: SocketAddr,
    user: Option<&str>,
    from: &str,
    root: &TestCa,
) -> String {
    let (cfg, seen) = client_config(&[gw.ca_der.clone(), root.der()], &[], false);
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut s = sock.connect(gw.proxy).await.unwrap();
    let auth = user
        .map(|u| {
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("{u}:pw"));
            format!("Proxy-Authorization: Basic {creds}\r\n")
        })
        .unwrap_or_default();
    s.write_all(format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n{auth}\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "proxy closed");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let name = ServerName::try_from("pinned.test").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(cfg).connect(name, s).await else {
        return "refused".into();
    };
    let resp = http_get(&mut tls, "pinned.test", "/hello").await;
    let leaf = seen.chains()[0][0].clone();
    if issuer_of(&leaf) == subject_of(&gw.ca_der) {
        if resp.contains(" 403 ") {
            return "block page".into();
        }
        assert!(resp.contains("hello from pinned.test"), "{resp}");
        "gateway".into()
    } else {
        assert!(resp.contains("hello from pinned.test"), "{resp}");
        "server".into()
    }
}

#[tokio::test]
async fn aborted_handshakes_never_teach_passthrough_by_default() {
    let root = TestCa::root("Upstream Test Root");
    let wrong = TestCa::root("Some Other Root");
    let server = https_server("pinned.test", root.leaf(&LeafSpec::new(&["pinned.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], users).await;
    assert_eq!(gw_pinning_default(), PinningMode::Catalog);
    let wrong_pem = gw.dir.path().join("wrong.pem");
    std::fs::write(&wrong_pem, wrong.pem()).unwrap();
    for _ in 0..3 {
        aborted_handshake(&gw, server, "alice", wrong_pem.to_str().unwrap()).await;
    }
    assert_eq!(shown_to(&gw, server, "alice", &root).await, "gateway");
    assert!(!gw
        .events
        .connections()
        .iter()
        .any(|e| e.decision == "passthrough"));
    assert!(!gw
        .events
        .policies()
        .iter()
        .any(|p| p.kind == "pinning_bypass"));
    gw.stop().await;
}

fn gw_pinning_default() -> PinningMode {
    gatehouse::config::Config::default().intercept.pinning
}

#[tokio::test]
async fn learned_pinning_is_per_user_recorded_and_never_beats_a_block() {
    let root = TestCa::root("Upstream Test Root");
    let wrong = TestCa::root("Some Other Root");
    let server = https_server("pinned.test", root.leaf(&LeafSpec::new(&["pinned.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |c| {
        users(c);
        c.intercept.pinning = PinningMode::Learn;
        c.intercept.rules = vec![rule(
            &["pinned.test"],
            &["carol"],
            PolicyAction::Block,
            "carol may not use pinned.test",
        )];
    })
    .await;
    let wrong_pem = gw.dir.path().join("wrong.pem");
    std::fs::write(&wrong_pem, wrong.pem()).unwrap();
    for user in ["alice", "carol"] {
        for _ in 0..3 {
            aborted_handshake(&gw, server, user, wrong_pem.to_str().unwrap()).await;
        }
    }
    // Alice's client pins: she now gets the real server, unread...
    assert_eq!(shown_to(&gw, server, "alice", &root).await, "server");
    // ...Bob, from the same address, is still intercepted...
    assert_eq!(shown_to(&gw, server, "bob", &root).await, "gateway");
    // ...and Carol's block rule still blocks.
    assert_eq!(shown_to(&gw, server, "carol", &root).await, "block page");
    // Every bypass is recorded: the flip as a policy event, each bypassed
    // flow as a flagged connection event naming why.
    let policies = gw.events.policies();
    let flips: Vec<_> = policies
        .iter()
        .filter(|p| p.kind == "pinning_bypass")
        .collect();
    assert_eq!(flips.len(), 1, "{policies:#?}");
    assert_eq!(
        (flips[0].user.as_str(), flips[0].host.as_str()),
        ("alice", "pinned.test")
    );
    let ev = wait(&gw, |e| e.decision == "passthrough").await;
    assert_eq!(ev.user, "alice");
    assert!(
        ev.flagged && ev.reason.contains("learned pinning"),
        "{ev:?}"
    );
    assert!(!gw
        .events
        .connections()
        .iter()
        .any(|e| e.decision == "passthrough" && e.user != "alice"));
    gw.stop().await;
}

#[tokio::test]
async fn learned_pinning_follows_the_device_not_the_address_and_policy_comes_first() {
    let root = TestCa::root("Upstream Test Root");
    let wrong = TestCa::root("Some Other Root");
    let server = https_server("pinned.test", root.leaf(&LeafSpec::new(&["pinned.test"]))).await;
    let pool = |cidr: &str, user: &str, groups: &[&str]| gatehouse::config::IdentityPool {
        cidr: cidr.parse().unwrap(),
        user: Some(user.into()),
        device: Some(format!("{user}-phone")),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    let gw = TestGateway::start(&[&root.pem()], |c| {
        c.intercept.pinning = PinningMode::Learn;
        // Dave's phone on three VPN addresses (the .2 one in a restricted
        // group), Erin on a fourth.
        c.identity.pools = vec![
            pool("127.0.0.1/32", "dave", &[]),
            pool("127.0.0.2/32", "dave", &["restricted"]),
            pool("127.0.0.4/32", "dave", &[]),
            pool("127.0.0.3/32", "erin", &[]),
        ];
        c.intercept.rules = vec![PolicyRule {
            groups: vec!["restricted".into()],
            ..rule(&["pinned.test"], &[], PolicyAction::Block, "restricted")
        }];
    })
    .await;
    let wrong_pem = gw.dir.path().join("wrong.pem");
    std::fs::write(&wrong_pem, wrong.pem()).unwrap();
    // Three aborts from 127.0.0.1 (Dave's phone, not restricted there).
    for _ in 0..3 {
        let out = tokio::process::Command::new("openssl")
            .args(["s_client", "-verify_return_error", "-CAfile"])
            .arg(&wrong_pem)
            .args(["-proxy", &gw.proxy.to_string()])
            .args([
                "-connect",
                &server.to_string(),
                "-servername",
                "pinned.test",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
    }
    let p = gw
        .events
        .policies()
        .into_iter()
        .find(|p| p.kind == "pinning_bypass")
        .expect("the flip is a policy event");
    assert_eq!((p.user.as_str(), p.device.as_str()), ("dave", "dave-phone"));
    // The same phone from another address passes through: keyed by device.
    assert_eq!(
        shown_from(&gw, server, None, "127.0.0.4", &root).await,
        "server"
    );
    // Where a block rule applies to it, the block wins over the learning.
    assert_eq!(
        shown_from(&gw, server, None, "127.0.0.2", &root).await,
        "block page"
    );
    // Someone else is still intercepted.
    assert_eq!(
        shown_from(&gw, server, None, "127.0.0.3", &root).await,
        "gateway"
    );
    gw.stop().await;
}

// ---------------------------------------------------------------- item 4

#[tokio::test]
async fn a_host_header_naming_another_host_is_domain_fronting() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("front.test", root.leaf(&LeafSpec::new(&["front.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    let to = format!("front.test:443:{server}");
    for flag in ["--http1.1", "--http2"] {
        // The same name in SNI and Host: relayed.
        let (code, text, err) = curl(
            &gw,
            &[flag, "--connect-to", &to, "https://front.test/hello"],
        )
        .await;
        assert_eq!(code, "200", "{flag}: {text} {err}");
        // SNI front.test, Host hidden.test: refused, recorded.
        let (code, text, err) = curl(
            &gw,
            &[
                flag,
                "--connect-to",
                &to,
                "-H",
                "Host: hidden.test",
                "https://front.test/hello",
            ],
        )
        .await;
        assert_eq!(code, "421", "{flag}: {text} {err}");
        assert!(text.contains("domain-fronting"), "{text}");
        assert!(!text.contains("hello from"), "{text}");
    }
    // Case, a port and a trailing dot do not make a mismatch.
    let (code, text, err) = curl(
        &gw,
        &[
            "--http1.1",
            "--connect-to",
            &to,
            "-H",
            "Host: FRONT.test.:443",
            "https://front.test/hello",
        ],
    )
    .await;
    assert_eq!(code, "200", "{text} {err}");
    // A Host naming exactly the address the connection goes to (the
    // CONNECT target) names the same server; another address does not.
    let same = format!("Host: {server}");
    let (code, text, err) = curl(
        &gw,
        &[
            "--http1.1",
            "--connect-to",
            &to,
            "-H",
            &same,
            "https://front.test/hello",
        ],
    )
    .await;
    assert_eq!(code, "200", "{text} {err}");
    let other = format!("Host: 127.0.0.2:{}", server.port());
    let (code, text, err) = curl(
        &gw,
        &[
            "--http1.1",
            "--connect-to",
            &to,
            "-H",
            &other,
            "https://front.test/hello",
        ],
    )
    .await;
    assert_eq!(code, "421", "{text} {err}");
    let fronting: Vec<_> = gw
        .events
        .policies()
        .into_iter()
        .filter(|p| p.kind == "domain_fronting")
        .collect();
    assert_eq!(fronting.len(), 3, "{fronting:#?}");
    assert!(fronting[2].reason.contains("127.0.0.2"), "{fronting:#?}");
    let fronting = &fronting[..2];
    assert!(fronting.iter().all(|p| p.action == "block"
        && p.reason.starts_with("domain-fronting")
        && p.reason.contains("hidden.test")));
    gw.stop().await;
}

#[tokio::test]
async fn an_absolute_form_request_with_another_host_header_is_domain_fronting() {
    let (server, _) = counting_server().await;
    let gw = TestGateway::start(&[], |_| {}).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(["--proxy", &format!("http://{}", gw.proxy)])
        .args(["-H", "Host: hidden.test"])
        .arg(format!("http://localhost:{}/", server.port()))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim_end().ends_with("421"), "{text}");
    assert!(gw
        .events
        .policies()
        .iter()
        .any(|p| p.kind == "domain_fronting" && p.reason.contains("hidden.test")));
    gw.stop().await;
}

#[tokio::test]
async fn a_connect_target_and_another_sni_is_domain_fronting() {
    let root = TestCa::root("Upstream Test Root");
    let (server, accepted) = counting_server().await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    // CONNECT localhost:PORT, then a hello for other.test.
    let mut s = TcpStream::connect(gw.proxy).await.unwrap();
    let target = format!("localhost:{}", server.port());
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let name = ServerName::try_from("other.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, s)
        .await
        .expect("the block page's own leaf for other.test");
    let resp = http_get(&mut tls, "other.test", "/").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("domain-fronting"), "{resp}");
    let p = gw
        .events
        .policies()
        .into_iter()
        .find(|p| p.kind == "domain_fronting")
        .expect("a domain_fronting policy event");
    assert!(
        p.reason.contains("localhost") && p.reason.contains("other.test"),
        "{p:?}"
    );
    let ev = wait(&gw, |e| e.decision == "block").await;
    assert!(ev.flagged);
    // Nothing was sent to the server: it only saw the dial of the CONNECT.
    assert!(accepted.load(Ordering::SeqCst) <= 1);
    gw.stop().await;
}

// ---------------------------------------------------------------- item 7 (issue 12)

#[tokio::test]
async fn a_policy_block_of_tls_answers_with_the_block_page_without_the_server() {
    let (server, accepted) = counting_server().await;
    let gw = TestGateway::start(&[], |c| {
        c.intercept.rules = vec![rule(
            &["localhost"],
            &[],
            PolicyAction::Block,
            "localhost is not approved",
        )];
    })
    .await;
    let url = format!("https://localhost:{}/api/send", server.port());
    for (flag, proto) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")] {
        // An API client gets JSON naming the event...
        let (code, text, err) = curl(&gw, &[flag, "-H", "Accept: application/json", &url]).await;
        assert_eq!(code, "403", "{flag}: {text} {err}");
        // (curl -i also shows the proxy's answer to its CONNECT first.)
        assert!(text.contains(&format!("{proto} 403")), "{text}");
        let body = &text[text.rfind("\r\n\r\n").unwrap() + 4..text.rfind('\n').unwrap()];
        let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        assert_eq!(v["policy"], "localhost is not approved", "{v}");
        let id: uuid::Uuid = v["event_id"].as_str().unwrap().parse().unwrap();
        let ev = wait(&gw, |e| e.flow_id == id).await;
        assert_eq!(ev.decision, "block");
        assert_eq!(ev.sni.as_deref(), Some("localhost"));
        // ...a browser gets HTML naming it.
        let (code, text, _) = curl(&gw, &[flag, "-H", "Accept: text/html", &url]).await;
        assert_eq!(code, "403", "{text}");
        assert!(
            text.contains("<html") && text.contains("Reference:"),
            "{text}"
        );
    }
    assert!(gw
        .events
        .policies()
        .iter()
        .any(|p| p.kind == "policy_block" && p.host == "localhost"));
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no upstream connection");
    gw.stop().await;
}

/// Transparent mode: a redirected TLS flow blocked by its SNI gets the
/// block page and the server never sees a connection (the gateway dials
/// only after deciding). A readable flow to the same server, as control,
/// does reach it.
#[test]
fn a_redirected_flow_blocked_by_sni_never_reaches_the_server() {
    use common::netns::{Netns, SERVER_V4};
    use std::process::Command;
    let tag = format!("{}", std::process::id() % 100_000);
    let net = Netns::setup(&tag, 8443);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("accepts.log");
    // A plain TCP server on 443 that logs every connection it accepts.
    let counter = "import socket,sys\n\
                   s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                   s.bind(('0.0.0.0',443)); s.listen(16)\n\
                   while True:\n    c,_=s.accept(); open(sys.argv[1],'a').write('x\\n'); c.sendall(b'ok'); c.close()\n";
    let mut server = Command::new("ip")
        .args(["netns", "exec", &net.server, "python3", "-c", counter])
        .arg(&log)
        .spawn()
        .unwrap();
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\ntransparent_listen = \"[::]:8443\"\n\
         allowed_clients = [\"10.233.0.0/24\"]\nallowed_destinations = [\"10.233.1.0/24\"]\n\
         header_read_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[intercept.rules]]\nhosts = [\"blocked.test\"]\naction = \"block\"\nreason = \"not approved\"\n";
    let gw = Gatehouse::start_wrapped(
        tempfile::tempdir().unwrap(),
        config,
        &Netns::exec(&net.gateway),
        &[],
    );
    let accepts = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Control: unreadable-but-not-TLS bytes pass through to the server.
    let send = "import socket,sys\n\
                s=socket.create_connection((sys.argv[1],443),timeout=10)\n\
                s.sendall(b'hello, not TLS'); print(s.recv(16))\n";
    let mut reached = false;
    for _ in 0..50 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.client,
                "python3",
                "-c",
                send,
                SERVER_V4,
            ])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("ok") {
            reached = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reached,
        "control flow did not reach the server: {}",
        gw.log()
    );
    let before = accepts();
    assert!(before >= 1);
    // The blocked name: the block page, over our own leaf.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.client,
            "curl",
            "-sS",
            "--max-time",
            "10",
        ])
        .args([
            "-w",
            "\n%{http_code}",
            "--cacert",
            gw.ca_cert.to_str().unwrap(),
        ])
        .args(["--resolve", &format!("blocked.test:443:{SERVER_V4}")])
        .arg("https://blocked.test/")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.trim_end().ends_with("403") && text.contains("not approved"),
        "{text} {} {}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(accepts(), before, "the blocked flow reached the server");
    let _ = server.kill();
    let _ = server.wait();
    drop(gw);
    drop(net);
}

/// XMPP that promises TLS (`<proceed/>`) and then sends plaintext is not
/// relayed unread: `intercept.unparsed_action` (block) applies.
#[tokio::test]
async fn no_tls_after_xmpp_proceed_is_blocked() {
    const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    async fn read_until<S: tokio::io::AsyncRead + Unpin>(s: &mut S, marker: &str) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains(marker) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {marker}");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        read_until(&mut tcp, "<stream:stream").await;
        tcp.write_all(
            format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' from='chat.test' version='1.0'>\
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
        let mut after = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut after)).await;
        let _ = tx.send(after);
    });
    let gw = TestGateway::start(&[], |c| {
        c.proxy.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let (mut tcp, status) = common::inproc::tunnel(gw.proxy, server).await;
    assert!(status.contains(" 200"), "{status}");
    tcp.write_all(
        b"<?xml version='1.0'?><stream:stream to='chat.test' xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    )
    .await
    .unwrap();
    read_until(&mut tcp, "</stream:features>").await;
    tcp.write_all(format!("<starttls xmlns='{TLS_NS}'/>").as_bytes())
        .await
        .unwrap();
    read_until(&mut tcp, "<proceed").await;
    tcp.write_all(b"<message to='bob@chat.test'><body>card 4111 1111 1111 1111</body></message>")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    let after = rx.await.unwrap();
    assert!(
        after.is_empty(),
        "the server got plaintext after <proceed/>: {}",
        String::from_utf8_lossy(&after)
    );
    let ev = wait(&gw, |e| e.reason.contains("no TLS after <proceed/>")).await;
    assert_eq!(ev.decision, "block");
    assert!(ev.flagged);
    gw.stop().await;
}
