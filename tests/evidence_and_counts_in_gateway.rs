//! Evidence and conversation counts in the running gateway: a real
//! `gatehouse` process intercepting Slack-shaped `chat.postMessage` calls
//! made by curl (each call its own client connection) to a local upstream,
//! with the shipped secrets pack plus rules of this test, read back from
//! the event journal with `gatehouse events search --json`.

mod common;

use std::time::Duration;

use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use common::Gatehouse;
use serde_json::Value;

const SECRET: &str = "pWnOna8sEXflmWwdRpdo";
const CARD: &str = "4526 0181 5908 3012";

const RULES: &str = r#"
[[rule]]
id = "marker"
name = "Confidentiality marker"
severity = "medium"
action = "alert"
[rule.keywords]
words = ["confidential"]
[rule.evidence]
context_chars = 30
keep_last = 0

[[rule]]
id = "card"
name = "Card number"
severity = "critical"
action = "alert"
pattern = '\b\d(?:[ -]?\d){12,18}\b'
validators = [{ kind = "luhn" }]
[rule.evidence]
context_chars = 20
keep_last = 4

[[rule]]
id = "quiet-word"
name = "Code name, no evidence kept"
severity = "low"
action = "log"
[rule.keywords]
words = ["nightjar"]
[rule.evidence]
mode = "none"

[[rule]]
id = "split-ids"
name = "Customer ids sent a few at a time"
severity = "high"
action = "block"
pattern = '\bZK-[0-9]{4}\b'
[rule.count]
conversation = { min = 3, window_secs = 600 }
"#;

struct Setup {
    gw: Gatehouse,
    server: std::net::SocketAddr,
}

async fn setup() -> Setup {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    // The shipped pack, for its `generic-secret` (keep_last = 0).
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules/secrets.toml"),
        rules.join("secrets.toml"),
    )
    .unwrap();
    std::fs::write(rules.join("test.toml"), RULES).unwrap();
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"rules\"\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    Setup {
        gw: Gatehouse::start_in(dir, config),
        server,
    }
}

impl Setup {
    /// One `chat.postMessage` by its own curl process (its own connection);
    /// returns stdout with `status=NNN` appended.
    async fn post(&self, channel: &str, text: &str) -> String {
        let body = serde_json::json!({ "channel": channel, "text": text }).to_string();
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--proxy"])
            .arg(format!("http://{}", self.gw.proxy))
            .args(["--cacert", self.gw.ca_cert.to_str().unwrap()])
            .args(["--connect-to", &format!("slack.com:443:{}", self.server)])
            .args(["-H", "content-type: application/json"])
            .args(["-w", "\nstatus=%{http_code}", "--data", &body])
            .arg("https://slack.com/api/chat.postMessage")
            .output()
            .await
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn events(&self) -> Vec<Value> {
        let (code, out, err) = common::gatehouse(
            self.gw.dir.path(),
            &["events", "search", "--json", "--limit", "1000"],
        );
        assert_eq!(code, 0, "{err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Events, once `done` holds for them (the journal is written behind).
    async fn events_until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut evs = Vec::new();
        for _ in 0..100 {
            evs = self.events();
            if done(&evs) {
                return evs;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("events never settled: {evs:#?}\n{}", self.gw.log());
    }
}

fn findings<'a>(evs: &'a [Value], rule: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["type"] == "dlp_finding" && e["rule"] == rule)
        .collect()
}

fn messages_in<'a>(evs: &'a [Value], channel: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["type"] == "message" && e["conversation"] == channel)
        .collect()
}

fn journal_holds(gw: &Gatehouse, needle: &str) -> bool {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&gw.path("var/journal"), &mut files);
    files.iter().any(|f| {
        std::fs::read(f)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_evidence_as_each_rule_says() {
    let s = setup().await;
    for (channel, text) in [
        ("C1", format!("db password: {SECRET}")),
        ("C2", "the nightjar launch is on".to_string()),
        ("C3", format!("CONFIDENTIAL card {CARD}")),
    ] {
        let out = s.post(channel, &text).await;
        assert!(out.contains("status=200"), "{out}\n{}", s.gw.log());
    }
    let evs = s
        .events_until(|evs| {
            ["generic-secret", "quiet-word", "marker", "card"]
                .iter()
                .all(|r| !findings(evs, r).is_empty())
        })
        .await;

    // generic-secret ships with keep_last = 0: not a character of the
    // password is kept, not even its tail.
    let secret = findings(&evs, "generic-secret")[0]["evidence"]
        .as_str()
        .unwrap()
        .to_string();
    // The message ends with the password: the evidence ends with it masked.
    assert!(
        secret.ends_with(&format!(" {}", "*".repeat(SECRET.len()))),
        "the password masked whole, no tail kept: {secret:?}"
    );
    assert!(secret.contains("password"), "context shown: {secret:?}");

    // mode = "none": no evidence at all.
    let quiet = findings(&evs, "quiet-word")[0];
    assert_eq!(quiet["evidence"], "", "{quiet}");

    // Context as the rule says, other matches in it masked.
    let marker = findings(&evs, "marker")[0]["evidence"].as_str().unwrap();
    assert_eq!(marker, "************ card **** **** **** ****");
    let card = findings(&evs, "card")[0]["evidence"].as_str().unwrap();
    assert_eq!(card, "************ card **** **** **** 3012");

    // And the raw values are nowhere in the journal.
    for raw in [SECRET, CARD, "4526018159083012", "nightjar"] {
        assert!(!journal_holds(&s.gw, raw), "{raw} reached the journal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_count_fires_across_connections_and_names_its_messages() {
    let s = setup().await;
    // Three messages in three conversations: no conversation adds up.
    for (i, channel) in ["D1", "D2", "D3"].into_iter().enumerate() {
        let out = s.post(channel, &format!("customer ZK-100{i}")).await;
        assert!(
            out.contains("status=200"),
            "{channel}: {out}\n{}",
            s.gw.log()
        );
    }
    // Three in one conversation, each over its own connection: the third
    // makes three and is blocked.
    for (i, text) in ["first ZK-2001", "then ZK-2002"].into_iter().enumerate() {
        let out = s.post("C9", text).await;
        assert!(out.contains("status=200"), "message {}: {out}", i + 1);
    }
    let out = s.post("C9", "and ZK-2003").await;
    assert!(
        out.contains("status=403") && out.contains("split-ids"),
        "the third message is blocked: {out}\n{}",
        s.gw.log()
    );

    let evs = s
        .events_until(|evs| {
            !findings(evs, "split-ids").is_empty() && messages_in(evs, "C9").len() == 3
        })
        .await;
    let found = findings(&evs, "split-ids");
    assert_eq!(
        found.len(),
        1,
        "one finding, on the third message: {found:#?}"
    );
    let f = found[0];
    assert_eq!(f["action"], "block");
    for channel in ["D1", "D2", "D3"] {
        let m = messages_in(&evs, channel);
        assert_eq!(m.len(), 1, "{channel}");
        assert_eq!(m[0]["action"], "allow", "{channel}: {}", m[0]);
    }
    let mut c9 = messages_in(&evs, "C9");
    c9.sort_by_key(|m| m["ts_ms"].as_u64());
    let ids: Vec<&Value> = c9.iter().map(|m| &m["id"]).collect();
    assert_eq!(
        f["message_id"], *ids[2],
        "the finding is on the third message"
    );
    assert_eq!(
        f["related"].as_array().expect("related message ids"),
        &ids.iter().map(|v| (*v).clone()).collect::<Vec<_>>(),
        "the finding names the three messages that added up"
    );
    assert_eq!(c9[2]["action"], "block");
    // Three different client connections carried them.
    let flows: std::collections::HashSet<&Value> = c9.iter().map(|m| &m["flow_id"]).collect();
    assert_eq!(flows.len(), 3);
}
