//! What SIGTERM keeps: a WebSocket session gets the grace period like any
//! connection, and events a fail-closed journal was holding are written.
//! The real binary each time.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::TestCa;
use common::Gatehouse;
use nix::sys::signal::Signal;

fn py(script: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/py")
            .join(script),
    );
    c
}

fn events(gw: &Gatehouse, kind: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = common::gatehouse(
        gw.dir.path(),
        &["events", "search", "--journal", "--json", "--type", kind],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_websocket_session_gets_the_grace_period_at_sigterm() {
    let root = TestCa::root("WS Grace Root");
    let server = common::ws_echo_server(&root, "ws.test");
    let port = server.port;

    let gw_dir = tempfile::tempdir().unwrap();
    std::fs::write(gw_dir.path().join("root.pem"), root.pem()).unwrap();
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  shutdown_grace = \"10s\"\n[upstream]\nextra_roots = [\"root.pem\"]\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    let mut gw = Gatehouse::start_in(gw_dir, config);

    let mut client = py("ws_client_paced.py")
        .args([
            &format!("http://{}", gw.proxy),
            &format!("127.0.0.1:{port}"),
            "ws.test",
        ])
        .arg(&gw.ca_cert)
        .args(["before SIGTERM", "during the grace period"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("before SIGTERM"), "{first}\n{}", gw.log());
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.contains("ready"), "{ready}");

    let pid = nix::unistd::Pid::from_raw(gw.child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the gateway exited with a WebSocket session open:\n{}",
        gw.log()
    );
    writeln!(client.stdin.as_mut().unwrap()).unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.contains("during the grace period"),
        "{second}\n{}",
        gw.log()
    );
    drop(client.stdin.take());
    let _ = client.wait();
    assert!(gw.stop_with(Signal::SIGTERM).success());
    drop(server);
}

fn hold_tunnel(proxy: SocketAddr, target: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(proxy).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").ok()?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    head.starts_with(b"HTTP/1.1 200").then_some(s)
}

#[test]
fn events_a_full_fail_closed_journal_was_holding_are_written_at_shutdown() {
    let echo = common::echo_server();
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  shutdown_grace = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                  [events]\nfull_policy = \"fail_closed\"\nsegment_bytes = 4096\n\
                  journal_max_bytes = 8192\n";
    let mut gw = Gatehouse::start_in(tempfile::tempdir().unwrap(), config);
    // Admitted while the journal has room; recorded only when they close.
    let tunnels: Vec<TcpStream> = (0..30)
        .map(|_| hold_tunnel(gw.proxy, echo).expect("tunnel admitted"))
        .collect();
    drop(tunnels);
    // Far more than 8 KiB of connection events: the journal fills and the
    // writer holds the rest, refusing new flows.
    let mut refused = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if gw.log().contains("holding events") {
            refused = true;
            break;
        }
    }
    assert!(refused, "the journal never filled:\n{}", gw.log());
    assert!(gw.stop_with(Signal::SIGTERM).success(), "{}", gw.log());
    let log = gw.log();
    assert!(!log.contains("could not be journaled"), "{log}");
    let echoed = events(&gw, "connection")
        .into_iter()
        .filter(|e| e["destination"].as_str() == Some(&echo.to_string()))
        .count();
    assert_eq!(echoed, 30, "every flow's connection event was kept\n{log}");
}
