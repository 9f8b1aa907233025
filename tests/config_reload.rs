//! Config reload (SIGHUP, what `systemctl reload` sends) of the real
//! gateway process: open connections survive it, new flows get the new
//! destinations and rules, a bad file is refused with the old one kept,
//! and a moved listener answers on its new address.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::inproc::{client_config, tunnel};
use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use common::Gatehouse;

/// A rule the shipped packs do not have: only a reload brings it.
const ZEBRA_RULE: &str = "[[rule]]\nid = \"project-zebra\"\nname = \"Project Zebra\"\n\
    description = \"code name\"\nseverity = \"high\"\naction = \"block\"\n\
    [rule.keywords]\nwords = [\"zebracorn\"]\n";

/// The gateway's config: listeners, loopback destinations allowed as
/// given, the test upstream's root trusted, rules from `rules`.
fn config(listen: &str, allowed: &str, rules: &str, extra: &str) -> String {
    format!(
        "[proxy]\nlisten = \"{listen}\"\nshutdown_grace = \"3s\"\nallowed_destinations = [{allowed}]\n{extra}\
         [upstream]\nextra_roots = [\"root.pem\"]\n\
         [rules]\ndir = \"{rules}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// A gateway in a fresh directory with `rules/` (the shipped packs) and
/// `root.pem`, started with `config`.
fn start(root: &TestCa, config: &str) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules");
    for sub in ["", "dictionaries"] {
        let to = dir.path().join("rules").join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(shipped.join(sub)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    // What `events search` reads: the default journal, whatever state
    // the gateway's own file is left in.
    std::fs::write(dir.path().join("search.toml"), "").unwrap();
    Gatehouse::start_in(dir, config)
}

/// Writes the new config and signals the gateway; returns the reload's
/// audit event (the `n`-th `config_reload` since start, counting from 1).
async fn reload(gw: &Gatehouse, config: &str, n: usize) -> serde_json::Value {
    std::fs::write(gw.path("gatehouse.toml"), config).unwrap();
    let pid = nix::unistd::Pid::from_raw(gw.child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGHUP).unwrap();
    for _ in 0..100 {
        let audits = reload_events(gw);
        if audits.len() >= n {
            return audits[n - 1].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no config_reload audit event #{n}; log:\n{}", gw.log());
}

/// Every `config_reload` audit event in the journal, oldest first.
fn reload_events(gw: &Gatehouse) -> Vec<serde_json::Value> {
    let (code, out, err) = common::gatehouse(
        gw.dir.path(),
        &[
            "--config",
            "search.toml",
            "events",
            "search",
            "--json",
            "--limit",
            "1000",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut audits: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e.to_string().contains("\"config_reload\""))
        .collect();
    audits.reverse(); // search lists newest first
    audits
}

/// A keep-alive HTTP/1.1 connection to the Slack stand-in at `target`,
/// CONNECTed through `proxy` and intercepted (the client trusts the
/// gateway's CA).
async fn keep_alive(
    gw: &Gatehouse,
    proxy: SocketAddr,
    target: SocketAddr,
) -> SendRequest<Full<Bytes>> {
    let ca = CertificateDer::from_pem_file(&gw.ca_cert).expect("the gateway's CA certificate");
    let (cfg, _) = client_config(&[ca], &[b"http/1.1"], false);
    let (tcp, status) = tunnel(proxy, target).await;
    assert!(
        status.contains(" 200"),
        "CONNECT refused: {status}\n{}",
        gw.log()
    );
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect("slack.com".try_into().unwrap(), tcp)
        .await
        .expect("TLS through the gateway");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// Posts a Slack message on `conn`; returns the status and body.
async fn post(conn: &mut SendRequest<Full<Bytes>>, text: &str) -> (u16, String) {
    conn.ready().await.expect("the connection is still open");
    let req = http::Request::post("/api/chat.postMessage")
        .header("host", "slack.com")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(
            "{{\"channel\":\"C042\",\"text\":\"{text}\"}}"
        ))))
        .unwrap();
    let resp = conn
        .send_request(req)
        .await
        .expect("a response on the open connection");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Status line of a CONNECT through `proxy` to `target`.
async fn connect_status(proxy: SocketAddr, target: SocketAddr) -> String {
    tunnel(proxy, target).await.1
}

/// A plain TCP forwarder on `bind` to `to`: a second destination address
/// for the same upstream server.
async fn forwarder(bind: &str, to: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind(bind).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut b) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connection_survives_and_new_flows_get_new_destinations_and_rules() {
    let root = TestCa::root("Upstream Test Root");
    let a = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let b = forwarder("127.0.0.2:0", a).await;
    let gw = start(
        &root,
        &config("127.0.0.1:0", "\"127.0.0.1/32\"", "rules", ""),
    );

    let mut open = keep_alive(&gw, gw.proxy, a).await;
    let (status, body) = post(&mut open, "the zebracorn launch").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !connect_status(gw.proxy, b).await.contains(" 200"),
        "127.0.0.2 is not an allowed destination yet"
    );

    // New config: only 127.0.0.2 allowed, and rules from a directory
    // holding a new rule (not touched by the rule-file watcher).
    std::fs::create_dir_all(gw.path("rules2")).unwrap();
    std::fs::write(gw.path("rules2/zebra.toml"), ZEBRA_RULE).unwrap();
    let audit = reload(
        &gw,
        &config("127.0.0.1:0", "\"127.0.0.2/32\"", "rules2", ""),
        1,
    )
    .await;
    let detail = audit["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("applied:"), "{audit}");
    assert!(
        detail.contains("proxy.allowed_destinations") && detail.contains("rules.dir"),
        "the audit event lists what changed: {audit}"
    );
    assert_eq!(audit["reason"], "SIGHUP", "{audit}");

    // The open connection keeps working, under the state it started with.
    let (status, body) = post(&mut open, "the zebracorn launch, again").await;
    assert_eq!(
        status, 200,
        "the open connection broke or changed rules: {body}"
    );

    // New flows: the old destination is refused, the new one allowed and
    // judged by the new rules.
    assert!(
        !connect_status(gw.proxy, a).await.contains(" 200"),
        "127.0.0.1 is no longer an allowed destination"
    );
    let mut fresh = keep_alive(&gw, gw.proxy, b).await;
    let (status, body) = post(&mut fresh, "the zebracorn launch").await;
    assert_eq!(status, 403, "the new rule must block: {body}");
    assert!(body.contains("project-zebra"), "{body}");
    let (status, body) = post(&mut fresh, "lunch at noon?").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_with_every_problem_and_the_old_one_stays() {
    let root = TestCa::root("Upstream Test Root");
    let a = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let good = config("127.0.0.1:0", "\"127.0.0.1/32\"", "rules", "");
    let gw = start(&root, &good);

    // A syntax error.
    let audit = reload(&gw, "[proxy\nlisten = \n", 1).await;
    let detail = audit["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("refused:"), "{audit}");
    assert!(detail.contains("gatehouse.toml"), "names the file: {audit}");
    assert!(gw.log().contains("config reload refused"), "{}", gw.log());
    let mut conn = keep_alive(&gw, gw.proxy, a).await;
    let (status, _) = post(&mut conn, "hello").await;
    assert_eq!(status, 200, "the old config stays in force");

    // Two semantic errors (and an allowed-destination change that must
    // not happen): both are listed, nothing changes.
    let bad = config("127.0.0.1:0", "", "rules", "max_connections = 0\n").replace(
        "extra_roots = [\"root.pem\"]",
        "extra_roots = [\"missing.pem\"]",
    );
    let audit = reload(&gw, &bad, 2).await;
    let detail = audit["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("refused:"), "{audit}");
    assert!(
        detail.contains("proxy.max_connections") && detail.contains("upstream.extra_roots[0]"),
        "every problem is listed: {audit}"
    );
    let log = gw.log();
    assert!(
        log.contains("proxy.max_connections") && log.contains("missing.pem"),
        "each problem is logged: {log}"
    );
    let mut conn = keep_alive(&gw, gw.proxy, a).await;
    let (status, _) = post(&mut conn, "hello").await;
    assert_eq!(status, 200, "127.0.0.1 is still allowed");

    // Broken rules in the new rules directory refuse the reload too.
    std::fs::create_dir_all(gw.path("broken")).unwrap();
    std::fs::write(
        gw.path("broken/bad.toml"),
        "[[rule]]\nid = \"broken\"\nseverity = \"nope\"\n",
    )
    .unwrap();
    let audit = reload(
        &gw,
        &config("127.0.0.1:0", "\"127.0.0.1/32\"", "broken", ""),
        3,
    )
    .await;
    let detail = audit["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("refused:") && detail.contains("rules.dir"),
        "{audit}"
    );

    // The good file again: applied, nothing changed.
    let audit = reload(&gw, &good, 4).await;
    let detail = audit["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("applied: no config change"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_listener_answers_on_its_new_address_and_keeps_its_connections() {
    let root = TestCa::root("Upstream Test Root");
    let a = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let gw = start(
        &root,
        &config("127.0.0.1:0", "\"127.0.0.1/32\"", "rules", ""),
    );
    let old = gw.proxy;
    let mut open = keep_alive(&gw, old, a).await;
    assert_eq!(post(&mut open, "hello").await.0, 200);

    let new: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // The CA's name changes too: only a restart applies that.
    let moved =
        config(&new.to_string(), "\"127.0.0.1/32\"", "rules", "") + "[ca]\nname = \"Renamed CA\"\n";
    let audit = reload(&gw, &moved, 1).await;
    let detail = audit["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("applied:")
            && detail.contains(&format!("proxy.listen moved from {old} to {new}")),
        "{audit}"
    );
    assert!(
        detail.contains("needs restart (running value kept): ca.name"),
        "{audit}"
    );
    assert!(
        gw.log()
            .contains("ca.name changed; it takes effect at restart"),
        "{}",
        gw.log()
    );

    // The new address answers; the old one no longer accepts.
    let mut fresh = keep_alive(&gw, new, a).await;
    assert_eq!(post(&mut fresh, "hello").await.0, 200);
    let mut closed = false;
    for _ in 0..50 {
        if TcpStream::connect(old).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the old proxy address still accepts");

    // The connection opened on the old address still works, and the
    // admin listener (not moved) still answers.
    let (status, body) = post(&mut open, "still here").await;
    assert_eq!(status, 200, "{body}");
    let mut admin = TcpStream::connect(gw.admin).await.unwrap();
    admin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    admin.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}
