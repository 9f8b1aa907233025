//! The journal sink seals findings' evidence to the console key, keeps no
//! plaintext anywhere in the journal, and `emit_durable` answers only once
//! the event is in the journal.

use gatehouse::config::EventsConfig;
use gatehouse::events::seal::{Evidence, OpenKey, Unsealed};
use gatehouse::events::{AuditEvent, Direction, Event, EventSink, FlowStamp, Pipeline, Record};

const SECRET: &str = "AKIAIOSFODNN7EXAMPLE";

fn journal_text(dir: &std::path::Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()));
        }
    }
    all
}

async fn records(dir: &std::path::Path) -> Vec<Record> {
    gatehouse::events::query::Source::Journal(dir.to_path_buf())
        .search(&gatehouse::events::query::Filter::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_are_sealed_in_the_journal_and_durable_emits_wait_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let events = EventsConfig {
        journal_dir: dir.clone(),
        ..EventsConfig::default()
    };
    let pipeline = Pipeline::start(&events, None).unwrap();
    let key = OpenKey::generate();
    pipeline.sink().seal_findings_to(key.public());
    let stamp = FlowStamp {
        flow_id: uuid::Uuid::now_v7(),
        client: "10.0.0.9:5000".parse().unwrap(),
        user: "u".into(),
        device: String::new(),
        app: Some("slack".into()),
        host: "slack.com".into(),
    };
    let text = format!("key {SECRET} here");
    let mut f = stamp.finding("slack", None, Direction::Outbound);
    f.rule = "secrets/aws".into();
    f.unsealed = Unsealed(Some(Evidence::in_text(SECRET, &text, 4, 24)));
    pipeline.sink().emit(Event::DlpFinding(f));

    // Durable: in the journal when emit_durable returns, without a flush.
    let audit = Event::Audit(AuditEvent {
        actor: "ana".into(),
        client: None,
        action: "reveal".into(),
        target: None,
        reason: "test".into(),
        detail: String::new(),
    });
    let id = pipeline.sink().emit_durable(audit).unwrap();
    let recs = records(&dir).await;
    assert!(
        recs.iter().any(|r| r.id == id),
        "the durable event is in the journal"
    );

    let finding = recs
        .iter()
        .find_map(|r| match &r.event {
            Event::DlpFinding(f) => Some((r.id, f.clone())),
            _ => None,
        })
        .expect("the finding is journaled before the durable event");
    let sealed = finding.1.sealed.expect("sealed evidence");
    assert!(
        !journal_text(&dir).contains(SECRET),
        "no plaintext in the journal"
    );
    let opened = key.open(finding.0, &sealed).unwrap();
    assert_eq!(opened.matched, SECRET);
    assert_eq!(opened.context, text);
    pipeline.shutdown(std::time::Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_console_key_findings_carry_no_evidence_to_reveal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let events = EventsConfig {
        journal_dir: dir.clone(),
        ..EventsConfig::default()
    };
    let pipeline = Pipeline::start(&events, None).unwrap();
    let stamp = FlowStamp {
        flow_id: uuid::Uuid::now_v7(),
        client: "10.0.0.9:5000".parse().unwrap(),
        user: "u".into(),
        device: String::new(),
        app: None,
        host: "h".into(),
    };
    let mut f = stamp.finding("", None, Direction::Outbound);
    f.unsealed = Unsealed(Some(Evidence::in_text(SECRET, SECRET, 0, 20)));
    pipeline.sink().emit(Event::DlpFinding(f));
    pipeline.sink().flush();
    let recs = records(&dir).await;
    assert!(
        matches!(&recs[..], [r] if matches!(&r.event, Event::DlpFinding(f) if f.sealed.is_none()))
    );
    assert!(!journal_text(&dir).contains(SECRET));
    pipeline.shutdown(std::time::Duration::from_secs(1)).await;
}
