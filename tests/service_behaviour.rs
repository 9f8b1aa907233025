//! How the gateway behaves as a service: one process per journal
//! directory, a second stop signal ends it at once (events kept), logs
//! without colour codes when not at a terminal, each error said once.
//! The real binary each time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Gatehouse;
use nix::sys::signal::Signal;

const BASE: &str = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                    [admin]\nlisten = \"127.0.0.1:0\"\n";

fn events(dir: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = common::gatehouse(
        dir,
        &["events", "search", "--journal", "--json", "--type", kind],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn tunnel(proxy: SocketAddr, target: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1);
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    s
}

#[test]
fn a_second_gateway_on_the_same_journal_is_refused_naming_the_first() {
    let first = Gatehouse::start_in(tempfile::tempdir().unwrap(), BASE);
    let journal = first.dir.path().join("var/journal");
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("gatehouse.toml"),
        format!("{BASE}[events]\njournal_dir = \"{}\"\n", journal.display()),
    )
    .unwrap();
    let (code, _, err) = common::gatehouse(other.path(), &["run"]);
    assert_eq!(code, 1, "{err}");
    let pid = first.child.id();
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("in use"),
        "{err}"
    );
    // The first keeps running and recording.
    assert!(TcpStream::connect(first.proxy).is_ok());
}

#[test]
fn a_second_stop_signal_cuts_connections_at_once_and_keeps_their_events() {
    let echo = common::echo_server();
    let config = BASE.replace("[admin]", "shutdown_grace = \"60s\"\n[admin]");
    let mut gw = Gatehouse::start_in(tempfile::tempdir().unwrap(), &config);
    let mut held = tunnel(gw.proxy, echo);
    held.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    held.read_exact(&mut back).unwrap();

    let pid = nix::unistd::Pid::from_raw(gw.child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        gw.child.try_wait().unwrap().is_none(),
        "the first signal waits for the open tunnel (60 s grace)"
    );
    let second = Instant::now();
    let status = gw.stop_with(Signal::SIGINT);
    assert!(status.success(), "{}", gw.log());
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "took {:?} after the second signal",
        second.elapsed()
    );
    let conns = events(gw.dir.path(), "connection");
    assert!(
        conns
            .iter()
            .any(|c| c["destination"].as_str() == Some(&echo.to_string())),
        "the cut tunnel is on record: {conns:?}\n{}",
        gw.log()
    );
}

#[test]
fn logs_to_a_file_carry_no_colour_codes() {
    let gw = Gatehouse::start_in(tempfile::tempdir().unwrap(), BASE);
    let log = gw.log();
    assert!(log.contains("gatehouse running"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a log file:\n{log:?}"
    );
}

/// The log lines on stderr, each parsed as JSON (panics on one that is not).
fn json_log_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

#[test]
fn log_format_and_log_section_apply_to_every_command_not_only_run() {
    // The flag, on a command other than `run`.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = common::gatehouse(dir.path(), &["--log-format", "json", "ca", "init"]);
    assert_eq!(code, 0, "{err}");
    let lines = json_log_lines(&err);
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "created interception CA"),
        "{err}"
    );

    // `log.format` from the file, with no flag.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let (code, _, err) = common::gatehouse(dir.path(), &["ca", "init"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        json_log_lines(&err)
            .iter()
            .any(|l| l["message"] == "created interception CA"),
        "{err}"
    );

    // `log.filter` from the file silences the same line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        "[log]\nfilter = \"error\"\n",
    )
    .unwrap();
    let (code, _, err) = common::gatehouse(dir.path(), &["ca", "init"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("created interception CA"), "{err}");

    // Human by default: the same line, not JSON.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = common::gatehouse(dir.path(), &["ca", "init"]);
    assert_eq!(code, 0, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("created interception CA"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(!line.trim_start().starts_with('{'), "{line}");
}

#[test]
fn an_address_in_use_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        BASE.replace(
            "listen = \"127.0.0.1:0\"\nallowed",
            &format!("listen = \"{addr}\"\nallowed"),
        ),
    )
    .unwrap();
    let (code, _, err) = common::gatehouse(dir.path(), &["run"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert!(err.contains(&addr.to_string()), "names the address: {err}");
}

#[test]
fn tail_without_a_journal_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = common::gatehouse(dir.path(), &["events", "tail"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("no journal here") && err.contains("var/journal"),
        "{err}"
    );
}

#[test]
fn an_unreachable_or_unresolvable_upstream_is_an_error_not_a_block() {
    let gw = Gatehouse::start_in(tempfile::tempdir().unwrap(), BASE);
    // A port nobody listens on (allowed destination), a name that cannot
    // resolve (RFC 6761 .invalid), and a denied destination.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let status = |target: &str| {
        let mut s = TcpStream::connect(gw.proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        String::from_utf8_lossy(&head).into_owned()
    };
    assert!(status(&closed.to_string()).contains("502"));
    let unresolved = status("no-such-host.invalid:443");
    assert!(
        unresolved.contains("502") || unresolved.contains("504"),
        "{unresolved}"
    );
    assert!(status("10.255.255.1:443").contains("403"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let decision_of = |dest: &str| loop {
        let found = events(gw.dir.path(), "connection")
            .into_iter()
            .find(|e| e["destination"].as_str() == Some(dest));
        if let Some(e) = found {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no event for {dest}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let e = decision_of(&closed.to_string());
    assert_eq!(e["decision"], "error", "{e}");
    let e = decision_of("no-such-host.invalid:443");
    assert_eq!(e["decision"], "error", "{e}");
    assert!(e["reason"].as_str().unwrap().contains("resolv"), "{e}");
    let e = decision_of("10.255.255.1:443");
    assert_eq!(e["decision"], "block", "{e}");
    // Stats count errors apart from blocks.
    let (code, out, err) =
        common::gatehouse(gw.dir.path(), &["events", "stats", "--journal", "--json"]);
    assert_eq!(code, 0, "{err}");
    let errors = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["dimension"] == "action" && v["value"] == "error");
    assert_eq!(errors.map(|v| v["count"].clone()), Some(2.into()), "{out}");
}

#[test]
fn blocks_of_plain_http_and_non_tls_flows_are_policy_events_too() {
    let echo = common::echo_server();
    let config = format!(
        "{BASE}[[intercept.rules]]\nhosts = [\"blocked.test\", \"{}\"]\naction = \"block\"\n\
         reason = \"not approved\"\n",
        echo.ip()
    );
    let gw = Gatehouse::start_in(tempfile::tempdir().unwrap(), &config);
    // Absolute-form plain HTTP to a blocked host.
    let mut s = TcpStream::connect(gw.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET http://blocked.test/ HTTP/1.1\r\nHost: blocked.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // Plain bytes through a CONNECT tunnel to a blocked address.
    let mut t = tunnel(gw.proxy, echo);
    let _ = t.write_all(b"hello, not TLS at all\r\n");
    let mut sink = [0u8; 64];
    let _ = t.read(&mut sink);
    drop(t);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let policies = events(gw.dir.path(), "policy");
        let blocked = |host: &str| {
            policies
                .iter()
                .any(|p| p["host"].as_str() == Some(host) && p["action"] == "block")
        };
        if blocked("blocked.test") && blocked(&echo.ip().to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "{policies:#?}\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let conns = events(gw.dir.path(), "connection");
    let http = conns
        .iter()
        .find(|c| c["mode"] == "explicit-http")
        .expect("the absolute-form request's connection event");
    assert_eq!(http["protocol"], "http", "{http}");
    assert_eq!(http["class"], "inspectable", "{http}");
    assert_eq!(http["decision"], "block", "{http}");
}
