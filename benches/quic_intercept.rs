//! Load harness (not criterion): HTTP/3 intercepted vs HTTP/2 intercepted,
//! the real `gatehouse` binary pinned to one core (`taskset -c 0`) in the
//! router namespace of `tests/quic_intercept.rs` (nftables TPROXY for UDP
//! 443, the redirect for TCP 443), the shipped DLP packs loaded; clients
//! and the HTTPS upstream (HTTP/2, 1 KiB answers) run in their own
//! namespaces on the other core. The same number of keep-alive clients
//! (one request at a time each) fetch `/r` over QUIC + HTTP/3 (quinn + h3,
//! `quic = "intercept"`) and over TCP + TLS + HTTP/2 (hyper); the gateway
//! relays both to the upstream over HTTP/2. Reports requests/s, p50 and p99.
//!
//! `cargo bench --bench quic_intercept` (needs root: network namespaces).
//! Environment: `LOAD_SECONDS` (default 5), `LOAD_CLIENTS` (default 32),
//! `LOAD_BODY` (bytes of JSON chat text each request POSTs, default 0: GET).

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::CertificateDer;

#[path = "../tests/common/netns.rs"]
mod netns;
// Shared with the other benches; this one uses the PKI and client settings.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use netns::{Netns, SERVER_V4};
use support::{client_cfg, pki, Pki};

const NAME: &str = "bench.test";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a new thread inside network namespace `ns` (sockets it
/// makes stay there).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f2 = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&f2, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn pin_to(core: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(core).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

struct Gatehouse {
    child: Child,
    ca: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gatehouse(p: &Pki, net: &Netns) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), &p.root_pem).unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\ntransparent_listen = \"[::]:8443\"\nmax_connections = 100000\n\
             allowed_clients = [\"10.233.0.0/24\"]\nallowed_destinations = [\"10.233.1.0/24\"]\n\
             [upstream]\nextra_roots = [\"root.pem\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\nfilter = \"warn\"\n\
             [rules]\ndir = \"{}\"\n[quic]\nlisten = \"[::]:8443\"\nnew_flows_per_second = 1000\n\
             [[intercept.rules]]\nhosts = [\"{NAME}\"]\naction = \"intercept\"\nquic = \"intercept\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dlp-rules")
        ),
    )
    .unwrap();
    let mut child = Command::new("taskset")
        .args(["-c", "0", "ip", "netns", "exec", &net.gateway])
        .args([env!("CARGO_BIN_EXE_gatehouse"), "run"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("taskset + ip netns + gatehouse");
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.starts_with("gatehouse: interception CA certificate") {
            break;
        }
    }
    let pem = std::fs::read(dir.path().join("certs/ca.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let ca = CertificateDer::from_pem_slice(&pem).unwrap();
    Gatehouse {
        child,
        ca,
        _dir: dir,
    }
}

/// The HTTPS upstream at `SERVER_V4:443` (HTTP/2 or 1.1 by ALPN), reading
/// any body whole and answering 1 KiB; serves on its own thread.
fn upstream(p: &Pki, net: &Netns) {
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
    let listener = in_ns(&net.server, || {
        let l = std::net::TcpListener::bind(format!("{SERVER_V4}:443")).unwrap();
        l.set_nonblocking(true).unwrap();
        l
    });
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let kib = Bytes::from(vec![b'x'; 1024]);
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, kib) = (acceptor.clone(), kib.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let kib = kib.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(http::Response::new(Full::new(kib)))
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
    });
}

/// One keep-alive client's requests, sent one at a time until a
/// deadline: when each finished and how long it took.
type Latencies = Vec<(Instant, Duration)>;

async fn h3_client(
    socket: std::net::UdpSocket,
    ca: CertificateDer<'static>,
    body: Bytes,
    deadline: Instant,
) -> Latencies {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let server: SocketAddr = format!("{SERVER_V4}:443").parse().unwrap();
    let conn = endpoint.connect(server, NAME).unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut lat = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        let req = http::Request::builder()
            .method(if body.is_empty() { "GET" } else { "POST" })
            .uri(format!("https://{NAME}/r"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let mut stream = send.send_request(req).await.unwrap();
        if !body.is_empty() {
            stream.send_data(body.clone()).await.unwrap();
        }
        stream.finish().await.unwrap();
        let resp = stream.recv_response().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut n = 0;
        while let Some(mut chunk) = stream.recv_data().await.unwrap() {
            n += chunk.remaining();
            chunk.advance(chunk.remaining());
        }
        assert_eq!(n, 1024);
        lat.push((Instant::now(), t.elapsed()));
    }
    drive.abort();
    endpoint.close(0u32.into(), b"");
    lat
}

async fn h2_client(
    socket: std::net::TcpStream,
    ca: CertificateDer<'static>,
    body: Bytes,
    deadline: Instant,
) -> Latencies {
    socket.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(socket).unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_cfg(&ca, b"h2"))
        .connect(NAME.try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(c);
    let mut lat = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        let req = http::Request::builder()
            .method(if body.is_empty() { "GET" } else { "POST" })
            .uri(format!("https://{NAME}/r"))
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        s.ready().await.unwrap();
        let resp = s.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), 1024);
        lat.push((Instant::now(), t.elapsed()));
    }
    lat
}

#[derive(Clone, Copy)]
enum Proto {
    H3,
    H2,
}

/// `clients` clients of `proto` for `secs` (after 2 s of warm-up) from the
/// client namespace: (requests/s, p50, p99, requests in all).
fn run(
    net: &Netns,
    ca: &CertificateDer<'static>,
    proto: Proto,
    clients: u64,
    secs: u64,
    body: Bytes,
) -> (f64, Duration, Duration, usize) {
    let server: SocketAddr = format!("{SERVER_V4}:443").parse().unwrap();
    let ca = ca.clone();
    in_ns(&net.client, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            // Connections first (the handshakes are not what is measured).
            let deadline = Instant::now() + Duration::from_secs(secs) + Duration::from_secs(2);
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (ca, body) = (ca.clone(), body.clone());
                tasks.push(match proto {
                    Proto::H3 => {
                        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
                        tokio::spawn(h3_client(s, ca, body, deadline))
                    }
                    Proto::H2 => {
                        let s = std::net::TcpStream::connect(server).unwrap();
                        tokio::spawn(h2_client(s, ca, body, deadline))
                    }
                });
            }
            // The first 2 s are warm-up (handshakes, leaf minting).
            let measured_from = deadline - Duration::from_secs(secs);
            let mut lat = Vec::new();
            let mut all = 0;
            for t in tasks {
                let done = t.await.unwrap();
                all += done.len();
                lat.extend(
                    done.into_iter()
                        .filter(|(at, _)| *at >= measured_from)
                        .map(|(_, d)| d),
                );
            }
            lat.sort();
            let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
            (lat.len() as f64 / secs as f64, p(0.5), p(0.99), all)
        })
    })
}

/// User + system CPU time of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th, in clock ticks.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks / hz
}

/// A JSON chat message of about `n` bytes.
fn chat_body(n: usize) -> Bytes {
    if n == 0 {
        return Bytes::new();
    }
    let words = "lunch at noon then the quarterly review with the design team ";
    let text: String = words.chars().cycle().take(n.saturating_sub(40)).collect();
    Bytes::from(format!("{{\"channel\":\"C1\",\"text\":\"{text}\"}}"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    pin_to(1);
    let secs = env_or("LOAD_SECONDS", 5);
    let clients = env_or("LOAD_CLIENTS", 32);
    let body = chat_body(env_or("LOAD_BODY", 0) as usize);
    let tag = format!("b{}", std::process::id() % 100_000);
    let net = Netns::setup(&tag, 8443);
    let g = &net.gateway;
    sh(&format!(
        "ip netns exec {g} nft -f - <<'NFT'\n\
         table inet gatehouse_quic {{\n\
           chain prerouting {{\n\
             type filter hook prerouting priority mangle; policy accept;\n\
             iifname \"g0{tag}\" meta l4proto udp socket transparent 1 meta mark set 1 accept\n\
             iifname \"g0{tag}\" udp dport 443 tproxy to :8443 meta mark set 1 accept\n\
           }}\n\
         }}\n\
         NFT"
    ));
    sh(&format!(
        "ip -n {g} rule add fwmark 1 lookup 100 && ip -n {g} route add local 0.0.0.0/0 dev lo table 100"
    ));
    let p = pki(NAME);
    upstream(&p, &net);
    let gw = gatehouse(&p, &net);
    let what = if body.is_empty() {
        "GET 1 KiB".to_string()
    } else {
        format!("POST {} B chat JSON, answer 1 KiB", body.len())
    };
    for (proto, label) in [
        (Proto::H2, "HTTP/2 over TCP+TLS"),
        (Proto::H3, "HTTP/3 over QUIC"),
    ] {
        let (cpu0, t0) = (cpu_seconds(gw.child.id()), Instant::now());
        let (rps, p50, p99, all) = run(&net, &gw.ca, proto, clients, secs, body.clone());
        let cpu = cpu_seconds(gw.child.id()) - cpu0;
        let busy = 100.0 * cpu / t0.elapsed().as_secs_f64();
        let per = 1e6 * cpu / all as f64;
        println!(
            "intercepted {label}, {clients} keep-alive clients, {what}, gateway on one core: \
             {rps:.0} req/s, p50 {p50:?}, p99 {p99:?}; gateway core {busy:.0} % busy, \
             {per:.0} µs CPU per request"
        );
    }
    drop(gw);
}
