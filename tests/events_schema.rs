//! The ClickHouse schema: created from an empty database, migrations
//! re-run change nothing, rows round-trip, `check` (library and CLI) names
//! a schema the gateway cannot use or an unreachable server, and retention
//! drops exactly the expired day partitions.

mod common;
mod events_support;

use clickhouse::Client;
use gatehouse::config::RetentionDays;
use gatehouse::events::schema::{self, check, migrate, EventRow};
use gatehouse::events::shipper::retention::drop_expired;
use gatehouse::events::{ConnectionEvent, Event, EventType, Record};
use time::OffsetDateTime;

fn client(url: &str) -> Client {
    Client::default().with_url(url).with_validation(false)
}

async fn snapshot(c: &Client, db: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = c
        .query(
            "SELECT name, create_table_query FROM system.tables WHERE database = ? ORDER BY name",
        )
        .bind(db)
        .fetch_all()
        .await
        .unwrap();
    let cols: Vec<(String, String)> = c
        .query("SELECT concat(table, '.', name), type FROM system.columns WHERE database = ? ORDER BY table, name")
        .bind(db)
        .fetch_all()
        .await
        .unwrap();
    out.extend(cols);
    let n: u64 = c
        .query(&format!(
            "SELECT count() FROM {db}.{}",
            schema::MIGRATIONS_TABLE
        ))
        .fetch_one()
        .await
        .unwrap();
    out.push(("migrations".into(), n.to_string()));
    out
}

fn row(ts_ms: u64, host: &str) -> EventRow {
    let mut r = Record::stamp(
        Event::Connection(ConnectionEvent {
            client: "10.0.0.7:5000".parse().unwrap(),
            decision: "block".into(),
            reason: "test".into(),
            host: host.into(),
            user: "carol".into(),
            ..Default::default()
        }),
        "node-x",
    );
    r.ts_ms = ts_ms;
    let json = serde_json::to_string(&r).unwrap();
    EventRow::new(&r, json)
}

async fn insert(c: &Client, kind: EventType, rows: &[EventRow]) {
    let mut ins = c.insert::<EventRow>(schema::table(kind)).await.unwrap();
    for r in rows {
        ins.write(r).await.unwrap();
    }
    ins.end().await.unwrap();
}

#[tokio::test]
async fn migrations_from_empty_then_again_change_nothing_and_rows_round_trip() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_schema");
    let c = client(&url);
    let every: Vec<u32> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
    assert!(every.contains(&4), "{every:?}");
    assert_eq!(migrate(&c, &db).await.unwrap(), every);
    let before = snapshot(&c, &db).await;
    assert_eq!(
        before
            .iter()
            .filter(|(n, _)| n.starts_with("events_") && !n.contains('.'))
            .count(),
        EventType::ALL.len()
    );
    assert!(before
        .iter()
        .all(|(n, q)| n.contains('.') || n == "migrations" || q.contains("ReplacingMergeTree")));
    assert!(migrate(&c, &db).await.unwrap().is_empty());
    assert_eq!(
        snapshot(&c, &db).await,
        before,
        "re-running migrations changed the schema"
    );

    let report = check(&c, &db).await.unwrap();
    assert_eq!(report.version, Some(schema::latest_version()));
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let dbc = c.clone().with_database(&db);
    let r = row(1_795_000_000_123, "round.trip.example");
    insert(&dbc, EventType::Connection, &[r.clone(), r.clone()]).await;
    let back: Vec<EventRow> = dbc
        .query("SELECT ?fields FROM events_connection FINAL")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(back, vec![r], "a replayed row shows once, unchanged");
    assert_eq!(
        back[0].transport, "tcp",
        "migration 3's column is written and read"
    );
    c.query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
}

/// Migration 4 (the `sealed` column of findings) cut short after its ALTER
/// (not yet recorded) applies again: 18.16 has no `ADD COLUMN IF NOT EXISTS`.
/// The column is filled from the event JSON by the server.
#[tokio::test]
async fn the_sealed_column_migration_reapplies_and_fills_from_the_event() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_sealed");
    let c = client(&url);
    c.query(&format!("CREATE DATABASE {db}"))
        .execute()
        .await
        .unwrap();
    for m in schema::MIGRATIONS {
        for statement in (m.statements)(&db) {
            c.query(&statement).execute().await.unwrap();
        }
    }
    let every: Vec<u32> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(migrate(&c, &db).await.unwrap(), every);
    let mut r = row(1_790_000_000_000, "slack.com");
    r.event = r#"{"type":"dlp_finding","sealed":"c2VhbGVk"}"#.into();
    insert(&c.clone().with_database(&db), EventType::DlpFinding, &[r]).await;
    let sealed: Vec<String> = c
        .query(&format!("SELECT sealed FROM {db}.events_dlp_finding"))
        .fetch_all()
        .await
        .unwrap();
    c.query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
    assert_eq!(sealed, vec!["c2VhbGVk".to_string()]);
}

#[tokio::test]
async fn check_names_an_unusable_schema_and_an_unreachable_server() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_bad");
    let c = client(&url);
    c.query(&format!("CREATE DATABASE {db}"))
        .execute()
        .await
        .unwrap();
    c.query(&format!(
        "CREATE TABLE {db}.events_connection (id String, ts DateTime, ts_ms UInt64) \
         ENGINE = MergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY ts_ms"
    ))
    .execute()
    .await
    .unwrap();
    let report = check(&c, &db).await.unwrap();
    let all = report.problems.join("\n");
    assert!(
        all.contains("column `id` is String, expected UUID"),
        "{all}"
    );
    assert!(all.contains("lacks column `user`"), "{all}");
    assert!(all.contains("engine MergeTree"), "{all}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        format!("[clickhouse]\nurl = \"{url}\"\ndatabase = \"{db}\"\nvalidation = false\n"),
    )
    .unwrap();
    let (code, out, _) =
        common::gatehouse(dir.path(), &["--config", cfg.to_str().unwrap(), "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: clickhouse:") && out.contains("expected UUID"),
        "{out}"
    );

    std::fs::write(
        &cfg,
        "[clickhouse]\nurl = \"http://127.0.0.1:9\"\ndatabase = \"x\"\nvalidation = false\n",
    )
    .unwrap();
    let (code, out, _) =
        common::gatehouse(dir.path(), &["--config", cfg.to_str().unwrap(), "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("UNREACHABLE"), "{out}");
    c.query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_drops_exactly_the_expired_day_partitions() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_ev_retention");
    let c = client(&url);
    migrate(&c, &db).await.unwrap();
    let dbc = c.clone().with_database(&db);
    let now = OffsetDateTime::now_utc();
    let now_ms = (now.unix_timestamp() * 1000) as u64;
    let day = 86_400_000u64;
    let ages = [0u64, 89, 91, 400];
    let rows: Vec<EventRow> = ages
        .iter()
        .map(|a| row(now_ms - a * day, &format!("age-{a}")))
        .collect();
    insert(&dbc, EventType::Connection, &rows).await;
    insert(&dbc, EventType::Audit, &rows).await;
    let retention = RetentionDays {
        connection: 90,
        audit: 730,
        ..RetentionDays::default()
    };
    let dropped = drop_expired(&dbc, &db, &retention, now).await.unwrap();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert!(dropped.iter().all(|(t, _)| *t == "events_connection"));
    let hosts: Vec<String> = dbc
        .query("SELECT host FROM events_connection ORDER BY ts_ms DESC")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(hosts, ["age-0", "age-89"]);
    let audit: u64 = dbc
        .query("SELECT count() FROM events_audit")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(audit, 4);
    // Idempotent: nothing more to drop.
    assert!(drop_expired(&dbc, &db, &retention, now)
        .await
        .unwrap()
        .is_empty());
    c.query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
}
