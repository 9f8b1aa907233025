//! One span per flow: every log line of a flow carries the flow id that its
//! events carry. A real `gatehouse` process with `--log-format json` and
//! `RUST_LOG=debug`, curl as the client, three flows: one intercepted and
//! allowed, one to an upstream that fails verification, one blocked by
//! policy.

mod common;

use std::collections::BTreeMap;

use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use common::Gatehouse;
use nix::sys::signal::Signal;

async fn curl(gw: &Gatehouse, name: &str, server: std::net::SocketAddr) -> String {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--proxy", &format!("http://{}", gw.proxy)])
        .args(["--cacert", gw.ca_cert.to_str().unwrap()])
        .args(["--connect-to", &format!("{name}:443:{server}")])
        .arg(format!("https://{name}/hello"))
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_of_a_flow_carries_its_flow_id() {
    let root = TestCa::root("Upstream Test Root");
    let stranger = TestCa::root("Unknown Root");
    let good = https_server("good.test", root.leaf(&LeafSpec::new(&["good.test"]))).await;
    let bad = https_server("bad.test", stranger.leaf(&LeafSpec::new(&["bad.test"]))).await;
    let blocked = https_server("blocked.test", root.leaf(&LeafSpec::new(&["blocked.test"]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  shutdown_grace = \"2s\"\n\
                  [upstream]\nextra_roots = [\"root.pem\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
                  [[intercept.rules]]\nhosts = [\"blocked.test\"]\naction = \"block\"\nreason = \"not approved\"\n";
    let mut gw = Gatehouse::start_logging(dir, config, &[], &["--log-format", "json"], "debug");

    assert_eq!(curl(&gw, "good.test", good).await, "200", "{}", gw.log());
    assert_eq!(curl(&gw, "bad.test", bad).await, "000");
    // A policy block of TLS answers with the block page (issue 12 item 7).
    assert_eq!(curl(&gw, "blocked.test", blocked).await, "403");
    assert!(gw.stop_with(Signal::SIGTERM).success());

    // The connection events, by host.
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
    let mut flows = BTreeMap::new();
    for line in out.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        let host = ev["host"].as_str().unwrap_or_default().to_string();
        flows.insert(host, ev);
    }
    let log = gw.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "JSON log lines expected: {log}");
    let of_flow = |id: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["span"]["flow_id"].as_str() == Some(id))
            .collect()
    };
    for (host, decision, message) in [
        ("good.test", "intercept", "flow ended"),
        (
            "bad.test",
            "block",
            "upstream refused: client gets a TLS alert",
        ),
        ("blocked.test", "block", "flow ended"),
    ] {
        let ev = flows
            .get(host)
            .unwrap_or_else(|| panic!("no connection event for {host}: {flows:?}"));
        assert_eq!(ev["decision"], decision, "{ev}");
        let id = ev["flow_id"].as_str().unwrap();
        let mine = of_flow(id);
        assert!(
            mine.iter().any(|l| l["message"] == message),
            "{host}: no `{message}` line with flow_id {id}:\n{mine:#?}\n{log}"
        );
        // Each line is in the span of exactly its own flow.
        for l in &mine {
            assert_eq!(l["span"]["name"], "flow", "{l}");
        }
    }
    // The refused upstream's warning is not logged outside its flow.
    assert!(lines
        .iter()
        .filter(|l| l["message"] == "upstream refused: client gets a TLS alert")
        .all(|l| l["span"]["flow_id"] == flows["bad.test"]["flow_id"]));
}
