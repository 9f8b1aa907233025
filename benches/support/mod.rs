//! What the `proxy` and `load` benches share: a test PKI made at run time,
//! an in-process HTTPS upstream, client TLS settings and a connect helper
//! that goes through the gateway's CONNECT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A root and a leaf for `name`, made at run time.
pub struct Pki {
    pub root_pem: String,
    pub root_der: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

pub fn pki(name: &'static str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    Pki {
        root_pem: ca_cert.pem(),
        root_der: ca_cert.der().clone().into_owned(),
        chain: vec![leaf.der().clone().into_owned()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// An HTTPS server on loopback speaking HTTP/1.1 or HTTP/2 by ALPN: it
/// reads any request body whole and answers 1 KiB, or 8 MiB on `/bulk`.
pub async fn upstream(p: &Pki) -> SocketAddr {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(p.chain.clone(), p.key.clone_key())
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let kib = Bytes::from(vec![b'x'; 1024]);
    let bulk = Bytes::from(vec![b'y'; 8 * 1024 * 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, kib, bulk) = (acceptor.clone(), kib.clone(), bulk.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/bulk" {
                        bulk.clone()
                    } else {
                        kib.clone()
                    };
                    async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(http::Response::new(Full::new(body)))
                    }
                });
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    });
    addr
}

/// Client TLS settings trusting `root`, offering one ALPN protocol.
pub fn client_cfg(root: &CertificateDer<'static>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(c)
}

/// TCP to `server`, through `proxy` if given (CONNECT), then TLS for `name`.
pub async fn connect(
    server: SocketAddr,
    proxy: Option<SocketAddr>,
    cfg: Arc<rustls::ClientConfig>,
    name: &'static str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(proxy.unwrap_or(server)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    if proxy.is_some() {
        tcp.write_all(format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
    }
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(name).unwrap(), tcp)
        .await
        .unwrap()
}
