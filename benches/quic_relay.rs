//! Pass-through QUIC relay harness (not criterion): what `quic = "pass"`
//! costs, datagram by datagram. Three network namespaces as at a VPN
//! egress (`tests/common/netns.rs`): a client, the gateway's router with
//! the README's nftables TPROXY rules for UDP 443 (the release-profile
//! `gatehouse` binary pinned to core 0 with `taskset -c 0`, `[quic] listen`
//! and a rule passing `relay.bench`) and a server. The client and server
//! run in this process, pinned to core 1. "Direct" is the same path on UDP
//! 4433, which the router forwards without TPROXY.
//!
//! - **quinn transfer**: one quinn connection downloads, then uploads,
//!   `QUIC_RELAY_MB` MiB (default 32) on one stream: MiB/s, datagrams/s
//!   (both directions, from quinn's connection stats), the gateway's and
//!   this process's CPU % over the transfer (from `/proc`).
//! - **UDP blast**: `QUIC_RELAY_FLOWS` client sockets (default 16) each
//!   send a real quinn Initial naming `relay.bench` (so each flow is passed),
//!   then `QUIC_RELAY_DATAGRAMS` datagrams (default 100,000) of
//!   `QUIC_RELAY_SIZE` bytes (default 1,200) round-robin, as fast as one
//!   sender thread goes: datagrams/s offered and delivered, loss %, the
//!   relay's ceiling.
//!
//! `cargo bench --bench quic_relay` as root (network namespaces, TPROXY);
//! `QUIC_RELAY_GATEHOUSE=path` runs another build of the binary instead.
//! Every phase is bounded (a transfer gives up after 60 s; a blast sends
//! for at most 20 s).

#[path = "../tests/common/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netns::{Netns, SERVER_V4};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where the gateway's `[quic] listen` is inside its namespace.
const QUIC_PORT: u16 = 8443;
/// The server port that is not redirected (the direct path).
const DIRECT_PORT: u16 = 4433;
const NAME: &str = "relay.bench";
const ALPN: &[u8] = b"relay-bench";
/// Marks blast datagrams, so the sink counts only them.
const MAGIC: &[u8] = b"\x40GHBLAST";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Gateway {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(net: &Netns) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_clients = [\"10.233.0.0/24\"]\n\
             allowed_destinations = [\"10.233.1.0/24\"]\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[log]\nfilter = \"warn\"\n\
             [rules]\ndir = \"{}\"\n\
             [quic]\nlisten = \"0.0.0.0:{QUIC_PORT}\"\nidle_timeout = \"10s\"\nnew_flows_per_second = 10000\n\
             [[intercept.rules]]\nhosts = [\"{NAME}\"]\naction = \"intercept\"\nquic = \"pass\"\n\
             reason = \"relay benchmark\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/dlp-rules")
        ),
    )
    .unwrap();
    // `QUIC_RELAY_GATEHOUSE`: another build of the binary (a before/after
    // comparison on the same harness).
    let bin = std::env::var("QUIC_RELAY_GATEHOUSE")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gatehouse").to_string());
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.gateway, "taskset", "-c", "0"])
        .args([bin.as_str(), "run"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip netns exec + taskset + gatehouse");
    let mut quic = false;
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        quic |= line.starts_with("gatehouse: transparent QUIC (UDP) listener");
        if line.starts_with("gatehouse: interception CA certificate") {
            break;
        }
    }
    assert!(quic, "the gateway did not start its QUIC listener");
    Gateway { child, _dir: dir }
}

/// User + system CPU time of a process (or `self`), from `/proc`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name's closing parenthesis; utime and
    // stime are the 12th and 13th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    Duration::from_millis((f[0] + f[1]) * 1000 / tck)
}

/// UDP datagrams dropped for a full receive buffer in the network
/// namespace of process `pid` (`RcvbufErrors` of `/proc/PID/net/snmp`).
fn rcvbuf_errors(pid: u32) -> u64 {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).unwrap();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// CPU % of `pid` and of this process between two calls.
struct Cpu {
    gateway: String,
    start: (Duration, Duration, Instant),
}

impl Cpu {
    fn start(gateway: u32) -> Self {
        let gateway = gateway.to_string();
        let start = (cpu_time(&gateway), cpu_time("self"), Instant::now());
        Self { gateway, start }
    }

    fn percent(&self) -> (f64, f64) {
        let wall = self.start.2.elapsed().as_secs_f64();
        let g = (cpu_time(&self.gateway) - self.start.0).as_secs_f64();
        let s = (cpu_time("self") - self.start.1).as_secs_f64();
        (100.0 * g / wall, 100.0 * s / wall)
    }
}

/// Runs `f` on a new thread inside namespace `ns`, pinned to core 1.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_ns(ns, f).join().unwrap()
}

fn spawn_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut core = nix::sched::CpuSet::new();
        core.set(1).unwrap();
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &core);
        f()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The quinn server: on each bidirectional stream, `D` + u64 sends that
/// many bytes back; `U` reads the rest and answers the count (u64).
async fn serve(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let mut head = [0u8; 9];
                    if recv.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let n = u64::from_be_bytes(head[1..].try_into().unwrap());
                    if head[0] == b'D' {
                        let block = bytes::Bytes::from(vec![0x5a; 64 * 1024]);
                        let mut left = n;
                        while left > 0 {
                            let take = left.min(block.len() as u64) as usize;
                            if send.write_chunk(block.slice(..take)).await.is_err() {
                                return;
                            }
                            left -= take as u64;
                        }
                    } else {
                        let mut got = 0u64;
                        while let Ok(Some(c)) = recv.read_chunk(usize::MAX, true).await {
                            got += c.bytes.len() as u64;
                        }
                        let _ = send.write_all(&got.to_be_bytes()).await;
                    }
                    let _ = send.finish();
                    let _ = send.stopped().await;
                });
            }
        });
    }
}

struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// quinn servers on UDP 443 and 4433 in the server namespace.
fn quinn_server(ns: &str, cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Server {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let thread = spawn_in_ns(ns, move || {
        runtime().block_on(async move {
            let mut tls = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
            tls.alpn_protocols = vec![ALPN.to_vec()];
            let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
            let cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
            let mut endpoints = Vec::new();
            for port in [443, DIRECT_PORT] {
                let addr: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, port).into();
                let e = quinn::Endpoint::server(cfg.clone(), addr).unwrap();
                tokio::spawn(serve(e.clone()));
                endpoints.push(e);
            }
            ready_tx.send(()).unwrap();
            let _ = stopped.await;
            for e in endpoints {
                e.close(0u32.into(), b"");
            }
        })
    });
    ready.recv().unwrap();
    Server { stop, thread }
}

fn client_config(cert: &CertificateDer<'static>) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(quic))
}

/// One transfer's figures.
struct Transfer {
    mib_s: f64,
    datagrams_s: f64,
    gateway_cpu: f64,
    self_cpu: f64,
}

/// One quinn connection to `server` from the client namespace: a download
/// then an upload of `bytes` each.
fn quinn_transfers(
    net: &Netns,
    server: SocketAddr,
    cert: &CertificateDer<'static>,
    bytes: u64,
    gateway_pid: u32,
) -> [Transfer; 2] {
    let cfg = client_config(cert);
    in_ns(&net.client, move || {
        runtime().block_on(async move {
            let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(cfg);
            // The first attempts may meet a server still binding.
            let mut conn = None;
            for _ in 0..20 {
                let c = endpoint.connect(server, NAME).unwrap();
                match tokio::time::timeout(Duration::from_secs(2), c).await {
                    Ok(Ok(c)) => {
                        conn = Some(c);
                        break;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            let conn = conn.unwrap_or_else(|| panic!("no QUIC connection to {server}"));
            let mut out = Vec::new();
            for op in [b'D', b'U'] {
                let before = conn.stats();
                let cpu = Cpu::start(gateway_pid);
                let t = Instant::now();
                let run = async {
                    let (mut send, mut recv) = conn.open_bi().await.unwrap();
                    let mut head = vec![op];
                    head.extend_from_slice(&bytes.to_be_bytes());
                    send.write_all(&head).await.unwrap();
                    if op == b'D' {
                        send.finish().unwrap();
                        let mut got = 0u64;
                        while let Some(c) = recv.read_chunk(usize::MAX, true).await.unwrap() {
                            got += c.bytes.len() as u64;
                        }
                        assert_eq!(got, bytes, "download short");
                    } else {
                        let block = bytes::Bytes::from(vec![0xa5; 64 * 1024]);
                        let mut left = bytes;
                        while left > 0 {
                            let take = left.min(block.len() as u64) as usize;
                            send.write_chunk(block.slice(..take)).await.unwrap();
                            left -= take as u64;
                        }
                        send.finish().unwrap();
                        let mut n = [0u8; 8];
                        recv.read_exact(&mut n).await.unwrap();
                        assert_eq!(u64::from_be_bytes(n), bytes, "upload short");
                    }
                };
                tokio::time::timeout(Duration::from_secs(60), run)
                    .await
                    .expect("transfer took over 60 s");
                let secs = t.elapsed().as_secs_f64();
                let (gateway_cpu, self_cpu) = cpu.percent();
                let after = conn.stats();
                let datagrams = (after.udp_tx.datagrams - before.udp_tx.datagrams)
                    + (after.udp_rx.datagrams - before.udp_rx.datagrams);
                out.push(Transfer {
                    mib_s: bytes as f64 / secs / (1024.0 * 1024.0),
                    datagrams_s: datagrams as f64 / secs,
                    gateway_cpu,
                    self_cpu,
                });
            }
            conn.close(0u32.into(), b"done");
            endpoint.wait_idle().await;
            let u = out.pop().unwrap();
            let d = out.pop().unwrap();
            [d, u]
        })
    })
}

/// A real quinn client Initial for `relay.bench` (its first datagram,
/// caught by a plain socket on the client's loopback).
fn quinn_initial(net: &Netns, cert: &CertificateDer<'static>) -> Vec<u8> {
    let cfg = client_config(cert);
    in_ns(&net.client, move || {
        let catcher = UdpSocket::bind("127.0.0.1:0").unwrap();
        catcher
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to = catcher.local_addr().unwrap();
        runtime().block_on(async move {
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(cfg);
            let _connecting = endpoint.connect(to, NAME).unwrap();
            let mut buf = vec![0u8; 65_535];
            let n = tokio::task::spawn_blocking(move || {
                let n = catcher.recv(&mut buf).unwrap();
                buf.truncate(n);
                buf
            })
            .await
            .unwrap();
            endpoint.close(0u32.into(), b"");
            n
        })
    })
}

/// One blast's figures.
struct Blast {
    offered: f64,
    delivered: f64,
    loss: f64,
    gateway_cpu: f64,
    /// Datagrams the gateway's namespace dropped for full socket buffers.
    gateway_drops: u64,
}

/// Counts blast datagrams arriving at UDP `port` in the server namespace
/// until `stop`.
fn sink(ns: &str, port: u16, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    spawn_in_ns(ns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let _ = s.set_recv_buffer_size(8 << 20);
        s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())
            .unwrap();
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = vec![0u8; 65_535];
        while !stop.load(Relaxed) {
            if let Ok(n) = s.recv(&mut buf) {
                if buf[..n].starts_with(MAGIC) {
                    count.fetch_add(1, Relaxed);
                }
            }
        }
    });
    ready.recv().unwrap();
}

fn blast(
    net: &Netns,
    port: u16,
    initial: &[u8],
    flows: u64,
    datagrams: u64,
    size: usize,
    gateway_pid: u32,
) -> Blast {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    sink(&net.server, port, stop.clone(), count.clone());
    let initial = initial.to_vec();
    let to: SocketAddr = format!("{SERVER_V4}:{port}").parse().unwrap();
    let drops = rcvbuf_errors(gateway_pid);
    let (sent, secs, cpu) = in_ns(&net.client, move || {
        let sockets: Vec<UdpSocket> = (0..flows)
            .map(|_| {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.connect(to).unwrap();
                s.send(&initial).unwrap();
                s
            })
            .collect();
        // Every flow decided (pass) and its sockets open before the blast.
        std::thread::sleep(Duration::from_millis(500));
        let mut payload = vec![0u8; size];
        payload[..MAGIC.len()].copy_from_slice(MAGIC);
        let cpu = Cpu::start(gateway_pid);
        let t = Instant::now();
        let limit = Duration::from_secs(20);
        let mut sent = 0u64;
        'blast: while sent < datagrams {
            for s in &sockets {
                // A full socket buffer is the sender's limit, not loss.
                if s.send(&payload).is_ok() {
                    sent += 1;
                }
            }
            if sent % 4096 < flows && t.elapsed() > limit {
                break 'blast;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        (sent, secs, cpu)
    });
    // Stragglers still in queues.
    std::thread::sleep(Duration::from_millis(500));
    let (gateway_cpu, _) = cpu.percent();
    stop.store(true, Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    let got = count.load(Relaxed);
    Blast {
        offered: sent as f64 / secs,
        delivered: got as f64 / secs,
        loss: 100.0 * (1.0 - got as f64 / sent as f64),
        gateway_cpu,
        gateway_drops: rcvbuf_errors(gateway_pid) - drops,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used here.
    let mib = env_or("QUIC_RELAY_MB", 32);
    let flows = env_or("QUIC_RELAY_FLOWS", 16);
    let datagrams = env_or("QUIC_RELAY_DATAGRAMS", 100_000);
    let size = env_or("QUIC_RELAY_SIZE", 1_200) as usize;
    assert!(size >= MAGIC.len());

    let tag = format!("bench{}", std::process::id() % 10_000);
    let net = Netns::setup(&tag, 8080);
    net.tproxy_udp(&tag, 443, QUIC_PORT);
    let gw = gateway(&net);
    let gw_pid = gw.child.id();

    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert = cert.der().clone().into_owned();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = quinn_server(&net.server, cert.clone(), key);

    let bytes = mib * 1024 * 1024;
    // Other work on the machine skews every figure: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "quic_relay: load average at start {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("quic_relay: quinn, one connection, {mib} MiB each way; gateway on core 0, client+server on core 1");
    println!("| path | transfer | MiB/s | datagrams/s | gateway CPU % | client+server CPU % |");
    println!("|---|---|---|---|---|---|");
    for (path, port) in [("direct", DIRECT_PORT), ("gateway (pass)", 443)] {
        let server_addr: SocketAddr = format!("{SERVER_V4}:{port}").parse().unwrap();
        let [down, up] = quinn_transfers(&net, server_addr, &cert, bytes, gw_pid);
        for (what, t) in [("download", down), ("upload", up)] {
            println!(
                "| {path} | {what} | {:.0} | {:.0} | {:.0} | {:.0} |",
                t.mib_s, t.datagrams_s, t.gateway_cpu, t.self_cpu
            );
        }
    }
    let _ = server.stop.send(());
    server.thread.join().unwrap();

    let initial = quinn_initial(&net, &cert);
    println!(
        "\nquic_relay: UDP blast, {flows} flows (each opened by a {}-byte quinn Initial), {datagrams} datagrams of {size} bytes",
        initial.len()
    );
    println!("| path | offered datagrams/s | delivered datagrams/s | delivered MiB/s | loss % | gateway CPU % | dropped at the gateway's sockets |");
    println!("|---|---|---|---|---|---|---|");
    for (path, port) in [("direct", DIRECT_PORT), ("gateway (pass)", 443)] {
        let b = blast(&net, port, &initial, flows, datagrams, size, gw_pid);
        println!(
            "| {path} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {} |",
            b.offered,
            b.delivered,
            b.delivered * size as f64 / (1024.0 * 1024.0),
            b.loss,
            b.gateway_cpu,
            b.gateway_drops
        );
    }
    assert!(
        gw.child.id() == gw_pid && std::path::Path::new(&format!("/proc/{gw_pid}")).exists(),
        "the gateway is gone"
    );
    drop(gw);
    drop(net);
}
