//! matrix-nio, the real Matrix client library with end-to-end encryption
//! (vodozemac), through the real gateway against a real Synapse on an
//! in-house host (`matrix.corp.test`, mapped to `matrix` through
//! `intercept.app_catalog`): each Megolm-encrypted message gets its own
//! `message` event naming its room and algorithm (while the other user
//! really decrypts them), and a plain message with a card number is
//! blocked with a Matrix error nio reads (`M_FORBIDDEN`, our reference),
//! never reaching Synapse.

mod clients_support;
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clients_support::{events_until, of_type, run_client};
use common::pki::{LeafSpec, TestCa};

const HOST: &str = "matrix.corp.test";

/// A throw-away Synapse with a TLS client listener on loopback.
struct Synapse {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Synapse {
    fn start(root: &TestCa) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (cert, key) = root.leaf(&LeafSpec::new(&[HOST])).write_pem(d, "tls");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A fixed test signing key (Synapse's "ed25519 <id> <seed>" format)
        // spares the key-generation start.
        std::fs::write(
            d.join("signing.key"),
            "ed25519 a_test AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
        )
        .unwrap();
        let rc = "{per_second: 1000, burst_count: 1000}";
        let config = format!(
            "server_name: \"{HOST}\"\npid_file: {d}/hs.pid\nreport_stats: false\n\
             listeners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: true\n    resources:\n      - names: [client]\n        compress: false\n\
             tls_certificate_path: {cert}\ntls_private_key_path: {key}\n\
             database:\n  name: sqlite3\n  args:\n    database: {d}/homeserver.db\n\
             media_store_path: {d}/media\nsigning_key_path: {d}/signing.key\n\
             trusted_key_servers: []\nsuppress_key_server_warning: true\n\
             enable_registration: true\nenable_registration_without_verification: true\n\
             macaroon_secret_key: \"test-macaroon\"\nform_secret: \"test-form\"\n\
             rc_message: {rc}\nrc_registration: {rc}\n\
             rc_login: {{address: {rc}, account: {rc}, failed_attempts: {rc}}}\n\
             rc_joins: {{local: {rc}, remote: {rc}}}\nrc_key_requests: {rc}\n\
             url_preview_enabled: false\npresence: {{enabled: false}}\n",
            d = d.display(),
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(d.join("hs.yaml"), config).unwrap();
        let log = d.join("synapse.log");
        let child = Command::new("python3")
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(d.join("hs.yaml"))
            .current_dir(d)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("python3 with matrix-synapse (tests/requirements.txt)");
        let ca = d.join("root.pem");
        std::fs::write(&ca, root.pem()).unwrap();
        let mut s = Self {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new("curl")
                .args(["-fsS", "--max-time", "2", "--cacert"])
                .arg(&ca)
                .args(["--resolve", &format!("{HOST}:{port}:127.0.0.1")])
                .arg(format!("https://{HOST}:{port}/_matrix/client/versions"))
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("synapse exited {status}:\n{}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "synapse did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s.port = port;
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

#[test]
fn matrix_nio_e2ee_messages_each_get_an_event_and_a_card_is_refused_as_m_forbidden() {
    let root = TestCa::root("Upstream Test Root");
    let started = Instant::now();
    let synapse = Synapse::start(&root);
    eprintln!("synapse answered after {:?}", started.elapsed());
    let gw = clients_support::gateway(&root, &[(HOST, "matrix")], "");
    let store = tempfile::tempdir().unwrap();
    let steps = run_client(
        "matrix_client.py",
        &[
            &format!("http://{}", gw.proxy),
            gw.ca_cert.to_str().unwrap(),
            &format!("https://{HOST}:{}", synapse.port),
            store.path().to_str().unwrap(),
        ],
    );
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {steps:#?}\n{}", gw.log()))
            .clone()
    };
    for name in [
        "login_alice",
        "login_bob",
        "plain",
        "encrypted_0",
        "encrypted_1",
    ] {
        let s = step(name);
        assert_eq!(s["ok"], true, "{name}: {s}\n{}", gw.log());
    }
    // The card: nio's RoomSendError carries our errcode and reference.
    let card = step("card");
    assert_eq!(card["ok"], false, "{card}");
    assert_eq!(card["errcode"], "M_FORBIDDEN", "{card}");
    let message = card["message"].as_str().unwrap();
    assert!(message.contains("payment-card"), "{card}");
    let reference = message
        .rsplit("reference ")
        .next()
        .unwrap()
        .trim_end_matches(')');
    assert!(is_uuid(reference), "{card}");
    // The encrypted messages were real: Bob decrypted both.
    let bob = step("bob_reads");
    assert_eq!(
        bob["decrypted"],
        serde_json::json!(["first secret plan", "second secret plan"]),
        "{bob}"
    );
    // Synapse stored the clean plain message only.
    let sends = synapse
        .log()
        .lines()
        .filter(|l| l.contains("Processed request") && l.contains("/send/m.room.message/"))
        .count();
    assert_eq!(sends, 1, "{}", synapse.log());

    let enc_room = step("encrypted_room")["room"].as_str().unwrap().to_owned();
    let plain_room = step("plain_room")["room"].as_str().unwrap().to_owned();
    let evs = events_until(&gw, |evs| {
        of_type(evs, "message")
            .iter()
            .filter(|m| m["extractor"] == "e2ee")
            .count()
            >= 2
            && !of_type(evs, "dlp_finding").is_empty()
    });
    let all = serde_json::Value::from(evs.clone()).to_string();
    let messages = of_type(&evs, "message");
    // One event per encrypted message, naming its room and algorithm.
    let encrypted: Vec<_> = messages
        .iter()
        .filter(|m| m["extractor"] == "e2ee")
        .collect();
    assert_eq!(encrypted.len(), 2, "{all}");
    for m in &encrypted {
        assert_eq!(m["app"], "matrix", "{m}");
        assert_eq!(m["conversation"], enc_room.as_str(), "{m}");
        assert_eq!(m["e2ee"]["algorithm"], "m.megolm.v1.aes-sha2", "{m}");
        assert!(m["e2ee"]["bytes"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["action"], "allow", "{m}");
        assert!(m.get("text").is_none(), "{m}");
    }
    assert_ne!(encrypted[0]["id"], encrypted[1]["id"]);
    // The card: one blocked message in the plain room, named by the
    // reference nio showed, with one finding (body and formatted_body
    // repeat each other) joined to it.
    let blocked = messages
        .iter()
        .find(|m| m["conversation"] == plain_room.as_str() && m["action"] == "block")
        .unwrap_or_else(|| panic!("no blocked message: {all}"));
    assert_eq!(blocked["id"], reference, "{all}");
    let findings = of_type(&evs, "dlp_finding");
    let cards: Vec<_> = findings
        .iter()
        .filter(|f| f["message_id"] == blocked["id"] && f["rule"] == "payment-card")
        .collect();
    assert_eq!(cards.len(), 1, "{all}");
    assert_eq!(cards[0]["app"], "matrix");
    assert!(
        messages
            .iter()
            .any(|m| m["conversation"] == plain_room.as_str() && m["action"] == "allow"),
        "{all}"
    );
    assert!(!all.contains("4556737586899855"), "evidence must be masked");
    assert!(
        !all.contains("secret plan"),
        "no plaintext of E2EE messages"
    );
}
