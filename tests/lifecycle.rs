//! The gateway process: starts on defaults, creates its CA, refuses what it
//! must, relays CONNECT, and drains on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::Gatehouse;
use nix::sys::signal::Signal;

fn connect(proxy: std::net::SocketAddr, target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn first_run_creates_a_protected_ca_and_answers_health() {
    let gw = Gatehouse::start("");
    assert!(gw.ca_cert.exists(), "{}", gw.ca_cert.display());
    let key = gw.ca_cert.with_file_name("ca.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&gw.ca_cert).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && !pem.contains("PRIVATE KEY"));
    assert!(!gw.log().contains("PRIVATE KEY"));

    let mut s = TcpStream::connect(gw.admin).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn connect_to_loopback_is_refused_unless_allowed() {
    let echo = common::echo_server();
    let gw = Gatehouse::start("");
    let (_s, head) = connect(gw.proxy, &echo.to_string());
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    let gw = Gatehouse::start_in(
        tempfile::tempdir().unwrap(),
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (mut s, head) = connect(gw.proxy, &echo.to_string());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"ping through the tunnel").unwrap();
    let mut buf = [0u8; 23];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
}

#[test]
fn clients_outside_allowed_clients_are_refused() {
    let gw = Gatehouse::start_in(
        tempfile::tempdir().unwrap(),
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_clients = [\"10.0.0.0/8\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut s = TcpStream::connect(gw.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let n = s.read_to_end(&mut buf).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "refused client got a response: {}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        gw.log().contains("client not in proxy.allowed_clients"),
        "{}",
        gw.log()
    );
}

#[test]
fn sigterm_drains_in_flight_tunnels_then_exits_zero() {
    let echo = common::echo_server();
    let mut gw = Gatehouse::start_in(
        tempfile::tempdir().unwrap(),
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\nshutdown_grace = \"10s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (mut s, head) = connect(gw.proxy, &echo.to_string());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let pid = nix::unistd::Pid::from_raw(gw.child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // New connections are no longer accepted...
    assert!(
        TcpStream::connect(gw.proxy).is_err(),
        "listener still open after SIGTERM"
    );
    // ...but the tunnel in flight still works.
    s.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here");
    drop(s);
    let status = gw.stop_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    assert!(gw.log().contains("stopped"), "{}", gw.log());
}

#[test]
fn grace_period_cuts_remaining_connections_and_still_exits_zero() {
    let echo = common::echo_server();
    let mut gw = Gatehouse::start_in(
        tempfile::tempdir().unwrap(),
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\nshutdown_grace = \"500ms\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let (_s, head) = connect(gw.proxy, &echo.to_string());
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let status = gw.stop_with(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "{}", gw.log());
    assert!(gw.log().contains("grace period over"), "{}", gw.log());
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let mut gw = Gatehouse::start_with_args(
        tempfile::tempdir().unwrap(),
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        &["--log-format", "json"],
    );
    assert_eq!(gw.stop_with(Signal::SIGTERM).code(), Some(0));
    let log = gw.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
}

fn admin_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn admin_operations_need_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cr3t-admin-token-0123456789";
    std::fs::write(dir.path().join("admin.token"), token).unwrap();
    std::fs::set_permissions(
        dir.path().join("admin.token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let gw = Gatehouse::start_in(
        dir,
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n",
    );
    assert!(admin_get(gw.admin, "/healthz", None).starts_with("HTTP/1.1 200"));
    assert!(admin_get(gw.admin, "/metrics", None).starts_with("HTTP/1.1 401"));
    assert!(
        admin_get(gw.admin, "/metrics", Some("wrong-token-wrong-token"))
            .starts_with("HTTP/1.1 401")
    );
    assert!(admin_get(gw.admin, "/metrics.json", None).starts_with("HTTP/1.1 401"));
    assert!(admin_get(gw.admin, "/readyz", None).starts_with("HTTP/1.1 200"));
    let ok = admin_get(gw.admin, "/metrics", Some(token));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("gatehouse_connections_in_flight"), "{ok}");
    // The JSON form of the counters moved to /metrics.json.
    let ok = admin_get(gw.admin, "/metrics.json", Some(token));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let body = ok.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert!(
        v["events"]["emitted"].is_u64() || v["events"].is_object(),
        "{v}"
    );
    assert!(v["connections_in_flight"].is_u64(), "{v}");
}

#[test]
fn a_world_readable_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "0123456789abcdef0123").unwrap();
    std::fs::set_permissions(
        dir.path().join("admin.token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[admin]\ntoken_file = \"admin.token\"\n",
    )
    .unwrap();
    let (code, out, _) = common::gatehouse(dir.path(), &["check"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("admin.token_file") && out.contains("chmod 600"),
        "{out}"
    );
}
