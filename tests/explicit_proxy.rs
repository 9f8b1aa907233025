//! The explicit proxy's own behaviour: plain absolute-form HTTP with
//! inspection, blocking and redaction through hooks, proxy authentication,
//! limits, and refused destinations.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::inproc::{tunnel, TestGateway};
use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use gatehouse::relay::hooks::{FlowContext, FlowHooks, HttpMessage, Interceptor, Verdict};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Blocks bodies containing SECRET, redacts "card 4111" to "card ****".
struct Dlp;
struct DlpHooks;

impl Interceptor for Dlp {
    fn open(&self, _flow: &FlowContext) -> Box<dyn FlowHooks> {
        Box::new(DlpHooks)
    }
}

impl FlowHooks for DlpHooks {
    fn on_request(&mut self, _flow: &FlowContext, msg: &HttpMessage<'_>) -> Verdict {
        let body = String::from_utf8_lossy(msg.body);
        if body.contains("SECRET") {
            Verdict::Block {
                policy: "Confidential markers".into(),
            }
        } else if body.contains("card 4111") {
            Verdict::Rewrite(Bytes::from(body.replace("card 4111", "card ****")))
        } else {
            Verdict::Allow
        }
    }
}

/// A plain HTTP server that records every body it receives.
async fn plain_server(received: Arc<Mutex<Vec<String>>>) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let received = received.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        received
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&body).into_owned());
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                            "plain {path} got {}",
                            body.len()
                        )))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

async fn curl(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_relayed_inspected_blocked_and_redacted() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let server = plain_server(received.clone()).await;
    let gw = TestGateway::start_with(&[], Arc::new(Dlp), |_| {}).await;
    let proxy = format!("http://{}", gw.proxy);
    let url = format!("http://{server}/hello");

    let (ok, out) = curl(&["--proxy", &proxy, &url]).await;
    assert!(ok && out.contains("plain /hello got 0"), "{out}");

    let (_, out) = curl(&[
        "--proxy",
        &proxy,
        "-w",
        "\nstatus=%{http_code}",
        "--data",
        "the SECRET plan",
        &url,
    ])
    .await;
    assert!(
        out.contains("status=403") && out.contains("Confidential markers"),
        "{out}"
    );
    assert!(
        !out.contains("SECRET plan"),
        "the page must not echo the matched data: {out}"
    );

    let (ok, out) = curl(&[
        "--proxy",
        &proxy,
        "--data",
        "pay with card 4111 today",
        &url,
    ])
    .await;
    assert!(ok && out.contains("got 24"), "{out}");

    let got = received.lock().unwrap().clone();
    assert_eq!(
        got,
        vec!["".to_string(), "pay with card **** today".to_string()]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_https_bodies_are_blocked_before_they_leave() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("dlp.test", root.leaf(&LeafSpec::new(&["dlp.test"]))).await;
    let gw = TestGateway::start_with(&[&root.pem()], Arc::new(Dlp), |_| {}).await;
    let ca = gw.ca_file();
    for flag in ["--http1.1", "--http2"] {
        let (_, out) = curl(&[
            flag,
            "--proxy",
            &format!("http://{}", gw.proxy),
            "--cacert",
            ca.to_str().unwrap(),
            "--connect-to",
            &format!("dlp.test:443:{server}"),
            "-w",
            "\nstatus=%{http_code}",
            "--data",
            "a SECRET for you",
            "https://dlp.test/echo",
        ])
        .await;
        assert!(
            out.contains("status=403") && out.contains("Confidential markers"),
            "{flag}: {out}"
        );
        let (ok, out) = curl(&[
            flag,
            "--proxy",
            &format!("http://{}", gw.proxy),
            "--cacert",
            ca.to_str().unwrap(),
            "--connect-to",
            &format!("dlp.test:443:{server}"),
            "--data",
            "card 4111 please",
            "https://dlp.test/echo",
        ])
        .await;
        // The server saw the redacted body: 16 bytes, and its hash.
        use sha2::Digest;
        let expect = format!(
            "len=16 sha256={:x}",
            sha2::Sha256::digest(b"card **** please")
        );
        assert!(ok && out.contains(&expect), "{flag}: {out}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_authentication_names_the_user() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"gatehouse-test-salt").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"hunter2", &salt)
        .unwrap()
        .to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let server = plain_server(received).await;
    let gw = TestGateway::start(&[], |c| {
        c.identity.require_proxy_auth = true;
        c.identity.users = vec![gatehouse::config::ProxyUser {
            name: "alice".into(),
            password_hash: hash,
            groups: vec!["sales".into()],
        }];
    })
    .await;
    let proxy = format!("http://{}", gw.proxy);
    let url = format!("http://{server}/who");
    let (_, out) = curl(&["--proxy", &proxy, "-w", "\nstatus=%{http_code}", &url]).await;
    assert!(out.contains("status=407"), "{out}");
    let (_, out) = curl(&[
        "--proxy",
        &proxy,
        "--proxy-user",
        "alice:wrong",
        "-w",
        "\nstatus=%{http_code}",
        &url,
    ])
    .await;
    assert!(out.contains("status=407"), "{out}");
    let (ok, out) = curl(&["--proxy", &proxy, "--proxy-user", "alice:hunter2", &url]).await;
    assert!(ok && out.contains("plain /who"), "{out}");
    let evs = gw.events.connections();
    assert!(evs.iter().any(|e| e.user == "alice"), "{evs:#?}");
    gw.stop().await;
}

#[tokio::test]
async fn private_and_metadata_destinations_are_refused_by_default() {
    let gw = TestGateway::start(&[], |c| c.proxy.allowed_destinations.clear()).await;
    for target in [
        "10.1.2.3:443",
        "169.254.169.254:80",
        "127.0.0.1:22",
        "[::1]:443",
        "192.168.0.1:8080",
    ] {
        let (_, status) = tunnel(gw.proxy, target.parse().unwrap()).await;
        assert!(status.contains(" 403"), "{target}: {status}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn excess_connections_are_refused_not_queued() {
    let gw = TestGateway::start(&[], |c| c.proxy.max_connections = 2).await;
    let _a = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let _b = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut buf))
        .await
        .expect("refused promptly")
        .unwrap();
    assert!(buf.starts_with("HTTP/1.1 503"), "{buf}");
    gw.stop().await;
}

#[tokio::test]
async fn slow_request_heads_time_out() {
    let gw = TestGateway::start(&[], |c| {
        c.proxy.header_read_timeout = Duration::from_millis(500)
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("closed after the header timeout");
    assert!(n.is_ok());
    gw.stop().await;
}
