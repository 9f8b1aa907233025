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
