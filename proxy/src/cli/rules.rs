//! `gatehouse rules`: check, test, explain and scan with the DLP rule packs.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use gatehouse::config::Config;
use gatehouse_inspectors::dlp::{RuleSet, ScanRecord};

/// `gatehouse rules …`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile and lint every rule file; every error with file and line; exit 1 on any.
    Check {
        /// Rule directory [default: `rules.dir` from the config].
        dir: Option<PathBuf>,
    },
    /// Run every rule's must-match and must-not-match examples; exit 1 on a failure.
    Test {
        /// Rule directory [default: `rules.dir` from the config].
        dir: Option<PathBuf>,
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
    },
    /// Scan JSON Lines records ({"id":…, "text":…}) or plain lines; one result per record.
    Scan {
        /// Input file, or `-` for standard input (the default).
        input: Option<PathBuf>,
        /// One JSON object per record: {"id":…, "findings":[…]}.
        #[arg(long)]
        json: bool,
        /// Rule directory [default: `rules.dir` from the config].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs a `rules` subcommand.
pub fn main(config: &Config, cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let dir_or = |d: Option<PathBuf>| d.unwrap_or_else(|| config.rules.dir.clone());
    match cmd {
        RulesCommand::Check { dir } => {
            let dir = dir_or(dir);
            let Some(set) = load(&dir) else {
                return Ok(ExitCode::FAILURE);
            };
            for lint in set.lint() {
                println!("{lint}");
            }
            println!(
                "ok: {} rules from {} ({} literals, {} KiB compiled)",
                set.len(),
                dir.display(),
                set.literal_count(),
                set.heap_bytes().div_ceil(1024)
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Test { dir } => {
            let Some(set) = load(&dir_or(dir)) else {
                return Ok(ExitCode::FAILURE);
            };
            let (failures, run) = set.run_examples();
            for f in &failures {
                println!("FAIL {f}");
            }
            println!("{run} examples, {} failed", failures.len());
            Ok(if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RulesCommand::Explain { text, file, dir } => {
            let text = match (text, file) {
                (Some(t), None) => t,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                _ => anyhow::bail!("give the text as an argument or with --file (one of them)"),
            };
            let Some(set) = load(&dir_or(dir)) else {
                return Ok(ExitCode::FAILURE);
            };
            explain(&set, &text);
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Scan { input, json, dir } => {
            let Some(set) = load(&dir_or(dir)) else {
                return Ok(ExitCode::FAILURE);
            };
            let reader: Box<dyn BufRead> = match input.as_deref() {
                None => Box::new(std::io::stdin().lock()),
                Some(p) if p == Path::new("-") => Box::new(std::io::stdin().lock()),
                Some(p) => Box::new(std::io::BufReader::new(
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
                )),
            };
            scan(&set, reader, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the rule set, printing every error; `None` when there were any.
fn load(dir: &Path) -> Option<RuleSet> {
    match RuleSet::load_dir(dir) {
        Ok(set) => Some(set),
        Err(errors) => {
            for e in &errors {
                println!("error: {e}");
            }
            println!("{} error(s) in {}", errors.len(), dir.display());
            None
        }
    }
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
fn scan(set: &RuleSet, reader: Box<dyn BufRead>, json: bool) -> anyhow::Result<()> {
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
    Ok(())
}
