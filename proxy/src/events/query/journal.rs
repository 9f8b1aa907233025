//! Queries over the local journal: a scan of every segment still on disk.

use std::collections::HashMap;
use std::path::Path;

use super::{Counts, Filter, DIMENSIONS};
use crate::events::journal::{Position, Reader};
use crate::events::Record;
use crate::GatewayError;

/// Every record in the journal at `dir` (oldest first), skipping any that
/// do not parse.
pub fn read_all(dir: &Path) -> Result<Vec<Record>, GatewayError> {
    let mut reader = Reader::new(dir, Position::default());
    let mut raw = Vec::new();
    reader
        .next_batch(None, usize::MAX, &mut raw)
        .map_err(|e| GatewayError::Events {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(raw
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect())
}

pub(super) fn search(dir: &Path, f: &Filter) -> Result<Vec<Record>, GatewayError> {
    let mut hits: Vec<Record> = read_all(dir)?
        .into_iter()
        .filter(|r| f.matches(r))
        .collect();
    hits.sort_by_key(|r| std::cmp::Reverse((r.ts_ms, r.id)));
    if f.limit > 0 {
        hits.truncate(f.limit);
    }
    Ok(hits)
}

pub(super) fn stats(dir: &Path, f: &Filter, top: usize) -> Result<Vec<Counts>, GatewayError> {
    let hits = search(
        dir,
        &Filter {
            limit: 0,
            ..f.clone()
        },
    )?;
    Ok(DIMENSIONS
        .iter()
        .map(|&dimension| {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for r in &hits {
                let c = r.event.columns();
                let key = match dimension {
                    "type" => c.kind.as_str(),
                    "app" => c.app,
                    "rule" => c.rule,
                    "user" => c.user,
                    _ => c.action,
                };
                if !key.is_empty() {
                    *counts.entry(key.to_string()).or_default() += 1;
                }
            }
            let mut values: Vec<(String, u64)> = counts.into_iter().collect();
            values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            values.truncate(top);
            Counts { dimension, values }
        })
        .collect())
}
