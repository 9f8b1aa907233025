//! WebSocket through the gateway: a real python `websockets` client and
//! server negotiating permessage-deflate; each message reaches the hooks
//! decompressed, and a blocked one closes the socket with 1008.

mod common;

use std::sync::{Arc, Mutex};

use common::inproc::TestGateway;
use common::pki::TestCa;
use gatehouse::relay::hooks::{Direction, FlowContext, FlowHooks, Interceptor, Verdict};

type Seen = Arc<Mutex<Vec<(Direction, bool, String)>>>;

struct Recorder(Seen);

struct RecorderHooks(Seen);

impl Interceptor for Recorder {
    fn open(&self, _flow: &FlowContext) -> Box<dyn FlowHooks> {
        Box::new(RecorderHooks(self.0.clone()))
    }
}

impl FlowHooks for RecorderHooks {
    fn on_ws_message(
        &mut self,
        _flow: &FlowContext,
        dir: Direction,
        text: bool,
        payload: &[u8],
    ) -> Verdict {
        let s = String::from_utf8_lossy(payload).into_owned();
        let block = s.contains("SECRET");
        self.0.lock().unwrap().push((dir, text, s));
        if block {
            Verdict::Block {
                policy: "no-secrets".into(),
            }
        } else {
            Verdict::Allow
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_websocket_messages_are_inspected_and_blockable() {
    let root = TestCa::root("WS Test Root");
    let server = common::ws_echo_server(&root, "ws.test");
    let port = server.port;

    let seen: Seen = Arc::default();
    let gw =
        TestGateway::start_with(&[&root.pem()], Arc::new(Recorder(seen.clone())), |_| {}).await;
    let ca = gw.ca_file();
    let hello = "hello over a compressed websocket ".repeat(40);
    let out = tokio::process::Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_client.py"))
        .args([
            &format!("http://{}", gw.proxy),
            &format!("127.0.0.1:{port}"),
            "ws.test",
        ])
        .arg(&ca)
        .args([
            hello.as_str(),
            "second message",
            "this one has a SECRET in it",
            "never sent",
        ])
        .output()
        .await
        .unwrap();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines[0]["echo"], hello.as_str());
    assert_eq!(
        lines[0]["compressed"], true,
        "permessage-deflate was negotiated end to end"
    );
    assert_eq!(lines[1]["echo"], "second message");
    assert_eq!(lines[2]["closed"], 1008, "{stdout}");

    let seen = seen.lock().unwrap().clone();
    let outbound: Vec<&str> = seen
        .iter()
        .filter(|s| s.0 == Direction::Outbound)
        .map(|s| s.2.as_str())
        .collect();
    let inbound: Vec<&str> = seen
        .iter()
        .filter(|s| s.0 == Direction::Inbound)
        .map(|s| s.2.as_str())
        .collect();
    assert_eq!(
        outbound,
        vec![
            hello.as_str(),
            "second message",
            "this one has a SECRET in it"
        ]
    );
    assert_eq!(
        inbound,
        vec![hello.as_str(), "second message"],
        "the blocked message never reached the server"
    );
    assert!(seen.iter().all(|s| s.1), "all text frames");
    gw.stop().await;
}

/// A chat app no extractor knows: every WebSocket message is still scanned
/// (the fallback), recorded as a `fallback` message, and a card number
/// blocked by the shipped rules closes the socket before it reaches the
/// server; the finding names its message event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_of_unknown_apps_are_scanned_by_the_fallback() {
    use gatehouse::events::Event;
    use gatehouse::inspect::{Inspection, Rules};
    let root = TestCa::root("WS Test Root");
    let server = common::ws_echo_server(&root, "chat.example.test");
    let port = server.port;

    let recorded = Arc::new(common::inproc::Collect::default());
    let rules = Arc::new(
        Rules::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules")).unwrap(),
    );
    let inspection = Arc::new(Inspection::new(rules, recorded.clone(), false));
    let gw = TestGateway::start_with(&[&root.pem()], inspection, |_| {}).await;
    let ca = gw.ca_file();
    let out = tokio::process::Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_client.py"))
        .args([
            &format!("http://{}", gw.proxy),
            &format!("127.0.0.1:{port}"),
            "chat.example.test",
        ])
        .arg(&ca)
        .args([
            "see you at the standup",
            "{\"text\":\"my card is 4556 7375 8689 9855\"}",
            "never sent",
        ])
        .output()
        .await
        .unwrap();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines[0]["echo"], "see you at the standup");
    assert_eq!(lines[1]["closed"], 1008, "{stdout}");

    let ided = recorded.1.lock().unwrap().clone();
    let fallback: Vec<(uuid::Uuid, gatehouse::events::MessageEvent)> = ided
        .iter()
        .filter_map(|(id, e)| match e {
            Event::Message(m)
                if m.extractor == "fallback" && m.direction == Direction::Outbound =>
            {
                Some((*id, m.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(fallback.len(), 2, "{fallback:#?}");
    assert_eq!(fallback[0].1.action, "allow");
    assert_eq!(fallback[1].1.action, "block");
    assert_eq!(fallback[1].1.host, "chat.example.test");
    let findings: Vec<gatehouse::events::DlpFindingEvent> = recorded
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::DlpFinding(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert!(
        findings.iter().any(|f| f.rule == "payment-card"
            && f.action == "block"
            && f.message_id == Some(fallback[1].0)
            && !f.evidence.as_str().contains("4556")),
        "{findings:#?}"
    );
    gw.stop().await;
}

/// Lowercase words, no digits (nothing a shipped rule looks for).
fn words(len: usize, seed: u32) -> String {
    let mut x = seed;
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 2 + (x >> 28) as usize % 7;
        for i in 0..n {
            out.push((b'a' + ((x >> (i * 3)) % 26) as u8) as char);
        }
        out.push(' ');
    }
    out.truncate(len);
    out
}

/// The large-message server (`tests/py/ws_big_server.py`): its port, and
/// the child (its stdout lists every message it received).
fn big_server(
    root: &TestCa,
    name: &str,
    card: &str,
) -> (std::process::Child, u16, tempfile::TempDir) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&common::pki::LeafSpec::new(&[name]))
        .write_pem(dir.path(), "ws");
    let mut child = std::process::Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_big_server.py"))
        .args([&cert, &key])
        .arg(card)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with websockets (installed by scripts/test.sh)");
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut port)
        .unwrap();
    (child, port.trim().parse().expect("server port"), dir)
}

/// Messages larger than the held window (3 MiB, one frame or fragmented,
/// with and without permessage-deflate) are scanned as they stream: a
/// card number near the end closes the client with 1008 before the last
/// piece goes on, so the server never receives the message; benign ones
/// arrive whole. Each is recorded as a `fallback` message, the finding
/// joined to it. A message inflating past the inflate cap closes with
/// 1008 and an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_past_the_window_are_scanned_as_they_stream() {
    use gatehouse::events::Event;
    use gatehouse::inspect::{Inspection, Rules};
    const CARD: &str = "4556 7375 8689 9855";
    const HOST: &str = "chat.example.test";
    let root = TestCa::root("WS Big Test Root");
    let (mut server, port, _server_dir) = big_server(&root, HOST, CARD);

    let recorded = Arc::new(common::inproc::Collect::default());
    let rules = Arc::new(
        Rules::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules")).unwrap(),
    );
    let inspection = Arc::new(Inspection::new(rules, recorded.clone(), false));
    let gw = TestGateway::start_with(&[&root.pem()], inspection, |c| {
        c.intercept.inspect_window = 1 << 20;
    })
    .await;
    let ca = gw.ca_file();
    let tmp = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let size = 3 << 20;
    let benign = file("benign", &words(size, 5));
    let mut secret = words(size, 9);
    secret.replace_range(
        size - 4_000..size - 4_000 + CARD.len() + 2,
        &format!(" {CARD} "),
    );
    let secret = file("secret", &secret);
    let bomb = file("bomb", &"a".repeat(20 << 20));

    let run = |compression: &'static str, files: Vec<String>| {
        let ca = ca.clone();
        let proxy = gw.proxy;
        async move {
            let out = tokio::process::Command::new("python3")
                .arg(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/py/ws_big_client.py"),
                )
                .args([
                    &format!("http://{proxy}"),
                    &format!("127.0.0.1:{port}"),
                    HOST,
                ])
                .arg(&ca)
                .arg(compression)
                .args(files)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let lines: Vec<serde_json::Value> = stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (
                lines,
                format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)),
            )
        }
    };
    let got = format!("got {size} card=False");
    for compression in ["none", "deflate"] {
        // Benign, one frame and fragmented: through whole. Then the card
        // near the end: closed with 1008.
        let (lines, all) = run(
            compression,
            vec![
                benign.clone(),
                format!("{benign}:6"),
                secret.clone(),
                benign.clone(),
            ],
        )
        .await;
        assert_eq!(lines.len(), 3, "{compression}: {all}");
        assert_eq!(lines[0]["reply"], got.as_str(), "{compression}: {all}");
        assert_eq!(
            lines[0]["compressed"],
            compression == "deflate",
            "{compression}: {all}"
        );
        assert_eq!(lines[1]["reply"], got.as_str(), "{compression}: {all}");
        assert_eq!(lines[2]["closed"], 1008, "{compression}: {all}");

        // Fragmented, the card in the last fragment: closed with 1008.
        let (lines, all) = run(compression, vec![format!("{secret}:5"), benign.clone()]).await;
        assert_eq!(lines.len(), 1, "{compression}: {all}");
        assert_eq!(lines[0]["closed"], 1008, "{compression}: {all}");
    }
    // A message inflating past the 16 MiB inflate cap.
    let (lines, all) = run("deflate", vec![bomb.clone(), benign.clone()]).await;
    assert_eq!(lines.len(), 1, "{all}");
    assert_eq!(lines[0]["closed"], 1008, "{all}");

    // The server never received a message with the card (nor the bomb).
    let _ = server.kill();
    let mut received = String::new();
    std::io::Read::read_to_string(server.stdout.as_mut().unwrap(), &mut received).unwrap();
    let _ = server.wait();
    assert_eq!(
        received.lines().filter(|l| l.starts_with("got ")).count(),
        4,
        "{received}"
    );
    assert!(
        received.lines().all(|l| l.ends_with("card=False")),
        "{received}"
    );

    // Events: fallback messages, four allowed and four blocked, each
    // blocking finding naming its message.
    let ided = recorded.1.lock().unwrap().clone();
    let fallback: Vec<(uuid::Uuid, gatehouse::events::MessageEvent)> = ided
        .iter()
        .filter_map(|(id, e)| match e {
            Event::Message(m)
                if m.extractor == "fallback" && m.direction == Direction::Outbound =>
            {
                Some((*id, m.clone()))
            }
            _ => None,
        })
        .collect();
    let blocked: Vec<_> = fallback.iter().filter(|m| m.1.action == "block").collect();
    let allowed: Vec<_> = fallback.iter().filter(|m| m.1.action == "allow").collect();
    assert_eq!(blocked.len(), 4, "{fallback:#?}");
    assert_eq!(allowed.len(), 4, "{fallback:#?}");
    assert!(
        allowed.iter().all(|m| m.1.chars == size as u64),
        "{allowed:#?}"
    );
    let findings: Vec<gatehouse::events::DlpFindingEvent> = recorded
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::DlpFinding(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    for m in &blocked {
        assert!(
            findings.iter().any(|f| f.rule == "payment-card"
                && f.action == "block"
                && f.message_id == Some(m.0)),
            "{findings:#?}"
        );
    }
    let undecodable = recorded
        .policies()
        .into_iter()
        .filter(|p| p.kind == "undecodable")
        .count();
    assert!(undecodable >= 1, "the inflate cap is recorded");
    gw.stop().await;
}
