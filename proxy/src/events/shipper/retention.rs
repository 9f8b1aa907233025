//! Retention: drop day partitions older than each table's `retention_days`.
//! Partitions are dropped by literal id (`DROP PARTITION ID '20261122'`),
//! which both ClickHouse 18.16 and modern servers accept.

use clickhouse::Client;
use time::{Duration, OffsetDateTime};

use crate::config::RetentionDays;
use crate::events::schema::table;
use crate::events::EventType;

/// Days kept for `kind`; 0 keeps forever.
pub fn days(r: &RetentionDays, kind: EventType) -> u32 {
    match kind {
        EventType::Connection => r.connection,
        EventType::Message => r.message,
        EventType::DlpFinding => r.dlp_finding,
        EventType::OpaqueTunnel => r.opaque_tunnel,
        EventType::Policy => r.policy,
        EventType::Audit => r.audit,
        EventType::FlowUpdate => r.flow_update,
    }
}

/// The oldest day (as `YYYYMMDD`) kept when keeping `days` days up to `now`.
pub fn first_kept_day(now: OffsetDateTime, days: u32) -> u32 {
    let d = (now - Duration::days(i64::from(days.saturating_sub(1)))).date();
    d.year() as u32 * 10_000 + u32::from(u8::from(d.month())) * 100 + u32::from(d.day())
}

/// Drops expired partitions of every table in `db`; returns `(table, partition)` dropped.
pub async fn drop_expired(
    client: &Client,
    db: &str,
    retention: &RetentionDays,
    now: OffsetDateTime,
) -> Result<Vec<(&'static str, String)>, clickhouse::error::Error> {
    let mut dropped = Vec::new();
    for kind in EventType::ALL {
        let keep = days(retention, kind);
        if keep == 0 {
            continue;
        }
        let name = table(kind);
        let first = first_kept_day(now, keep);
        let parts: Vec<String> = client
            .query(
                "SELECT DISTINCT partition_id FROM system.parts \
                 WHERE database = ? AND table = ? AND active",
            )
            .bind(db)
            .bind(name)
            .fetch_all()
            .await?;
        for p in parts {
            // Our partition ids are YYYYMMDD; anything else is not ours to drop.
            let Ok(day) = p.parse::<u32>() else { continue };
            if p.len() != 8 || day >= first {
                continue;
            }
            client
                .query(&format!("ALTER TABLE {db}.{name} DROP PARTITION ID '{p}'"))
                .execute()
                .await?;
            tracing::info!(table = name, partition = %p, keep_days = keep, "retention: dropped day partition");
            dropped.push((name, p));
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_first_kept_day_counts_today() {
        let now = datetime!(2026-11-22 10:00 UTC);
        assert_eq!(first_kept_day(now, 1), 20261122);
        assert_eq!(first_kept_day(now, 30), 20261024);
        assert_eq!(first_kept_day(now, 365), 20251123);
    }
}
