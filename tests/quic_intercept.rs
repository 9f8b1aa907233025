//! `quic = "intercept"` at a VPN-egress-like router (the namespaces and
//! TPROXY rules of `quic_netns.rs`): the gateway verifies the real server
//! over TCP, terminates QUIC and HTTP/3 with a leaf of its own, and relays
//! each request to the server — nginx, HTTP/2 — through the same DLP as a
//! TCP flow. Clients: aioquic and quinn + h3, over IPv4 and IPv6.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::{py, Netns, CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6};
use common::pki::{LeafSpec, TestCa};
use common::Gatehouse;
use sha2::{Digest, Sha256};

/// A card number the shipped `payment-card` rule blocks.
const CARD: &str = "4556737586899855";

/// What the origin serves at `/body.bin`.
fn expected_body() -> Vec<u8> {
    (0..50_000u32).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

/// nginx in the server namespace: HTTPS over TCP 443 (HTTP/2 and 1.1),
/// every response saying which protocol reached it
/// (`x-upstream-protocol`), every request logged with its protocol.
struct Origin {
    child: Child,
    log: PathBuf,
}

impl Origin {
    fn start(net: &Netns, dir: &Path) -> Self {
        let d = dir.display();
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/body.bin"), expected_body()).unwrap();
        let conf = format!(
            "user root;\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
             http {{\n  log_format proto '$request_method $request_uri $server_protocol';\n\
               access_log {d}/access.log proto;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n\
                 ssl_certificate {d}/svc.pem;\n    ssl_certificate_key {d}/svc.key;\n\
                 add_header x-upstream-protocol $server_protocol always;\n\
                 location = /body.bin {{ root {d}/www; }}\n\
                 location /api/ {{ default_type application/json; return 200 \"{{\\\"ok\\\":true,\\\"protocol\\\":\\\"$server_protocol\\\"}}\\n\"; }}\n\
               }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &net.server, "nginx", "-e"])
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package, installed by scripts/test.sh)");
        Self {
            child,
            log: dir.join("access.log"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

struct Egress {
    // Dropped in this order: the gateway, the origin, then the namespaces.
    gw: Gatehouse,
    origin: Origin,
    _dir: tempfile::TempDir,
    net: Netns,
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

/// The namespaces, nginx for `slack.com` (its certificate names nothing
/// else), and a gateway whose rule intercepts QUIC to `slack.com` and to
/// `unverified.test` (whose server certificate cannot verify).
fn egress(tag: &str) -> Egress {
    let net = Netns::setup(tag, 8443);
    net.tproxy_udp(tag, 443, 8443);
    let root = TestCa::root("QUIC Intercept Test Root");
    let leaf = root.leaf(&LeafSpec::new(&["slack.com"]));
    let dir = tempfile::tempdir().unwrap();
    leaf.write_pem(dir.path(), "svc");
    let origin = Origin::start(&net, dir.path());
    let gw_dir = tempfile::tempdir().unwrap();
    std::fs::write(gw_dir.path().join("root.pem"), root.pem()).unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
        &gw_dir.path().join("rules"),
    );
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\ntransparent_listen = \"[::]:8443\"\n\
         allowed_clients = [\"10.233.0.0/24\", \"fd00:233::/64\"]\n\
         allowed_destinations = [\"10.233.1.0/24\", \"fd00:233:1::/64\"]\n\
         [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"rules\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [quic]\nlisten = \"[::]:8443\"\nidle_timeout = \"2s\"\n\
         [[intercept.rules]]\nhosts = [\"slack.com\", \"unverified.test\"]\naction = \"intercept\"\n\
         quic = \"intercept\"\nreason = \"chat over HTTP/3 is read\"\n";
    let gw = Gatehouse::start_wrapped(gw_dir, config, &Netns::exec(&net.gateway), &[]);
    Egress {
        gw,
        origin,
        _dir: dir,
        net,
    }
}

/// One aioquic request from the client namespace; its JSON verdict.
fn aioquic(e: &Egress, address: &str, name: &str, timeout: f64, req: &[&str]) -> serde_json::Value {
    aioquic_as(e, address, name, name, timeout, req)
}

/// As [`aioquic`], with `authority` as the requests' `:authority`.
fn aioquic_as(
    e: &Egress,
    address: &str,
    name: &str,
    authority: &str,
    timeout: f64,
    req: &[&str],
) -> serde_json::Value {
    let out = Command::new("ip")
        .env("H3_AUTHORITY", authority)
        .args([
            "netns",
            "exec",
            &e.net.client,
            "python3",
            &py("h3_client.py"),
        ])
        .args([address, "443", name, e.gw.ca_cert.to_str().unwrap()])
        .arg(timeout.to_string())
        .args(req)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|err| {
        panic!(
            "h3_client.py said {line:?} ({err}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A GET of `/body.bin`, retried while nginx starts in its namespace.
fn first_get(e: &Egress, address: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..30 {
        last = aioquic(e, address, "slack.com", 5.0, &["GET", "/body.bin"]);
        if last["ok"] == true && last["status"] == 200 {
            return last;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "intercepted GET to {address} failed: {last}\n{}",
        e.gw.log()
    );
}

/// What a quinn + h3 client got for a GET of `https://{name}{path}`.
struct QuinnGot {
    status: u16,
    upstream_protocol: String,
    body: Vec<u8>,
}

/// One quinn + h3 GET from the client namespace, the gateway's CA trusted.
fn quinn_get(
    net: &Netns,
    server: SocketAddr,
    name: &str,
    path: &str,
    ca: &Path,
) -> (Result<QuinnGot, String>, Duration) {
    use bytes::Buf;
    use rustls::pki_types::pem::PemObject;
    let ns_path = format!("/var/run/netns/{}", net.client);
    let ca = std::fs::read(ca).unwrap();
    let (name, path) = (name.to_string(), path.to_string());
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
                roots.add(c.unwrap()).unwrap();
            }
            let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            tls.alpn_protocols = vec![b"h3".to_vec()];
            let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let bind: SocketAddr = if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .unwrap();
            let mut endpoint = quinn::Endpoint::client(bind).unwrap();
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
            let start = Instant::now();
            let got = async {
                let conn = endpoint
                    .connect(server, &name)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
                    .await
                    .map_err(|e| e.to_string())?;
                let drive = tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                let req = http::Request::get(format!("https://{name}{path}"))
                    .body(())
                    .unwrap();
                let mut stream = send.send_request(req).await.map_err(|e| e.to_string())?;
                stream.finish().await.map_err(|e| e.to_string())?;
                let resp = stream.recv_response().await.map_err(|e| e.to_string())?;
                let mut body = Vec::new();
                while let Some(mut chunk) = stream.recv_data().await.map_err(|e| e.to_string())? {
                    body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
                }
                drop(send);
                drive.abort();
                Ok(QuinnGot {
                    status: resp.status().as_u16(),
                    upstream_protocol: resp
                        .headers()
                        .get("x-upstream-protocol")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string(),
                    body,
                })
            };
            let r = match tokio::time::timeout(Duration::from_secs(10), got).await {
                Ok(r) => r,
                Err(_) => Err("no answer in 10 s".into()),
            };
            let took = start.elapsed();
            endpoint.close(0u32.into(), b"");
            (r, took)
        })
    })
    .join()
    .unwrap()
}

/// Every event, as the investigation CLI finds them.
fn events(gw: &Gatehouse) -> Vec<serde_json::Value> {
    let (code, out, err) = common::gatehouse(
        gw.dir.path(),
        &["events", "search", "--json", "--limit", "0"],
    );
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect()
}

/// An event's fields of its kind (`connection`, `policy`, …) and the
/// common ones, as one object.
fn flat(e: &serde_json::Value) -> serde_json::Value {
    let mut out = e.clone();
    if let Some(obj) = e.as_object() {
        for (_, v) in obj.iter().filter(|(_, v)| v.is_object()) {
            for (k, inner) in v.as_object().unwrap() {
                out[k] = inner.clone();
            }
        }
    }
    out
}

/// Waits until some event satisfies `pred`; returns it flattened.
fn wait_event(
    gw: &Gatehouse,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let all: Vec<_> = events(gw).iter().map(flat).collect();
        if let Some(e) = all.iter().find(|e| pred(e)) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {what} event: {all:#?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is_type(e: &serde_json::Value, t: &str) -> bool {
    e["type"] == t || e.get(t).is_some_and(|v| v.is_object())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn intercept_terminates_http3_relays_over_http2_and_blocks_dlp_over_ipv4_and_ipv6() {
    let tag = format!("i{}", std::process::id() % 100_000);
    let e = egress(&tag);
    let expected = hex(&Sha256::digest(expected_body()));

    for (address, destination, family) in [
        (SERVER_V4.to_string(), format!("{SERVER_V4}:443"), "v4"),
        (SERVER_V6.to_string(), format!("[{SERVER_V6}]:443"), "v6"),
    ] {
        // GET: byte-identical through the gateway's own HTTP/3 termination
        // (the client trusts only the gateway's CA), and the origin saw HTTP/2.
        let r = first_get(&e, &address);
        assert_eq!(r["sha256"], expected.as_str(), "{r}");
        assert_eq!(r["headers"]["x-upstream-protocol"], "HTTP/2.0", "{r}");

        // The second client, quinn + h3.
        let server = SocketAddr::new(address.parse().unwrap(), 443);
        let (got, took) = quinn_get(&e.net, server, "slack.com", "/body.bin", &e.gw.ca_cert);
        let got =
            got.unwrap_or_else(|err| panic!("quinn GET via {address}: {err}\n{}", e.gw.log()));
        assert_eq!(got.status, 200);
        assert_eq!(hex(&Sha256::digest(&got.body)), expected);
        assert_eq!(got.upstream_protocol, "HTTP/2.0");
        eprintln!("quinn h3 GET through intercept ({address}): {took:?}");

        // A message with a card number: the 403 block page over HTTP/3,
        // and the origin never sees the request.
        let blocked_uri = format!("/api/chat.postMessage?dlp={family}");
        let body = format!("{{\"channel\":\"C{family}\",\"text\":\"my card is {CARD}\"}}");
        let r = aioquic(
            &e,
            &address,
            "slack.com",
            10.0,
            &["POST", &blocked_uri, &body],
        );
        assert_eq!(r["status"], 403, "{r}\n{}", e.gw.log());
        assert!(r["headers"]["x-gatehouse-policy"].as_str().is_some(), "{r}");
        let text = r["text"].as_str().unwrap_or("");
        assert!(text.contains("payment-card") && !text.contains(CARD), "{r}");

        // A message without one goes through, over HTTP/2.
        let ok_uri = format!("/api/chat.postMessage?ok={family}");
        let body = format!("{{\"channel\":\"C{family}\",\"text\":\"lunch at noon?\"}}");
        let r = aioquic(&e, &address, "slack.com", 10.0, &["POST", &ok_uri, &body]);
        assert_eq!(r["status"], 200, "{r}");
        assert!(r["text"].as_str().unwrap().contains("HTTP/2.0"), "{r}");
        // Another host in `:authority` than the SNI the flow was decided
        // on: domain fronting, refused as over TCP (421) with its event,
        // and never at the origin.
        let front_uri = format!("/fronted?{family}");
        let r = aioquic_as(
            &e,
            &address,
            "slack.com",
            "discord.com",
            10.0,
            &["GET", &front_uri],
        );
        assert_eq!(r["status"], 421, "{r}\n{}", e.gw.log());
        assert!(
            r["text"].as_str().unwrap_or("").contains("domain-fronting"),
            "{r}"
        );
        wait_event(&e.gw, "domain_fronting policy event", |p| {
            is_type(p, "policy")
                && p["kind"] == "domain_fronting"
                && p["reason"].as_str().unwrap_or("").contains("discord.com")
        });
        let log = e.origin.log();
        assert!(
            !log.contains(&front_uri),
            "the fronted GET reached the origin: {log}"
        );
        assert!(log.contains(&format!("POST {ok_uri} HTTP/2.0")), "{log}");
        assert!(log.contains("GET /body.bin HTTP/2.0"), "{log}");
        assert!(
            !log.contains(&blocked_uri),
            "the blocked POST reached the origin: {log}"
        );

        // The flows' events: intercepted UDP flows to the original
        // destination, with the message and its finding.
        let c = wait_event(&e.gw, "connection", |c| {
            is_type(c, "connection")
                && c["transport"] == "udp"
                && c["destination"] == destination.as_str()
                && c["bytes_down"].as_u64().unwrap_or(0) > 50_000
        });
        assert_eq!(c["decision"], "intercept", "{c}");
        assert_eq!(c["protocol"], "quic", "{c}");
        assert_eq!(c["sni"], "slack.com", "{c}");
        assert_eq!(c["app"], "slack", "{c}");
        assert_eq!(c["reason"], "chat over HTTP/3 is read", "{c}");
        assert!(c["bytes_up"].as_u64().unwrap() > 1_200, "{c}");
        assert!(c["duration_ms"].as_u64().is_some(), "{c}");
        let conversation = format!("C{family}");
        let m = wait_event(&e.gw, "blocked message", |m| {
            is_type(m, "message")
                && m["conversation"] == conversation.as_str()
                && m["action"] == "block"
        });
        wait_event(&e.gw, "allowed message", |m| {
            is_type(m, "message")
                && m["conversation"] == conversation.as_str()
                && m["action"] == "allow"
        });
        let f = wait_event(&e.gw, "dlp_finding", |f| {
            is_type(f, "dlp_finding") && f["rule"] == "payment-card" && f["message_id"] == m["id"]
        });
        assert_eq!(f["flow_id"], m["flow_id"], "{f}");
        assert_eq!(f["action"], "block", "{f}");
        let flow = wait_event(&e.gw, "the finding's connection", |c| {
            is_type(c, "connection") && c["flow_id"] == f["flow_id"]
        });
        assert_eq!(flow["transport"], "udp", "{flow}");
        assert_eq!(flow["decision"], "intercept", "{flow}");
        assert_eq!(flow["destination"], destination.as_str(), "{flow}");
    }
}

#[test]
fn intercept_refuses_an_unverified_server_and_websocket_over_http3() {
    let tag = format!("u{}", std::process::id() % 100_000);
    let e = egress(&tag);
    first_get(&e, SERVER_V4);

    for (address, destination) in [
        (SERVER_V4.to_string(), format!("{SERVER_V4}:443")),
        (SERVER_V6.to_string(), format!("[{SERVER_V6}]:443")),
    ] {
        // The server's certificate does not name unverified.test: the QUIC
        // flow is refused at once (the client would fall back to TCP, where
        // the same verification refuses it), and the event says why.
        let r = aioquic(&e, &address, "unverified.test", 10.0, &["GET", "/"]);
        assert_eq!(r["ok"], false, "{r}");
        let elapsed = r["elapsed"].as_f64().unwrap();
        assert!(
            elapsed < 2.0,
            "refusal took {elapsed}s: {r}\n{}",
            e.gw.log()
        );
        let server = SocketAddr::new(address.parse().unwrap(), 443);
        let (got, took) = quinn_get(&e.net, server, "unverified.test", "/", &e.gw.ca_cert);
        let err = got.err().expect("quinn must be refused");
        assert!(
            took < Duration::from_secs(2),
            "quinn refusal took {took:?}: {err}"
        );
        assert!(err.contains("refused") || err.contains("REFUSED"), "{err}");
        eprintln!("unverified server ({address}): aioquic refused in {elapsed:.3}s, quinn in {took:?}: {err}");
        let c = wait_event(&e.gw, "refused connection", |c| {
            is_type(c, "connection")
                && c["transport"] == "udp"
                && c["sni"] == "unverified.test"
                && c["destination"] == destination.as_str()
        });
        assert_eq!(c["decision"], "block", "{c}");
        assert_eq!(c["close_reason"], "upstream_unverified", "{c}");
        assert!(
            c["reason"]
                .as_str()
                .unwrap()
                .contains("upstream verification failed"),
            "{c}"
        );

        // WebSocket over HTTP/3 (extended CONNECT, never offered) is reset
        // with H3_MESSAGE_ERROR, a CONNECT tunnel gets a 403; both are
        // recorded, and nothing reaches the origin.
        let client_ip = if address.contains(':') {
            CLIENT_V6
        } else {
            CLIENT_V4
        };
        let from_client = |p: &serde_json::Value, kind: &str| {
            is_type(p, "policy")
                && p["kind"] == kind
                && p["client"].as_str().is_some_and(|c| c.contains(client_ip))
        };
        let r = aioquic(&e, &address, "slack.com", 10.0, &["WEBSOCKET", "/ws"]);
        assert_eq!(r["reset"], 0x10e, "H3_MESSAGE_ERROR: {r}\n{}", e.gw.log());
        let p = wait_event(&e.gw, "policy", |p| {
            from_client(p, "quic_request_malformed")
        });
        assert_eq!(p["action"], "block", "{p}");
        let r = aioquic(
            &e,
            &address,
            "slack.com",
            10.0,
            &["CONNECT", "slack.com:443"],
        );
        assert_eq!(r["status"], 403, "{r}\n{}", e.gw.log());
        let p = wait_event(&e.gw, "policy", |p| from_client(p, "quic_connect_refused"));
        assert_eq!(p["action"], "block", "{p}");
        let log = e.origin.log();
        assert!(!log.contains("/ws") && !log.contains("CONNECT"), "{log}");
    }
}
