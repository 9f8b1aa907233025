//! DLP in the running gateway: a real `gatehouse` process intercepting a
//! Slack-shaped API call made by curl, the shipped rule packs, the event
//! journal, and live rule reloads.

mod common;

use std::time::Duration;

use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use common::Gatehouse;

const CARD: &str = "4556737586899855";

async fn post(gw: &Gatehouse, server: std::net::SocketAddr, body: &str) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--proxy",
            &format!("http://{}", gw.proxy),
        ])
        .args(["--cacert", gw.ca_cert.to_str().unwrap()])
        .args(["--connect-to", &format!("slack.com:443:{server}")])
        .args([
            "-H",
            "content-type: application/json",
            "-w",
            "\nstatus=%{http_code}",
        ])
        .args(["--data", body])
        .arg("https://slack.com/api/chat.postMessage")
        .output()
        .await
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        } else if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_messages_are_scanned_blocked_recorded_and_rules_reload_live() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
        &dir.path().join("rules"),
    );
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"rules\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gw = Gatehouse::start_in(dir, config);

    let (out, err) = post(
        &gw,
        server,
        &format!("{{\"channel\":\"C042\",\"text\":\"my card is {CARD}\"}}"),
    )
    .await;
    assert!(out.contains("status=403"), "{out}{err}\n{}", gw.log());
    assert!(out.contains("payment-card") && !out.contains(CARD), "{out}");
    let (out, _) = post(
        &gw,
        server,
        "{\"channel\":\"C042\",\"text\":\"lunch at noon?\"}",
    )
    .await;
    assert!(
        out.contains("status=200") && out.contains("/api/chat.postMessage"),
        "{out}"
    );

    // Events: a message per post, a finding with masked evidence, never the raw card.
    let mut evs = Vec::new();
    for _ in 0..100 {
        evs = events(&gw);
        if evs.iter().any(|e| e.to_string().contains("dlp_finding")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = serde_json::Value::from(evs.clone()).to_string();
    assert!(all.contains("\"payment-card\""), "{all}");
    assert!(
        all.contains("9855") && !all.contains(CARD),
        "evidence must be masked: {all}"
    );
    assert!(all.contains("\"conversation\":\"C042\""), "{all}");
    assert!(
        !all.contains("lunch at noon"),
        "message text is not stored by default: {all}"
    );
    let journal = gw.path("var/journal");
    let mut raw_seen = false;
    for e in walk(&journal) {
        let bytes = std::fs::read(&e).unwrap();
        raw_seen |= bytes.windows(CARD.len()).any(|w| w == CARD.as_bytes());
    }
    assert!(!raw_seen, "the raw card number reached the journal");

    // A broken rule file is rejected and the old rules stay in force.
    std::fs::write(
        gw.path("rules/zz-broken.toml"),
        "[[rule]]\nid = \"broken\"\nseverity = \"nope\"\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (out, _) = post(
        &gw,
        server,
        &format!("{{\"channel\":\"C1\",\"text\":\"again {CARD}\"}}"),
    )
    .await;
    assert!(out.contains("status=403"), "old rules must stay: {out}");
    assert!(gw.log().contains("new DLP rules rejected"), "{}", gw.log());

    // A valid new rule takes effect without a restart.
    std::fs::write(
        gw.path("rules/zz-broken.toml"),
        "[[rule]]\nid = \"project-zebra\"\nname = \"Project Zebra\"\ndescription = \"code name\"\nseverity = \"high\"\naction = \"block\"\n[rule.keywords]\nwords = [\"zebracorn\"]\n",
    )
    .unwrap();
    let mut blocked = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (out, _) = post(
            &gw,
            server,
            "{\"channel\":\"C1\",\"text\":\"the zebracorn launch\"}",
        )
        .await;
        if out.contains("status=403") && out.contains("project-zebra") {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "the reloaded rule never fired: {}", gw.log());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_text_is_stored_only_when_configured() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules");
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
         [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"{}\"\n[events]\nstore_message_text = true\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
        rules.display()
    );
    let gw = Gatehouse::start_in(dir, &config);
    let (out, _) = post(
        &gw,
        server,
        "{\"channel\":\"C7\",\"text\":\"see you at the standup\"}",
    )
    .await;
    assert!(out.contains("status=200"), "{out}");
    let mut found = false;
    for _ in 0..100 {
        if serde_json::Value::from(events(&gw))
            .to_string()
            .contains("see you at the standup")
        {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        found,
        "the message text should be in the message event: {}",
        gw.log()
    );
}

/// `digits` followed by its Luhn check digit.
fn with_luhn(digits: &str) -> String {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_many_card_numbers_is_one_block_with_bounded_finding_events() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules");
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
         [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        rules.display()
    );
    let gw = Gatehouse::start_in(dir, &config);
    // 300 different Visa numbers in a list: a pasted card dump.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let cards: Vec<String> = (0..300)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            with_luhn(&format!("4556{:011}", (x >> 20) % 100_000_000_000))
        })
        .collect();
    let (out, err) = post(
        &gw,
        server,
        &format!("{{\"channel\":\"C9\",\"text\":\"{}\"}}", cards.join("; ")),
    )
    .await;
    assert!(out.contains("status=403"), "{out}{err}\n{}", gw.log());

    let mut message = None;
    let mut findings = Vec::new();
    for _ in 0..100 {
        let evs = events(&gw);
        message = evs
            .iter()
            .find(|e| e["type"] == "message" && e["conversation"] == "C9")
            .cloned();
        if let Some(m) = &message {
            findings = evs
                .iter()
                .filter(|e| e["type"] == "dlp_finding" && e["message_id"] == m["id"])
                .cloned()
                .collect();
            if !findings.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = message.unwrap_or_else(|| panic!("no message event: {}", gw.log()));
    assert_eq!(message["findings"], 300, "every finding counted: {message}");
    assert_eq!(message["action"], "block", "{message}");
    assert_eq!(findings.len(), 100, "finding events are bounded");
    assert!(findings
        .iter()
        .all(|f| f["rule"] == "payment-card" && f["action"] == "block"));
}
