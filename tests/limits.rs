//! Limits that hold for every connection: admission counts CONNECT tunnels
//! for their whole life; IPv6 forms that embed a denied IPv4 address are
//! refused before connecting; the gateway's own listeners are never a
//! destination; the head timeout inside an intercepted tunnel; the admin
//! listener under a descriptor limit; hop-by-hop and proxy headers of an
//! absolute-form WebSocket upgrade never reach the origin.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Gatehouse;
use nix::sys::signal::Signal;

/// The real binary with `proxy` keys added to `[proxy]` and `rest` after.
fn start(proxy: &str, rest: &str) -> Gatehouse {
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n{proxy}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{rest}"
    );
    Gatehouse::start_in(tempfile::tempdir().unwrap(), &config)
}

/// Sends `head` (a whole request head) and returns the connection and the
/// status line ("" when closed without one).
fn request(proxy: SocketAddr, head: &str) -> (Option<TcpStream>, String) {
    let Ok(mut s) = TcpStream::connect(proxy) else {
        return (None, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(head.as_bytes()).is_err() {
        return (None, String::new());
    }
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(1) => line.push(b[0]),
            _ => break,
        }
    }
    // The rest of the head, so a tunnel starts clean.
    let mut rest = line.clone();
    while line.starts_with(b"HTTP/1.1 200") && !rest.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => rest.push(b[0]),
            _ => break,
        }
    }
    (Some(s), String::from_utf8_lossy(&line).trim().to_string())
}

fn connect(proxy: SocketAddr, target: &str) -> (Option<TcpStream>, String) {
    request(
        proxy,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    )
}

/// The `connection` events in the journal of a stopped gateway.
fn connection_events(gw: &Gatehouse) -> Vec<serde_json::Value> {
    let (code, out, err) = common::gatehouse(
        gw.dir.path(),
        &[
            "events",
            "search",
            "--journal",
            "--json",
            "--type",
            "connection",
        ],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn connect_tunnels_hold_their_slot_for_their_whole_life() {
    let echo = common::echo_server();
    let mut gw = start(
        "max_connections = 5\nallowed_destinations = [\"127.0.0.0/8\"]",
        "",
    );
    let mut open = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (s, status) = connect(gw.proxy, &echo.to_string());
        statuses.push(status.clone());
        if status.contains(" 200") {
            open.push(s.unwrap());
        }
    }
    assert_eq!(open.len(), 5, "{statuses:?}");
    assert!(
        statuses[5..].iter().all(|s| s.starts_with("HTTP/1.1 503")),
        "tunnels beyond proxy.max_connections are refused with 503: {statuses:?}"
    );
    // Closing a tunnel gives its slot back.
    drop(open.pop());
    let mut again = String::new();
    for _ in 0..50 {
        again = connect(gw.proxy, &echo.to_string()).1;
        if again.contains(" 200") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(again.contains(" 200"), "{again}");
    drop(open);
    assert!(gw.stop_with(Signal::SIGTERM).success());
}

#[test]
fn ipv6_forms_embedding_denied_ipv4_are_refused_before_connecting() {
    let mut gw = start("", "");
    let targets = [
        "64:ff9b::a9fe:a9fe", // NAT64 of the metadata service
        "64:ff9b:1::a9fe:a9fe",
        "::7f00:1",       // IPv4-compatible 127.0.0.1
        "2002:7f00:1::1", // 6to4 of 127.0.0.1
        "2001:0:a9fe:a9fe::1",
        "fec0::1", // site-local
    ];
    for t in targets {
        let (_, status) = connect(gw.proxy, &format!("[{t}]:80"));
        assert!(
            status.starts_with("HTTP/1.1 403"),
            "CONNECT [{t}]: {status}"
        );
        let (_, status) = request(
            gw.proxy,
            &format!("GET http://[{t}]/latest/meta-data/ HTTP/1.1\r\nHost: [{t}]\r\n\r\n"),
        );
        assert!(status.starts_with("HTTP/1.1 403"), "GET [{t}]: {status}");
    }
    assert!(gw.stop_with(Signal::SIGTERM).success());
    let log = gw.log();
    assert!(
        !log.contains("cannot connect") && !log.contains("timed out"),
        "no connection was attempted:\n{log}"
    );
    let events = connection_events(&gw);
    for t in targets {
        let ev: Vec<_> = events
            .iter()
            .filter(|e| e["destination"].as_str() == Some(&format!("[{t}]:80")))
            .collect();
        assert_eq!(ev.len(), 2, "{t}: {events:#?}");
        assert!(
            ev.iter().all(|e| e["decision"] == "block"
                && e["reason"].as_str().is_some_and(|r| r.contains("range"))),
            "{ev:#?}"
        );
    }
}

#[test]
fn the_gateways_own_listeners_are_never_a_destination() {
    let echo = common::echo_server();
    let mut gw = start("allowed_destinations = [\"127.0.0.0/8\", \"::1/128\"]", "");
    let (proxy, admin) = (gw.proxy.port(), gw.admin.port());
    for target in [
        format!("127.0.0.1:{proxy}"),
        format!("127.0.0.1:{admin}"),
        format!("localhost:{admin}"),
        format!("0.0.0.0:{proxy}"),
    ] {
        let (_, status) = connect(gw.proxy, &target);
        assert!(
            status.starts_with("HTTP/1.1 403"),
            "CONNECT {target}: {status}"
        );
    }
    let (_, status) = request(
        gw.proxy,
        &format!(
            "GET http://127.0.0.1:{admin}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\n\r\n"
        ),
    );
    assert!(status.starts_with("HTTP/1.1 403"), "GET admin: {status}");
    // Loopback itself stays allowed.
    let (_, status) = connect(gw.proxy, &echo.to_string());
    assert!(status.contains(" 200"), "{status}");
    assert!(gw.stop_with(Signal::SIGTERM).success());
    let events = connection_events(&gw);
    let own: Vec<_> = events
        .iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("gateway's own listeners"))
        })
        .collect();
    assert_eq!(own.len(), 5, "{events:#?}");
    assert!(own.iter().all(|e| e["decision"] == "block"), "{own:#?}");
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The soft limit of open files of `pid`.
fn nofile(pid: u32) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Sets the soft limit only: raising it back needs no privilege.
fn prlimit(pid: u32, n: usize) {
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={n}:")])
        .status()
        .expect("prlimit (util-linux)")
        .success();
    assert!(ok, "prlimit --nofile={n}");
}

#[test]
fn out_of_descriptors_the_accept_loops_back_off_and_the_gateway_recovers() {
    let echo = common::echo_server();
    let mut gw = start("allowed_destinations = [\"127.0.0.0/8\"]", "");
    let pid = gw.child.id();
    let before = std::fs::metadata(&gw.stderr_log).unwrap().len();
    let soft = nofile(pid);
    prlimit(pid, fds(pid) + 2);
    // Connections the gateway cannot accept wait in the backlogs.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.extend(TcpStream::connect(gw.admin).ok());
        held.extend(TcpStream::connect(gw.proxy).ok());
    }
    std::thread::sleep(Duration::from_secs(4));
    let log = gw.log();
    let grown = std::fs::metadata(&gw.stderr_log).unwrap().len() - before;
    let failures = log.matches("accept failed").count();
    assert!(
        (1..=10).contains(&failures) && grown < 64 * 1024,
        "{failures} accept-failure lines, log grew {grown} bytes"
    );
    drop(held);
    prlimit(pid, soft);
    // Both listeners serve again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let healthy = loop {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "3",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("http://{}/healthz", gw.admin))
            .output()
            .unwrap();
        if out.stdout == b"200" || Instant::now() > deadline {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(healthy, "200", "{}", gw.log());
    let (tunnel, status) = connect(gw.proxy, &echo.to_string());
    assert!(status.contains(" 200"), "{status}\n{}", gw.log());
    drop(tunnel);
    assert!(gw.stop_with(Signal::SIGTERM).success());
}

#[test]
fn the_admin_listener_times_out_slow_heads_and_caps_connections() {
    let mut gw = start("header_read_timeout = \"1s\"", "max_connections = 2");
    // A head that never ends is cut after proxy.header_read_timeout.
    let mut slow = TcpStream::connect(gw.admin).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    // Two idle connections fill the cap; a third is closed at once.
    let _a = TcpStream::connect(gw.admin).unwrap();
    let _b = TcpStream::connect(gw.admin).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(gw.admin).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    assert!(gw.stop_with(Signal::SIGTERM).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_an_intercepted_tunnel_a_slow_head_is_cut_at_header_read_timeout() {
    use common::inproc::{client_config, tls_through, TestGateway};
    use common::pki::{LeafSpec, TestCa};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = TestCa::root("Head Timeout Root");
    let server =
        common::upstream::https_server("slow.test", root.leaf(&LeafSpec::new(&["slow.test"])))
            .await;
    let gw = TestGateway::start(&[&root.pem()], |c| {
        c.proxy.header_read_timeout = Duration::from_secs(1)
    })
    .await;
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let mut tls = tls_through(gw.proxy, server, "slow.test", cfg)
        .await
        .expect("intercepted");
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: slow")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow head was not cut within 20 s");
    // hyper's own default would have been 30 s.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    gw.stop().await;
}

/// A plain-HTTP origin that answers every request head with `101` and
/// reports the heads it saw.
fn upgrade_origin() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => break,
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_websocket_upgrade_keeps_proxy_credentials_from_the_origin() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use base64::Engine;
    use common::inproc::TestGateway;
    let salt = SaltString::encode_b64(b"gatehouse-test-salt").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"hunter2", &salt)
        .unwrap()
        .to_string();
    let gw = TestGateway::start(&[], |c| {
        c.identity.require_proxy_auth = true;
        c.identity.users = vec![gatehouse::config::ProxyUser {
            name: "alice".into(),
            password_hash: hash,
            groups: vec![],
        }];
    })
    .await;
    let (origin, heads) = upgrade_origin();
    let creds = base64::engine::general_purpose::STANDARD.encode("alice:hunter2");
    let proxy = gw.proxy;
    let status = tokio::task::spawn_blocking(move || {
        request(
            proxy,
            &format!(
                "GET ws://{origin}/chat HTTP/1.1\r\nHost: {origin}\r\n\
                 Proxy-Authorization: Basic {creds}\r\nProxy-Connection: keep-alive\r\n\
                 Connection: Upgrade, X-Hop\r\nX-Hop: hop-secret\r\nKeep-Alive: timeout=5\r\n\
                 TE: trailers\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
        )
        .1
    })
    .await
    .unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    let names: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        .collect();
    for hop in [
        "proxy-authorization",
        "proxy-connection",
        "x-hop",
        "keep-alive",
        "te",
        "trailer",
    ] {
        assert!(
            names.iter().all(|(n, _)| n != hop),
            "{hop} reached the origin:\n{head}"
        );
    }
    assert!(
        names.contains(&("upgrade".into(), "websocket".into()))
            && names.contains(&("connection".into(), "upgrade".into())),
        "the upgrade itself is kept:\n{head}"
    );
    assert!(head.starts_with("GET /chat HTTP/1.1"), "{head}");
    gw.stop().await;
}
