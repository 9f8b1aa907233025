//! Long-lived flows are on record while they are open: `flow_update`
//! events every `events.flow_update_interval` while bytes move, so a
//! `kill -9` loses at most one interval; a WebSocket session's
//! `connection` event carries its real bytes and duration. The real binary,
//! nginx as the origin, curl and Python `websockets` as clients.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::pki::{LeafSpec, TestCa};
use common::Gatehouse;
use nix::sys::signal::Signal;

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

fn gateway(root: &TestCa) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  shutdown_grace = \"10s\"\n[upstream]\nextra_roots = [\"root.pem\"]\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n[events]\nflow_update_interval = \"1s\"\n";
    Gatehouse::start_in(dir, config)
}

#[test]
fn a_keep_alive_flow_killed_with_sigkill_is_on_record_up_to_the_last_interval() {
    let root = TestCa::root("Flow Update Root");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&LeafSpec::new(&["origin.test"]))
        .write_pem(dir.path(), "origin");
    let nginx = Nginx::start(dir.path(), &cert, &key);
    let mut gw = gateway(&root);

    // 60 requests at 10 per second on one kept-alive connection.
    let mut curl = Command::new("curl")
        .args(["-s", "--http1.1", "--rate", "10/s", "--max-time", "30"])
        .args(["--proxy", &format!("http://{}", gw.proxy)])
        .args(["--cacert", gw.ca_cert.to_str().unwrap()])
        .args(["--connect-to", &format!("origin.test:443:{}", nginx.addr)])
        .args(["-w", "code=%{http_code}\\n"])
        .arg("https://origin.test/r[1-60]")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answered = BufReader::new(curl.stdout.take().unwrap()).lines();
    // Wait for 30 answers (about 3 s, so two or three intervals), then
    // kill the gateway without a chance to record anything more.
    let mut ok = 0;
    while ok < 30 {
        let line = answered.next().unwrap().unwrap();
        assert!(!line.starts_with("code=") || line == "code=200", "{line}");
        ok += usize::from(line == "code=200");
    }
    std::thread::sleep(Duration::from_millis(1200));
    gw.stop_with(Signal::SIGKILL);
    let _ = curl.wait();

    assert!(
        events(&gw, "connection").is_empty(),
        "the flow never ended, so it has no connection event"
    );
    // Search lists the newest first.
    let mut updates = events(&gw, "flow_update");
    updates.reverse();
    assert!(
        !updates.is_empty(),
        "no flow_update after kill -9\n{}",
        gw.log()
    );
    let flow = updates[0]["flow_id"].clone();
    assert!(updates.iter().all(|u| u["flow_id"] == flow), "{updates:?}");
    let last = updates.last().unwrap();
    assert_eq!(last["host"], "origin.test", "{last}");
    assert_eq!(last["decision"], "intercept", "{last}");
    assert_eq!(last["mode"], "explicit", "{last}");
    let seqs: Vec<u64> = updates.iter().map(|u| u["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // At least the 30 requests answered before the last interval began.
    let requests = last["requests"].as_u64().unwrap();
    assert!(requests >= 30, "{requests} requests on record: {last}");
    assert!(last["bytes_up"].as_u64().unwrap() > 30 * 40, "{last}");
    assert!(last["bytes_down"].as_u64().unwrap() > 30 * 40, "{last}");
    assert!(last["duration_ms"].as_u64().unwrap() >= 2000, "{last}");
    drop(nginx);
}

#[test]
fn an_idle_flow_records_no_updates_and_a_closed_one_its_connection_event() {
    let root = TestCa::root("Flow Update Idle Root");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&LeafSpec::new(&["origin.test"]))
        .write_pem(dir.path(), "origin");
    let nginx = Nginx::start(dir.path(), &cert, &key);
    let mut gw = gateway(&root);
    // A single quick request: over before the first interval.
    let out = Command::new("curl")
        .args(["-s", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--proxy", &format!("http://{}", gw.proxy)])
        .args(["--cacert", gw.ca_cert.to_str().unwrap()])
        .args(["--connect-to", &format!("origin.test:443:{}", nginx.addr)])
        .arg("https://origin.test/one")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(gw.stop_with(Signal::SIGTERM).success());
    assert!(
        events(&gw, "flow_update").is_empty(),
        "a flow shorter than the interval needs no update"
    );
    let conns = events(&gw, "connection");
    assert_eq!(conns.len(), 1, "{conns:?}");
    drop(nginx);
}

fn py(script: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/py")
            .join(script),
    );
    c
}

#[test]
fn a_websocket_session_is_recorded_with_its_real_bytes_and_duration() {
    let root = TestCa::root("Flow Update WS Root");
    let server = common::ws_echo_server(&root, "ws.test");
    let mut gw = gateway(&root);
    // Words that permessage-deflate cannot squeeze much: pseudo-random letters.
    let mut seed = 0x2545_f491_u32;
    let big: String = (0..100_000)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            if i % 7 == 6 {
                ' '
            } else {
                char::from(b'a' + (seed % 26) as u8)
            }
        })
        .collect();
    let started = Instant::now();
    let mut client = py("ws_client_paced.py")
        .args([
            &format!("http://{}", gw.proxy),
            &format!("127.0.0.1:{}", server.port),
            "ws.test",
        ])
        .arg(&gw.ca_cert)
        .args(["hello", &big, "bye"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    assert!(next().contains("hello"));
    for _ in 0..2 {
        assert!(next().contains("ready"));
        std::thread::sleep(Duration::from_millis(1500));
        writeln!(client.stdin.as_mut().unwrap()).unwrap();
        assert!(next().contains("echo"));
    }
    drop(client.stdin.take());
    assert!(client.wait().unwrap().success());
    let session = started.elapsed();
    // The record is written when the session ends, not at the upgrade.
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        let conns = events(&gw, "connection");
        if let Some(c) = conns.into_iter().find(|c| c["host"] == "ws.test") {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no connection event\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let duration = conn["duration_ms"].as_u64().unwrap();
    assert!(
        duration >= 3000,
        "{duration} ms recorded for a {session:?} session: {conn}"
    );
    // Compressed, 100,000 random letters still take over 50,000 bytes.
    assert!(conn["bytes_up"].as_u64().unwrap() >= 50_000, "{conn}");
    assert!(conn["bytes_down"].as_u64().unwrap() >= 50_000, "{conn}");
    let updates = events(&gw, "flow_update");
    assert!(
        updates.iter().any(|u| u["flow_id"] == conn["flow_id"]),
        "the open session had progress updates: {updates:?}"
    );
    assert!(gw.stop_with(Signal::SIGTERM).success());
    drop(server);
}
