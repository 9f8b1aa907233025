//! Events reach ClickHouse and `gatehouse events` finds them: connection
//! events from a real gateway process, and events of every type (emitted
//! through the library pipeline) by each filter — from ClickHouse and from
//! the journal alike.

mod common;
mod events_support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::Gatehouse;
use events_support::{ch_count, connect_status, events_json, ids, wait_until};
use gatehouse::config::{ClickHouseConfig, EventsConfig};
use gatehouse::events::{
    AuditEvent, ConnectionEvent, Direction, DlpFindingEvent, Event, EventSink, Masked,
    MessageEvent, OpaqueTunnelEvent, Pipeline, PolicyEvent, Severity,
};
use uuid::Uuid;

#[test]
fn gateway_connections_become_rows_that_search_finds() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_gw");
    let echo = common::echo_server();
    let gw = Gatehouse::start_in(tempfile::tempdir().unwrap(), &format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallowed_destinations = [\"127.0.0.1/32\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [events]\njournal_dir = \"journal\"\n\
         [clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\nvalidation = false\nbatch_interval = \"100ms\"\n"
    ));
    // Two refusals (private destination) and one relayed tunnel.
    assert!(connect_status(gw.proxy, "10.255.255.1:443").contains("403"));
    assert!(connect_status(gw.proxy, "10.255.255.2:443").contains("403"));
    {
        let mut s = std::net::TcpStream::connect(gw.proxy).unwrap();
        write!(s, "CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"));
        s.write_all(b"hello tunnel").unwrap();
        let mut back = [0u8; 12];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello tunnel");
    }
    let rows = || {
        events_support::try_count(
            &url,
            &format!("SELECT count() FROM {db}.events_connection FINAL"),
        )
        .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || rows() == 3),
        "rows: {}; log:\n{}",
        rows(),
        gw.log()
    );
    assert_eq!(
        events_support::ch(
            &url,
            &format!("SELECT action, host FROM {db}.events_connection ORDER BY host FORMAT TSV")
        ),
        "block\t10.255.255.1\nblock\t10.255.255.2\npassthrough\t127.0.0.1"
    );

    let dir = gw.dir.path();
    let config = gw.path("gatehouse.toml");
    let all = events_json(dir, &config, &["search"]);
    assert_eq!(all.len(), 3);
    let ts: Vec<u64> = all.iter().map(|e| e["ts_ms"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first: {ts:?}");
    assert_eq!(
        events_json(dir, &config, &["search", "--action", "block"]).len(),
        2
    );
    let tunnel = events_json(dir, &config, &["search", "--action", "passthrough"]);
    assert_eq!(tunnel.len(), 1);
    assert_eq!(tunnel[0]["bytes_up"], 12);
    assert_eq!(tunnel[0]["bytes_down"], 12);
    assert_eq!(
        events_json(dir, &config, &["search", "10.255.255"]).len(),
        2
    );
    assert_eq!(
        events_json(dir, &config, &["search", "--type", "connection"]).len(),
        3
    );
    assert_eq!(
        events_json(dir, &config, &["search", "--type", "dlp_finding"]).len(),
        0
    );
    assert_eq!(
        events_json(dir, &config, &["search", "--since", "1h"]).len(),
        3
    );
    assert_eq!(
        events_json(dir, &config, &["search", "--until", "1h"]).len(),
        0
    );
    let newest = events_json(dir, &config, &["search", "--limit", "1"]);
    assert_eq!(ids(&newest), ids(&all[..1]));
    // The journal holds the same events (until shipped segments are deleted).
    let journal = events_json(dir, &config, &["search", "--journal"]);
    assert_eq!(
        ids(&journal).into_iter().collect::<BTreeSet<_>>(),
        ids(&all).into_iter().collect::<BTreeSet<_>>()
    );
    let shown = events_json(dir, &config, &["show", all[0]["id"].as_str().unwrap()]);
    assert_eq!(shown[0]["event"]["id"], all[0]["id"]);
    assert_eq!(shown[0]["flow"].as_array().unwrap().len(), 1);
    let stats = events_json(dir, &config, &["stats", "--since", "1d"]);
    assert!(
        stats.contains(&serde_json::json!({"dimension":"action","value":"block","count":2})),
        "{stats:?}"
    );
    events_support::ch(&url, &format!("DROP DATABASE {db}"));
}

/// Events of every type for two users, the flows tied together.
fn corpus() -> Vec<Event> {
    let client = "10.8.0.5:40000".parse().unwrap();
    let mut out = Vec::new();
    for (user, device, app, host) in [
        ("alice", "alice-phone", "slack", "wss-primary.slack.com"),
        ("bob", "bob-laptop", "teams", "teams.microsoft.com"),
    ] {
        let flow = Uuid::now_v7();
        out.push(Event::Connection(ConnectionEvent {
            client,
            destination: Some(format!("{host}:443")),
            decision: "intercept".into(),
            reason: "policy".into(),
            flow_id: flow,
            user: user.into(),
            device: device.into(),
            host: host.into(),
            app: Some(app.into()),
            protocol: Some("tls".into()),
            ..Default::default()
        }));
        let message = MessageEvent {
            flow_id: flow,
            client,
            user: user.into(),
            device: device.into(),
            app: app.into(),
            host: host.into(),
            direction: Direction::Outbound,
            conversation: Some("C123".into()),
            sender: Some(user.into()),
            chars: 42,
            findings: 1,
            action: "alert".into(),
            text: None,
            extractor: "app".into(),
            e2ee: None,
        };
        out.push(Event::Message(message));
        for (rule, severity, action) in [
            ("pci/card-number", Severity::Critical, "block"),
            ("secrets/aws-key", Severity::High, "alert"),
            ("pii/email", Severity::Low, "log"),
        ] {
            out.push(Event::DlpFinding(DlpFindingEvent {
                flow_id: flow,
                message_id: None,
                client,
                user: user.into(),
                device: device.into(),
                app: app.into(),
                host: host.into(),
                rule: rule.into(),
                direction: Default::default(),
                severity,
                score: 90,
                action: action.into(),
                evidence: Masked::new("4111 1111 1111 1234"),
                start: 0,
                end: 19,
                related: Vec::new(),
                conversation: None,
                sealed: None,
                unsealed: Default::default(),
            }));
        }
        out.push(Event::OpaqueTunnel(OpaqueTunnelEvent {
            flow_id: Uuid::now_v7(),
            client,
            user: user.into(),
            device: device.into(),
            app: Some("signal".into()),
            host: "chat.signal.org".into(),
            protocol: "tls".into(),
            class: "e2ee".into(),
            action: "passthrough".into(),
            bytes_up: 10,
            bytes_down: 20,
            reason: "e2ee".into(),
            evidence: "signal envelopes".into(),
            confidence: "high".into(),
            duration_ms: 1500,
        }));
        out.push(Event::Policy(PolicyEvent {
            flow_id: Uuid::now_v7(),
            client,
            user: user.into(),
            device: device.into(),
            app: Some("whatsapp".into()),
            host: "g.whatsapp.net".into(),
            kind: "upstream_rejected".into(),
            action: "block".into(),
            rule: None,
            reason: "certificate expired".into(),
        }));
    }
    out.push(Event::Audit(AuditEvent {
        actor: "investigator".into(),
        client: None,
        action: "reveal".into(),
        target: None,
        reason: "case 42".into(),
        detail: String::new(),
    }));
    out
}

fn write_config(dir: &Path, journal: &Path, url: &str, db: &str) -> std::path::PathBuf {
    let p = dir.join("cli.toml");
    std::fs::write(
        &p,
        format!(
            "[events]\njournal_dir = \"{}\"\n[clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\nvalidation = false\n",
            journal.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn every_filter_selects_what_it_names_in_clickhouse_and_in_the_journal() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_filters");
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    let events = EventsConfig {
        journal_dir: journal.clone(),
        node: "node-1".into(),
        ..EventsConfig::default()
    };
    let ch = ClickHouseConfig {
        url: url.clone(),
        database: db.clone(),
        validation: false,
        batch_interval: Duration::from_millis(100),
        ..ClickHouseConfig::default()
    };
    let corpus = corpus();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Pipeline::start(&events, Some(&ch)).unwrap();
        let sink = p.sink();
        for e in &corpus {
            sink.emit(e.clone());
        }
        sink.flush();
        let sink2 = sink.clone();
        let n = corpus.len() as u64;
        let ok = tokio::time::timeout(Duration::from_secs(30), async move {
            while sink2.metrics().shipped_events < n {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "not shipped: {:?}", sink.metrics());
        p.shutdown(Duration::from_secs(5)).await;
    });
    let config = write_config(tmp.path(), &journal, &url, &db);
    let dir = tmp.path();
    let both = |args: &[&str]| {
        let a = events_json(dir, &config, args);
        let mut j_args = args.to_vec();
        j_args.push("--journal");
        let j = events_json(dir, &config, &j_args);
        assert_eq!(
            ids(&a).into_iter().collect::<BTreeSet<_>>(),
            ids(&j).into_iter().collect::<BTreeSet<_>>(),
            "ClickHouse and journal disagree on {args:?}"
        );
        a
    };
    let total = corpus.len();
    assert_eq!(both(&["search"]).len(), total);
    let alice = both(&["search", "--user", "alice"]);
    assert_eq!(alice.len(), 7);
    assert!(alice.iter().all(|e| e["user"] == "alice"));
    let dev = both(&["search", "--device", "bob-laptop"]);
    assert_eq!(dev.len(), 7);
    assert!(dev.iter().all(|e| e["device"] == "bob-laptop"));
    let slack = both(&["search", "--app", "slack"]);
    assert_eq!(slack.len(), 5, "connection, message, three findings");
    let rule = both(&["search", "--rule", "secrets/aws-key"]);
    assert_eq!(rule.len(), 2);
    assert!(rule.iter().all(|e| e["rule"] == "secrets/aws-key"));
    let high = both(&["search", "--severity", "high"]);
    assert_eq!(high.len(), 4, "high and critical");
    assert!(high
        .iter()
        .all(|e| e["severity"] == "high" || e["severity"] == "critical"));
    let blocks = both(&["search", "--action", "block"]);
    assert_eq!(blocks.len(), 4, "two card findings, two policy blocks");
    let types = both(&["search", "--type", "opaque_tunnel,audit"]);
    assert_eq!(types.len(), 3);
    let text = both(&["search", "SIGNAL.org"]);
    assert_eq!(text.len(), 2);
    assert!(text.iter().all(|e| e["host"] == "chat.signal.org"));
    let combined = both(&[
        "search",
        "--user",
        "bob",
        "--type",
        "dlp_finding",
        "--severity",
        "critical",
    ]);
    assert_eq!(combined.len(), 1);
    assert_eq!(both(&["search", "--since", "10m"]).len(), total);
    assert_eq!(
        both(&["search", "--since", "2999-01-01T00:00:00Z"]).len(),
        0
    );
    assert_eq!(
        both(&["search", "--until", "2000-01-01T00:00:00Z"]).len(),
        0
    );
    assert_eq!(both(&["search", "--limit", "3"]).len(), 3);
    let conversation = both(&["search", "--conversation", "C123"]);
    assert_eq!(conversation.len(), 2, "{conversation:?}");
    assert!(conversation
        .iter()
        .all(|e| e["type"] == "message" && e["conversation"] == "C123"));
    assert!(both(&["search", "--conversation", "C999"]).is_empty());
    // Never the raw match.
    assert!(rule.iter().all(|e| e["evidence"] == "•••• •••• •••• 1234"));

    // show: a finding with its flow's connection, message and findings.
    let finding = &rule[0];
    let shown = events_json(dir, &config, &["show", finding["id"].as_str().unwrap()]);
    let flow = shown[0]["flow"].as_array().unwrap();
    assert_eq!(flow.len(), 5);
    assert!(flow.iter().all(|e| e["flow_id"] == finding["flow_id"]));
    let kinds: BTreeSet<&str> = flow.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["connection", "dlp_finding", "message"])
    );

    let stats = events_json(dir, &config, &["stats"]);
    for want in [
        serde_json::json!({"dimension":"type","value":"dlp_finding","count":6}),
        serde_json::json!({"dimension":"app","value":"slack","count":5}),
        serde_json::json!({"dimension":"rule","value":"pci/card-number","count":2}),
        serde_json::json!({"dimension":"user","value":"alice","count":7}),
        serde_json::json!({"dimension":"action","value":"block","count":4}),
    ] {
        assert!(stats.contains(&want), "{want} not in {stats:?}");
    }
    // The readable table names what it shows.
    let (code, out, err) = common::gatehouse(
        dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "events",
            "search",
            "--user",
            "alice",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("TIME") && out.contains("pci/card-number (critical)"),
        "{out}"
    );
    let table = |extra: &[&str]| {
        let mut args = vec!["--config", config.to_str().unwrap(), "events", "search"];
        args.extend_from_slice(extra);
        common::gatehouse(dir, &args)
    };
    // Columns are cut to fit, unless --wide.
    let (_, cut, _) = table(&["--journal", "SIGNAL.org"]);
    let (code, wide, err) = table(&["--journal", "--wide", "SIGNAL.org"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        cut.contains("alice-pho…") && !cut.contains("alice-phone"),
        "{cut}"
    );
    assert!(wide.contains("alice-phone"), "{wide}");
    // An empty result says so on stderr (stdout stays empty for scripts).
    let (code, out, err) = table(&["--journal", "--user", "nobody"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("0 events"), "{err}");
    // A reader that goes away early is not an error.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "events",
            "search",
            "--journal",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ch_count(
            &url,
            &format!("SELECT count() FROM {db}.events_dlp_finding")
        ),
        6
    );
    events_support::ch(&url, &format!("DROP DATABASE {db}"));
}
