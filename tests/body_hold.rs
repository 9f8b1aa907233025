//! Nothing decrypted passes unread because of size, pauses or decoding: a
//! real `gatehouse` process with the shipped rule packs, curl and a raw
//! Python TLS client, a real HTTPS upstream, and the event journal.
//!
//! - A compressed body whose decoding hits a cap (a gzip bomb with a card
//!   number after it) gets the strictest action of the rules that could
//!   have applied — block — held (403) or streamed (cut), and a
//!   `decode_limit` finding saying so; a normal gzip body passes.
//! - A client that pauses before and inside its body still has it held
//!   whole (up to the window) and judged with its structure decoded: a card
//!   number written in JSON escapes and split across the pause is blocked;
//!   a slow benign upload arrives intact.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use common::Gatehouse;

const HOST: &str = "upload.example.test";
const CARD: &str = "4556 7375 8689 9855";
/// Bytes of body held for inspection in these tests.
const WINDOW: usize = 64 * 1024;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Pseudo-random lowercase words (no digits: nothing a rule looks for).
fn words(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 2 + (x >> 28) as usize % 7;
        for i in 0..n {
            out.push(b'a' + ((x >> (i * 3)) % 26) as u8);
        }
        out.push(b' ');
    }
    out.truncate(len);
    out
}

async fn start() -> (Gatehouse, SocketAddr) {
    start_with("").await
}

/// As [`start`], with more `[proxy]` keys.
async fn start_with(proxy: &str) -> (Gatehouse, SocketAddr) {
    let root = TestCa::root("Body Hold Upstream Root");
    let server = https_server(HOST, root.leaf(&LeafSpec::new(&[HOST]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules");
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n{proxy}\n\
         [intercept]\ninspect_window = {WINDOW}\n\
         [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"{}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
        rules.display()
    );
    (Gatehouse::start_in(dir, &config), server)
}

/// curl POSTs `body` (a file) to `path`; returns (headers + body, stderr).
async fn post(
    gw: &Gatehouse,
    server: SocketAddr,
    path: &str,
    headers: &[&str],
    body: &Path,
) -> (String, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "-D", "-"])
        .args(["--proxy", &format!("http://{}", gw.proxy)])
        .args(["--cacert", gw.ca_cert.to_str().unwrap()])
        .args(["--connect-to", &format!("{HOST}:443:{server}")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .args(["--data-binary", &format!("@{}", body.display())])
        .arg(format!("https://{HOST}{path}"))
        .output()
        .await
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The status of the last response in curl's `-D -` output (after the
/// proxy's CONNECT answer), if any.
fn status(out: &str) -> Option<u16> {
    out.lines()
        .filter(|l| l.starts_with("HTTP/"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .next_back()
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

/// Waits (bounded) until `n` events match `pred`; returns them.
async fn wait_events(
    gw: &Gatehouse,
    n: usize,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    for _ in 0..100 {
        found = events(gw).into_iter().filter(|e| pred(e)).collect();
        if found.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found
}

fn field<'a>(e: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    // Events search prints either the event itself or it under "event".
    match e.get(name) {
        Some(v) => v,
        None => e
            .get("event")
            .and_then(|e| e.get(name))
            .unwrap_or(&serde_json::Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_with_a_card_after_the_cap_is_blocked_and_recorded() {
    let (gw, server) = start().await;
    let tmp = tempfile::tempdir().unwrap();

    // 2 MiB of zeros, then a card: ~2 KiB of gzip, held whole; decoding
    // stops at the ratio cap long before the card.
    let mut plain = vec![0u8; 2 << 20];
    plain.extend_from_slice(format!(" card {CARD} ").as_bytes());
    let bomb = tmp.path().join("bomb.gz");
    std::fs::write(&bomb, gzip(&plain)).unwrap();
    let (out, err) = post(
        &gw,
        server,
        "/echo",
        &["content-type: text/plain", "content-encoding: gzip"],
        &bomb,
    )
    .await;
    assert_eq!(status(&out), Some(403), "{out}{err}\n{}", gw.log());
    assert!(
        out.to_ascii_lowercase()
            .contains("x-gatehouse-policy: dlp rule decode_limit"),
        "{out}"
    );
    assert!(!out.contains("len="), "the upstream answered: {out}");

    // Larger than the window, so streamed: random words the gzip cannot
    // shrink much, then 20 MiB of zeros (over the output cap), then the
    // card. The body is cut; the upstream never gets it whole.
    let mut plain = words(200_000, 7);
    plain.extend_from_slice(&vec![0u8; 20 << 20]);
    plain.extend_from_slice(format!(" card {CARD} ").as_bytes());
    let gz = gzip(&plain);
    assert!(gz.len() > WINDOW, "{}", gz.len());
    let streamed = tmp.path().join("streamed.gz");
    std::fs::write(&streamed, &gz).unwrap();
    let (out, err) = post(
        &gw,
        server,
        "/echo",
        &["content-type: text/plain", "content-encoding: gzip"],
        &streamed,
    )
    .await;
    assert!(
        !out.contains(&format!("len={}", gz.len())),
        "the upstream got the whole body: {out}{err}"
    );
    assert!(matches!(status(&out), Some(403) | None), "{out}{err}");

    // A normal gzip body passes, whole.
    let fine = gzip(&words(300_000, 11));
    let fine_file = tmp.path().join("fine.gz");
    std::fs::write(&fine_file, &fine).unwrap();
    let (out, err) = post(
        &gw,
        server,
        "/echo",
        &["content-type: text/plain", "content-encoding: gzip"],
        &fine_file,
    )
    .await;
    assert_eq!(status(&out), Some(200), "{out}{err}");
    assert!(out.contains(&format!("len={} ", fine.len())), "{out}");

    // Recorded: a decode_limit finding per bomb, with the action taken.
    let limits = wait_events(&gw, 2, |e| {
        field(e, "type") == "dlp_finding" && field(e, "rule") == "decode_limit"
    })
    .await;
    assert!(limits.len() >= 2, "{limits:#?}\n{}", gw.log());
    for f in &limits {
        assert_eq!(field(f, "action"), "block", "{f:#}");
    }
    // The cut is recorded when the cut stream ends, after its finding.
    let cuts = wait_events(&gw, 1, |e| e.to_string().contains("dlp_stream_cut")).await;
    let all = serde_json::Value::from(events(&gw)).to_string();
    assert!(!cuts.is_empty(), "the cut is recorded: {all}");
}

/// Runs the raw-socket client; returns its JSON answer.
async fn slow_post(
    gw: &Gatehouse,
    server: SocketAddr,
    ctype: &str,
    body: &[u8],
    pause: f64,
    pieces: usize,
) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("body");
    std::fs::write(&file, body).unwrap();
    let out = tokio::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/slow_body_client.py"))
        .arg(gw.proxy.to_string())
        .arg(server.to_string())
        .arg(HOST)
        .arg(&gw.ca_cert)
        .args(["/echo", ctype])
        .arg(&file)
        .arg(pause.to_string())
        .arg(pieces.to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_pauses_is_held_whole_and_judged_decoded() {
    let (gw, server) = start().await;

    // Every digit of the card as a JSON escape: only JSON decoding shows
    // it. The head, a 1.5 s pause, half the body (splitting the card), a
    // pause, the rest.
    let escaped: String = CARD
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    let body = format!("{{\"note\":\"for the refund\",\"text\":\"card {escaped} exp 12/29\"}}");
    assert!(!body.contains("4556"));
    let r = slow_post(&gw, server, "application/json", body.as_bytes(), 1.5, 2).await;
    assert_eq!(r["status"], 403, "{r}\n{}", gw.log());
    assert!(
        r["headers"]["x-gatehouse-policy"]
            .as_str()
            .is_some_and(|p| p.contains("payment-card")),
        "{r}"
    );
    assert!(!r["body"].as_str().unwrap_or("").contains("len="), "{r}");

    // A slow benign upload, larger than the window, arrives intact.
    let benign = words(200_000, 3);
    let r = slow_post(&gw, server, "text/plain", &benign, 1.5, 3).await;
    assert_eq!(r["status"], 200, "{r}\n{}", gw.log());
    use sha2::Digest;
    let sha = format!("{:x}", sha2::Sha256::digest(&benign));
    assert!(
        r["body"]
            .as_str()
            .is_some_and(|b| b.contains(&format!("len={} sha256={sha}", benign.len()))),
        "{r}"
    );

    let findings = wait_events(&gw, 1, |e| {
        field(e, "type") == "dlp_finding" && field(e, "rule") == "payment-card"
    })
    .await;
    assert_eq!(field(&findings[0], "action"), "block", "{findings:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_idle_past_the_idle_timeout_ends_the_flow_unforwarded() {
    let (gw, server) = start_with("idle_timeout = \"2s\"").await;
    // Half a benign body, then 5 s of silence (idle timeout 2 s).
    let body = words(20_000, 13);
    let r = slow_post(&gw, server, "text/plain", &body, 5.0, 2).await;
    assert_ne!(r["status"], 200, "{r}\n{}", gw.log());
    assert!(
        !r["body"].as_str().unwrap_or("").contains("len="),
        "the upstream answered: {r}"
    );
    let closed = wait_events(&gw, 1, |e| {
        field(e, "type") == "connection"
            && field(e, "host") == HOST
            && field(e, "close_reason") == "idle_timeout"
    })
    .await;
    assert_eq!(closed.len(), 1, "{:#?}\n{}", events(&gw), gw.log());
}
