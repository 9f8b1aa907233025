//! Plain XMPP without STARTTLS through the running gateway: slixmpp against
//! a real Prosody that offers no TLS and allows plaintext auth. The stream
//! is read like STARTTLS'd XMPP: a benign message is delivered and
//! recorded, a card number is blocked — the stanza never reaches the
//! recipient, the sender gets a `policy-violation` stream error — and the
//! finding is joined to its message.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Gatehouse;

const CARD: &str = "4556737586899855";

struct Prosody {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prosody() -> Prosody {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let accounts = dir.path().join("data/chat%2etest/accounts");
    std::fs::create_dir_all(&accounts).unwrap();
    for user in ["alice", "bob"] {
        std::fs::write(
            accounts.join(format!("{user}.dat")),
            "return {\n\t[\"password\"] = \"pw\";\n};\n",
        )
        .unwrap();
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("prosody.cfg.lua");
    std::fs::write(
        &conf,
        format!(
            "run_as_root = true\ndaemonize = false\npidfile = \"{d}/prosody.pid\"\n\
             data_path = \"{d}/data\"\n\
             modules_enabled = {{ \"roster\"; \"saslauth\"; \"disco\"; \"posix\"; \"ping\" }}\n\
             modules_disabled = {{ \"s2s\" }}\nc2s_ports = {{ {port} }}\n\
             interfaces = {{ \"127.0.0.1\" }}\n\
             c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n\
             authentication = \"internal_plain\"\nstorage = \"internal\"\n\
             log = {{ {{ levels = {{ min = \"info\" }}, to = \"file\", filename = \"{d}/prosody.log\" }} }}\n\
             VirtualHost \"chat.test\"\n"
        ),
    )
    .unwrap();
    let child = Command::new("prosody")
        .arg("--config")
        .arg(&conf)
        .arg("-F")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prosody (installed by scripts/test.sh)");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "prosody did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Prosody {
        child,
        port,
        _dir: dir,
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_xmpp_is_read_and_a_blocked_stanza_never_arrives() {
    let server = prosody();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
        &dir.path().join("rules"),
    );
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  [rules]\ndir = \"rules\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gw = Gatehouse::start_in(dir, config);

    let card = format!("card {CARD} for the order");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/xmpp_plain.py"))
        .arg(gw.proxy.to_string())
        .arg(server.port.to_string())
        .args(["lunch at noon?", &card, "after the block"])
        .output()
        .expect("python3 with slixmpp");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let received: Vec<&str> = report["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(received.contains(&"lunch at noon?"), "{report}");
    assert!(
        received.iter().all(|r| !r.contains(CARD)),
        "the blocked stanza arrived: {report}"
    );
    assert!(
        !received.contains(&"after the block"),
        "the stream went on after the block: {report}"
    );
    assert_eq!(report["stream_errors"][0], "policy-violation", "{report}");

    let mut evs = Vec::new();
    let mut joined = false;
    for _ in 0..100 {
        evs = events(&gw);
        joined = evs
            .iter()
            .filter(|m| {
                m["type"] == "message"
                    && m["app"] == "xmpp"
                    && m["conversation"] == "bob@chat.test"
                    && m["action"] == "block"
            })
            .any(|m| {
                evs.iter().any(|f| {
                    f["type"] == "dlp_finding"
                        && f["rule"] == "payment-card"
                        && f["message_id"] == m["id"]
                })
            });
        if joined {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined, "{}", serde_json::Value::from(evs.clone()));
    assert!(
        evs.iter().any(|m| m["type"] == "message"
            && m["app"] == "xmpp"
            && m["action"] == "allow"
            && m["conversation"] == "bob@chat.test"),
        "{evs:?}"
    );
    let all = serde_json::Value::from(evs).to_string();
    assert!(!all.contains(CARD), "{all}");
}
