//! The journal on its own: a truncated tail is recovered and counted; the
//! full policies do what they say (fail-closed refuses new flows and keeps
//! every event; drop_new and drop_oldest keep serving and count the loss).

mod common;
mod events_support;

use std::path::Path;
use std::time::Duration;

use common::Gatehouse;
use events_support::{connect_status, events_json};
use gatehouse::config::{EventsConfig, FullPolicy};
use gatehouse::events::journal::{list_segments, segment_path};
use gatehouse::events::{ConnectionEvent, EmitError, Event, EventSink, Pipeline};

fn event(i: u32) -> Event {
    Event::Connection(ConnectionEvent {
        client: "10.0.0.1:1000".parse().unwrap(),
        destination: Some(format!("host-{i}.example.com:443")),
        decision: "block".into(),
        reason: format!("test {i}"),
        host: format!("host-{i}.example.com"),
        ..Default::default()
    })
}

fn cfg(dir: &Path) -> EventsConfig {
    EventsConfig {
        journal_dir: dir.to_path_buf(),
        node: "t".into(),
        ..EventsConfig::default()
    }
}

fn cli_config(dir: &Path, journal: &Path) -> std::path::PathBuf {
    let p = dir.join("cli.toml");
    std::fs::write(
        &p,
        format!("[events]\njournal_dir = \"{}\"\n", journal.display()),
    )
    .unwrap();
    p
}

#[test]
fn a_truncated_tail_is_recovered_counted_and_appends_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Pipeline::start(&cfg(&journal), None).unwrap();
        for i in 0..10 {
            p.sink().emit(event(i));
        }
        p.shutdown(Duration::from_secs(5)).await;
    });
    // A torn write: the last record loses its last 5 bytes.
    let (id, len) = *list_segments(&journal).unwrap().last().unwrap();
    let seg = segment_path(&journal, id);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    // Readers never modify the journal: they see the whole records.
    let cli = cli_config(tmp.path(), &journal);
    let seen = events_json(tmp.path(), &cli, &["search", "--journal"]);
    assert_eq!(seen.len(), 9);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len - 5);
    let tail = events_json(tmp.path(), &cli, &["tail", "-n", "3"]);
    assert_eq!(tail.len(), 3);
    assert_eq!(tail[2]["reason"], "test 8", "oldest first, newest last");

    rt.block_on(async {
        let p = Pipeline::start(&cfg(&journal), None).unwrap();
        let m = p.metrics();
        assert_eq!(m.torn_tail_recoveries, 1);
        let last_frame = 8 + serde_json::to_vec(&seen[0]).unwrap().len() as u64;
        assert!(
            m.torn_tail_bytes > 0 && m.torn_tail_bytes < last_frame,
            "{m:?}"
        );
        p.sink().emit(event(100));
        p.shutdown(Duration::from_secs(5)).await;
    });
    let after = events_json(tmp.path(), &cli, &["search", "--journal"]);
    assert_eq!(after.len(), 10);
    assert_eq!(after[0]["reason"], "test 100");
    assert!(
        after.iter().all(|e| e["reason"] != "test 9"),
        "the torn record is gone"
    );
}

#[test]
fn fail_closed_stops_accepting_before_the_limit_and_keeps_every_event() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emitted = rt.block_on(async {
        let p = Pipeline::start(
            &EventsConfig {
                segment_bytes: 4096,
                journal_max_bytes: 16384,
                ..cfg(&journal)
            },
            None,
        )
        .unwrap();
        let sink = p.sink();
        let mut n = 0;
        while sink.accepting() {
            assert!(n < 1000, "never became full: {:?}", sink.metrics());
            sink.emit(event(n));
            n += 1;
            sink.flush();
        }
        let m = sink.metrics();
        assert!(m.journal_full);
        assert!(m.refused_flows >= 1);
        assert_eq!(m.dropped, 0);
        assert!(m.journal_bytes <= 16384);
        assert_eq!(sink.try_emit(event(9999)), Err(EmitError::Full));
        p.shutdown(Duration::from_secs(5)).await;
        n
    });
    let cli = cli_config(tmp.path(), &journal);
    let all = events_json(tmp.path(), &cli, &["search", "--journal", "--limit", "0"]);
    assert_eq!(
        all.len() as u32,
        emitted,
        "every accepted event is journaled"
    );
}

#[test]
fn drop_policies_keep_serving_and_count_what_they_lose() {
    for policy in [FullPolicy::DropNew, FullPolicy::DropOldest] {
        let tmp = tempfile::tempdir().unwrap();
        let journal = tmp.path().join("journal");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let p = Pipeline::start(
                &EventsConfig {
                    segment_bytes: 4096,
                    journal_max_bytes: 16384,
                    full_policy: policy,
                    ..cfg(&journal)
                },
                None,
            )
            .unwrap();
            let sink = p.sink();
            for i in 0..300 {
                assert!(sink.accepting());
                sink.emit(event(i));
                sink.flush();
            }
            let m = sink.metrics();
            match policy {
                FullPolicy::DropNew => assert!(m.dropped > 0 && m.evicted_bytes == 0, "{m:?}"),
                _ => assert!(m.evicted_bytes > 0 && m.dropped == 0, "{m:?}"),
            }
            assert!(m.journal_bytes <= 16384 + 4096, "{m:?}");
            p.shutdown(Duration::from_secs(5)).await;
        });
        let cli = cli_config(tmp.path(), &journal);
        let newest = events_json(tmp.path(), &cli, &["search", "--journal", "--limit", "1"]);
        let want = if policy == FullPolicy::DropOldest {
            "test 299"
        } else {
            "test 0"
        };
        let found = events_json(tmp.path(), &cli, &["search", "--journal", "--limit", "0"]);
        assert!(
            found.iter().any(|e| e["reason"] == want),
            "{policy:?} should keep `{want}`; newest is {newest:?}"
        );
    }
}

#[test]
fn a_gateway_with_a_full_journal_refuses_new_flows_and_loses_no_event() {
    let gw = Gatehouse::start(
        "[events]\njournal_dir = \"journal\"\nsegment_bytes = 4096\njournal_max_bytes = 16384\n",
    );
    let mut answered = 0;
    let mut refused = false;
    for i in 0..500 {
        let status = connect_status(gw.proxy, &format!("10.9.{}.{}:443", i / 256, i % 256));
        if status.contains("403") {
            answered += 1;
        } else {
            // 503, or a reset that overtook it (the refusal closes at once).
            assert!(status.is_empty() || status.contains("503"), "{status}");
            refused = true;
            break;
        }
    }
    assert!(refused, "never refused after {answered} events");
    assert!(gw.log().contains("event journal full"), "{}", gw.log());
    assert!(
        gw.log().contains("refused: event journal full"),
        "{}",
        gw.log()
    );
    // Still refused: the journal is the only store and nothing ships.
    let again = connect_status(gw.proxy, "10.9.255.255:443");
    assert!(!again.contains("403"), "{again}");
    let cfg = gw.path("gatehouse.toml");
    let journaled = || events_json(gw.dir.path(), &cfg, &["search", "--limit", "0"]).len();
    assert!(
        events_support::wait_until(Duration::from_secs(10), || journaled() == answered),
        "{} of {answered} answered flows' events journaled; log:\n{}",
        journaled(),
        gw.log()
    );
}

#[test]
fn tail_follow_prints_new_events_as_they_are_journaled() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    let cli = cli_config(tmp.path(), &journal);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = rt.block_on(async { Pipeline::start(&cfg(&journal), None).unwrap() });
    p.sink().emit(event(1));
    p.sink().flush();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "--config",
            cli.to_str().unwrap(),
            "events",
            "tail",
            "-f",
            "-n",
            "1",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next = || {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from tail -f");
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["reason"].clone()
    };
    assert_eq!(next(), "test 1");
    for i in 2..=3 {
        p.sink().emit(event(i));
    }
    p.sink().flush();
    assert_eq!(next(), "test 2");
    assert_eq!(next(), "test 3");
    child.kill().unwrap();
    child.wait().unwrap();
    rt.block_on(p.shutdown(Duration::from_secs(5)));
}

#[test]
fn shutdown_does_not_hang_and_writes_what_fail_closed_was_holding() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Pipeline::start(
            &EventsConfig {
                segment_bytes: 4096,
                journal_max_bytes: 8192,
                ..cfg(&journal)
            },
            None,
        )
        .unwrap();
        // Emitting regardless of `accepting()`: the writer must hold the excess.
        for i in 0..100 {
            p.sink().emit(event(i));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = p.metrics();
        assert!(m.journal_full && m.queued_bytes > 0, "{m:?}");
        let sink = p.sink();
        tokio::time::timeout(Duration::from_secs(20), p.shutdown(Duration::from_secs(1)))
            .await
            .expect("shutdown hung with a full journal");
        // Keep every event: what was held is written past the limit at stop
        // (it once was dropped here).
        let m = sink.metrics();
        assert!(m.dropped == 0 && m.written == 100, "{m:?}");
    });
}

#[test]
fn a_cursor_beyond_the_recovered_end_is_moved_back() {
    let tmp = tempfile::tempdir().unwrap();
    let journal = tmp.path().join("journal");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Pipeline::start(&cfg(&journal), None).unwrap();
        p.sink().emit(event(1));
        p.shutdown(Duration::from_secs(5)).await;
    });
    let (id, len) = *list_segments(&journal).unwrap().last().unwrap();
    std::fs::write(journal.join("cursor"), format!("{id} {}\n", len + 1000)).unwrap();
    rt.block_on(async {
        let p = Pipeline::start(&cfg(&journal), None).unwrap();
        p.shutdown(Duration::from_secs(5)).await;
    });
    let cursor = std::fs::read_to_string(journal.join("cursor")).unwrap();
    assert_eq!(cursor.trim(), format!("{id} {len}"));
}
