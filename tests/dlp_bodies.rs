//! DLP on bodies end to end, through the in-process gateway with the real
//! inspection hooks, real TLS clients (curl, rustls) and a real HTTPS
//! upstream that records what reached it: response bodies scanned with
//! inbound rules, bodies larger than the inspection window scanned as they
//! stream (across chunk boundaries, compressed), and redaction that keeps
//! escaped JSON and forms valid.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::inproc::{client_config, tls_through, Collect, TestGateway};
use common::pki::{LeafSpec, TestCa};
use gatehouse::events::{Direction, Event};
use gatehouse::inspect::{Inspection, Rules};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &str = r#"
[[rule]]
id = "inbound-ticket"
name = "Internal ticket ids arriving from outside"
severity = "high"
action = "block"
pattern = 'INTERNAL-[0-9A-F]{10}'
[rule.scope]
direction = "inbound"

[[rule]]
id = "deploy-token"
name = "Deploy tokens leaving"
severity = "critical"
action = "block"
pattern = 'dtok_[a-z0-9]{20}'

[[rule]]
id = "watch-word"
name = "Watched code word"
severity = "medium"
action = "alert"
[rule.keywords]
words = ["zebracorn"]
[rule.scope]
direction = "both"

[[rule]]
id = "api-key"
name = "Live API keys"
severity = "critical"
action = "redact"
pattern = 'sk_live_[a-z0-9]{16}'
[rule.scope]
direction = "both"
"#;

const TICKET: &str = "INTERNAL-7F3A9C2E1B";
const TOKEN: &str = "dtok_k3j4h5g6f7d8s9a0q1w2";
const API_KEY: &str = "sk_live_4eC39HqLyjWDarjt";
const WINDOW: usize = 16 * 1024;

/// What one request delivered to the upstream.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_length: Option<String>,
    body: Vec<u8>,
    /// The body arrived whole (its stream did not end in an error).
    complete: bool,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// Filler text that compresses about as well as prose (3–4x), `len` bytes.
fn filler(len: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "lorem ", "ipsum ", "dolor ", "sit ", "amet ", "chat ", "ok ", "see ",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut x: u32 = 99;
    while out.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.extend_from_slice(WORDS[(x >> 16) as usize % 8].as_bytes());
        if x.is_multiple_of(7) {
            out.extend_from_slice(format!("{} ", x % 9973).as_bytes());
        }
    }
    out.truncate(len);
    out
}

fn with_at(mut body: Vec<u8>, at: usize, what: &str) -> Vec<u8> {
    body[at..at + what.len()].copy_from_slice(what.as_bytes());
    body
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn streamed(data: Vec<u8>, frame: usize) -> Body {
    let data = Bytes::from(data);
    let frames: Vec<_> = (0..data.len().div_ceil(frame))
        .map(|i| {
            Ok::<_, Infallible>(Frame::data(
                data.slice(i * frame..((i + 1) * frame).min(data.len())),
            ))
        })
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// The upstream: records every request body; GET routes answer with
/// bodies that carry data inbound rules look for.
async fn answer(
    req: http::Request<Incoming>,
    log: Log,
) -> Result<http::Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let content_length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().unwrap().to_string());
    let mut body = Vec::new();
    let mut complete = true;
    let mut incoming = req.into_body();
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body.extend_from_slice(d);
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let n = body.len();
    log.lock().unwrap().push(Received {
        path: path.clone(),
        content_length,
        body,
        complete,
    });
    let mut resp = http::Response::builder().header("content-type", "text/plain");
    let body = match path.as_str() {
        "/leak" => Full::new(Bytes::from(format!("your ticket is {TICKET}, thanks\n"))).boxed(),
        "/outbound-only" => Full::new(Bytes::from(format!("token {TOKEN}\n"))).boxed(),
        "/fine" => Full::new(Bytes::from_static(b"nothing to see\n")).boxed(),
        "/key-json" => {
            if let Some(h) = resp.headers_mut() {
                h.insert(
                    "content-type",
                    http::HeaderValue::from_static("application/json"),
                );
            }
            Full::new(Bytes::from_static(
                br#"{"keys":[{"name":"prod","value":"sk_live_4eC3\u0039HqLyjWDarjt"}],"ok":true}"#,
            ))
            .boxed()
        }
        // Identity, streamed, the ticket far past the window.
        "/late-leak" => streamed(with_at(filler(400_000), 300_000, TICKET), 8_192),
        // Gzip, streamed, the ticket far past the window once decompressed.
        "/gz-leak" => {
            resp = resp.header("content-encoding", "gzip");
            streamed(gzip(&with_at(filler(1 << 20), 900_000, TICKET)), 8_192)
        }
        "/gz-clean" => {
            resp = resp.header("content-encoding", "gzip");
            streamed(gzip(&filler(1 << 20)), 8_192)
        }
        _ => Full::new(Bytes::from(format!("got {n}\n"))).boxed(),
    };
    Ok(resp.body(body).unwrap())
}

async fn upstream(root: &TestCa) -> (SocketAddr, Log) {
    let cert = root.leaf(&LeafSpec::new(&["api.test", "slack.com"]));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let served = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, log) = (acceptor.clone(), served.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| answer(req, log.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

struct Setup {
    gw: TestGateway,
    server: SocketAddr,
    log: Log,
    events: Arc<Collect>,
    ca: std::path::PathBuf,
    _rules: tempfile::TempDir,
}

async fn setup() -> Setup {
    let root = TestCa::root("DLP Bodies Test Root");
    let (server, log) = upstream(&root).await;
    let rules_dir = tempfile::tempdir().unwrap();
    std::fs::write(rules_dir.path().join("test.toml"), RULES).unwrap();
    let events = Arc::new(Collect::default());
    let rules = Arc::new(Rules::load(rules_dir.path()).unwrap());
    let inspection = Arc::new(Inspection::new(rules, events.clone(), false));
    let gw = TestGateway::start_with(&[&root.pem()], inspection, |c| {
        c.intercept.inspect_window = WINDOW;
    })
    .await;
    let ca = gw.ca_file();
    Setup {
        gw,
        server,
        log,
        events,
        ca,
        _rules: rules_dir,
    }
}

impl Setup {
    /// Runs curl through the gateway (`--connect-to` sends api.test and
    /// slack.com to the upstream); returns (exit code, stdout, stderr).
    async fn curl(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "30"])
            .args(["--proxy", &format!("http://{}", self.gw.proxy)])
            .args(["--cacert", self.ca.to_str().unwrap()])
            .args(["--connect-to", &format!("api.test:443:{}", self.server)])
            .args(["--connect-to", &format!("slack.com:443:{}", self.server)])
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn findings(&self) -> Vec<gatehouse::events::DlpFindingEvent> {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::DlpFinding(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    fn policies(&self) -> Vec<gatehouse::events::PolicyEvent> {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Policy(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits (bounded) for a finding of `rule`.
    async fn finding(&self, rule: &str) -> gatehouse::events::DlpFindingEvent {
        for _ in 0..200 {
            if let Some(f) = self.findings().into_iter().find(|f| f.rule == rule) {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "no {rule} finding; events: {:#?}",
            self.events.0.lock().unwrap()
        );
    }

    /// No raw secret in any event, ever.
    fn assert_events_masked(&self, secrets: &[&str]) {
        let all = format!("{:?}", self.events.0.lock().unwrap());
        for s in secrets {
            assert!(!all.contains(s), "raw {s} in an event: {all}");
        }
    }
}

fn write_temp(dir: &std::path::Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_rule_blocks_a_response_with_a_403_naming_the_rule() {
    let s = setup().await;
    // Two URLs, one connection: the blocked response, then a clean one.
    let (code, out, err) = s
        .curl(&[
            "-w",
            "\nstatus=%{http_code}\n",
            "https://api.test/leak",
            "https://api.test/fine",
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let (first, second) = out.split_once("status=403").expect(&out);
    assert!(
        first.contains("inbound-ticket"),
        "the page names the rule: {first}"
    );
    assert!(
        !out.contains(TICKET),
        "the data never reaches the client: {out}"
    );
    assert!(
        second.contains("nothing to see") && second.contains("status=200"),
        "{second}"
    );

    // Outbound-only rules do not look at responses.
    let (code, out, _) = s
        .curl(&[
            "-w",
            "\nstatus=%{http_code}\n",
            "https://api.test/outbound-only",
        ])
        .await;
    assert!(
        code == 0 && out.contains(TOKEN) && out.contains("status=200"),
        "{out}"
    );

    let f = s.finding("inbound-ticket").await;
    assert_eq!(f.direction, Direction::Inbound);
    assert_eq!(f.action, "block");
    // The rule's default evidence: its last four kept, 20 characters of
    // context either side.
    assert!(
        f.evidence.as_str().contains("********-******2E1B, thanks"),
        "{:?}",
        f.evidence
    );
    assert!(!s.findings().iter().any(|f| f.rule == "deploy-token"));
    s.assert_events_masked(&[TICKET, TOKEN]);

    // The same over HTTP/2 with a rustls client: a 403 on that stream.
    let (cfg, _) = client_config(std::slice::from_ref(&s.gw.ca_der), &[b"h2"], false);
    let tls = tls_through(s.gw.proxy, s.server, "api.test", cfg)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    for (path, status) in [("/leak", 403), ("/fine", 200)] {
        let req = http::Request::get(format!("https://api.test{path}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let policy = resp
            .headers()
            .get("x-gatehouse-policy")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains(TICKET), "{body}");
        if status == 403 {
            assert_eq!(policy.as_deref(), Some("DLP rule inbound-ticket"));
        }
    }
    s.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_past_the_window_is_cut_when_an_inbound_rule_blocks() {
    let s = setup().await;
    for path in ["/late-leak", "/gz-leak"] {
        let (code, out, err) = s
            .curl(&[
                "-o",
                "/dev/null",
                "-w",
                "status=%{http_code} size=%{size_download}",
                &format!("https://api.test{path}"),
            ])
            .await;
        // Headers went out before the ticket was seen: the body ends in an
        // error, never cleanly.
        assert_ne!(code, 0, "{path}: the transfer must fail: {out} {err}");
        assert!(out.contains("status=200"), "{path}: {out} {err}");
    }
    // A clean compressed response of the same size streams through whole.
    let (code, out, err) = s
        .curl(&[
            "-o",
            "/dev/null",
            "-w",
            "status=%{http_code}",
            "https://api.test/gz-clean",
        ])
        .await;
    assert!(code == 0 && out.contains("status=200"), "{out} {err}");

    let tickets: Vec<_> = s
        .findings()
        .into_iter()
        .filter(|f| f.rule == "inbound-ticket")
        .collect();
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    assert!(tickets.iter().all(|f| f.direction == Direction::Inbound));
    // Offsets are in the decoded body: both tickets were planted there.
    let mut starts: Vec<u64> = tickets.iter().map(|f| f.start).collect();
    starts.sort();
    assert_eq!(starts, vec![300_000, 900_000]);
    let cuts: Vec<_> = s
        .policies()
        .into_iter()
        .filter(|p| p.kind == "dlp_stream_cut")
        .collect();
    assert_eq!(cuts.len(), 2, "{cuts:#?}");
    assert!(cuts
        .iter()
        .all(|p| p.action == "reset" && p.rule.as_deref() == Some("inbound-ticket")));
    assert!(!s.findings().iter().any(|f| f.rule == "decode_limit"));
    s.assert_events_masked(&[TICKET]);
    s.gw.stop().await;
}

/// Sends a POST with a Content-Length over a rustls connection through the
/// gateway in two writes with a pause between, so the gateway's window ends
/// exactly where the first write does. Returns the response.
async fn post_in_two(s: &Setup, path: &str, first: &[u8], second: &[u8]) -> String {
    let (cfg, _) = client_config(std::slice::from_ref(&s.gw.ca_der), &[b"http/1.1"], false);
    let (tcp, status) = common::inproc::tunnel(s.gw.proxy, s.server).await;
    assert!(status.contains(" 200"), "{status}");
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("api.test").unwrap(), tcp)
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: api.test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        first.len() + second.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    tls.write_all(second).await.unwrap();
    tls.flush().await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_across_the_window_boundary_and_past_it_are_found() {
    let s = setup().await;

    // An alert word split by the window's end ("zebr|acorn"): found, the
    // upload goes through. (Spaces around it: keywords match whole words.)
    let body = with_at(filler(64 * 1024), WINDOW - 1, " zebracorn ");
    let resp = post_in_two(
        &s,
        "/straddle-alert",
        &body[..WINDOW + 4],
        &body[WINDOW + 4..],
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let f = s.finding("watch-word").await;
    assert_eq!((f.direction, f.start), (Direction::Outbound, WINDOW as u64));
    let got = s.received("/straddle-alert");
    assert!(got.len() == 1 && got[0].complete && got[0].body == body);

    // A blocking token split the same way: the upload is cut before the
    // upstream has it whole, and the client is told which rule.
    let body = with_at(filler(64 * 1024), WINDOW - 10, TOKEN);
    let resp = post_in_two(&s, "/straddle-block", &body[..WINDOW], &body[WINDOW..]).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("deploy-token") && !resp.contains(TOKEN),
        "{resp}"
    );
    assert!(
        s.received("/straddle-block").iter().all(|r| !r.complete),
        "the upstream must never get the whole body"
    );
    let f = s.finding("deploy-token").await;
    assert_eq!(
        (f.direction, f.start),
        (Direction::Outbound, (WINDOW - 10) as u64)
    );
    assert!(s
        .policies()
        .iter()
        .any(|p| p.kind == "dlp_stream_cut" && p.rule.as_deref() == Some("deploy-token")));

    // Far past the window in a large upload by curl: found, event emitted.
    let tmp = tempfile::tempdir().unwrap();
    let big = with_at(filler(600_000), 449_999, " zebracorn ");
    let file = write_temp(tmp.path(), "big.txt", &big);
    let (code, out, err) = s
        .curl(&[
            "-H",
            "content-type: text/plain",
            "--data-binary",
            &format!("@{file}"),
            "https://api.test/big-upload",
        ])
        .await;
    assert!(code == 0 && out.contains("got 600000"), "{out}{err}");
    assert!(s.findings().iter().any(|f| f.rule == "watch-word"
        && f.start == 450_000
        && f.direction == Direction::Outbound));
    s.assert_events_masked(&[TOKEN]);
    s.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_uploads_past_the_window_are_decompressed_and_scanned() {
    let s = setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let plain = with_at(filler(1 << 20), 799_999, " zebracorn ");
    let gz = gzip(&plain);
    assert!(
        gz.len() > 4 * WINDOW,
        "the compressed body must outgrow the window"
    );
    let file = write_temp(tmp.path(), "up.gz", &gz);
    let (code, out, err) = s
        .curl(&[
            "-H",
            "content-type: text/plain",
            "-H",
            "content-encoding: gzip",
            "--data-binary",
            &format!("@{file}"),
            "https://api.test/gz-upload",
        ])
        .await;
    assert!(
        code == 0 && out.contains(&format!("got {}", gz.len())),
        "{out}{err}"
    );
    let f = s.finding("watch-word").await;
    assert_eq!((f.direction, f.start), (Direction::Outbound, 800_000));
    let got = s.received("/gz-upload");
    assert_eq!(
        gunzip(&got[0].body),
        plain,
        "the upstream gets the body unchanged"
    );

    // A decompression bomb is not scanned to the end, and says so; what
    // was not read gets the strictest rule that could apply (block rules
    // apply outbound): the body is cut and the client gets the block page.
    let bomb = gzip(&vec![b'a'; 64 << 20]);
    let file = write_temp(tmp.path(), "bomb.gz", &bomb);
    let (code, out, err) = s
        .curl(&[
            "-H",
            "content-encoding: gzip",
            "--data-binary",
            &format!("@{file}"),
            "https://api.test/bomb",
        ])
        .await;
    assert!(
        code == 0 && out.contains("blocked") && out.contains("decode_limit"),
        "{out}{err}"
    );
    assert!(
        s.received("/bomb").iter().all(|r| !r.complete),
        "the upstream never gets the bomb whole"
    );
    let f = s.finding("decode_limit").await;
    assert_eq!(f.direction, Direction::Outbound);
    assert_eq!(f.action, "block");
    s.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_secrets_are_redacted_and_the_upstream_gets_valid_bodies() {
    let s = setup().await;
    let json_ct = "content-type: application/json";

    // A JSON body no app extractor reads, the key written with escapes.
    let body = r#"{"note":"use sk_live_4eC39Hq\u004cyjWDarjt, \"quoted\" \/ ok","n":[1,2]}"#;
    let (code, out, err) = s
        .curl(&[
            "-H",
            json_ct,
            "--data-binary",
            body,
            "https://api.test/submit",
        ])
        .await;
    assert!(code == 0 && out.contains("got"), "{out}{err}");
    let got = &s.received("/submit")[0];
    assert_eq!(
        got.content_length.as_deref(),
        Some(got.body.len().to_string().as_str())
    );
    let v: serde_json::Value = serde_json::from_slice(&got.body).expect("valid JSON upstream");
    let note = v["note"].as_str().unwrap();
    assert!(
        !note.contains(API_KEY) && note.contains("\"quoted\" / ok"),
        "{note}"
    );
    assert_eq!(v["n"], serde_json::json!([1, 2]));

    // A Slack message: the extractor reads the text, the body is rewritten.
    let body = r#"{"channel":"C042","text":"prod key: sk_live_4eC39HqLyjWDa\u0072jt"}"#;
    let (code, out, err) = s
        .curl(&[
            "-H",
            json_ct,
            "--data-binary",
            body,
            "https://slack.com/api/chat.postMessage",
        ])
        .await;
    assert!(code == 0 && out.contains("got"), "{out}{err}");
    let got = &s.received("/api/chat.postMessage")[0];
    let v: serde_json::Value = serde_json::from_slice(&got.body).expect("valid JSON upstream");
    assert_eq!(v["channel"], "C042");
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with("prod key: ") && !text.contains(API_KEY),
        "{text}"
    );

    // A form with the key percent-encoded.
    let (code, out, err) = s
        .curl(&[
            "--data-binary",
            "a=1&key=sk_live_4eC39Hq%4Cyj%57Darjt&z=%E2%9C%93",
            "https://api.test/form",
        ])
        .await;
    assert!(code == 0 && out.contains("got"), "{out}{err}");
    let got = &s.received("/form")[0];
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&got.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    assert!(
        !pairs[1].1.contains(API_KEY) && pairs[2].1 == "✓",
        "{pairs:?}"
    );

    // Gzip JSON: recompressed after the rewrite.
    let tmp = tempfile::tempdir().unwrap();
    let plain = r#"{"note":"sk_live_4eC39HqLyjWDarj\u0074"}"#;
    let file = write_temp(tmp.path(), "j.gz", &gzip(plain.as_bytes()));
    let (code, out, err) = s
        .curl(&[
            "-H",
            json_ct,
            "-H",
            "content-encoding: gzip",
            "--data-binary",
            &format!("@{file}"),
            "https://api.test/gz-json",
        ])
        .await;
    assert!(code == 0 && out.contains("got"), "{out}{err}");
    let got = &s.received("/gz-json")[0];
    let v: serde_json::Value = serde_json::from_slice(&gunzip(&got.body)).unwrap();
    assert!(!v["note"].as_str().unwrap().contains(API_KEY));

    // Past the window, in a plain streamed upload: masked in place, same length.
    let big = with_at(filler(200_000), 120_000, API_KEY);
    let file = write_temp(tmp.path(), "big.txt", &big);
    let (code, out, err) = s
        .curl(&[
            "-H",
            "content-type: text/plain",
            "--data-binary",
            &format!("@{file}"),
            "https://api.test/big-redact",
        ])
        .await;
    assert!(code == 0 && out.contains("got 200000"), "{out}{err}");
    let got = &s.received("/big-redact")[0];
    assert!(got.complete && got.body.len() == big.len());
    assert!(!String::from_utf8_lossy(&got.body).contains(API_KEY));
    assert_eq!(&got.body[..120_000], &big[..120_000]);
    assert_eq!(
        &got.body[120_000 + API_KEY.len()..],
        &big[120_000 + API_KEY.len()..]
    );

    // Inbound too: a JSON response with an escaped key reaches the client
    // masked, still valid JSON, with a Content-Length that fits.
    let head_file = tmp.path().join("head.txt");
    let (code, body, err) = s
        .curl(&[
            "-D",
            head_file.to_str().unwrap(),
            "https://api.test/key-json",
        ])
        .await;
    assert_eq!(code, 0, "{body}{err}");
    let heads = std::fs::read_to_string(&head_file)
        .unwrap()
        .to_ascii_lowercase();
    let head = heads.trim_end().rsplit("\r\n\r\n").next().unwrap();
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON downstream");
    let value = v["keys"][0]["value"].as_str().unwrap();
    assert!(
        value.starts_with("**_****_") && !value.contains(API_KEY),
        "{value}"
    );
    assert_eq!(v["ok"], true);

    let redactions = s
        .findings()
        .into_iter()
        .filter(|f| f.rule == "api-key")
        .count();
    assert_eq!(redactions, 6, "{:#?}", s.findings());
    s.assert_events_masked(&[API_KEY]);
    s.gw.stop().await;
}
