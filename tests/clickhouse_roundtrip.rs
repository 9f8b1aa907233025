//! The ClickHouse chain works: the server the test command started, the
//! `clickhouse` crate, a database, a table, a row there and back.

mod common;

use clickhouse::Row;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct Probe {
    id: u64,
    ts_ms: u64,
    user: String,
    tags: Vec<String>,
}

#[tokio::test]
async fn a_row_round_trips_through_a_fresh_database() {
    let url = common::clickhouse_url();
    let db = common::unique("gh_roundtrip");
    let admin = clickhouse::Client::default()
        .with_url(&url)
        .with_validation(false);
    admin
        .query(&format!("CREATE DATABASE {db}"))
        .execute()
        .await
        .expect("create database");
    let client = admin.clone().with_database(&db);
    client
        .query(
            "CREATE TABLE probe (id UInt64, ts_ms UInt64, user String, tags Array(String), \
             day Date DEFAULT toDate(intDiv(ts_ms, 1000))) \
             ENGINE = MergeTree() PARTITION BY day ORDER BY (id)",
        )
        .execute()
        .await
        .expect("create table");

    let rows = vec![
        Probe {
            id: 1,
            ts_ms: 1_790_000_000_000,
            user: "alice".into(),
            tags: vec!["a".into(), "b".into()],
        },
        Probe {
            id: 2,
            ts_ms: 1_790_000_000_500,
            user: "bob ✓".into(),
            tags: vec![],
        },
    ];
    let mut insert = client.insert::<Probe>("probe").await.expect("insert");
    for r in &rows {
        insert.write(r).await.expect("write row");
    }
    insert.end().await.expect("end insert");

    let got = client
        .query("SELECT ?fields FROM probe ORDER BY id")
        .fetch_all::<Probe>()
        .await
        .expect("select");
    admin
        .query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .expect("drop database");
    assert_eq!(got, rows);
}
