//! The upstream leg under real servers: nginx closes kept-alive connections
//! after `keepalive_requests`, and the client's connection through the
//! gateway keeps working (the gateway reopens its upstream, verified again);
//! servers below the upstream floor are refused with a precise reason.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::inproc::{client_config, tls_through, TestGateway};
use common::nginx::Nginx;
use common::pki::{LeafSpec, TestCa};
use common::upstream::OpensslServer;
use common::Gatehouse;
use nix::sys::signal::Signal;

/// `requests` GETs on one client connection through the gateway; returns
/// (responses with 200, client connections opened).
fn one_connection(gw: &Gatehouse, origin: SocketAddr, flag: &str, requests: usize) -> (usize, u64) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "300", flag])
        .args(["--proxy", &format!("http://{}", gw.proxy)])
        .args(["--cacert", gw.ca_cert.to_str().unwrap()])
        .args(["--connect-to", &format!("origin.test:443:{origin}")])
        .args(["-w", "code=%{http_code} connects=%{num_connects}\\n"])
        .arg(format!("https://origin.test/r[1-{requests}]"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = stdout.lines().filter(|l| l.starts_with("code=200")).count();
    let connects = stdout
        .lines()
        .filter_map(|l| l.split("connects=").nth(1))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum();
    (ok, connects)
}

fn upstream_connections(dir: &Path) -> usize {
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    let mut conns: Vec<&str> = log.lines().collect();
    conns.sort_unstable();
    conns.dedup();
    conns.len()
}

#[test]
fn an_origin_closing_kept_alive_connections_is_reopened_for_the_next_request() {
    let root = TestCa::root("Churn Test Root");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&LeafSpec::new(&["origin.test"]))
        .write_pem(dir.path(), "origin");
    let nginx = Nginx::start(dir.path(), &cert, &key);

    let gw_dir = tempfile::tempdir().unwrap();
    std::fs::write(gw_dir.path().join("root.pem"), root.pem()).unwrap();
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  shutdown_grace = \"2s\"\n[upstream]\nextra_roots = [\"root.pem\"]\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    let mut gw = Gatehouse::start_in(gw_dir, config);

    let (ok, connects) = one_connection(&gw, nginx.addr, "--http1.1", 1500);
    assert_eq!((ok, connects), (1500, 1), "HTTP/1.1\n{}", gw.log());
    let h1 = upstream_connections(dir.path());
    assert!(
        h1 >= 15,
        "nginx closed every 100 requests: {h1} connections"
    );

    let (ok, connects) = one_connection(&gw, nginx.addr, "--http2", 1500);
    assert_eq!((ok, connects), (1500, 1), "HTTP/2\n{}", gw.log());
    let h2 = upstream_connections(dir.path()) - h1;
    assert!(
        h2 >= 15,
        "nginx sent GOAWAY every 100 streams: {h2} connections"
    );

    assert!(gw.stop_with(Signal::SIGTERM).success());
    drop(nginx);
}

/// An RSA leaf for `name` (openssl's key), as (cert PEM, key PEM).
fn rsa_leaf(ca: &TestCa, name: &str) -> (String, String) {
    let key = common::pki::openssl_rsa_key(2048);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.pem"), &key).unwrap();
    let out = Command::new("openssl")
        .args(["pkey", "-in", "k.pem", "-pubout"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let spki =
        rcgen::SubjectPublicKeyInfo::from_pem(&String::from_utf8(out.stdout).unwrap()).unwrap();
    (ca.leaf_for_public_key(&LeafSpec::new(&[name]), &spki), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_below_the_upstream_floor_are_refused_with_a_precise_reason() {
    let root = TestCa::root("Floor Test Root");
    let cases: [(&str, &[&str], &str); 5] = [
        ("tls10.test", &["-tls1"], "protocol_version"),
        ("tls11.test", &["-tls1_1"], "protocol_version"),
        (
            "cbc.test",
            &[
                "-no_tls1_3",
                "-cipher",
                "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA",
            ],
            "no_common_cipher_suite",
        ),
        (
            "rsakx.test",
            &[
                "-no_tls1_3",
                "-cipher",
                "AES128-GCM-SHA256:AES256-GCM-SHA384",
            ],
            "no_common_cipher_suite",
        ),
        (
            "dhe.test",
            &[
                "-no_tls1_3",
                "-cipher",
                "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",
            ],
            "no_common_cipher_suite",
        ),
    ];
    let mut servers = Vec::new();
    for (name, args, _) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = rsa_leaf(&root, name);
        servers.push((
            OpensslServer::start_with(dir.path(), &cert, &key, args),
            dir,
        ));
    }
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    let mut failures = Vec::new();
    for ((name, _, reason), (server, _)) in cases.iter().zip(&servers) {
        let (cfg, seen) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
        if tls_through(gw.proxy, server.addr, name, cfg).await.is_ok() {
            failures.push(format!("{name}: handshake succeeded"));
        }
        if !seen.chains().is_empty() {
            failures.push(format!("{name}: client was shown a certificate"));
        }
        let ev = gw.events.wait_connection(name).await;
        if ev.decision != "block" || ev.verification.as_deref() != Some(*reason) {
            failures.push(format!(
                "{name}: {:?} {:?}, expected block {reason}",
                ev.decision, ev.verification
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    gw.stop().await;
}

/// An HTTPS/1.1 origin that answers the first request of each connection
/// (keep-alive) and closes the connection, unanswered, on the second — the
/// race of a server's idle timeout hitting a reused connection. Reports
/// each (connection, request line).
async fn one_answer_origin(
    cert: common::pki::ServerCert,
) -> (
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<(usize, String)>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for conn in 0.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if tls.read(&mut b).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let line = head.lines().next().unwrap_or_default().to_string();
                    log.lock().unwrap().push((conn, line));
                    let len: usize = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    let _ = tls.read_exact(&mut body).await;
                    if n > 0 {
                        return; // closed before answering
                    }
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                        .await;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_once_when_a_reused_upstream_closed() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let root = TestCa::root("Retry Test Root");
    let (origin, seen) = one_answer_origin(root.leaf(&LeafSpec::new(&["retry.test"]))).await;
    let gw = TestGateway::start(&[&root.pem()], |_| {}).await;
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let tls = tls_through(gw.proxy, origin, "retry.test", cfg)
        .await
        .expect("intercepted");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    for (method, path) in [("GET", "/1"), ("GET", "/2"), ("POST", "/3"), ("GET", "/4")] {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "retry.test")
            .body(Full::new(bytes::Bytes::from_static(b"x")))
            .unwrap();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        statuses.push(resp.status().as_u16());
        let _ = resp.into_body().collect().await;
    }
    let seen = seen.lock().unwrap().clone();
    // GET /2 met a closed reused connection and was retried on a new one;
    // POST /3 was not (not idempotent); GET /4 opened the next connection.
    assert_eq!(statuses, vec![200, 200, 502, 200], "{seen:?}");
    let lines: Vec<(usize, &str)> = seen.iter().map(|(c, l)| (*c, l.as_str())).collect();
    assert_eq!(
        lines,
        vec![
            (0, "GET /1 HTTP/1.1"),
            (0, "GET /2 HTTP/1.1"),
            (1, "GET /2 HTTP/1.1"),
            (1, "POST /3 HTTP/1.1"),
            (2, "GET /4 HTTP/1.1"),
        ]
    );
    gw.stop().await;
}
