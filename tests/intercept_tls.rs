//! Interception end to end: real upstream servers with certificates made at
//! test time, the gateway, and real clients (rustls, curl).

mod common;

use std::process::Command;

use ::time::Duration;
use common::inproc::{client_config, http_get, tls_through, TestGateway};
use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use rcgen::ExtendedKeyUsagePurpose;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn intercepts_a_verified_upstream_with_a_proper_leaf() {
    let root = TestCa::root("Upstream Test Root");
    let upstream_cert = root.leaf(&LeafSpec::new(&["good.test", "alt.good.test"]));
    let upstream_der = upstream_cert.chain[0].clone();
    let server = https_server("good.test", upstream_cert).await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;

    let (cfg, seen) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let mut tls = tls_through(gw.proxy, server, "good.test", cfg)
        .await
        .expect("handshake through gateway");
    let resp = http_get(&mut tls, "good.test", "/hello").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("hello from good.test"), "{resp}");

    // The leaf the client received.
    let chains = seen.chains();
    let leaf_der = &chains[0][0];
    let leaf = parse(leaf_der);
    let ca = parse(&gw.ca_der);
    let up = parse(&upstream_der);
    assert_eq!(leaf.issuer(), ca.subject());
    assert_ne!(
        leaf.public_key().raw,
        ca.public_key().raw,
        "leaf must have its own key"
    );
    let bc = leaf.basic_constraints().unwrap().map(|b| b.value.ca);
    assert_eq!(bc, Some(false), "CA:false");
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let up_names = dns_names(&up);
    for n in dns_names(&leaf) {
        assert!(
            up_names.contains(&n),
            "leaf name {n} not covered by upstream {up_names:?}"
        );
    }
    assert!(dns_names(&leaf).contains(&"good.test".to_string()));
    assert!(leaf.validity().not_after <= up.validity().not_after);
    assert!(leaf.validity().not_before >= up.validity().not_before);
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86_400;
    assert!(days <= 7, "leaf lifetime {days} days");
    assert!(leaf.raw_serial().len() >= 8, "serial too short");

    let ev = gw.events.wait_connection("good.test").await;
    assert_eq!(ev.decision, "intercept");
    assert_eq!(ev.verification.as_deref(), Some("ok"));
    assert_eq!(
        ev.upstream_cert_sha256,
        Some(format!("{:x}", Sha256::digest(&upstream_der)))
    );
    assert!(ev.client_tls.is_some() && ev.upstream_tls.is_some());
    assert!(ev.bytes_up > 0 && ev.bytes_down > 0);
    gw.stop().await;
}

/// Each bad upstream: the client gets a TLS alert and no certificate at all.
#[tokio::test]
async fn bad_upstreams_are_refused_without_a_leaf() {
    let root = TestCa::root("Upstream Test Root");
    let unknown = TestCa::root("Unknown Root");
    let inter = root.intermediate("Good Intermediate", true);
    let not_ca = root.intermediate("Not A CA", false);
    let dir = tempfile::tempdir().unwrap();

    let mut cases: Vec<(&str, std::net::SocketAddr, &str)> = Vec::new();
    let spec = |n: &str| LeafSpec::new(&[n]);
    let mut expired = spec("expired.test");
    expired.not_before = Duration::days(-30);
    expired.not_after = Duration::days(-1);
    cases.push((
        "expired.test",
        https_server("x", root.leaf(&expired)).await,
        "expired",
    ));
    let mut future = spec("future.test");
    future.not_before = Duration::days(2);
    future.not_after = Duration::days(30);
    cases.push((
        "future.test",
        https_server("x", root.leaf(&future)).await,
        "not_yet_valid",
    ));
    cases.push((
        "wronghost.test",
        https_server("x", root.leaf(&spec("other.test"))).await,
        "wrong_host",
    ));
    cases.push((
        "unknown.test",
        https_server("x", unknown.leaf(&spec("unknown.test"))).await,
        "unknown_issuer",
    ));
    // Self-signed: the server's own root, never trusted.
    let selfsigned = TestCa::root("selfsigned.test");
    cases.push((
        "selfsigned.test",
        https_server("x", selfsigned.leaf(&spec("selfsigned.test"))).await,
        "unknown_issuer",
    ));
    // Missing intermediate: leaf from the intermediate, chain without it.
    cases.push((
        "nointer.test",
        https_server("x", inter.leaf(&spec("nointer.test"))).await,
        "unknown_issuer",
    ));
    cases.push((
        "notca.test",
        https_server(
            "x",
            not_ca.leaf(&spec("notca.test")).with_intermediate(&not_ca),
        )
        .await,
        "issuer_not_ca",
    ));
    let mut client_auth = spec("clientauth.test");
    client_auth.eku = vec![ExtendedKeyUsagePurpose::ClientAuth];
    cases.push((
        "clientauth.test",
        https_server("x", root.leaf(&client_auth)).await,
        "invalid_purpose",
    ));
    // SHA-1 signature, made by openssl.
    let (sha1_root, sha1_leaf, sha1_key) = common::pki::openssl_sha1_chain(dir.path(), "sha1.test");
    let sha1_server = common::upstream::https_server_with(
        "x",
        vec![rustls::pki_types::CertificateDer::from(pem_der(&sha1_leaf))],
        rustls::pki_types::PrivateKeyDer::try_from(pem_der(&sha1_key)).unwrap(),
    )
    .await;
    cases.push(("sha1.test", sha1_server, "weak_or_unsupported_signature"));
    // RSA-1024 key, served by openssl s_server (rustls refuses such keys).
    let mut weak = spec("rsa1024.test");
    weak.key_pem = None;
    let rsa1024_key = common::pki::openssl_rsa_key(1024);
    let rsa1024 = weak_rsa_leaf(&root, "rsa1024.test", &rsa1024_key);
    let s_server = common::upstream::OpensslServer::start(dir.path(), &rsa1024, &rsa1024_key);
    cases.push(("rsa1024.test", s_server.addr, "weak_key"));

    let gw = TestGateway::start(&[&root.pem(), &sha1_root], |_| {}).await;
    let mut failures = Vec::new();
    for (name, addr, reason) in &cases {
        let (cfg, seen) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
        let result = tls_through(gw.proxy, *addr, name, cfg).await;
        if result.is_ok() {
            failures.push(format!("{name}: handshake succeeded"));
        }
        if !seen.chains().is_empty() {
            failures.push(format!("{name}: client was shown a certificate"));
        }
        let ev = gw.events.wait_connection(name).await;
        if ev.decision != "block" || !ev.reason.contains("upstream verification failed") {
            failures.push(format!("{name}: event {ev:?}"));
        }
        if !reason.is_empty() && ev.verification.as_deref() != Some(*reason) {
            failures.push(format!(
                "{name}: reason {:?}, expected {reason}",
                ev.verification
            ));
        }
        let policies = gw.events.policies();
        if !policies
            .iter()
            .any(|p| p.host == *name && p.kind == "upstream_rejected")
        {
            failures.push(format!("{name}: no upstream_rejected policy event"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    gw.stop().await;
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// A server certificate for an RSA key rustls cannot load (issued by `ca`).
fn weak_rsa_leaf(ca: &TestCa, name: &str, key_pem: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.pem"), key_pem).unwrap();
    let out = Command::new("openssl")
        .args(["pkey", "-in", "k.pem", "-pubout"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let spki =
        rcgen::SubjectPublicKeyInfo::from_pem(&String::from_utf8(out.stdout).unwrap()).unwrap();
    ca.leaf_for_public_key(&LeafSpec::new(&[name]), &spki)
}

#[tokio::test]
async fn good_upstreams_of_every_shape_are_accepted() {
    let root = TestCa::root("Upstream Test Root");
    let inter = root.intermediate("Issuing CA", true);
    let many: Vec<String> = (0..40).map(|i| format!("n{i}.many.test")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut rsa = LeafSpec::new(&["rsa.test"]);
    rsa.key_pem = Some(common::pki::openssl_rsa_key(2048));
    let cases = vec![
        (
            "chain.test",
            https_server(
                "chain",
                inter
                    .leaf(&LeafSpec::new(&["chain.test"]))
                    .with_intermediate(&inter),
            )
            .await,
        ),
        (
            "a.wild.test",
            https_server("wild", root.leaf(&LeafSpec::new(&["*.wild.test"]))).await,
        ),
        (
            "n17.many.test",
            https_server("many", root.leaf(&LeafSpec::new(&many_refs))).await,
        ),
        (
            "ecdsa.test",
            https_server("ecdsa", root.leaf(&LeafSpec::new(&["ecdsa.test"]))).await,
        ),
        ("rsa.test", https_server("rsa", root.leaf(&rsa)).await),
    ];
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    for (name, addr) in cases {
        let (cfg, seen) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
        let mut tls = tls_through(gw.proxy, addr, name, cfg)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let resp = http_get(&mut tls, name, "/hello").await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{name}: {resp}");
        let chains = seen.chains();
        let names = dns_names(&parse(&chains[0][0]));
        assert!(
            names.iter().all(|n| n == name || n.starts_with("*.")),
            "{name}: {names:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn curl_through_the_proxy_over_http1_and_http2() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("curl.test", root.leaf(&LeafSpec::new(&["curl.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    let ca = gw.ca_file();
    for (flag, expect) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2.0")] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                flag,
                "--proxy",
                &format!("http://{}", gw.proxy),
            ])
            .args(["--cacert", ca.to_str().unwrap()])
            .args(["--connect-to", &format!("curl.test:443:{server}")])
            .arg("https://curl.test/hello")
            .output()
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl {flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            body.contains(&format!("hello from curl.test over {expect}")),
            "curl {flag}: {body}"
        );
    }
    // A 20 MiB upload streams through and arrives intact.
    let big = gw.dir.path().join("big.bin");
    let data: Vec<u8> = (0..20 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "--http2",
            "--proxy",
            &format!("http://{}", gw.proxy),
        ])
        .args(["--cacert", ca.to_str().unwrap()])
        .args(["--connect-to", &format!("curl.test:443:{server}")])
        .args(["--data-binary", &format!("@{}", big.display())])
        .arg("https://curl.test/echo")
        .output()
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    let expect = format!("len={} sha256={:x}", data.len(), Sha256::digest(&data));
    assert!(
        body.contains(&expect),
        "{body} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a 20 MiB download.
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "--http1.1",
            "--proxy",
            &format!("http://{}", gw.proxy),
        ])
        .args(["--cacert", ca.to_str().unwrap()])
        .args(["--connect-to", &format!("curl.test:443:{server}")])
        .arg("https://curl.test/big?n=20971520")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.stdout.len(),
        20 * 1024 * 1024,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_pins_is_put_on_passthrough() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("pinned.test", root.leaf(&LeafSpec::new(&["pinned.test"]))).await;
    // Learned pinning is opt-in (`intercept.pinning = "learn"`); by default
    // aborted handshakes never teach passthrough (tests/evasions.rs).
    let gw = TestGateway::start(&[&root.pem()], |c| {
        c.intercept.pinning_threshold = 2;
        c.intercept.pinning = gatehouse::config::PinningMode::Learn;
    })
    .await;
    for _ in 0..2 {
        let (cfg, seen) = client_config(std::slice::from_ref(&gw.ca_der), &[], true);
        assert!(tls_through(gw.proxy, server, "pinned.test", cfg)
            .await
            .is_err());
        let shown = seen.chains();
        assert_eq!(
            parse(&shown[0][0]).issuer(),
            parse(&gw.ca_der).subject(),
            "first attempts are intercepted"
        );
    }
    // Now the real server's certificate comes through untouched.
    let (cfg, seen) = client_config(&[root.der()], &[], false);
    let mut tls = tls_through(gw.proxy, server, "pinned.test", cfg)
        .await
        .expect("passthrough handshake");
    let resp = http_get(&mut tls, "pinned.test", "/hello").await;
    assert!(resp.contains("hello from pinned.test"), "{resp}");
    assert_eq!(
        parse(&seen.chains()[0][0]).issuer(),
        parse(&root.der()).subject()
    );
    drop(tls);
    let evs = gw.events.connections();
    assert!(
        evs.iter()
            .any(|e| e.reason.contains("pinning learned") && e.flagged),
        "{evs:#?}"
    );
    let policies = gw.events.policies();
    assert!(policies
        .iter()
        .any(|p| p.kind == "pinning_bypass" && p.host == "pinned.test"));
    for _ in 0..100 {
        if gw
            .events
            .connections()
            .iter()
            .any(|e| e.decision == "passthrough" && e.reason.contains("learned pinning"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gw
        .events
        .connections()
        .iter()
        .any(|e| e.decision == "passthrough" && e.reason.contains("learned pinning") && e.flagged));
    gw.stop().await;
}

/// Non-HTTP protocols inside TLS (here ALPN `xmpp-client`) relay as bytes,
/// with both directions shown to the hooks.
#[tokio::test]
async fn other_alpn_protocols_relay_bytes_through_a_tap() {
    use common::inproc::{ByteTap, TapLog};
    use gatehouse::relay::hooks::Direction;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let root = TestCa::root("Upstream Test Root");
    let cert = root.leaf(&LeafSpec::new(&["xmpp.test"]));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(cert.chain, cert.key)
    .unwrap();
    cfg.alpn_protocols = vec![b"xmpp-client".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).await.unwrap();
        tls.write_all(b"<stream:features/>").await.unwrap();
        assert_eq!(&buf[..n], b"<stream:stream to='xmpp.test'>");
        tls.shutdown().await.unwrap();
    });

    let log: TapLog = Arc::default();
    let gw = TestGateway::start_with(&[&root.pem()], Arc::new(ByteTap(log.clone())), |_| {}).await;
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"xmpp-client"], false);
    let mut tls = tls_through(gw.proxy, server, "xmpp.test", cfg)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"xmpp-client"[..]));
    tls.write_all(b"<stream:stream to='xmpp.test'>")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    assert_eq!(reply, b"<stream:features/>");
    drop(tls);
    let ev = gw.events.wait_connection("xmpp.test").await;
    assert_eq!(ev.alpn.as_deref(), Some("xmpp-client"));
    let log = log.lock().unwrap().clone();
    let out: Vec<u8> = log
        .iter()
        .filter(|e| e.0 == Direction::Outbound)
        .flat_map(|e| e.1.clone())
        .collect();
    let inb: Vec<u8> = log
        .iter()
        .filter(|e| e.0 == Direction::Inbound)
        .flat_map(|e| e.1.clone())
        .collect();
    assert_eq!(out, b"<stream:stream to='xmpp.test'>");
    assert_eq!(inb, b"<stream:features/>");
    gw.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("idle.test", root.leaf(&LeafSpec::new(&["idle.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |c| {
        c.proxy.idle_timeout = std::time::Duration::from_millis(800)
    })
    .await;
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let mut tls = tls_through(gw.proxy, server, "idle.test", cfg)
        .await
        .unwrap();
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Keep-alive, then silence: the gateway closes it.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let ev = gw.events.wait_connection("idle.test").await;
    assert_eq!(ev.close_reason, "idle_timeout");
    gw.stop().await;
}

#[tokio::test]
async fn intercepted_request_heads_obey_max_header_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("heads.test", root.leaf(&LeafSpec::new(&["heads.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |c| c.proxy.max_header_bytes = 16 * 1024).await;
    for (filler, expect) in [(12 * 1024, "HTTP/1.1 200"), (24 * 1024, "HTTP/1.1 431")] {
        let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
        let mut tls = tls_through(gw.proxy, server, "heads.test", cfg)
            .await
            .unwrap();
        let head = format!(
            "GET /hello HTTP/1.1\r\nHost: heads.test\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(filler)
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tls.read(&mut buf).await.unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(reply.starts_with(expect), "{filler}-byte header: {reply}");
    }
    gw.stop().await;

    // The same limit over HTTP/2 (hyper's own default there is 16 KiB): a
    // limit below it refuses a head above the limit.
    let gw = TestGateway::start(&[&root.pem()], |c| c.proxy.max_header_bytes = 8 * 1024).await;
    let ca = gw.ca_file();
    for (filler, reaches) in [(4 * 1024, true), (12 * 1024, false)] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--http2",
                "-o",
                "-",
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .args(["--proxy", &format!("http://{}", gw.proxy)])
            .args(["--cacert", ca.to_str().unwrap()])
            .args(["--connect-to", &format!("heads.test:443:{server}")])
            .args(["-H", &format!("X-Filler: {}", "a".repeat(filler))])
            .arg("https://heads.test/hello")
            .output()
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            body.contains("hello from heads.test over HTTP/2.0"),
            reaches,
            "{filler}-byte header over h2: {body} / {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    gw.stop().await;
}
