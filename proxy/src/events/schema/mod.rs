//! The ClickHouse schema: one table per event type, partitioned by day,
//! ordered for investigators' queries, collapsing replays on the event id.
//! Versioned migrations, applied at start and recorded in
//! `gatehouse_migrations`; [`check`] says whether a schema is usable.
//!
//! Everything here stays in the SQL both ClickHouse 18.16 (tests) and
//! modern ClickHouse (production) accept: no TTL, no Map/JSON types, no
//! `IF NOT EXISTS` on columns; retention drops partitions instead of TTL.

mod row;

use clickhouse::Client;

use super::EventType;

pub use row::{EventRow, COLUMNS};

/// The table recording applied migrations.
pub const MIGRATIONS_TABLE: &str = "gatehouse_migrations";

/// The table holding events of `kind`.
pub fn table(kind: EventType) -> &'static str {
    match kind {
        EventType::Connection => "events_connection",
        EventType::Message => "events_message",
        EventType::DlpFinding => "events_dlp_finding",
        EventType::OpaqueTunnel => "events_opaque_tunnel",
        EventType::Policy => "events_policy",
        EventType::Audit => "events_audit",
        EventType::FlowUpdate => "events_flow_update",
    }
}

/// Sort key of each table: the columns investigators filter on first
/// (rule for findings, user and app elsewhere), then time, then the id that
/// makes replays collapse (ReplacingMergeTree deduplicates on the whole key).
fn order_by(kind: EventType) -> &'static str {
    match kind {
        EventType::DlpFinding => "rule, user, ts_ms, id",
        EventType::Audit => "user, ts_ms, id",
        _ => "user, app, ts_ms, id",
    }
}

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order, each once.
    pub version: u32,
    /// What it does.
    pub name: &'static str,
    /// Its statements for database `db` (each idempotent on its own, so a
    /// migration cut short is simply applied again).
    pub statements: fn(db: &str) -> Vec<String>,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "event tables",
        statements: create_event_tables,
    },
    Migration {
        version: 2,
        name: "flow_update table",
        statements: create_event_tables,
    },
    Migration {
        version: 3,
        name: "transport column (tcp / udp)",
        statements: no_statements,
    },
    Migration {
        version: 4,
        name: "dlp_finding sealed evidence column",
        statements: add_sealed_column,
    },
];

/// Columns added to every event table after version 1, with the migration
/// that adds them. Tables are created without them and altered by that
/// migration, so an old database and a new one end up alike; the column is
/// added only where missing (ClickHouse 18 has no `ADD COLUMN IF NOT
/// EXISTS`), so a migration cut short is simply applied again.
pub const ADDED_COLUMNS: &[(u32, &str, &str)] = &[(3, "transport", "String")];

fn no_statements(_db: &str) -> Vec<String> {
    Vec::new()
}

/// The sealed evidence of a finding as a column of its own, filled by the
/// server from the event JSON (so the row type and the shipper stay the
/// same for every table): base64 ciphertext, never the plaintext.
fn add_sealed_column(db: &str) -> Vec<String> {
    vec![format!(
        "ALTER TABLE {db}.{} ADD COLUMN sealed String MATERIALIZED visitParamExtractString(event, 'sealed')",
        table(EventType::DlpFinding)
    )]
}

/// Whether `e`, failing `statement`, means a column it adds is there
/// already: ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`, so a
/// migration cut short after its ALTER is recognised this way.
fn already_added(statement: &str, e: &clickhouse::error::Error) -> bool {
    statement.contains(" ADD COLUMN ") && e.to_string().contains("already exists")
}

/// The schema version this gatehouse writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// `CREATE TABLE IF NOT EXISTS` for every kind's table: each migration that
/// adds a kind runs it again, creating only the tables that are missing.
fn create_event_tables(db: &str) -> Vec<String> {
    let columns = COLUMNS
        .iter()
        .filter(|(n, _)| !ADDED_COLUMNS.iter().any(|(_, a, _)| a == n))
        .map(|(n, t)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ");
    EventType::ALL
        .iter()
        .map(|&kind| {
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.{} ({columns}) \
                 ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY ({})",
                table(kind),
                order_by(kind)
            )
        })
        .collect()
}

/// Creates the database and applies the migrations not yet recorded.
/// Returns the versions applied now (empty when the schema was current).
pub async fn migrate(client: &Client, db: &str) -> Result<Vec<u32>, clickhouse::error::Error> {
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute()
        .await?;
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.{MIGRATIONS_TABLE} \
             (version UInt32, name String, applied_at DateTime) \
             ENGINE = ReplacingMergeTree() ORDER BY version"
        ))
        .execute()
        .await?;
    let done = applied(client, db).await?;
    let mut now = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for statement in (m.statements)(db) {
            match client.query(&statement).execute().await {
                Err(e) if already_added(&statement, &e) => {}
                r => r?,
            }
        }
        add_columns(client, db, m.version).await?;
        client
            .query(&format!(
                "INSERT INTO {db}.{MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, now())"
            ))
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        tracing::info!(
            database = db,
            version = m.version,
            name = m.name,
            "ClickHouse migration applied"
        );
        now.push(m.version);
    }
    Ok(now)
}

/// Adds the columns of migration `version` to every event table that lacks them.
async fn add_columns(
    client: &Client,
    db: &str,
    version: u32,
) -> Result<(), clickhouse::error::Error> {
    for (_, col, ty) in ADDED_COLUMNS.iter().filter(|(v, _, _)| *v == version) {
        for kind in EventType::ALL {
            let name = table(kind);
            let have = client
                .query("SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?")
                .bind(db)
                .bind(name)
                .bind(*col)
                .fetch_one::<u64>()
                .await?;
            if have == 0 {
                client
                    .query(&format!("ALTER TABLE {db}.{name} ADD COLUMN {col} {ty}"))
                    .execute()
                    .await?;
            }
        }
    }
    Ok(())
}

async fn applied(client: &Client, db: &str) -> Result<Vec<u32>, clickhouse::error::Error> {
    client
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.{MIGRATIONS_TABLE} ORDER BY version"
        ))
        .fetch_all::<u32>()
        .await
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaReport {
    /// Highest applied migration, if any.
    pub version: Option<u32>,
    /// Why the gateway cannot use this schema; empty when it can.
    pub problems: Vec<String>,
    /// Worth knowing (e.g. "created at first start").
    pub notes: Vec<String>,
}

/// Checks that the gateway can write to and query the schema in `db`: every
/// table it will use either absent (migrations create it) or with the
/// expected columns, types and engine.
pub async fn check(client: &Client, db: &str) -> Result<SchemaReport, clickhouse::error::Error> {
    let mut report = SchemaReport::default();
    let exists = client
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(db)
        .fetch_one::<u64>()
        .await?;
    if exists == 0 {
        report.notes.push(format!(
            "database `{db}` does not exist yet; the gateway creates it at start"
        ));
        return Ok(report);
    }
    let tables: Vec<(String, String)> = client
        .query("SELECT name, engine FROM system.tables WHERE database = ?")
        .bind(db)
        .fetch_all()
        .await?;
    if tables.iter().any(|(n, _)| n == MIGRATIONS_TABLE) {
        report.version = applied(client, db).await?.last().copied();
    }
    if let Some(v) = report.version.filter(|v| *v > latest_version()) {
        report.notes.push(format!(
            "schema version {v} is newer than this gatehouse knows ({})",
            latest_version()
        ));
    }
    for kind in EventType::ALL {
        let name = table(kind);
        let Some((_, engine)) = tables.iter().find(|(n, _)| n == name) else {
            if report.version.is_some() {
                report.problems.push(format!(
                    "table `{db}.{name}` is missing although migrations are recorded"
                ));
            }
            continue;
        };
        if engine != "ReplacingMergeTree" {
            report.problems.push(format!(
                "table `{db}.{name}` has engine {engine}, expected ReplacingMergeTree (replayed events would show twice)"
            ));
        }
        let have: Vec<(String, String)> = client
            .query("SELECT name, type FROM system.columns WHERE database = ? AND table = ?")
            .bind(db)
            .bind(name)
            .fetch_all()
            .await?;
        for (col, ty) in COLUMNS {
            match have.iter().find(|(n, _)| n == col) {
                None => report
                    .problems
                    .push(format!("table `{db}.{name}` lacks column `{col}` ({ty})")),
                Some((_, t)) if t != ty => report.problems.push(format!(
                    "table `{db}.{name}` column `{col}` is {t}, expected {ty}"
                )),
                Some(_) => {}
            }
        }
    }
    if report.version.is_none() && report.problems.is_empty() {
        report
            .notes
            .push("no migrations recorded yet; the gateway applies them at start".into());
    }
    Ok(report)
}

/// A client for `config` (validation as configured; off for ClickHouse 18.x).
pub fn client(config: &crate::config::ClickHouseConfig) -> Client {
    Client::default()
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(&config.password)
        .with_validation(config.validation)
}
