//! The byte-stream fallback in the running gateway: a raw TLS client
//! (Python `ssl`, ALPN `x-custom` or none) through the explicit proxy to a
//! TLS echo server, speaking nothing any parser claims. The stream is
//! scanned as it passes: a card number split over two writes 100 ms apart
//! is blocked before the write completing it is forwarded, and the journal
//! holds a `fallback` message naming the rule, joined to its finding.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::pki::{LeafSpec, TestCa};
use common::Gatehouse;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        } else if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        }
    }
}

fn gateway(root: &TestCa) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
        &dir.path().join("rules"),
    );
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"rules\"\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    Gatehouse::start_in(dir, config)
}

/// Runs `tests/py/tls_stream.py` with `chunks`; its JSON report.
fn stream(gw: &Gatehouse, root: &TestCa, alpn: &str, chunks: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&LeafSpec::new(&["stream.test"]))
        .write_pem(dir.path(), "stream");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/tls_stream.py"))
        .arg(gw.proxy.to_string())
        .arg(&gw.ca_cert)
        .args([&cert, &key])
        .arg(alpn)
        .args(chunks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn events(gw: &Gatehouse) -> Vec<serde_json::Value> {
    let (code, out, err) = common::gatehouse(
        gw.dir.path(),
        &["events", "search", "--json", "--limit", "1000"],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for a `fallback` message with `action`; returns (message, all
/// events).
async fn fallback_message(
    gw: &Gatehouse,
    action: &str,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let mut evs = Vec::new();
    for _ in 0..100 {
        evs = events(gw);
        if let Some(m) = evs.iter().find(|e| {
            e["type"] == "message" && e["extractor"] == "fallback" && e["action"] == action
        }) {
            return (m.clone(), evs);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no fallback message with action {action}: {}",
        serde_json::Value::from(evs)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_split_over_two_writes_is_cut_before_it_is_forwarded() {
    let root = TestCa::root("Stream Test Root");
    let gw = gateway(&root);
    for alpn in ["x-custom", "-"] {
        let report = stream(&gw, &root, alpn, &["ref 45567375", "86899855 thanks"]);
        let server = report["server_got"].as_str().unwrap();
        assert!(server.contains("ref 45567375"), "{alpn}: {report}");
        assert!(
            !server.contains("86899855"),
            "{alpn}: the chunk completing the card was forwarded: {report}"
        );
        assert_eq!(report["cut"], true, "{alpn}: {report}");
    }
    let (m, evs) = fallback_message(&gw, "block").await;
    let id = m["id"].as_str().unwrap();
    assert!(
        evs.iter().any(|f| f["type"] == "dlp_finding"
            && f["rule"] == "payment-card"
            && f["action"] == "block"
            && f["message_id"] == id),
        "{evs:?}"
    );
    let all = serde_json::Value::from(evs).to_string();
    assert!(!all.contains("4556737586899855"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_benign_stream_is_relayed_and_recorded_once_per_direction() {
    let root = TestCa::root("Stream Test Root");
    let gw = gateway(&root);
    let report = stream(&gw, &root, "x-custom", &["hello ", "there"]);
    assert_eq!(report["client_got"], "hello there", "{report}");
    assert_eq!(report["cut"], false, "{report}");
    // Both directions are recorded when the flow closes.
    let mut fallback = Vec::new();
    for _ in 0..100 {
        fallback = events(&gw)
            .into_iter()
            .filter(|e| e["type"] == "message" && e["extractor"] == "fallback")
            .collect();
        if fallback.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fallback.len(), 2, "one per direction: {fallback:?}");
    assert!(
        fallback
            .iter()
            .all(|m| m["chars"] == 11 && m["action"] == "allow" && m["findings"] == 0),
        "{fallback:?}"
    );
}
