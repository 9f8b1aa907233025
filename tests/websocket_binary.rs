//! The real binary with the shipped rules on WebSocket traffic: a message
//! larger than the held window with a card number near its end is scanned
//! as it streams and closed with 1008 before it reaches the server whole
//! (with and without permessage-deflate); a benign one of the same size
//! arrives; the block is on record. Python `websockets` on both ends.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};

use common::pki::{LeafSpec, TestCa};
use common::Gatehouse;

const CARD: &str = "4556 7375 8689 9855";
const HOST: &str = "chat.example.test";

fn words(len: usize, seed: u32) -> String {
    let mut x = seed.max(1);
    let mut s = String::with_capacity(len + 8);
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.push(char::from(b'a' + (x % 26) as u8));
        if x.is_multiple_of(7) {
            s.push(' ');
        }
    }
    s.truncate(len);
    s
}

#[test]
fn a_card_at_the_end_of_a_3_mib_message_is_blocked_by_the_binary() {
    let root = TestCa::root("WS Binary Root");
    let sdir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&LeafSpec::new(&[HOST]))
        .write_pem(sdir.path(), "ws");
    let py = |s: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/py")
            .join(s)
    };
    let mut server = Command::new("python3")
        .arg(py("ws_big_server.py"))
        .arg(&cert)
        .arg(&key)
        .arg(CARD)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut port = String::new();
    out.read_line(&mut port).unwrap();
    let port: u16 = port.trim().parse().unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules");
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
         [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"{}\"\n\
         [intercept]\ninspect_window = 1048576\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        rules.display()
    );
    let gw = Gatehouse::start_in(dir, &config);

    let size = 3 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let benign = tmp.path().join("benign");
    std::fs::write(&benign, words(size, 5)).unwrap();
    let mut secret = words(size, 9);
    secret.replace_range(
        size - 4_000..size - 4_000 + CARD.len() + 2,
        &format!(" {CARD} "),
    );
    let secret_file = tmp.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();

    for compression in ["none", "deflate"] {
        let run = Command::new("python3")
            .arg(py("ws_big_client.py"))
            .args([
                &format!("http://{}", gw.proxy),
                &format!("127.0.0.1:{port}"),
                HOST,
            ])
            .arg(&gw.ca_cert)
            .arg(compression)
            .arg(&benign)
            .arg(&secret_file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let all = format!("{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
        assert_eq!(lines.len(), 2, "{compression}: {all}");
        assert_eq!(
            lines[0]["reply"],
            format!("got {size} card=False"),
            "{compression}: {all}"
        );
        assert_eq!(lines[1]["closed"], 1008, "{compression}: {all}");
    }
    // The server never received a message holding the card.
    let _ = server.kill();
    let _ = server.wait();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(!rest.contains("card=True"), "{rest}");
    assert_eq!(
        rest.matches(&format!("got {size} card=False")).count(),
        2,
        "{rest}"
    );

    let (code, found, err) = common::gatehouse(
        gw.dir.path(),
        &[
            "events",
            "search",
            "--journal",
            "--json",
            "--type",
            "dlp_finding",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let blocked = found
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|f| f["rule"] == "payment-card" && f["action"] == "block")
        .count();
    assert_eq!(blocked, 2, "{found}");
    assert!(!found.contains("8689"), "evidence is masked: {found}");
}

#[test]
fn a_socket_the_server_pushes_to_is_not_idle_while_the_client_only_listens() {
    let root = TestCa::root("WS Push Root");
    let sdir = tempfile::tempdir().unwrap();
    let (cert, key) = root
        .leaf(&LeafSpec::new(&["feed.test"]))
        .write_pem(sdir.path(), "ws");
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ws_push.py");
    // 12 pushes 0.4 s apart: 4.8 s of a socket the client never writes to.
    let mut server = Command::new("python3")
        .arg(&py)
        .arg("server")
        .arg(&cert)
        .arg(&key)
        .args(["12", "0.4"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut port)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    // An idle timeout far shorter than the session.
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  idle_timeout = \"1500ms\"\n[upstream]\nextra_roots = [\"root.pem\"]\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    let gw = Gatehouse::start_in(dir, config);
    let out = Command::new("python3")
        .arg(&py)
        .arg("client")
        .arg(format!("http://{}", gw.proxy))
        .arg(format!("127.0.0.1:{}", port.trim()))
        .arg("feed.test")
        .arg(&gw.ca_cert)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["received"], 12, "{v}\n{}", gw.log());
    assert_eq!(v["code"], 1000, "closed by the server, not cut: {v}");
}
