//! slack_sdk, the real Slack client library, through the real gateway
//! against an in-house Slack (`chat.corp.test`, mapped to `slack` through
//! `intercept.app_catalog`) answered by a local stand-in: messages are
//! extracted with their channel, planted secrets are found and blocked
//! with a JSON error slack_sdk parses (`SlackApiError`, not "non-JSON
//! response"), and uploaded CSV files of card numbers are blocked — by
//! `files.upload` (multipart) and by `files_upload_v2` (raw body to the
//! upload URL) and by a method no extractor knows (a binary-typed file
//! part) — with every finding joined to its message or connection event.

mod clients_support;
mod common;

use clients_support::{events_until, of_type, run_client, Standin};
use common::pki::TestCa;

const HOST: &str = "chat.corp.test";

#[test]
fn slack_sdk_messages_secrets_and_uploads_through_an_in_house_host() {
    let root = TestCa::root("Upstream Test Root");
    let standin = Standin::start(&root, HOST);
    let gw = clients_support::gateway(&root, &[(HOST, "slack")], "");
    let base = format!("https://{HOST}:{}/api/", standin.port);
    let steps = run_client(
        "slack_client.py",
        &[
            &format!("http://{}", gw.proxy),
            gw.ca_cert.to_str().unwrap(),
            &base,
        ],
    );
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:#?}\n{}", gw.log()))
            .clone()
    };

    // A clean message goes through and reaches the server.
    let plain = step("plain");
    assert_eq!(plain["ok"], true, "{plain}\n{}", gw.log());
    // Secrets: slack_sdk raises SlackApiError carrying our JSON.
    for (name, rule) in [
        ("card", "payment-card"),
        ("aws", "aws-access-key-id"),
        ("upload_v1", "payment-card"),
        ("upload_unknown_method", "payment-card"),
    ] {
        let s = step(name);
        assert_eq!(s["kind"], "SlackApiError", "{name}: {s}");
        assert_eq!(s["status"], 403, "{name}: {s}");
        assert_eq!(s["data"]["ok"], false, "{name}: {s}");
        assert_eq!(s["data"]["rule"], rule, "{name}: {s}");
        assert!(
            s["data"]["event_id"]
                .as_str()
                .is_some_and(|e| e.len() == 36),
            "{name}: the block names its event: {s}"
        );
        assert!(
            s["data"]["error"]
                .as_str()
                .is_some_and(|e| e.contains(s["data"]["event_id"].as_str().unwrap())),
            "{name}: the error text quotes the reference: {s}"
        );
    }
    // files_upload_v2 posts the raw file to the upload URL: blocked there.
    let v2 = step("upload_v2");
    assert_eq!(v2["ok"], false, "{v2}");
    assert_eq!(v2["status"], 403, "{v2}");
    let clean = step("upload_clean");
    assert_eq!(clean["ok"], true, "{clean}\n{}", gw.log());

    // What reached the server: the clean message and upload, no secret.
    let reqs = standin.requests();
    let all_reqs = serde_json::Value::from(reqs.clone()).to_string();
    assert!(all_reqs.contains("lunch at noon"), "{all_reqs}");
    assert!(all_reqs.contains("agenda: roadmap"), "{all_reqs}");
    for secret in [
        "4556737586899855",
        "4916338506082832",
        "AKIAP8IX4EA4Q9OM4894",
    ] {
        assert!(
            !all_reqs.contains(secret),
            "{secret} reached the server: {all_reqs}"
        );
    }

    // Events: each message extracted as Slack with its channel; every
    // finding names an event that exists; the card is never in clear.
    let evs = events_until(&gw, |evs| {
        of_type(evs, "dlp_finding").len() >= 5 && of_type(evs, "message").len() >= 5
    });
    let all = serde_json::Value::from(evs.clone()).to_string();
    let messages = of_type(&evs, "message");
    let message_in = |conv: &str| {
        messages
            .iter()
            .find(|m| m["conversation"] == conv)
            .unwrap_or_else(|| panic!("no message event for {conv}: {all}"))
    };
    for m in &messages {
        assert_eq!(m["app"], "slack", "{m}");
    }
    assert!(
        messages
            .iter()
            .any(|m| m["conversation"] == "C042" && m["action"] == "allow"),
        "the clean message is recorded as allowed: {all}"
    );
    let findings = of_type(&evs, "dlp_finding");
    let ids: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| e["type"] == "message" || e["type"] == "connection")
        .map(|e| &e["id"])
        .collect();
    for f in &findings {
        assert!(
            ids.contains(&&f["message_id"]),
            "finding names no event: {f}\n{all}"
        );
        assert_eq!(f["app"], "slack", "{f}");
    }
    let blocked = |conv: &str, rule: &str| {
        let m = messages
            .iter()
            .find(|m| m["conversation"] == conv && m["action"] == "block")
            .unwrap_or_else(|| panic!("no blocked message in {conv}: {all}"));
        assert!(
            findings
                .iter()
                .any(|f| f["message_id"] == m["id"] && f["rule"] == rule && f["action"] == "block"),
            "no {rule} finding joined to the {conv} message: {all}"
        );
    };
    blocked("C042", "payment-card");
    blocked("C043", "aws-access-key-id");
    // The CSV's two cards are findings of the upload's message.
    blocked("C044", "payment-card");
    let c044 = message_in("C044");
    assert!(c044["findings"].as_u64().unwrap() >= 2, "{c044}");
    // The v2 raw upload: a whole-body finding, joined to its connection.
    assert!(
        findings.iter().any(|f| f["rule"] == "payment-card"
            && evs
                .iter()
                .any(|e| e["type"] == "connection" && e["id"] == f["message_id"])),
        "no finding of the raw upload joined to its connection: {all}"
    );
    for secret in [
        "4556737586899855",
        "4916338506082832",
        "AKIAP8IX4EA4Q9OM4894",
    ] {
        assert!(!all.contains(secret), "evidence must be masked: {all}");
    }
}
