//! QUIC at a VPN-egress-like router: a client network namespace routed
//! through the gateway's namespace, where nftables TPROXY hands UDP 443 to
//! `[quic] listen` (and redirects TCP 443 to the transparent listener), and
//! a server namespace running an HTTP/3 server (aioquic) and a TLS server
//! over TCP (openssl s_server). Clients: aioquic, over IPv4 and IPv6.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{py, Netns, SERVER_V4, SERVER_V6};
use common::pki::{LeafSpec, TestCa};
use common::Gatehouse;
use sha2::{Digest, Sha256};

/// What the HTTP/3 test server answers a GET with.
fn expected_body() -> Vec<u8> {
    (0..50_000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

struct Servers {
    h3: Child,
    tls: Child,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in [&mut self.h3, &mut self.tls] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Egress {
    // Dropped in this order: the gateway, the servers, then the namespaces.
    gw: Gatehouse,
    _servers: Servers,
    root_pem: std::path::PathBuf,
    _dir: tempfile::TempDir,
    net: Netns,
}

fn egress(tag: &str, quic_extra: &str) -> Egress {
    let net = Netns::setup(tag, 8443);
    net.tproxy_udp(tag, 443, 8443);
    let root = TestCa::root("QUIC Egress Test Root");
    let leaf = root.leaf(&LeafSpec::new(&["h3.test", "chat.google.com"]));
    let dir = tempfile::tempdir().unwrap();
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, root.pem()).unwrap();
    leaf.write_pem(dir.path(), "svc");
    let h3 = Command::new("ip")
        .args(["netns", "exec", &net.server, "python3", &py("h3_server.py")])
        .args(["::", "443", "svc.pem", "svc.key"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tls = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.server,
            "openssl",
            "s_server",
            "-quiet",
            "-www",
        ])
        .args(["-accept", "443", "-cert", "svc.pem", "-key", "svc.key"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\ntransparent_listen = \"[::]:8443\"\n\
         allowed_clients = [\"10.233.0.0/24\", \"fd00:233::/64\"]\n\
         allowed_destinations = [\"10.233.1.0/24\", \"fd00:233:1::/64\"]\n\
         [upstream]\nextra_roots = [\"{}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [quic]\nlisten = \"[::]:8443\"\nidle_timeout = \"2s\"\n{quic_extra}\n\
         [[intercept.rules]]\nhosts = [\"chat.google.com\"]\naction = \"intercept\"\n\
         quic = \"pass\"\nreason = \"Google Chat may use QUIC\"\n",
        root_pem.display()
    );
    let gw = Gatehouse::start_wrapped(
        tempfile::tempdir().unwrap(),
        &config,
        &Netns::exec(&net.gateway),
        &[],
    );
    Egress {
        gw,
        _servers: Servers { h3, tls },
        root_pem,
        _dir: dir,
        net,
    }
}

/// One aioquic GET from the client namespace; its JSON verdict.
fn aioquic_get(
    net: &Netns,
    address: &str,
    name: &str,
    ca: &Path,
    timeout: f64,
) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.client, "python3", &py("h3_client.py")])
        .args([
            address,
            "443",
            name,
            ca.to_str().unwrap(),
            &timeout.to_string(),
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!(
            "h3_client.py said {line:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One quinn connection attempt (ALPN h3) from the client namespace: `Ok`
/// once the handshake completed (the server's certificate verified against
/// `ca`), else the error; with the time it took.
fn quinn_connect(
    net: &Netns,
    server: SocketAddr,
    name: &str,
    ca: &Path,
) -> (Result<(), String>, Duration) {
    use rustls::pki_types::pem::PemObject;
    let ns_path = format!("/var/run/netns/{}", net.client);
    let ca = std::fs::read(ca).unwrap();
    let name = name.to_string();
    std::thread::spawn(move || {
        // Sockets made on this thread from now on live in the client's namespace.
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
                roots.add(c.unwrap()).unwrap();
            }
            let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            tls.alpn_protocols = vec![b"h3".to_vec()];
            let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let bind: SocketAddr = if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .unwrap();
            let mut endpoint = quinn::Endpoint::client(bind).unwrap();
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
            let start = Instant::now();
            let connecting = endpoint.connect(server, &name).unwrap();
            let r = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
                Ok(Ok(conn)) => {
                    conn.close(0u32.into(), b"done");
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in 10 s".into()),
            };
            let took = start.elapsed();
            endpoint.close(0u32.into(), b"");
            (r, took)
        })
    })
    .join()
    .unwrap()
}

/// A pass flow, retried while the server binds in its namespace.
fn pass_get(e: &Egress, address: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..30 {
        last = aioquic_get(&e.net, address, "chat.google.com", &e.root_pem, 3.0);
        if last["ok"] == true {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("QUIC pass to {address} failed: {last}\n{}", e.gw.log());
}

/// Connection events found by the investigation CLI for `term`.
fn connections(gw: &Gatehouse, term: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = common::gatehouse(
        gw.dir.path(),
        &[
            "events",
            "search",
            "--json",
            "--limit",
            "0",
            "--type",
            "connection",
            term,
        ],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| e.get("connection").cloned().unwrap_or(e))
        .filter(|c| c.get("transport").is_some())
        .collect()
}

/// Waits until `pred` holds for some connection event of `term`.
fn wait_connection(
    gw: &Gatehouse,
    term: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all = connections(gw, term);
        if let Some(c) = all.iter().find(|c| pred(c)) {
            return c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no matching connection event for {term}: {all:#?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn quic_is_blocked_fast_or_passed_unchanged_over_ipv4_and_ipv6() {
    let tag = format!("q{}", std::process::id() % 100_000);
    let e = egress(&tag, "");
    let expected = hex(&Sha256::digest(expected_body()));

    for (address, destination) in [
        (SERVER_V4.to_string(), format!("{SERVER_V4}:443")),
        (SERVER_V6.to_string(), format!("[{SERVER_V6}]:443")),
    ] {
        // pass: the datagrams are relayed unchanged, the response arrives
        // byte-identical, verified against the real server's root.
        let r = pass_get(&e, &address);
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["sha256"], expected.as_str(), "{r}");
        let c = wait_connection(&e.gw, "chat.google.com", |c| {
            c["destination"] == destination.as_str() && c["transport"] == "udp"
        });
        assert_eq!(c["protocol"], "quic", "{c}");
        assert_eq!(c["decision"], "passthrough", "{c}");
        assert_eq!(c["sni"], "chat.google.com", "{c}");
        assert_eq!(c["app"], "google-chat", "{c}");
        assert_eq!(c["mode"], "transparent", "{c}");
        assert_eq!(c["reason"], "Google Chat may use QUIC", "{c}");
        assert!(c["ja4"].as_str().unwrap_or("").starts_with('q'), "{c}");
        assert!(c["bytes_down"].as_u64().unwrap() > 50_000, "{c}");
        assert!(c["bytes_up"].as_u64().unwrap() > 1_200, "{c}");

        // A second, independent client: quinn completes its handshake with
        // the real server through the pass relay.
        let server: SocketAddr = SocketAddr::new(address.parse().unwrap(), 443);
        let (r, took) = quinn_connect(&e.net, server, "chat.google.com", &e.root_pem);
        assert!(r.is_ok(), "quinn through pass: {r:?}\n{}", e.gw.log());
        eprintln!("quinn pass handshake to {address}: {took:?}");

        // block (no rule lets h3.test use QUIC): the client is refused at
        // once, well within a second.
        let r = aioquic_get(&e.net, &address, "h3.test", &e.root_pem, 10.0);
        assert_eq!(r["ok"], false, "{r}");
        let elapsed = r["elapsed"].as_f64().unwrap();
        assert!(
            elapsed < 1.0,
            "refusal took {elapsed}s: {r}\n{}",
            e.gw.log()
        );
        eprintln!("aioquic refused ({address}): {r}");
        let (r, took) = quinn_connect(&e.net, server, "h3.test", &e.root_pem);
        let err = r.expect_err("quinn must be refused");
        assert!(
            took < Duration::from_secs(1),
            "quinn refusal took {took:?}: {err}"
        );
        assert!(err.contains("refused") || err.contains("REFUSED"), "{err}");
        eprintln!("quinn refused ({address}) in {took:?}: {err}");
        let c = wait_connection(&e.gw, "h3.test", |c| {
            c["destination"] == destination.as_str() && c["transport"] == "udp"
        });
        assert_eq!(c["decision"], "block", "{c}");
        assert_eq!(c["sni"], "h3.test", "{c}");
        assert_eq!(c["close_reason"], "blocked", "{c}");

        // ... and its retry over TCP goes through the interception path.
        let target = if address.contains(':') {
            format!("[{address}]")
        } else {
            address.clone()
        };
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &e.net.client,
                "curl",
                "-sS",
                "--max-time",
                "10",
            ])
            .args(["--cacert", e.gw.ca_cert.to_str().unwrap()])
            .args(["--resolve", &format!("h3.test:443:{target}")])
            .arg("https://h3.test/")
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && body.contains("s_server"),
            "TCP retry through the gateway failed: {body}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            e.gw.log()
        );
        let c = wait_connection(&e.gw, "h3.test", |c| {
            c["destination"] == destination.as_str() && c["transport"] == "tcp"
        });
        assert_eq!(c["decision"], "intercept", "{c}");
    }
}

/// Sends one datagram from the client namespace.
fn send_from_client(net: &Netns, to: SocketAddr, datagram: Vec<u8>) {
    let ns_path = format!("/var/run/netns/{}", net.client);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(&datagram, to).unwrap();
    })
    .join()
    .unwrap();
}

/// Sends datagrams from one fresh socket in the client namespace.
fn send_all_from_client(net: &Netns, to: SocketAddr, datagrams: Vec<Vec<u8>>) {
    let ns_path = format!("/var/run/netns/{}", net.client);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s =
            std::net::UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
        for d in datagrams {
            s.send_to(&d, to).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_gquic_hello_is_identified_and_blocked() {
    use gatehouse_inspectors::identify::gquic::{
        build_chlo, build_client_packet, build_client_packets, GquicVersion,
    };
    let tag = format!("g{}", std::process::id() % 100_000);
    let e = egress(&tag, "");
    let q046 = GquicVersion::from_wire(u32::from_be_bytes(*b"Q046")).unwrap();
    let chlo = build_chlo(&[(b"SNI\0", b"gquic.test"), (b"VER\0", b"Q046")]);
    let packet = build_client_packet(q046, b"\x11\x22\x33\x44\x55\x66\x77\x88", &chlo, 1350);
    send_from_client(&e.net, format!("{SERVER_V4}:443").parse().unwrap(), packet);
    let c = wait_connection(&e.gw, "gquic.test", |c| c["transport"] == "udp");
    assert_eq!(c["protocol"], "quic", "{c}");
    assert_eq!(c["sni"], "gquic.test", "{c}");
    assert_eq!(c["decision"], "block", "{c}");
    assert_eq!(c["destination"], format!("{SERVER_V4}:443"), "{c}");

    // A CHLO too large for one packet (a full hello with a cached server
    // config and padding), over IPv6 and two gQUIC versions: the gateway
    // puts it back together and decides on its SNI.
    let pad = vec![b'p'; 2500];
    for (wire, sni) in [
        (*b"Q046", "multi46.gquic.test"),
        (*b"Q050", "multi50.gquic.test"),
    ] {
        let v = GquicVersion::from_wire(u32::from_be_bytes(wire)).unwrap();
        let chlo = build_chlo(&[
            (b"SNI\0", sni.as_bytes()),
            (b"PAD\0", &pad),
            (b"VER\0", &wire),
        ]);
        let packets = build_client_packets(v, b"\x21\x22\x23\x24\x25\x26\x27\x28", &chlo, 1350);
        assert!(packets.len() >= 2, "the CHLO spans packets");
        send_all_from_client(
            &e.net,
            format!("[{SERVER_V6}]:443").parse().unwrap(),
            packets,
        );
        let c = wait_connection(&e.gw, sni, |c| c["transport"] == "udp");
        assert_eq!(c["protocol"], "quic", "{c}");
        assert_eq!(c["sni"], sni, "{c}");
        assert_eq!(c["decision"], "block", "{c}");
        assert_eq!(c["destination"], format!("[{SERVER_V6}]:443"), "{c}");
    }
}

#[test]
fn a_flood_of_junk_and_random_initials_leaves_the_gateway_up_and_bounded() {
    let tag = format!("f{}", std::process::id() % 100_000);
    let mut e = egress(&tag, "max_flows = 300\nnew_flows_per_second = 50\n");
    // Warm up (and wait for the server) before measuring.
    pass_get(&e, SERVER_V4);
    let pid = e.gw.child.id();
    let rss_before = rss_kib(pid);

    let started = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &e.net.client,
            "python3",
            &py("quic_flood.py"),
        ])
        .args([SERVER_V4, "443", "20000", "5000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flood_secs = started.elapsed().as_secs_f64();
    let sent: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(sent >= 20_000, "flood sent {sent}");

    assert!(
        e.gw.child.try_wait().unwrap().is_none(),
        "the gateway died under the flood:\n{}",
        e.gw.log()
    );
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB under the flood"
    );

    // The flood's flows were rate-limited: at most a burst plus the rate
    // for its duration became flows (each one event), not 25,000.
    std::thread::sleep(Duration::from_secs(3));
    let udp = connections(&e.gw, SERVER_V4)
        .into_iter()
        .filter(|c| c["transport"] == "udp" && c["decision"] == "block")
        .count() as f64;
    let bound = 100.0 + 50.0 * (flood_secs + 4.0);
    assert!(
        udp <= bound,
        "{udp} flows recorded for the flood (bound {bound})"
    );
    assert!(
        udp >= 1.0,
        "the flood's first flows are recorded as blocked"
    );

    // Still serving: after the client's rate recovers, QUIC passes again.
    let r = pass_get(&e, SERVER_V4);
    assert_eq!(r["status"], 200, "{r}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
