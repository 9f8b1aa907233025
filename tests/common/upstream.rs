//! Real upstream servers for interception tests: a hyper HTTPS server
//! (HTTP/1.1 and HTTP/2) with a given certificate, and `openssl s_server`
//! for keys rustls will not use.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::pki::ServerCert;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Starts an HTTPS server on 127.0.0.1 presenting `cert`; it answers
/// `GET /hello`, `POST /echo` (length and SHA-256 of the body) and
/// `GET /big?n=N` (N bytes, streamed). Runs until the runtime ends.
pub async fn https_server(name: &str, cert: ServerCert) -> SocketAddr {
    https_server_with(name, cert.chain, cert.key).await
}

pub async fn https_server_with(
    name: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| answer(req, name.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

async fn answer(req: Request<Incoming>, name: String) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let version = format!("{:?}", req.version());
    let body: Body = match path.as_str() {
        "/hello" => full(format!("hello from {name} over {version}\n")),
        "/echo" => {
            let mut hasher = Sha256::new();
            let mut len = 0usize;
            let mut body = req.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    len += d.len();
                    hasher.update(d);
                }
            }
            full(format!("len={len} sha256={:x}\n", hasher.finalize()))
        }
        "/big" => {
            let n: usize = query
                .strip_prefix("n=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let frames = (0..n.div_ceil(chunk.len())).map(move |i| {
                let take = (n - i * chunk.len()).min(chunk.len());
                Ok::<_, Infallible>(Frame::data(chunk.slice(..take)))
            });
            StreamBody::new(futures_util::stream::iter(frames)).boxed()
        }
        "/dns-query" => {
            let query = req.into_body().collect().await.unwrap().to_bytes();
            return Ok(doh_answer(&query));
        }
        _ => full(format!("{path}\n")),
    };
    let mut resp = Response::new(body);
    if path == "/alt-svc" {
        // What a server offering HTTP/3 sends (`tests/quic_alt_svc.rs`).
        resp.headers_mut().insert(
            "alt-svc",
            http::HeaderValue::from_static(
                r#"h3=":443"; ma=86400, h3-29=":443", h2="alt.example:443""#,
            ),
        );
    }
    Ok(resp)
}

/// A DNS-over-HTTPS resolver's answer to a query (`tests/doh_rewrite.rs`):
/// one HTTPS record offering h3 and h2, with an `ech` parameter.
fn doh_answer(query: &[u8]) -> Response<Body> {
    use gatehouse_inspectors::identify::dns;
    let q = dns::parse(query).expect("a DNS query");
    let mut m = dns::build_response(q.id, &q.qname, q.qtype, &[], 0);
    m[7] = 1;
    let rdata = [
        0, 1, 0, 0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2', 0, 5, 0, 4, 0xec, 0xec, 0xec, 0xec,
    ];
    m.extend([0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 44, 0, rdata.len() as u8]);
    m.extend(rdata);
    let mut resp = Response::new(Full::new(Bytes::from(m)).boxed());
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/dns-message"),
    );
    resp
}

fn full(s: String) -> Body {
    Full::new(Bytes::from(s)).boxed()
}

/// `openssl s_server` on a free loopback port with `cert`/`key` PEM files,
/// security level 0 so it will use weak keys; killed on drop.
pub struct OpensslServer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl OpensslServer {
    pub fn start(dir: &std::path::Path, cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(dir, cert_pem, key_pem, &[])
    }

    /// As [`start`](Self::start), with more `s_server` options (e.g.
    /// `-tls1`, or `-no_tls1_3 -cipher X`: a later `-cipher` wins).
    pub fn start_with(
        dir: &std::path::Path,
        cert_pem: &str,
        key_pem: &str,
        extra: &[&str],
    ) -> Self {
        std::fs::write(dir.join("s_server.pem"), cert_pem).unwrap();
        std::fs::write(dir.join("s_server.key"), key_pem).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-cert",
                "s_server.pem",
                "-key",
                "s_server.key",
            ])
            .args([
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
            ])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { child, addr }
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
