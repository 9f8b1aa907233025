//! `gatehouse rules`: check, test, explain and scan with the DLP rule packs.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use gatehouse::config::Config;
use gatehouse_inspectors::dlp::{
    LintLevel, Rejected, RuleError, RuleSet, ScanRecord, ScanResult, Severity,
};
use serde_json::{json, Value};

/// Exit status for a usage or I/O error (clap's own usage errors use it too).
const EXIT_USAGE_OR_IO: u8 = 2;

/// `gatehouse rules …`
///
/// Exit status: 0 ok, 1 findings or problems, 2 usage or I/O error.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile and lint every rule file; every error with file and line; exit 1 on any.
    Check {
        /// Rule directory [default: `rules.dir` from the config].
        dir: Option<PathBuf>,
        /// One JSON document: {"ok", "dir", "rules", "literals", "compiled_kib", "lints":[{"level","rule","file","line","column","message"}], "errors":[{"message"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Run every rule's must-match and must-not-match examples; exit 1 on a failure.
    Test {
        /// Rule directory [default: `rules.dir` from the config].
        dir: Option<PathBuf>,
        /// One JSON document: {"ok", "dir", "examples", "failed", "failures":[{"rule","file","line","column","example","expected_match","rejected","matched"}], "errors":[{"message"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Show which rules fire on TEXT, each score contribution and span.
    Explain {
        /// The text to explain (or use --file).
        text: Option<String>,
        /// Read the text from this file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Rule directory [default: `rules.dir` from the config].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// One JSON document: {"findings":[{"rule","severity","action","score","confidence","field","start","end","contributions":[{"source","weight"}],"evidence"}], "rejected":[{"rule","field","start","end","reason"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Scan JSON Lines records ({"id":…, "text":…}) or plain lines; one result per record.
    /// Exit 1 when a finding at or above --fail-on is present, 2 on unreadable input or rules.
    Scan {
        /// Input file, or `-` for standard input (the default).
        input: Option<PathBuf>,
        /// One JSON object per record (streamed, one per line): {"id":…, "findings":[…]}.
        #[arg(long)]
        json: bool,
        /// Exit 1 when any finding has this severity or a higher one; `none`: never.
        #[arg(long, value_enum, value_name = "SEVERITY", default_value_t = FailOn::High)]
        fail_on: FailOn,
        /// Rule directory [default: `rules.dir` from the config].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The least severity of a finding that makes `rules scan` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any finding.
    Low,
    /// Medium, high or critical.
    Medium,
    /// High or critical.
    High,
    /// Critical only.
    Critical,
    /// Never exit 1 for findings.
    None,
}

impl FailOn {
    fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Low => Some(Severity::Low),
            FailOn::Medium => Some(Severity::Medium),
            FailOn::High => Some(Severity::High),
            FailOn::Critical => Some(Severity::Critical),
            FailOn::None => None,
        }
    }
}

/// Runs a `rules` subcommand.
/// The rule set in `dir`, or `None` after reporting why it does not load
/// (as JSON with an empty `empty` list when `json`, else file:line:col).
fn load_or_report(dir: &Path, json: bool, empty: &str) -> anyhow::Result<Option<RuleSet>> {
    match RuleSet::load_dir(dir) {
        Ok(set) => Ok(Some(set)),
        Err(errors) => {
            if json {
                print_json(&json!({
                    "ok": false,
                    "dir": dir.display().to_string(),
                    "errors": errors_json(&errors),
                    empty: [],
                }))?;
            } else {
                print_load_errors(dir, &errors);
            }
            Ok(None)
        }
    }
}

pub fn main(config: &Config, cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let dir_or = |d: Option<PathBuf>| d.unwrap_or_else(|| config.rules.dir.clone());
    match cmd {
        RulesCommand::Check { dir, json } => {
            let dir = dir_or(dir);
            let Some(set) = load_or_report(&dir, json, "lints")? else {
                return Ok(ExitCode::FAILURE);
            };
            let lints = set.lint();
            let kib = set.heap_bytes().div_ceil(1024);
            if json {
                let lints: Vec<Value> = lints
                    .iter()
                    .map(|l| {
                        json!({
                            "level": match l.level {
                                LintLevel::Info => "info",
                                LintLevel::Warning => "warning",
                            },
                            "rule": l.rule,
                            "file": l.loc.file,
                            "line": l.loc.line,
                            "column": l.loc.column,
                            "message": l.message,
                        })
                    })
                    .collect();
                print_json(&json!({
                    "ok": true,
                    "dir": dir.display().to_string(),
                    "rules": set.len(),
                    "literals": set.literal_count(),
                    "compiled_kib": kib,
                    "lints": lints,
                    "errors": [],
                }))?;
                return Ok(ExitCode::SUCCESS);
            }
            for lint in lints {
                println!("{lint}");
            }
            println!(
                "ok: {} rules from {} ({} literals, {kib} KiB compiled)",
                set.len(),
                dir.display(),
                set.literal_count(),
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Test { dir, json } => {
            let dir = dir_or(dir);
            let Some(set) = load_or_report(&dir, json, "failures")? else {
                return Ok(ExitCode::FAILURE);
            };
            let (failures, run) = set.run_examples();
            if json {
                let list: Vec<Value> = failures
                    .iter()
                    .map(|f| {
                        json!({
                            "rule": f.rule,
                            "file": f.loc.file,
                            "line": f.loc.line,
                            "column": f.loc.column,
                            "example": f.example,
                            "expected_match": f.expected_match,
                            "rejected": f.rejected.iter().map(rejected_json).collect::<Vec<_>>(),
                            "matched": f.matched,
                        })
                    })
                    .collect();
                print_json(&json!({
                    "ok": failures.is_empty(),
                    "dir": dir.display().to_string(),
                    "examples": run,
                    "failed": failures.len(),
                    "failures": list,
                    "errors": [],
                }))?;
            } else {
                for f in &failures {
                    println!("FAIL {f}");
                }
                println!("{run} examples, {} failed", failures.len());
            }
            Ok(if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RulesCommand::Explain {
            text,
            file,
            dir,
            json,
        } => {
            let text = match (text, file) {
                (Some(t), None) => t,
                (None, Some(f)) => match std::fs::read_to_string(&f) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("error: reading {}: {e}", f.display());
                        return Ok(ExitCode::from(EXIT_USAGE_OR_IO));
                    }
                },
                _ => {
                    eprintln!("error: give the text as an argument or with --file (one of them)");
                    return Ok(ExitCode::from(EXIT_USAGE_OR_IO));
                }
            };
            let dir = dir_or(dir);
            let set = match RuleSet::load_dir(&dir) {
                Ok(set) => set,
                Err(errors) => {
                    report_load_errors(&dir, &errors, json);
                    return Ok(ExitCode::FAILURE);
                }
            };
            if json {
                print_json(&explain_json(&set.explain(&text)))?;
            } else {
                explain(&set, &text);
            }
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Scan {
            input,
            json,
            fail_on,
            dir,
        } => {
            // Exit 1 means findings only: rules that do not load are 2.
            let dir = dir_or(dir);
            let set = match RuleSet::load_dir(&dir) {
                Ok(set) => set,
                Err(errors) => {
                    report_load_errors(&dir, &errors, json);
                    return Ok(ExitCode::from(EXIT_USAGE_OR_IO));
                }
            };
            let reader: Box<dyn BufRead> = match input.as_deref() {
                None => Box::new(std::io::stdin().lock()),
                Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
                Some(p) => match std::fs::File::open(p) {
                    Ok(f) => Box::new(std::io::BufReader::new(f)),
                    Err(e) => {
                        eprintln!("error: opening {}: {e}", p.display());
                        return Ok(ExitCode::from(EXIT_USAGE_OR_IO));
                    }
                },
            };
            let worst = match scan(&set, reader, json) {
                Ok(worst) => worst,
                // A reader that went away: main exits quietly.
                Err(e) if super::is_broken_pipe(&e) => return Err(e),
                Err(e) => {
                    eprintln!("error: {}", super::cause_chain(&e));
                    return Ok(ExitCode::from(EXIT_USAGE_OR_IO));
                }
            };
            let failed = match (fail_on.threshold(), worst) {
                (Some(threshold), Some(worst)) => worst >= threshold,
                _ => false,
            };
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Prints `value` as one JSON document on stdout.
fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

fn errors_json(errors: &[RuleError]) -> Vec<Value> {
    errors
        .iter()
        .map(|e| json!({ "message": e.to_string() }))
        .collect()
}

fn rejected_json(r: &Rejected) -> Value {
    json!({
        "rule": &*r.rule,
        "field": r.field,
        "start": r.start,
        "end": r.end,
        "reason": r.reason,
    })
}

/// `rules explain --json`: the findings with their contributions, and the
/// candidates that were turned down.
fn explain_json(result: &ScanResult) -> Value {
    let findings: Vec<Value> = result
        .findings
        .iter()
        .map(|f| {
            json!({
                "rule": &*f.rule,
                "severity": f.severity.as_str(),
                "action": f.action.as_str(),
                "score": f.score,
                "confidence": f.confidence,
                "field": f.field,
                "start": f.start,
                "end": f.end,
                "contributions": f.contributions.iter().map(|c| json!({
                    "source": c.source,
                    "weight": c.weight,
                })).collect::<Vec<_>>(),
                "evidence": f.excerpt.as_deref(),
            })
        })
        .collect();
    json!({
        "findings": findings,
        "rejected": result.rejected.iter().map(rejected_json).collect::<Vec<_>>(),
    })
}

/// Rule errors where nothing else can carry them: stdout as before in
/// human mode, stderr in JSON mode (stdout is for the JSON only).
fn report_load_errors(dir: &Path, errors: &[RuleError], json: bool) {
    if json {
        for e in errors {
            eprintln!("error: {e}");
        }
        eprintln!("{} error(s) in {}", errors.len(), dir.display());
    } else {
        print_load_errors(dir, errors);
    }
}

/// Prints every error of a rule directory that does not load.
fn print_load_errors(dir: &Path, errors: &[RuleError]) {
    for e in errors {
        println!("error: {e}");
    }
    println!("{} error(s) in {}", errors.len(), dir.display());
}

fn explain(set: &RuleSet, text: &str) {
    let result = set.explain(text);
    if result.findings.is_empty() {
        println!("no rule fires");
    }
    for f in &result.findings {
        println!(
            "{} [{} → {}] score {:.2} ({:?}) at bytes {}..{} in {}",
            f.rule,
            f.severity.as_str(),
            f.action.as_str(),
            f.score,
            f.confidence,
            f.start,
            f.end,
            f.field
        );
        for c in &f.contributions {
            println!("    {:+.2}  {}", c.weight, c.source);
        }
        if let Some(e) = &f.excerpt {
            println!("    evidence: {e}");
        }
    }
    for r in &result.rejected {
        println!(
            "not fired: {} at bytes {}..{}: {}",
            r.rule, r.start, r.end, r.reason
        );
    }
}

/// JSON Lines `{"id":…, "text":…}` (id echoed as given, other fields
/// ignored); any other line is plain text, numbered from 1.
/// Returns the highest severity of any finding.
fn scan(set: &RuleSet, reader: Box<dyn BufRead>, json: bool) -> anyhow::Result<Option<Severity>> {
    let mut worst: Option<Severity> = None;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (n, line) in reader.lines().enumerate() {
        let line = line.context("reading input")?;
        let record: Option<(serde_json::Value, String)> =
            serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| {
                    let text = v.get("text")?.as_str()?.to_string();
                    Some((
                        v.get("id").cloned().unwrap_or(serde_json::Value::Null),
                        text,
                    ))
                });
        let (id, text) = record.unwrap_or_else(|| (serde_json::Value::from(n + 1), line));
        let result = set.scan_text(&text);
        worst = worst.max(result.findings.iter().map(|f| f.severity).max());
        if json {
            serde_json::to_writer(&mut out, &ScanRecord::new(id, &result))?;
            writeln!(out)?;
        } else {
            let found: Vec<String> = result
                .findings
                .iter()
                .map(|f| format!("{}@{}..{}", f.rule, f.start, f.end))
                .collect();
            writeln!(
                out,
                "{id}: {}",
                if found.is_empty() {
                    "-".into()
                } else {
                    found.join(" ")
                }
            )?;
        }
    }
    out.flush()?;
    Ok(worst)
}
