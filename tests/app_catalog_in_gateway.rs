//! The flow's identified app reaches extraction and every scan, including
//! hosts mapped through `intercept.app_catalog`: an in-house Slack answers
//! like slack.com does — messages extracted, app-scoped rules fire on
//! messages and on bodies, findings carry the app and name their message
//! event, and an API client gets its block as JSON naming that event.

mod common;

use std::sync::Arc;

use common::inproc::{client_config, tls_through, TestGateway};
use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use gatehouse::events::Event;
use gatehouse::inspect::{Inspection, Rules};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &str = r#"
[[rule]]
id = "slack-only-marker"
name = "Slack-only marker"
description = "fires only on Slack traffic"
severity = "high"
action = "block"
[rule.keywords]
words = ["zebracorn"]
[rule.scope]
apps = ["slack"]
"#;

async fn post(
    gw: &TestGateway,
    server: std::net::SocketAddr,
    path: &str,
    ct: &str,
    body: &str,
) -> String {
    let (cfg, _) = client_config(std::slice::from_ref(&gw.ca_der), &[b"http/1.1"], false);
    let mut tls = tls_through(gw.proxy, server, "chat.corp.test", cfg)
        .await
        .unwrap();
    tls.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: chat.corp.test\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_house_host_mapped_to_slack_is_read_as_slack() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server(
        "chat.corp.test",
        root.leaf(&LeafSpec::new(&["chat.corp.test"])),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("apps.toml");
    std::fs::write(
        &catalog,
        "[[app]]\nid = \"slack\"\nhosts = [\"chat.corp.test\"]\n",
    )
    .unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("slack-only.toml"), RULES).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules/payment-cards.toml"),
        rules_dir.join("payment-cards.toml"),
    )
    .unwrap();
    let recorded = Arc::new(common::inproc::Collect::default());
    let rules = Arc::new(Rules::load(&rules_dir).unwrap());
    let inspection = Arc::new(Inspection::new(rules, recorded.clone(), false));
    let gw = TestGateway::start_with(&[&root.pem()], inspection, |c| {
        c.intercept.app_catalog = Some(catalog.clone());
    })
    .await;

    // A Slack API call: extracted as a Slack message; the card blocks it,
    // and the API client gets JSON naming the message event.
    let resp = post(
        &gw,
        server,
        "/api/chat.postMessage",
        "application/json",
        r#"{"channel":"C042","text":"my card is 4556737586899855"}"#,
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let json: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap_or("").trim())
            .expect("a JSON block");
    assert_eq!(json["rule"], "payment-card", "{json}");
    assert!(!resp.contains("4556737586899855"), "{resp}");
    let ided = recorded.1.lock().unwrap().clone();
    let message = ided
        .iter()
        .find_map(|(id, e)| match e {
            Event::Message(m) if m.app == "slack" && m.conversation.as_deref() == Some("C042") => {
                Some((*id, m.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no slack message event: {ided:#?}"));
    assert_eq!(message.1.action, "block");
    assert_eq!(json["event_id"], message.0.to_string(), "{json}");
    let evs = recorded.0.lock().unwrap().clone();
    assert!(
        evs.iter().any(|e| matches!(e, Event::DlpFinding(f)
            if f.rule == "payment-card" && f.app == "slack" && f.message_id == Some(message.0))),
        "{evs:#?}"
    );

    // `text` and `blocks` repeat each other: one finding for the card.
    let resp = post(
        &gw,
        server,
        "/api/chat.postMessage",
        "application/json",
        r#"{"channel":"C777","text":"card 4556737586899855","blocks":[{"type":"rich_text","elements":[{"type":"rich_text_section","elements":[{"type":"text","text":"card 4556 7375 8689 9855"}]}]}]}"#,
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let ided = recorded.1.lock().unwrap().clone();
    let twice = ided
        .iter()
        .find_map(|(id, e)| match e {
            Event::Message(m) if m.conversation.as_deref() == Some("C777") => {
                Some((*id, m.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no message event for C777: {ided:#?}"));
    let cards = recorded
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::DlpFinding(f) if f.message_id == Some(twice.0) && f.rule == "payment-card"))
        .count();
    assert_eq!(cards, 1, "one finding per secret per message");
    assert_eq!(twice.1.findings, 1);

    // A Slack-scoped rule fires on a body no extractor reads (an upload),
    // and the finding carries the app; a browser gets an HTML page.
    let resp = post(
        &gw,
        server,
        "/upload/notes.txt",
        "text/plain",
        "the zebracorn plan",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("text/html") && resp.contains("Reference:"),
        "{resp}"
    );
    let evs = recorded.0.lock().unwrap().clone();
    assert!(
        evs.iter().any(|e| matches!(e, Event::DlpFinding(f)
            if f.rule == "slack-only-marker" && f.app == "slack")),
        "{evs:#?}"
    );
    gw.stop().await;
}
