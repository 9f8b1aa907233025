//! The admin endpoint of the real binary: `/metrics` is Prometheus text
//! (checked by Debian's `promtool`) whose counters move with real traffic
//! through the gateway; in flight counts proxy connections, never the
//! admin request; the bearer token is needed only when configured;
//! `/readyz` says 503 when the journal cannot be written.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{LeafSpec, TestCa};
use common::upstream::https_server;
use common::Gatehouse;

const CARD: &str = "4556737586899855";

/// `GET path` on the admin listener: (status line, headers+body).
fn admin_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `promtool check metrics` on `text`: its verdict and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool (Debian package prometheus) must be installed: scripts/test.sh installs it",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Polls `/metrics` until `ok` holds for its text (or fails after 15 s).
fn wait_metrics(gw: &Gatehouse, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, _, body) = admin_get(gw.admin, "/metrics", None);
        if ok(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never showed in /metrics:\n{body}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn post(gw: &Gatehouse, server: SocketAddr, body: &str, trust: bool) -> String {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--proxy"])
        .arg(format!("http://{}", gw.proxy));
    if trust {
        cmd.args(["--cacert", gw.ca_cert.to_str().unwrap()]);
    }
    let out = cmd
        .args(["--connect-to", &format!("slack.com:443:{server}")])
        .args(["-H", "content-type: application/json"])
        .args(["-w", "\nstatus=%{http_code}", "--data", body])
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
async fn metrics_are_prometheus_text_and_move_with_real_traffic() {
    let root = TestCa::root("Upstream Test Root");
    let server = https_server("slack.com", root.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dlp-rules"),
        &dir.path().join("rules"),
    );
    let config = "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.0/8\"]\n\
                  [upstream]\nextra_roots = [\"root.pem\"]\n[rules]\ndir = \"rules\"\n\
                  [admin]\nlisten = \"127.0.0.1:0\"\n";
    let gw = Gatehouse::start_in(dir, config);

    // Without admin.token_file, /metrics answers without authentication.
    let (status, head, before) = admin_get(gw.admin, "/metrics", None);
    assert_eq!(status, 200, "{head}{before}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (ok, said) = promtool(&before);
    assert!(ok, "promtool rejects /metrics: {said}\n{before}");
    assert!(
        before.contains("# TYPE gatehouse_leaf_mints_total counter"),
        "{before}"
    );
    // What Prometheus asks for first, it gets: OpenMetrics.
    let mut s = TcpStream::connect(gw.admin).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut om = String::new();
    s.read_to_string(&mut om).unwrap();
    assert!(
        om.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{om}"
    );
    assert!(
        om.contains("# TYPE gatehouse_leaf_mints counter") && om.trim_end().ends_with("# EOF"),
        "{om}"
    );
    assert!(
        before
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.starts_with("gatehouse_")),
        "{before}"
    );
    assert_eq!(value(&before, "gatehouse_leaf_mints_total"), Some(0.0));
    assert_eq!(value(&before, "gatehouse_rule_reloads_total"), Some(0.0));
    assert!(
        value(&before, "gatehouse_dlp_rules_loaded").unwrap() > 10.0,
        "{before}"
    );

    // Real traffic: one message blocked by DLP, one allowed (the second
    // connection takes its leaf from the cache), one client that does not
    // trust the CA (its handshake with our leaf fails).
    let out = post(
        &gw,
        server,
        &format!("{{\"channel\":\"C042\",\"text\":\"my card is {CARD}\"}}"),
        true,
    )
    .await;
    assert!(out.contains("status=403"), "{out}\n{}", gw.log());
    let out = post(
        &gw,
        server,
        "{\"channel\":\"C042\",\"text\":\"lunch?\"}",
        true,
    )
    .await;
    assert!(out.contains("status=200"), "{out}");
    let out = post(&gw, server, "{\"channel\":\"C042\",\"text\":\"hi\"}", false).await;
    assert!(!out.contains("status=200"), "{out}");
    // And a server the gateway cannot verify (a root it does not know).
    let stranger = TestCa::root("Unknown Root");
    let unverified = https_server("slack.com", stranger.leaf(&LeafSpec::new(&["slack.com"]))).await;
    let out = post(
        &gw,
        unverified,
        "{\"channel\":\"C042\",\"text\":\"hi\"}",
        true,
    )
    .await;
    assert!(!out.contains("status=200"), "{out}");

    let text = wait_metrics(&gw, "four explicit connections", |t| {
        let n = |d: &str| {
            value(
                t,
                &format!("gatehouse_connections_total{{mode=\"explicit\",decision=\"{d}\"}}"),
            )
            .unwrap_or(0.0)
        };
        n("intercept") + n("block") >= 4.0
    });
    let (ok, said) = promtool(&text);
    assert!(
        ok,
        "promtool rejects /metrics after traffic: {said}\n{text}"
    );
    let get = |series: &str| value(&text, series).unwrap_or(0.0);
    let finding = text
        .lines()
        .find(|l| {
            l.starts_with("gatehouse_dlp_findings_total{")
                && l.contains("payment-card")
                && l.contains("action=\"block\"")
        })
        .unwrap_or_else(|| panic!("no payment-card finding counted:\n{text}"));
    assert!(finding.contains("severity=\""), "{finding}");
    assert!(
        get("gatehouse_blocks_total{source=\"dlp\"}") >= 1.0,
        "{text}"
    );
    assert!(
        get("gatehouse_messages_total{app=\"slack\"}") >= 2.0,
        "{text}"
    );
    assert!(
        get("gatehouse_bytes_total{direction=\"up\"}") > 100.0,
        "{text}"
    );
    assert!(
        get("gatehouse_bytes_total{direction=\"down\"}") > 100.0,
        "{text}"
    );
    assert!(get("gatehouse_leaf_mints_total") >= 1.0, "{text}");
    assert!(get("gatehouse_leaf_cache_hits_total") >= 1.0, "{text}");
    assert!(
        get("gatehouse_tls_handshake_failures_total{side=\"client\",reason=\"client_tls_error\"}")
            >= 1.0,
        "{text}\n{}",
        gw.log()
    );
    assert!(
        get("gatehouse_tls_handshake_failures_total{side=\"upstream\",reason=\"unknown_issuer\"}")
            >= 1.0,
        "{text}\n{}",
        gw.log()
    );
    assert!(get("gatehouse_events_total") >= 3.0, "{text}");
    assert!(get("gatehouse_journal_bytes") > 0.0, "{text}");
    assert!(
        value(&text, "gatehouse_event_queue_depth").is_some(),
        "{text}"
    );
    // The journal writer drains the queue.
    wait_metrics(&gw, "an empty event queue", |t| {
        value(t, "gatehouse_event_queue_depth") == Some(0.0)
    });

    // A rule reload counts.
    let pack = std::fs::read_to_string(gw.path("rules/code-names.toml")).unwrap();
    std::fs::write(
        gw.path("rules/zz-extra.toml"),
        pack.replace("id = \"code-name\"", "id = \"code-name-copy\""),
    )
    .unwrap();
    let text = wait_metrics(&gw, "a rule reload", |t| {
        value(t, "gatehouse_rule_reloads_total").unwrap_or(0.0)
            + value(t, "gatehouse_rule_reload_failures_total").unwrap_or(0.0)
            >= 1.0
    });
    assert_eq!(
        value(&text, "gatehouse_rule_reloads_total"),
        Some(1.0),
        "the extra rule file must load: {text}\n{}",
        gw.log()
    );

    // The JSON form stays available.
    let (status, _, json) = admin_get(gw.admin, "/metrics.json", None);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert!(v["leaf_cache"]["hits"].as_u64().unwrap() >= 1, "{v}");
}

#[test]
fn in_flight_counts_proxy_connections_and_never_the_admin_request() {
    let gw = Gatehouse::start("");
    let in_flight = |gw: &Gatehouse| {
        let (_, _, t) = admin_get(gw.admin, "/metrics", None);
        value(&t, "gatehouse_connections_in_flight").expect("in flight exposed")
    };
    // The scrape itself is an admin connection in flight: not counted.
    assert_eq!(in_flight(&gw), 0.0);
    let a = TcpStream::connect(gw.proxy).unwrap();
    let b = TcpStream::connect(gw.proxy).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight(&gw) != 2.0 {
        assert!(
            Instant::now() < deadline,
            "two open proxy connections never counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Other admin connections open at the same time are not counted either.
    let _idle_admin = TcpStream::connect(gw.admin).unwrap();
    assert_eq!(in_flight(&gw), 2.0);
    drop((a, b));
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight(&gw) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_a_token_file_metrics_need_the_bearer_token_and_health_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let token = "metrics-token-0123456789abcdef";
    std::fs::write(dir.path().join("admin.token"), token).unwrap();
    std::fs::set_permissions(
        dir.path().join("admin.token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let gw = Gatehouse::start_in(
        dir,
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n",
    );
    for path in ["/metrics", "/metrics.json"] {
        let (status, head, _) = admin_get(gw.admin, path, None);
        assert_eq!(status, 401, "{path}");
        assert!(head.contains("www-authenticate: Bearer"), "{head}");
        assert_eq!(
            admin_get(gw.admin, path, Some("not-the-token-0123456")).0,
            401
        );
        assert_eq!(admin_get(gw.admin, path, Some(token)).0, 200, "{path}");
    }
    let (_, _, text) = admin_get(gw.admin, "/metrics", Some(token));
    assert!(promtool(&text).0, "{text}");
    assert_eq!(admin_get(gw.admin, "/healthz", None).0, 200);
    assert_eq!(admin_get(gw.admin, "/readyz", None).0, 200);
}

#[test]
fn readyz_is_503_naming_the_journal_when_it_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("var/journal")).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    // The gateway runs in a mount namespace of its own, where the test
    // makes the journal directory read-only for real (root ignores
    // permission bits, not a read-only mount) without touching the host.
    let wrapper: Vec<String> = ["unshare", "--mount", "--propagation", "private"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let gw = Gatehouse::start_wrapped(
        dir,
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[rules]\ndir = \"rules\"\n",
        &wrapper,
        &[],
    );
    let (status, _, body) = admin_get(gw.admin, "/readyz", None);
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    assert!(body.contains("journal: ok"), "{body}");
    assert!(body.contains("rules: ok (0 loaded)"), "{body}");

    let journal = gw.path("var/journal");
    let st = Command::new("nsenter")
        // `--root`: the gateway's root directory, which is not the mount
        // namespace's root when the tests run in a chroot.
        .args([
            "--target",
            &gw.child.id().to_string(),
            "--mount",
            "--root",
            "--",
        ])
        // A read-only bind mount stacked on the directory: new files (the
        // next segment, the probe) cannot be created there.
        .args([
            "sh",
            "-c",
            "mount --bind \"$0\" \"$0\" && mount -o remount,ro,bind \"$0\"",
        ])
        .arg(&journal)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "could not remount the journal read-only: {}",
        String::from_utf8_lossy(&st.stderr)
    );

    let (status, _, body) = admin_get(gw.admin, "/readyz", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("journal: NOT READY"), "{body}");
    assert!(body.contains("not writable"), "{body}");
    assert!(body.contains("listeners: ok"), "{body}");
    // Alive all the same.
    assert_eq!(admin_get(gw.admin, "/healthz", None).0, 200);
}

#[test]
fn shipping_to_a_real_clickhouse_moves_the_batch_counters() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_metrics");
    let gw = Gatehouse::start_in(
        tempfile::tempdir().unwrap(),
        &format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\nvalidation = false\n\
             batch_interval = \"100ms\"\n"
        ),
    );
    // A refused CONNECT (private destination) is one recorded flow.
    let mut s = TcpStream::connect(gw.proxy).unwrap();
    write!(s, "CONNECT 10.255.255.1:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 403");
    drop(s);
    let text = wait_metrics(&gw, "a shipped batch", |t| {
        value(t, "gatehouse_shipped_batches_total").unwrap_or(0.0) >= 1.0
    });
    assert!(
        value(&text, "gatehouse_shipped_events_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        value(&text, "gatehouse_shipping_lag_seconds").is_some(),
        "{text}"
    );
    assert_eq!(
        value(&text, "gatehouse_failed_batches_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "gatehouse_journal_unshipped_bytes"),
        Some(0.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "gatehouse_connections_total{mode=\"explicit\",decision=\"block\"}"
        )
        .unwrap_or(0.0)
            + value(
                &text,
                "gatehouse_connections_total{mode=\"explicit\",decision=\"error\"}"
            )
            .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    let _ = Command::new("curl")
        .args([
            "-sS",
            "--data-binary",
            &format!("DROP DATABASE IF EXISTS {db}"),
            &url,
        ])
        .output();
}
