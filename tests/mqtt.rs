//! MQTT through the running gateway: paho-mqtt publishing through the
//! explicit proxy to a real mosquitto over TLS (8883-style), over
//! WebSockets behind TLS and in the clear (1883-style, the path transparent
//! interception of 1883 takes too), MQTT 3.1, 3.1.1 and 5. Every PUBLISH is a message
//! judged by the shipped rules; a blocked one never reaches the broker (a
//! subscriber connected straight to mosquitto never gets it, while it gets
//! the benign one sent before), and the events join the finding to the
//! message.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{LeafSpec, TestCa};
use common::Gatehouse;

const AWS_KEY: &str = "AKIAP8IX4EA4Q9OM4894";
const CARD: &str = "4556737586899855";
const BENIGN: &str = "temperature 21C line 4";

/// mosquitto with a TLS listener, a WebSockets-over-TLS listener and a
/// plain loopback listener for the observing subscriber; killed on drop.
struct Mosquitto {
    child: Child,
    tls: u16,
    wss: u16,
    plain: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mosquitto(root: &TestCa) -> Mosquitto {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&LeafSpec::new(&["broker.test"]))
        .write_pem(dir.path(), "broker");
    let (tls, wss, plain) = (free_port(), free_port(), free_port());
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nallow_anonymous true\nlog_dest stderr\n\
             listener {tls} 127.0.0.1\ncertfile {c}\nkeyfile {k}\n\
             listener {wss} 127.0.0.1\nprotocol websockets\ncertfile {c}\nkeyfile {k}\n\
             listener {plain} 127.0.0.1\n",
            c = cert.display(),
            k = key.display()
        ),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("mosquitto.log")).unwrap())
        .spawn()
        .expect("mosquitto (installed by scripts/test.sh)");
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in [tls, wss, plain] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Mosquitto {
        child,
        tls,
        wss,
        plain,
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

/// Runs `tests/py/mqtt_client.py`: each payload published (QoS 1) on its
/// own connection through the gateway; returns its JSON report.
fn publish(
    gw: &Gatehouse,
    broker: &Mosquitto,
    transport: &str,
    level: u8,
    topic: &str,
    payloads: &[&str],
) -> serde_json::Value {
    let port = match transport {
        "websockets" => broker.wss,
        "plain" => broker.plain,
        _ => broker.tls,
    };
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/mqtt_client.py"))
        .arg(gw.proxy.to_string())
        .args(["broker.test", &port.to_string()])
        .arg(&gw.ca_cert)
        .args([
            transport,
            &level.to_string(),
            &broker.plain.to_string(),
            topic,
        ])
        .args(payloads)
        .output()
        .expect("python3 with paho-mqtt (tests/requirements.txt)");
    assert!(
        out.status.success(),
        "mqtt client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
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

/// Waits until the journal holds a blocked `message` on `topic` whose
/// finding of `rule` names it; returns all events.
async fn blocked_and_joined(gw: &Gatehouse, topic: &str, rule: &str) -> Vec<serde_json::Value> {
    let mut evs = Vec::new();
    for _ in 0..100 {
        evs = events(gw);
        if joined(&evs, topic, rule).is_some() {
            return evs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no blocked mqtt message on {topic} with a joined {rule} finding: {}",
        serde_json::Value::from(evs)
    );
}

/// The id of a blocked `message` on `topic` that a `rule` finding names.
fn joined(evs: &[serde_json::Value], topic: &str, rule: &str) -> Option<String> {
    evs.iter()
        .filter(|e| {
            e["type"] == "message"
                && e["conversation"] == topic
                && e["app"] == "mqtt"
                && e["action"] == "block"
        })
        .filter_map(|m| m["id"].as_str())
        .find(|id| {
            evs.iter().any(|f| {
                f["type"] == "dlp_finding"
                    && f["rule"] == rule
                    && f["action"] == "block"
                    && f["message_id"].as_str() == Some(id)
            })
        })
        .map(str::to_string)
}

fn check_delivery(report: &serde_json::Value) {
    let received: Vec<&str> = report["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(received.contains(&BENIGN), "benign message lost: {report}");
    assert!(
        received
            .iter()
            .all(|r| !r.contains(AWS_KEY) && !r.contains(CARD)),
        "a blocked PUBLISH reached the broker: {report}"
    );
}

async fn run(transport: &str, level: u8) {
    let root = TestCa::root("MQTT Test Root");
    let broker = mosquitto(&root);
    let gw = gateway(&root);
    let topic = format!("plant/{transport}{level}");
    let aws = format!("{{\"note\":\"deploy\",\"aws_key\":\"{AWS_KEY}\"}}");
    let card = format!("card {CARD} for the order");
    let report = publish(
        &gw,
        &broker,
        transport,
        level,
        &topic,
        &[BENIGN, &aws, &card],
    );
    check_delivery(&report);
    let p = &report["publishes"];
    assert_eq!(p[0]["puback"], "Success", "{report}");
    if level == 5 {
        // MQTT 5 clients are told: PUBACK "Not authorized", then DISCONNECT
        // "Administrative action".
        for i in [1, 2] {
            assert_eq!(p[i]["puback"], "Not authorized", "{report}");
            assert_eq!(p[i]["disconnect"][0], "Administrative action", "{report}");
        }
    } else {
        for i in [1, 2] {
            assert!(p[i]["puback"].is_null(), "{report}");
        }
    }
    let evs = blocked_and_joined(&gw, &topic, "aws-access-key-id").await;
    assert!(joined(&evs, &topic, "payment-card").is_some(), "{evs:?}");
    // The benign message is recorded too, with its client id as sender.
    assert!(
        evs.iter().any(|e| e["type"] == "message"
            && e["conversation"] == topic.as_str()
            && e["action"] == "allow"
            && e["sender"] == "sensor-0"),
        "{evs:?}"
    );
    // Identification names MQTT, inside TLS or plain (a WebSocket flow
    // stays HTTP).
    if transport != "websockets" {
        assert!(
            evs.iter().any(|e| e["type"] == "connection"
                && e["protocol"] == "mqtt"
                && e["app"] == "mqtt"),
            "{evs:?}"
        );
    }
    // Nothing leaks the secrets.
    let all = serde_json::Value::from(evs).to_string();
    assert!(!all.contains(AWS_KEY) && !all.contains(CARD), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_over_tls_publishes_are_judged_and_blocked_ones_never_reach_the_broker() {
    run("tcp", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_over_tls_blocks_answer_not_authorized_and_administrative_action() {
    run("tcp", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_websockets_behind_tls_is_judged_per_publish() {
    run("websockets", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mqtt_in_a_tunnel_is_read_like_mqtt_inside_tls() {
    run("plain", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt31_over_tls_is_read_too() {
    run("tcp", 3).await;
}

/// Plain MQTT redirected to the transparent listener at a VPN-egress-like
/// router (network namespaces, nftables redirect of :1883), as an operator
/// deploys it: read like MQTT inside TLS.
#[test]
fn plain_mqtt_redirected_transparently_is_read() {
    use common::netns::{Netns, SERVER_V4};
    let tag = format!("m{}", std::process::id() % 100_000);
    let net = Netns::setup(&tag, 8443);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("user root\nallow_anonymous true\nlistener 1883 {SERVER_V4}\n"),
    )
    .unwrap();
    let mut broker = Command::new("ip")
        .args(["netns", "exec", &net.server, "mosquitto", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gdir = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
        &gdir.path().join("rules"),
    );
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\ntransparent_listen = \"[::]:8443\"\n\
         allowed_clients = [\"10.233.0.0/24\"]\nallowed_destinations = [\"10.233.1.0/24\"]\n\
         [rules]\ndir = \"rules\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let gw = Gatehouse::start_wrapped(gdir, config, &Netns::exec(&net.gateway), &[]);
    let topic = "plant/transparent";
    let aws = format!("{{\"aws_key\":\"{AWS_KEY}\"}}");
    let mut report = serde_json::Value::Null;
    // The broker may need a moment to bind in its namespace.
    for _ in 0..50 {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.client, "python3"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/mqtt_client.py"))
            .args(["-", SERVER_V4, "1883", "-", "plain", "4", "1883", topic])
            .args([BENIGN, &aws])
            .output()
            .unwrap();
        if out.status.success() {
            report = serde_json::from_slice(&out.stdout).unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!report.is_null(), "mqtt client never ran: {}", gw.log());
    check_delivery(&report);
    let mut found = false;
    for _ in 0..100 {
        let evs = events(&gw);
        if joined(&evs, topic, "aws-access-key-id").is_some() {
            assert!(
                evs.iter().any(|e| e["type"] == "connection"
                    && e["mode"] == "transparent"
                    && e["protocol"] == "mqtt"
                    && e["decision"] == "intercept"),
                "{evs:?}"
            );
            found = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(found, "{:?}", events(&gw));
    let _ = broker.kill();
    let _ = broker.wait();
    drop(gw);
    drop(net);
}
