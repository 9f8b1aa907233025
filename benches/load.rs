//! Load harness (not criterion): the real `gatehouse` binary pinned to one
//! core (`taskset -c 0`), intercepting HTTPS to an in-process upstream; the
//! load generator and upstream run on the other core. Reports requests/s
//! and latency for 32 concurrent keep-alive clients fetching 1 KiB, POSTs/s
//! of 64 KiB bodies (one byte repeated, chat text, base64, random bytes), the same direct for comparison, and the gateway's
//! resident memory per idle intercepted connection, HTTP/1.1 and HTTP/2
//! (each idle connection has made one request; the HTTP/1.1 ones stay open
//! while the HTTP/2 ones are counted).
//!
//! `cargo bench --bench load` (bounded: a few seconds per scenario).
//! Environment: `LOAD_SECONDS` (default 5), `LOAD_CLIENTS` (default 32),
//! `LOAD_IDLE` (idle HTTP/1.1 connections, default 1000), `LOAD_IDLE_H2`
//! (idle HTTP/2 connections, default 1000), `LOAD_IDLE_BODY` (bytes each
//! idle connection POSTs before idling instead of a GET, default 0: what a
//! connection keeps after carrying a large body).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;

#[path = "support/mod.rs"]
mod support;
use support::{client_cfg, connect, pki, upstream, Pki};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Gatehouse {
    child: Child,
    proxy: SocketAddr,
    ca: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gatehouse(p: &Pki) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), &p.root_pem).unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\nmax_connections = 100000\n\
         [upstream]\nextra_roots = [\"root.pem\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\nfilter = \"warn\"\n\
         [rules]\ndir = \"{}\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dlp-rules")
        ),
    )
    .unwrap();
    let mut child = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_gatehouse"), "run"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset + gatehouse");
    let mut proxy = None;
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if let Some(rest) = line.strip_prefix("gatehouse: explicit proxy on ") {
            proxy = Some(rest.split(',').next().unwrap().parse().unwrap());
        }
        if line.starts_with("gatehouse: interception CA certificate") {
            break;
        }
    }
    let pem = std::fs::read(dir.path().join("certs/ca.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::from_pem_slice(&pem).unwrap();
    Gatehouse {
        child,
        proxy: proxy.expect("gateway address"),
        ca,
        _dir: dir,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn session(
    server: SocketAddr,
    proxy: Option<SocketAddr>,
    cfg: Arc<rustls::ClientConfig>,
) -> Sender {
    let tls = connect(server, proxy, cfg, "load.test").await;
    let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(c);
    s
}

/// Opens `n` intercepted connections, each making one GET, and keeps them.
async fn idle_sessions(
    n: u64,
    server: SocketAddr,
    proxy: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    h2: bool,
    body: Bytes,
) -> Vec<Box<dyn std::any::Any + Send>> {
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for _ in 0..n {
        let tls = TokioIo::new(connect(server, Some(proxy), cfg.clone(), "load.test").await);
        let req = || {
            http::Request::builder()
                .method(if body.is_empty() { "GET" } else { "POST" })
                .uri("https://load.test/r")
                .header("host", "load.test")
                .body(Full::new(body.clone()))
                .unwrap()
        };
        if h2 {
            let (mut s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), tls)
                .await
                .unwrap();
            tokio::spawn(c);
            s.ready().await.unwrap();
            let resp = s.send_request(req()).await.unwrap();
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let _ = resp.into_body().collect().await;
            held.push(Box::new(s));
        } else {
            let (mut s, c) = hyper::client::conn::http1::handshake(tls).await.unwrap();
            tokio::spawn(c);
            s.ready().await.unwrap();
            let mut get = req();
            *get.uri_mut() = http::Uri::from_static("/r");
            let _ = s
                .send_request(get)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await;
            held.push(Box::new(s));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    held
}

/// Runs `clients` keep-alive sessions for `secs`; returns (requests/s, p50, p99).
async fn run(
    server: SocketAddr,
    proxy: Option<SocketAddr>,
    cfg: Arc<rustls::ClientConfig>,
    clients: u64,
    secs: u64,
    body: Bytes,
) -> (f64, Duration, Duration) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (cfg, body) = (cfg.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = session(server, proxy, cfg).await;
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let method = if body.is_empty() { "GET" } else { "POST" };
                let req = http::Request::builder()
                    .method(method)
                    .uri("/r")
                    .header("host", "load.test")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let t = Instant::now();
                s.ready().await.unwrap();
                let resp = s.send_request(req).await.unwrap();
                let _ = resp.into_body().collect().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.5), pct(0.99))
}

/// 64 KiB POST bodies of the kinds DLP treats differently: chat text,
/// base64 of random bytes (decoded and scanned), random bytes (binary: its
/// printable runs are scanned).
struct Bodies {
    text: Bytes,
    base64: Bytes,
    random: Bytes,
}

impl Bodies {
    fn new(size: usize) -> Self {
        use base64::Engine as _;
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut random = Vec::with_capacity(size);
        while random.len() < size {
            random.extend_from_slice(&next().to_le_bytes());
        }
        random.truncate(size);
        let words = "the meeting is moved to tomorrow can you send me slides thanks sounds good lunch today who else coming please review draft before friday".split(' ').collect::<Vec<_>>();
        let mut text = String::with_capacity(size + 16);
        while text.len() < size {
            text.push_str(words[(next() >> 8) as usize % words.len()]);
            text.push(' ');
        }
        text.truncate(size);
        let mut b64 = base64::engine::general_purpose::STANDARD.encode(&random);
        b64.truncate(size);
        Bodies {
            text: Bytes::from(text),
            base64: Bytes::from(b64),
            random: Bytes::from(random),
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The load generator and upstream stay on core 1; the gateway gets core 0.
    let mut set = nix::sched::CpuSet::new();
    set.set(1).unwrap();
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let secs = env_or("LOAD_SECONDS", 5);
    let clients = env_or("LOAD_CLIENTS", 32);
    let p = pki("load.test");
    let server = rt.block_on(upstream(&p));
    let gw = gatehouse(&p);
    let via_cfg = client_cfg(&gw.ca, b"http/1.1");
    let direct_cfg = client_cfg(&p.root_der, b"http/1.1");
    let post = Bytes::from(vec![b'p'; 64 * 1024]);
    let bodies = Bodies::new(64 * 1024);
    println!("scenario                          req/s      p50        p99");
    for (name, proxy, cfg, body) in [
        (
            "direct   GET 1 KiB keep-alive",
            None,
            direct_cfg.clone(),
            Bytes::new(),
        ),
        (
            "gateway  GET 1 KiB keep-alive",
            Some(gw.proxy),
            via_cfg.clone(),
            Bytes::new(),
        ),
        (
            "direct   POST 64 KiB keep-alive",
            None,
            direct_cfg.clone(),
            post.clone(),
        ),
        (
            "gateway  POST 64 KiB keep-alive",
            Some(gw.proxy),
            via_cfg.clone(),
            post.clone(),
        ),
        (
            "gateway  POST 64 KiB chat text",
            Some(gw.proxy),
            via_cfg.clone(),
            bodies.text.clone(),
        ),
        (
            "gateway  POST 64 KiB base64",
            Some(gw.proxy),
            via_cfg.clone(),
            bodies.base64.clone(),
        ),
        (
            "gateway  POST 64 KiB random",
            Some(gw.proxy),
            via_cfg.clone(),
            bodies.random.clone(),
        ),
    ] {
        let (rps, p50, p99) = rt.block_on(run(server, proxy, cfg, clients, secs, body));
        println!("{name:32} {rps:9.0}  {p50:>9.2?}  {p99:>9.2?}");
    }
    // Memory per idle intercepted connection: HTTP/1.1, then HTTP/2 while
    // the HTTP/1.1 ones stay open (so neither reuses the other's freed memory).
    let mut held = Vec::new();
    for (proto, var, cfg, h2) in [
        ("HTTP/1.1", "LOAD_IDLE", via_cfg.clone(), false),
        ("HTTP/2", "LOAD_IDLE_H2", client_cfg(&gw.ca, b"h2"), true),
    ] {
        let idle = env_or(var, 1000);
        if idle == 0 {
            continue;
        }
        let before = rss_kib(gw.child.id());
        let body = Bytes::from(vec![b'p'; env_or("LOAD_IDLE_BODY", 0) as usize]);
        let after_post = match body.len() {
            0 => String::new(),
            n => format!(" (after a {n}-byte POST each)"),
        };
        held.extend(rt.block_on(idle_sessions(idle, server, gw.proxy, cfg, h2, body)));
        let after = rss_kib(gw.child.id());
        println!(
            "idle intercepted {proto:8} connections{after_post}: {idle}, gateway RSS {before} KiB -> {after} KiB, {:.1} KiB per connection",
            (after.saturating_sub(before)) as f64 / idle as f64
        );
    }
    drop(held);
}
