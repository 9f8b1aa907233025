//! `gatehouse check`: config, CA and rules; every problem at once. With
//! `[clickhouse]`, also whether its schema is one the gateway can use.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use gatehouse::config::{self, ClickHouseConfig};
use gatehouse::events::schema;
use gatehouse_inspectors::dlp::RuleSet;

/// Prints every problem; exit status 1 on any.
pub fn main(path: Option<&Path>) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            let rules_ok = check_rules(&loaded.config.rules.dir);
            let schema_ok = match &loaded.config.clickhouse {
                Some(ch) => check_clickhouse(ch),
                None => true,
            };
            if !(rules_ok && schema_ok) {
                return ExitCode::FAILURE;
            }
            println!("ok: {}", loaded.source);
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print!("{problems}");
            println!("{} problem(s)", problems.error_count());
            ExitCode::FAILURE
        }
    }
}

/// Compiles the rules exactly as `run` does; prints each error with its
/// file:line:col. False if `run` would refuse them.
fn check_rules(dir: &Path) -> bool {
    if !dir.is_dir() {
        return true; // a config warning already says so; run starts with no rules
    }
    match RuleSet::load_dir(dir) {
        Ok(set) => {
            println!("ok: {} DLP rule(s) in {}", set.len(), dir.display());
            true
        }
        Err(errors) => {
            for e in &errors {
                println!("error: rules.dir: {e}");
            }
            println!("{} problem(s) in the DLP rules", errors.len());
            false
        }
    }
}

/// Reports the ClickHouse schema; false if the gateway cannot use it. An
/// unreachable server is a warning: the gateway runs and keeps events in
/// its journal until it can ship them.
fn check_clickhouse(ch: &ClickHouseConfig) -> bool {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("error: clickhouse: cannot start a runtime to check it: {e}");
            return false;
        }
    };
    let client = schema::client(ch);
    let report = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            schema::check(&client, &ch.database),
        )
        .await
    });
    let where_ = format!("{} database {}", ch.url, ch.database);
    match report {
        Err(_) => {
            println!("warning: clickhouse: {where_}: UNREACHABLE (no answer within 10s); events will wait in the journal");
            true
        }
        Ok(Err(e)) => {
            println!("warning: clickhouse: {where_}: UNREACHABLE or refused: {e}; events will wait in the journal");
            true
        }
        Ok(Ok(r)) => {
            for n in &r.notes {
                println!("note: clickhouse: {n}");
            }
            for p in &r.problems {
                println!("error: clickhouse: {where_}: {p}");
            }
            if r.problems.is_empty() {
                let version = r.version.map_or("none yet".to_string(), |v| v.to_string());
                println!("ok: clickhouse {where_}: schema usable (version {version})");
            } else {
                println!("{} problem(s) with the ClickHouse schema", r.problems.len());
            }
            r.problems.is_empty()
        }
    }
}
