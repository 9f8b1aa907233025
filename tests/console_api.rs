//! The console's JSON API over real HTTPS (curl, the gateway's CA), against
//! a real gateway, real traffic and a real ClickHouse: sessions and their
//! cookie, no-store, CSRF, login throttling, incidents with masked
//! evidence, triage, reveal with its durable audit event, export, bearer
//! tokens, inspectability — and sealed evidence unreadable in ClickHouse.

mod common;
mod console_support;

use console_support::{Console, CARD, PASSWORD, TOKEN};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_api_serves_audits_and_keeps_evidence_sealed() {
    let c = Console::start(3).await;
    c.make_finding().await;
    let jar_dir = tempfile::tempdir().unwrap();
    let jar = jar_dir.path().join("ana.jar");
    let jar_s = jar.to_str().unwrap();

    // Session: cookie attributes, CSRF token, no-store on everything.
    let (code, headers, body) = c.curl(&[
        "-c",
        jar_s,
        "-H",
        "content-type: application/json",
        "--data",
        &format!("{{\"name\":\"ana\",\"password\":\"{PASSWORD}\"}}"),
        &format!("{}/api/session", c.url),
    ]);
    assert_eq!(code, 200, "{body}");
    let csrf = json(&body)["csrf"].as_str().unwrap().to_string();
    assert!(csrf.len() >= 32);
    let cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {headers}"));
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{headers}"
    );

    // The console is one of the gateway's own listeners: never a destination
    // through the proxy, even with loopback destinations allowed.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
        ])
        .args([
            "--proxy",
            &format!("http://{}", c.gw.proxy),
            "-k",
            &format!("{}/login", c.url),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    // Unauthenticated: 401, and still no-store.
    let (code, headers, _) = c.curl(&[&format!("{}/api/incidents", c.url)]);
    assert_eq!(code, 401);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{headers}"
    );

    // Incidents: the finding, by id, with masked evidence only.
    let (code, headers, body) = c.curl(&["-b", jar_s, &format!("{}/api/incidents", c.url)]);
    assert_eq!(code, 200, "{body}");
    assert!(headers
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));
    assert!(
        !body.contains(CARD),
        "plaintext in the incident list: {body}"
    );
    let v = json(&body);
    let incident = &v["incidents"][0];
    assert!(
        incident["rule"].as_str().unwrap().contains("payment-card"),
        "{body}"
    );
    assert_eq!(incident["conversation"], "C042");
    assert_eq!(incident["status"], "new");
    let finding = incident["findings"][0]["id"].as_str().unwrap().to_string();
    let evidence = incident["findings"][0]["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("9855") && !evidence.contains(CARD),
        "{evidence}"
    );
    let inc_id = incident["id"].as_str().unwrap().to_string();
    // Filters narrow it.
    let (_, _, body) = c.curl(&["-b", jar_s, &format!("{}/api/incidents?user=nobody", c.url)]);
    assert_eq!(json(&body)["total"], 0, "{body}");
    let (_, _, body) = c.curl(&[
        "-b",
        jar_s,
        &format!(
            "{}/api/incidents?conversation=C042&severity=low&status=new",
            c.url
        ),
    ]);
    assert_eq!(json(&body)["total"], 1, "{body}");

    // Sealed evidence: ClickHouse holds ciphertext, never the card, in any column.
    let cols = c.ch_query(&format!(
        "SELECT id, ts, ts_ms, node, flow_id, user, device, client_ip, app, host, action, rule, severity, reason, bytes_up, bytes_down, event, sealed FROM {}.events_dlp_finding FORMAT TSVRaw",
        c.db
    ));
    assert!(!cols.is_empty() && cols.contains("payment-card"), "{cols}");
    assert!(!cols.contains(CARD), "plaintext in ClickHouse: {cols}");
    let sealed = c.ch_query(&format!(
        "SELECT sealed FROM {}.events_dlp_finding FORMAT TSVRaw",
        c.db
    ));
    assert!(
        sealed.trim().len() > 60,
        "the sealed column holds the ciphertext: {sealed:?}"
    );

    // A state change without the CSRF token is refused; with it, it lands.
    let status_url = format!("{}/api/incidents/{inc_id}/status", c.url);
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "--data",
        "{\"status\":\"in_review\"}",
        &status_url,
    ]);
    assert_eq!(code, 403, "{body}");
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "-H",
        "x-csrf-token: wrong",
        "--data",
        "{\"status\":\"in_review\"}",
        &status_url,
    ]);
    assert_eq!(code, 403, "{body}");
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {csrf}"),
        "--data",
        "{\"status\":\"in_review\"}",
        &status_url,
    ]);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {csrf}"),
        "--data",
        "{\"note\":\"called the user\"}",
        &format!("{}/api/incidents/{inc_id}/notes", c.url),
    ]);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {csrf}"),
        "--data",
        "{\"status\":\"closed\"}",
        &status_url,
    ]);
    assert_eq!(code, 400, "{body}");
    let (_, _, body) = c.curl(&["-b", jar_s, &format!("{}/api/incidents/{inc_id}", c.url)]);
    let v = json(&body);
    assert_eq!(v["status"], "in_review", "{body}");
    assert!(
        v["history"].to_string().contains("called the user"),
        "{body}"
    );
    // Bulk status.
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {csrf}"),
        "--data",
        &format!("{{\"ids\":[\"{inc_id}\"],\"status\":\"resolved\"}}"),
        &format!("{}/api/incidents/status", c.url),
    ]);
    assert_eq!(
        (code, json(&body)["updated"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let (_, _, body) = c.curl(&[
        "-b",
        jar_s,
        &format!("{}/api/incidents?status=resolved", c.url),
    ]);
    assert_eq!(json(&body)["total"], 1, "{body}");

    // Conversation: the flagged message, masked.
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        &format!("{}/api/incidents/{inc_id}/conversation", c.url),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains(CARD), "{body}");
    let v = json(&body);
    let msgs = v["messages"].as_array().unwrap();
    assert!(msgs.iter().any(|m| m["flagged"] == true), "{body}");

    // Reveal: a reason is required; with one, the text, after a durable audit event.
    let reveal_url = format!("{}/api/findings/{finding}/reveal", c.url);
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {csrf}"),
        "--data",
        "{\"reason\":\"  \"}",
        &reveal_url,
    ]);
    assert_eq!(code, 400, "{body}");
    let (code, headers, body) = c.curl(&[
        "-b",
        jar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {csrf}"),
        "--data",
        "{\"reason\":\"case 42: confirm the card\"}",
        &reveal_url,
    ]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["text"], CARD, "{body}");
    assert!(
        json(&body)["context"]
            .as_str()
            .unwrap()
            .contains("before it: card"),
        "{body}"
    );
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{headers}"
    );
    // Durable before the answer: already in the journal.
    let audits = c.journal_audits();
    let reveal = audits
        .iter()
        .find(|a| a["action"] == "reveal")
        .unwrap_or_else(|| panic!("no reveal audit in the journal: {audits:?}"));
    assert_eq!(reveal["actor"], "ana");
    assert_eq!(reveal["target"], finding.as_str());
    assert_eq!(reveal["reason"], "case 42: confirm the card");
    assert!(!reveal.to_string().contains(CARD));
    c.wait_audit_in_clickhouse("reveal", &finding).await;

    // A viewer reads but gets 403 on reveal and on triage.
    let vjar = jar_dir.path().join("vic.jar");
    let vcsrf = c.login("vic", &vjar);
    let vjar_s = vjar.to_str().unwrap();
    let (code, _, _) = c.curl(&["-b", vjar_s, &format!("{}/api/incidents", c.url)]);
    assert_eq!(code, 200);
    let (code, _, body) = c.curl(&[
        "-b",
        vjar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {vcsrf}"),
        "--data",
        "{\"reason\":\"curious\"}",
        &reveal_url,
    ]);
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains(CARD));
    let (code, _, _) = c.curl(&[
        "-b",
        vjar_s,
        "-H",
        "content-type: application/json",
        "-H",
        &format!("x-csrf-token: {vcsrf}"),
        "--data",
        "{\"status\":\"dismissed\"}",
        &status_url,
    ]);
    assert_eq!(code, 403);
    let (code, _, _) = c.curl(&["-b", vjar_s, &format!("{}/api/export?format=csv", c.url)]);
    assert_eq!(code, 403);

    // Export: masked, audited; a bearer token (no CSRF needed) works for scripts.
    let (code, headers, body) = c.curl(&[
        "-H",
        &format!("authorization: Bearer {TOKEN}"),
        &format!("{}/api/export?format=csv&conversation=C042", c.url),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(headers.contains("text/csv"), "{headers}");
    assert!(body.starts_with("incident,status,"), "{body}");
    assert!(body.contains("9855") && !body.contains(CARD), "{body}");
    let (code, _, body) = c.curl(&["-b", jar_s, &format!("{}/api/export?format=jsonl", c.url)]);
    assert_eq!(code, 200);
    let line = json(body.lines().next().unwrap());
    assert_eq!(line["incident"], inc_id.as_str());
    assert!(!body.contains(CARD));
    let (code, _, _) = c.curl(&[
        "-H",
        "authorization: Bearer wrong-token",
        &format!("{}/api/incidents", c.url),
    ]);
    assert_eq!(code, 401);
    c.wait_audit_in_clickhouse("export", "format=csv").await;
    let exports = c
        .journal_audits()
        .into_iter()
        .filter(|a| a["action"] == "export")
        .count();
    assert_eq!(exports, 2, "one audit event per export");

    // Inspectability: the Slack flow was read, with bytes.
    let (code, _, body) = c.curl(&[
        "-b",
        jar_s,
        &format!("{}/api/inspectability?from=1h", c.url),
    ]);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    let devices = v["devices"].as_array().unwrap();
    assert!(
        devices
            .iter()
            .any(|d| d["read"]["slack"]["bytes"].as_u64().unwrap_or(0) > 0),
        "{body}"
    );

    // Logout ends the session (audited).
    let (code, _, _) = c.curl(&[
        "-b",
        jar_s,
        "-X",
        "DELETE",
        "-H",
        &format!("x-csrf-token: {csrf}"),
        &format!("{}/api/session", c.url),
    ]);
    assert_eq!(code, 204);
    let (code, _, _) = c.curl(&["-b", jar_s, &format!("{}/api/incidents", c.url)]);
    assert_eq!(code, 401);

    // Wrong passwords are throttled (3 allowed here), even the right one after.
    for _ in 0..3 {
        let (code, _, _) = c.curl(&[
            "-H",
            "content-type: application/json",
            "--data",
            "{\"name\":\"ivan\",\"password\":\"nope\"}",
            &format!("{}/api/session", c.url),
        ]);
        assert_eq!(code, 401);
    }
    let (code, headers, body) = c.curl(&[
        "-H",
        "content-type: application/json",
        "--data",
        &format!("{{\"name\":\"ivan\",\"password\":\"{PASSWORD}\"}}"),
        &format!("{}/api/session", c.url),
    ]);
    assert_eq!(code, 429, "{body}");
    assert!(
        headers.to_ascii_lowercase().contains("retry-after"),
        "{headers}"
    );

    let audits = c.journal_audits();
    let actions: Vec<&str> = audits.iter().filter_map(|a| a["action"].as_str()).collect();
    for a in [
        "login",
        "login_failed",
        "logout",
        "incident_status",
        "incident_note",
        "reveal",
        "export",
        "reveal_denied",
        "csrf_refused",
    ] {
        assert!(actions.contains(&a), "no `{a}` audit event: {actions:?}");
    }
}

#[tokio::test]
async fn a_login_from_another_site_is_refused_and_audited() {
    let c = Console::start(5).await;
    let login = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["-H".into(), "content-type: application/json".into()];
        for h in extra {
            args.push("-H".into());
            args.push((*h).into());
        }
        args.push("--data".into());
        args.push(format!("{{\"name\":\"ana\",\"password\":\"{PASSWORD}\"}}"));
        args.push(format!("{}/api/session", c.url));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        c.curl(&refs)
    };
    // A form posted from another site (login CSRF): refused, no cookie.
    for hostile in [
        &["Origin: https://evil.example"][..],
        &["Sec-Fetch-Site: cross-site"][..],
        &["Origin: null", "Sec-Fetch-Site: cross-site"][..],
    ] {
        let (code, headers, body) = login(hostile);
        assert_eq!(code, 403, "{hostile:?}: {body}");
        assert!(
            !headers.to_ascii_lowercase().contains("set-cookie"),
            "{hostile:?}: {headers}"
        );
    }
    // The console's own page, and a script sending no Origin: logged in.
    let own = format!("Origin: {}", c.url.trim_end_matches('/'));
    // (A browser on the console's own page sends `Origin: null`: the console
    // answers with `Referrer-Policy: no-referrer`.)
    for friendly in [
        &[own.as_str(), "Sec-Fetch-Site: same-origin"][..],
        &["Origin: null", "Sec-Fetch-Site: same-origin"][..],
        &[][..],
    ] {
        let (code, _, body) = login(friendly);
        assert_eq!(code, 200, "{friendly:?}: {body}");
    }
    let refused = c
        .journal_audits()
        .into_iter()
        .filter(|a| a["action"] == "login_failed" && a["reason"] == "cross-site login request")
        .count();
    assert_eq!(refused, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finding_in_a_streamed_body_seals_the_text_around_it() {
    let c = Console::start(3).await;
    // Past the inspection window (1 MiB): judged as it streams, where the
    // scanner holds only a tail of the body when the card shows up.
    let mut body = "lorem ipsum ".repeat(110_000);
    body.push_str(&format!("wire it to card {CARD} before friday"));
    body.push_str(&" dolor sit".repeat(2_000));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("upload.txt");
    std::fs::write(&file, &body).unwrap();
    let sent = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--proxy", &format!("http://{}", c.gw.proxy)])
        .args(["--cacert", c.gw.ca_cert.to_str().unwrap()])
        .args(["--connect-to", &format!("slack.com:443:{}", c.upstream)])
        .args(["-H", "content-type: text/plain"])
        .args(["--data-binary", &format!("@{}", file.display())])
        .arg("https://slack.com/echo")
        .output()
        .unwrap();
    let key = gatehouse::events::seal::OpenKey::load(&c.gw.dir.path().join("console.key")).unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        let (code, out, err) = common::gatehouse(
            c.gw.dir.path(),
            &[
                "events",
                "search",
                "--journal",
                "--type",
                "dlp_finding",
                "--json",
            ],
        );
        assert_eq!(code, 0, "{err}");
        seen = out.clone();
        let found = out.lines().map(json).find(|f| f["sealed"].is_string());
        if let Some(f) = found {
            assert!(!out.contains(CARD), "no plaintext in the journal");
            let id: uuid::Uuid = f["id"].as_str().unwrap().parse().unwrap();
            let opened = key.open(id, f["sealed"].as_str().unwrap()).unwrap();
            assert_eq!(opened.matched, CARD);
            assert!(
                opened
                    .context
                    .contains(&format!("wire it to card {CARD} before friday")),
                "the sealed context: {:?}",
                opened.context
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "no sealed finding of the streamed body in the journal ({sent:?}; ClickHouse: {} connections, {} findings, {} messages):\n{seen}\n{}\n{}",
        c.ch_count("events_connection"),
        c.ch_count("events_dlp_finding"),
        c.ch_count("events_message"),
        c.ch_query(&format!("SELECT event FROM {}.events_connection FORMAT TSVRaw", c.db)),
        c.gw.log()
    );
}
