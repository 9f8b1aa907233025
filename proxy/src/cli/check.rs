//! `gatehouse check`: config, CA and rules; every problem at once. With
//! `[clickhouse]`, also whether its schema is one the gateway can use.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use gatehouse::config::{self, ClickHouseConfig, Problem};
use gatehouse::events::schema;
use gatehouse_inspectors::dlp::RuleSet;
use serde_json::{json, Value};

/// Flags of `gatehouse check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// One JSON document: {"ok", "config", "problems":[{"severity","area","file","key","message"}], "notes":[{"area","message"}], "rules":{"dir","count"}|null, "clickhouse":{"url","database","reachable","usable","schema_version"}|null}.
    #[arg(long)]
    pub json: bool,
}

/// What `check` found: printed line by line as it goes (human), or kept
/// for one JSON document at the end.
struct Report {
    json: bool,
    problems: Vec<Value>,
    notes: Vec<Value>,
    rules: Value,
    clickhouse: Value,
}

impl Report {
    /// A line only people read (a summary, an "ok").
    fn say(&self, line: impl std::fmt::Display) {
        if !self.json {
            println!("{line}");
        }
    }

    /// A config problem, error or warning.
    fn config_problem(&mut self, p: &Problem) {
        let severity = if p.is_error() { "error" } else { "warning" };
        self.say(format_args!("{severity}: {p}"));
        self.problems.push(json!({
            "severity": severity,
            "area": "config",
            "file": p.file.as_ref().map(|f| f.display().to_string()),
            "key": p.key,
            "message": p.message,
        }));
    }

    /// A problem outside the config file (`area` is "rules" or "clickhouse").
    fn problem(&mut self, severity: &str, area: &str, key: &str, message: String, human: String) {
        self.say(human);
        self.problems.push(json!({
            "severity": severity,
            "area": area,
            "file": null,
            "key": key,
            "message": message,
        }));
    }
}

/// Prints every problem; exit status 1 on any.
pub fn main(path: Option<&Path>, args: CheckArgs) -> ExitCode {
    let mut report = Report {
        json: args.json,
        problems: Vec::new(),
        notes: Vec::new(),
        rules: Value::Null,
        clickhouse: Value::Null,
    };
    let (ok, source) = match config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                report.config_problem(w);
            }
            let rules_ok = check_rules(&mut report, &loaded.config.rules.dir);
            let schema_ok = match &loaded.config.clickhouse {
                Some(ch) => check_clickhouse(&mut report, ch),
                None => true,
            };
            let ok = rules_ok && schema_ok;
            if ok {
                report.say(format_args!("ok: {}", loaded.source));
            }
            (ok, Some(loaded.source.to_string()))
        }
        Err(problems) => {
            for p in &problems.0 {
                report.config_problem(p);
            }
            report.say(format_args!("{} problem(s)", problems.error_count()));
            (false, None)
        }
    };
    if report.json {
        let doc = json!({
            "ok": ok,
            "config": source,
            "problems": report.problems,
            "notes": report.notes,
            "rules": report.rules,
            "clickhouse": report.clickhouse,
        });
        println!("{doc}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Compiles the rules exactly as `run` does; reports each error with its
/// file:line:col. False if `run` would refuse them.
fn check_rules(report: &mut Report, dir: &Path) -> bool {
    if !dir.is_dir() {
        return true; // a config warning already says so; run starts with no rules
    }
    match RuleSet::load_dir(dir) {
        Ok(set) => {
            report.say(format_args!(
                "ok: {} DLP rule(s) in {}",
                set.len(),
                dir.display()
            ));
            report.rules = json!({ "dir": dir.display().to_string(), "count": set.len() });
            true
        }
        Err(errors) => {
            for e in &errors {
                report.problem(
                    "error",
                    "rules",
                    "rules.dir",
                    e.to_string(),
                    format!("error: rules.dir: {e}"),
                );
            }
            report.say(format_args!("{} problem(s) in the DLP rules", errors.len()));
            report.rules = json!({ "dir": dir.display().to_string(), "count": null });
            false
        }
    }
}

/// Reports the ClickHouse schema; false if the gateway cannot use it. An
/// unreachable server is a warning: the gateway runs and keeps events in
/// its journal until it can ship them.
fn check_clickhouse(report: &mut Report, ch: &ClickHouseConfig) -> bool {
    let mut summary = json!({
        "url": ch.url,
        "database": ch.database,
        "reachable": false,
        "usable": false,
        "schema_version": null,
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let message = format!("cannot start a runtime to check it: {e}");
            report.problem(
                "error",
                "clickhouse",
                "clickhouse",
                message.clone(),
                format!("error: clickhouse: {message}"),
            );
            report.clickhouse = summary;
            return false;
        }
    };
    let client = schema::client(ch);
    let answer = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            schema::check(&client, &ch.database),
        )
        .await
    });
    let where_ = format!("{} database {}", ch.url, ch.database);
    let ok = match answer {
        Err(_) => {
            let message = format!(
                "{where_}: UNREACHABLE (no answer within 10s); events will wait in the journal"
            );
            report.problem(
                "warning",
                "clickhouse",
                "clickhouse.url",
                message.clone(),
                format!("warning: clickhouse: {message}"),
            );
            true
        }
        Ok(Err(e)) => {
            let message =
                format!("{where_}: UNREACHABLE or refused: {e}; events will wait in the journal");
            report.problem(
                "warning",
                "clickhouse",
                "clickhouse.url",
                message.clone(),
                format!("warning: clickhouse: {message}"),
            );
            true
        }
        Ok(Ok(r)) => {
            summary["reachable"] = json!(true);
            summary["usable"] = json!(r.problems.is_empty());
            summary["schema_version"] = json!(r.version);
            for n in &r.notes {
                report.say(format_args!("note: clickhouse: {n}"));
                report
                    .notes
                    .push(json!({ "area": "clickhouse", "message": n }));
            }
            for p in &r.problems {
                report.problem(
                    "error",
                    "clickhouse",
                    "clickhouse.database",
                    format!("{where_}: {p}"),
                    format!("error: clickhouse: {where_}: {p}"),
                );
            }
            if r.problems.is_empty() {
                let version = r.version.map_or("none yet".to_string(), |v| v.to_string());
                report.say(format_args!(
                    "ok: clickhouse {where_}: schema usable (version {version})"
                ));
            } else {
                report.say(format_args!(
                    "{} problem(s) with the ClickHouse schema",
                    r.problems.len()
                ));
            }
            r.problems.is_empty()
        }
    };
    report.clickhouse = summary;
    ok
}
