//! Requests through the gateway against the same requests direct: per-request
//! latency with keep-alive and with a new connection each time, HTTP/1.1
//! and HTTP/2, and bulk download and upload throughput. Everything runs
//! in-process on loopback: a rustls+hyper upstream with a test root, the
//! gateway with inspection hooks that allow everything, and a hyper client.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse::config::Config;
use gatehouse::events::{Event, EventSink};
use gatehouse::Gateway;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;

#[path = "support/mod.rs"]
mod support;
use support::{client_cfg, connect, pki, upstream, Pki};

struct Discard;
impl EventSink for Discard {
    fn emit(&self, _e: Event) {}
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
        "bench.test",
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
    let p = pki("bench.test");
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
