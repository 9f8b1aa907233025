//! Requests through the gateway against the same requests direct: per-request
//! latency with keep-alive and with a new connection each time, HTTP/1.1
//! and HTTP/2, and bulk download and upload throughput. Everything runs
//! in-process on loopback: a rustls+hyper upstream with a test root, the
//! gateway with inspection hooks that allow everything, and a hyper client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse::config::Config;
use gatehouse::events::{Event, EventSink};
use gatehouse::Gateway;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Discard;
impl EventSink for Discard {
    fn emit(&self, _e: Event) {}
}

struct Pki {
    root_der: CertificateDer<'static>,
    root_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["bench.test".to_string()])
        .unwrap()
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    Pki {
        root_der: ca_cert.der().clone().into_owned(),
        root_pem: ca_cert.pem(),
        chain: vec![leaf.der().clone().into_owned()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

async fn upstream(p: &Pki) -> SocketAddr {
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
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/bulk" {
                        bulk.clone()
                    } else {
                        kib.clone()
                    };
                    async move {
                        // Uploads are read whole; the reply is the usual 1 KiB.
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(http::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

async fn gateway(p: &Pki, dir: &std::path::Path) -> (SocketAddr, CertificateDer<'static>) {
    let mut config = Config::default();
    config.proxy.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.proxy.allowed_destinations = vec!["127.0.0.0/8".parse().unwrap()];
    config.ca.dir = dir.join("ca");
    std::fs::write(dir.join("root.pem"), &p.root_pem).unwrap();
    config.upstream.extra_roots = vec![dir.join("root.pem")];
    let gw = Gateway::bind(config, Arc::new(Discard)).await.unwrap();
    let addr = gw.proxy_addr();
    let ca = CertificateDer::from(gw.ca().cert_der().to_vec());
    tokio::spawn(gw.run(std::future::pending()));
    (addr, ca)
}

fn client_cfg(root: &CertificateDer<'static>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
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

/// TCP to `server`, through `proxy` if given (CONNECT), then TLS.
async fn connect(
    server: SocketAddr,
    proxy: Option<SocketAddr>,
    cfg: Arc<rustls::ClientConfig>,
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
        .connect(ServerName::try_from("bench.test").unwrap(), tcp)
        .await
        .unwrap()
}

enum Send {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn session(
    server: SocketAddr,
    proxy: Option<SocketAddr>,
    root: &CertificateDer<'static>,
    h2: bool,
) -> Send {
    let tls = connect(
        server,
        proxy,
        client_cfg(root, if h2 { b"h2" } else { b"http/1.1" }),
    )
    .await;
    if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(c);
        Send::H2(s)
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(c);
        Send::H1(s)
    }
}

async fn get(s: &mut Send, path: &str) -> usize {
    request(s, path, Bytes::new()).await
}

/// A GET, or a POST of `body` when it is not empty; returns the response length.
async fn request(s: &mut Send, path: &str, body: Bytes) -> usize {
    let req = http::Request::builder()
        .method(if body.is_empty() { "GET" } else { "POST" })
        .uri(format!("https://bench.test{path}"))
        .header("host", "bench.test")
        .body(Full::new(body))
        .unwrap();
    let resp = match s {
        Send::H1(s) => {
            s.ready().await.unwrap();
            s.send_request(req).await.unwrap()
        }
        Send::H2(s) => s.send_request(req).await.unwrap(),
    };
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let (server, (proxy, gw_ca)) =
        rt.block_on(async { (upstream(&p).await, gateway(&p, dir.path()).await) });

    let mut g = c.benchmark_group("keepalive_1k");
    for (name, via, h2) in [
        ("direct_h1", None, false),
        ("gateway_h1", Some(proxy), false),
        ("direct_h2", None, true),
        ("gateway_h2", Some(proxy), true),
    ] {
        let root = if via.is_some() {
            gw_ca.clone()
        } else {
            p.root_der.clone()
        };
        let mut s = rt.block_on(session(server, via, &root, h2));
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| b.iter(|| rt.block_on(get(&mut s, "/1k"))));
    }
    g.finish();

    let mut g = c.benchmark_group("new_connection_1k");
    for (name, via, h2) in [
        ("direct_h1", None, false),
        ("gateway_h1", Some(proxy), false),
        ("gateway_h2", Some(proxy), true),
    ] {
        let root = if via.is_some() {
            gw_ca.clone()
        } else {
            p.root_der.clone()
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut s = session(server, via, &root, h2).await;
                    get(&mut s, "/1k").await
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("bulk_8MiB");
    g.throughput(Throughput::Bytes(8 * 1024 * 1024));
    g.sample_size(20);
    for (name, via) in [("direct", None), ("gateway", Some(proxy))] {
        let root = if via.is_some() {
            gw_ca.clone()
        } else {
            p.root_der.clone()
        };
        let mut s = rt.block_on(session(server, via, &root, false));
        g.bench_function(name, |b| b.iter(|| rt.block_on(get(&mut s, "/bulk"))));
    }
    g.finish();

    let mut g = c.benchmark_group("bulk_8MiB_upload");
    g.throughput(Throughput::Bytes(8 * 1024 * 1024));
    g.sample_size(20);
    let upload = Bytes::from(vec![b'u'; 8 * 1024 * 1024]);
    for (name, via) in [("direct", None), ("gateway", Some(proxy))] {
        let root = if via.is_some() {
            gw_ca.clone()
        } else {
            p.root_der.clone()
        };
        let mut s = rt.block_on(session(server, via, &root, false));
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(request(&mut s, "/upload", upload.clone())))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
