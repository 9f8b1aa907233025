//! Queries over ClickHouse: one `SELECT … FINAL` per event table (FINAL
//! collapses replayed rows, so each event shows once — measured to work on
//! 18.16 and modern servers), joined with `UNION ALL`, newest first.
//! Counts use `uniqExact(id)`, which is exact without FINAL.

use ::clickhouse::Client;

use super::{Counts, Filter, DIMENSIONS};
use crate::events::schema::table;
use crate::events::{EventType, Record, Severity};
use crate::GatewayError;

/// A value bound to a `?` of the query (the client escapes it).
#[derive(Debug, Clone)]
enum Bound {
    Str(String),
    U64(u64),
}

/// The WHERE clause of `f` and its bound values, in order.
fn where_clause(f: &Filter) -> (String, Vec<Bound>) {
    let mut parts = vec!["1 = 1".to_string()];
    let mut binds = Vec::new();
    if let Some(s) = f.since_ms {
        // `ts` too, so whole day partitions are skipped.
        parts.push("ts >= toDateTime(?) AND ts_ms >= ?".into());
        binds.push(Bound::U64(s / 1000));
        binds.push(Bound::U64(s));
    }
    if let Some(u) = f.until_ms {
        parts.push("ts <= toDateTime(?) AND ts_ms < ?".into());
        binds.push(Bound::U64(u / 1000));
        binds.push(Bound::U64(u));
    }
    for (col, v) in [
        ("user", &f.user),
        ("device", &f.device),
        ("app", &f.app),
        ("rule", &f.rule),
        ("action", &f.action),
    ] {
        if let Some(v) = v {
            parts.push(format!("{col} = ?"));
            binds.push(Bound::Str(v.clone()));
        }
    }
    if let Some(min) = f.severity {
        let allowed: Vec<Severity> = Severity::ALL.into_iter().filter(|s| *s >= min).collect();
        parts.push(format!(
            "severity IN ({})",
            vec!["?"; allowed.len()].join(", ")
        ));
        binds.extend(allowed.iter().map(|s| Bound::Str(s.as_str().into())));
    }
    if let Some(t) = &f.text {
        parts.push("positionCaseInsensitive(host, ?) > 0".into());
        binds.push(Bound::Str(t.clone()));
    }
    if let Some(c) = &f.conversation {
        // Not a column: read from the event's JSON (a function ClickHouse
        // 18.16 has too).
        parts.push("visitParamExtractString(event, 'conversation') = ?".into());
        binds.push(Bound::Str(c.clone()));
    }
    if let Some(flow) = f.flow_id {
        parts.push("flow_id = toUUID(?)".into());
        binds.push(Bound::Str(flow.to_string()));
    }
    if let Some(id) = f.id {
        parts.push("id = toUUID(?)".into());
        binds.push(Bound::Str(id.to_string()));
    }
    (parts.join(" AND "), binds)
}

/// The event kinds whose tables exist (a schema not yet created by the
/// gateway holds no events rather than failing the query).
async fn existing(client: &Client, f: &Filter) -> Result<Vec<EventType>, GatewayError> {
    let names: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        .fetch_all()
        .await
        .map_err(failed("listing tables"))?;
    Ok(f.kinds()
        .into_iter()
        .filter(|k| names.iter().any(|n| n == table(*k)))
        .collect())
}

/// `SELECT {cols} FROM t FINAL WHERE … UNION ALL …` over `kinds`' tables.
fn union(f: &Filter, kinds: &[EventType], cols: &str, final_: bool) -> (String, Vec<Bound>) {
    let (clause, binds) = where_clause(f);
    let fin = if final_ { " FINAL" } else { "" };
    let sql = kinds
        .iter()
        .map(|k| {
            format!("SELECT {cols} FROM {}{fin} WHERE {clause}", table(*k))
                .replace("{kind}", k.as_str())
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let all = std::iter::repeat_n(binds, kinds.len()).flatten().collect();
    (sql, all)
}

fn bind(mut q: ::clickhouse::query::Query, binds: Vec<Bound>) -> ::clickhouse::query::Query {
    for b in binds {
        q = match b {
            Bound::Str(s) => q.bind(s),
            Bound::U64(n) => q.bind(n),
        };
    }
    q
}

fn failed(what: &'static str) -> impl FnOnce(::clickhouse::error::Error) -> GatewayError {
    move |source| GatewayError::ClickHouse { what, source }
}

pub(super) async fn search(client: &Client, f: &Filter) -> Result<Vec<Record>, GatewayError> {
    let kinds = existing(client, f).await?;
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let (inner, binds) = union(f, &kinds, "ts_ms, id, event", true);
    let limit = if f.limit > 0 {
        format!(" LIMIT {}", f.limit)
    } else {
        String::new()
    };
    // Ties broken by the id's text: the same order as the journal source
    // (ClickHouse compares UUID values in a different byte order).
    let sql = format!("SELECT event FROM ({inner}) ORDER BY ts_ms DESC, toString(id) DESC{limit}");
    let rows: Vec<String> = bind(client.query(&sql), binds)
        .fetch_all()
        .await
        .map_err(failed("search"))?;
    rows.iter()
        .map(|json| {
            serde_json::from_str(json)
                .map_err(|e| GatewayError::Query(format!("stored event does not parse: {e}")))
        })
        .collect()
}

pub(super) async fn stats(
    client: &Client,
    f: &Filter,
    top: usize,
) -> Result<Vec<Counts>, GatewayError> {
    let kinds = existing(client, f).await?;
    let mut out = Vec::new();
    for dimension in DIMENSIONS {
        if kinds.is_empty() {
            out.push(Counts {
                dimension,
                values: Vec::new(),
            });
            continue;
        }
        let key = if dimension == "type" {
            "'{kind}'".to_string()
        } else {
            dimension.to_string()
        };
        let (inner, binds) = union(f, &kinds, &format!("{key} AS k, id"), false);
        let sql = format!(
            "SELECT k, uniqExact(id) AS n FROM ({inner}) WHERE k != '' \
             GROUP BY k ORDER BY n DESC, k LIMIT {top}"
        );
        let values: Vec<(String, u64)> = bind(client.query(&sql), binds)
            .fetch_all()
            .await
            .map_err(failed("stats"))?;
        out.push(Counts { dimension, values });
    }
    Ok(out)
}
