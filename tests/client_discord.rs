//! discord.py, the real Discord client library, through the real gateway
//! against an in-house Discord API (`discord.corp.test`, mapped to
//! `discord` through `intercept.app_catalog`; `discord.http.Route.BASE`
//! points at it) answered by a local stand-in: messages are extracted with
//! their channel, a card number in the text and an AWS key in an embed are
//! blocked with JSON discord.py reads (`Forbidden` with our message), and
//! a `files[0]` CSV of card numbers next to a harmless `payload_json` is
//! blocked, every finding joined to its message event.

mod clients_support;
mod common;

use clients_support::{events_until, of_type, run_client, Standin};
use common::pki::TestCa;

const HOST: &str = "discord.corp.test";
const CHANNEL: &str = "1100000000000000042";

#[test]
fn discord_py_messages_secrets_and_uploads_through_an_in_house_host() {
    let root = TestCa::root("Upstream Test Root");
    let standin = Standin::start(&root, HOST);
    let gw = clients_support::gateway(&root, &[(HOST, "discord")], "");
    let base = format!("https://{HOST}:{}/api/v10", standin.port);
    let steps = run_client(
        "discord_client.py",
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
    for name in ["plain", "upload_clean"] {
        let s = step(name);
        assert_eq!(s["ok"], true, "{name}: {s}\n{}", gw.log());
    }
    for name in ["card", "embed_aws", "upload"] {
        let s = step(name);
        assert_eq!(s["kind"], "Forbidden", "{name}: {s}");
        assert_eq!(s["status"], 403, "{name}: {s}");
        assert!(
            s["content_type"]
                .as_str()
                .is_some_and(|c| c.starts_with("application/json")),
            "{name}: JSON for an API client: {s}"
        );
        let event = s["event"].as_str().expect("x-gatehouse-event");
        assert!(
            s["text"].as_str().is_some_and(|t| t.contains(event)),
            "{name}: discord.py shows our message with the reference: {s}"
        );
    }

    let reqs = serde_json::Value::from(standin.requests()).to_string();
    assert!(
        reqs.contains("lunch at noon") && reqs.contains("agenda: roadmap"),
        "{reqs}"
    );
    for secret in [
        "4556737586899855",
        "4916338506082832",
        "AKIAP8IX4EA4Q9OM4894",
    ] {
        assert!(
            !reqs.contains(secret),
            "{secret} reached the server: {reqs}"
        );
    }

    let evs = events_until(&gw, |evs| {
        of_type(evs, "dlp_finding").len() >= 4 && of_type(evs, "message").len() >= 5
    });
    let all = serde_json::Value::from(evs.clone()).to_string();
    let messages = of_type(&evs, "message");
    assert!(messages.len() >= 5, "every message extracted: {all}");
    for m in &messages {
        assert_eq!(m["app"], "discord", "{m}");
        assert_eq!(m["conversation"], CHANNEL, "{m}");
    }
    let findings = of_type(&evs, "dlp_finding");
    for f in &findings {
        assert!(
            messages.iter().any(|m| m["id"] == f["message_id"]),
            "finding not joined to a message: {f}\n{all}"
        );
        assert_eq!(f["app"], "discord", "{f}");
    }
    let blocked_with = |rule: &str, min: usize| {
        assert!(
            messages.iter().any(|m| m["action"] == "block"
                && findings
                    .iter()
                    .filter(|f| f["message_id"] == m["id"] && f["rule"] == rule)
                    .count()
                    >= min),
            "no blocked message with {min} {rule} finding(s): {all}"
        );
    };
    blocked_with("payment-card", 1);
    blocked_with("aws-access-key-id", 1);
    // The upload's message text is harmless: its two findings come from
    // the file.
    blocked_with("payment-card", 2);
    for secret in [
        "4556737586899855",
        "4916338506082832",
        "AKIAP8IX4EA4Q9OM4894",
    ] {
        assert!(!all.contains(secret), "evidence must be masked: {all}");
    }
}
