//! `gatehouse events`: search, show, stats and tail — ClickHouse when
//! configured, else (or with `--journal`) the local journal.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use gatehouse::config::Config;
use gatehouse::events::journal::{Position, Reader};
use gatehouse::events::query::{format_ms, now_ms, parse_time, Filter, Source};
use gatehouse::events::{EventType, Record, Severity};
use uuid::Uuid;

/// `gatehouse events …`
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Events matching every filter given, newest first.
    Search(SearchArgs),
    /// One event, whole, with every event of its flow.
    Show(ShowArgs),
    /// Counts by type, app, rule, user and action.
    Stats(StatsArgs),
    /// The latest events; with -f, new ones as they arrive.
    Tail(TailArgs),
}

#[derive(Debug, Clone, Copy, Args)]
struct SourceArgs {
    /// Read the local journal even when ClickHouse is configured.
    #[arg(long)]
    journal: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Table columns at full width (no `…` cuts).
    #[arg(long)]
    wide: bool,
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// From this time: a duration ago (7d, 2h, 30m) or RFC 3339.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Until this time: a duration ago or RFC 3339.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// User (actor for audit events).
    #[arg(long)]
    user: Option<String>,
    /// Device.
    #[arg(long)]
    device: Option<String>,
    /// App id (slack, teams, whatsapp, …).
    #[arg(long)]
    app: Option<String>,
    /// DLP or policy rule id.
    #[arg(long)]
    rule: Option<String>,
    /// Findings of at least this severity (low, medium, high, critical).
    #[arg(long)]
    severity: Option<Severity>,
    /// Action or decision (block, passthrough, alert, redact, …).
    #[arg(long)]
    action: Option<String>,
    /// Conversation (channel, chat, room id) of message events.
    #[arg(long)]
    conversation: Option<String>,
    /// Event types, comma-separated (connection, message, dlp_finding, opaque_tunnel, policy, audit, flow_update).
    #[arg(long = "type", value_delimiter = ',', value_name = "TYPE")]
    types: Vec<EventType>,
}

impl FilterArgs {
    fn filter(&self, text: Option<String>, limit: usize) -> anyhow::Result<Filter> {
        let now = now_ms();
        let time = |s: &Option<String>| {
            s.as_deref()
                .map(|s| parse_time(s, now))
                .transpose()
                .map_err(anyhow::Error::msg)
        };
        Ok(Filter {
            since_ms: time(&self.since)?,
            until_ms: time(&self.until)?,
            user: self.user.clone(),
            device: self.device.clone(),
            app: self.app.clone(),
            rule: self.rule.clone(),
            severity: self.severity,
            action: self.action.clone(),
            types: self.types.clone(),
            conversation: self.conversation.clone(),
            text,
            limit,
            ..Filter::default()
        })
    }
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// Text the host / SNI contains (case-insensitive).
    text: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Most events shown.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The event id.
    id: Uuid,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Debug, Args)]
struct StatsArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Values shown per dimension.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Debug, Args)]
struct TailArgs {
    /// Keep printing new events.
    #[arg(short, long)]
    follow: bool,
    /// How many of the latest events to print first.
    #[arg(short = 'n', long, default_value_t = 20)]
    lines: usize,
    #[command(flatten)]
    source: SourceArgs,
}

/// Runs `gatehouse events …`.
pub fn main(config: Config, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match args.command {
            EventsCommand::Search(a) => {
                let source = Source::from_config(&config, a.source.journal);
                let f = a.filter.filter(a.text.clone(), a.limit)?;
                let hits = source.search(&f).await.map_err(hint(&source))?;
                if hits.is_empty() && !a.source.json {
                    eprintln!("0 events match");
                }
                print_records(&hits, &a.source)?;
                Ok(ExitCode::SUCCESS)
            }
            EventsCommand::Show(a) => {
                let source = Source::from_config(&config, a.source.journal);
                let Some((event, flow)) = source.show(a.id).await.map_err(hint(&source))? else {
                    eprintln!("no event with id {}", a.id);
                    return Ok(ExitCode::FAILURE);
                };
                show(&event, &flow, &a.source)?;
                Ok(ExitCode::SUCCESS)
            }
            EventsCommand::Stats(a) => {
                let source = Source::from_config(&config, a.source.journal);
                let mut f = a.filter.filter(None, 0)?;
                if a.filter.since.is_none() {
                    f.since_ms = Some(now_ms().saturating_sub(7 * 86_400_000));
                }
                let counts = source.stats(&f, a.top).await.map_err(hint(&source))?;
                let mut out = std::io::stdout().lock();
                for c in counts {
                    if a.source.json {
                        for (value, count) in &c.values {
                            let line = serde_json::json!({"dimension": c.dimension, "value": value, "count": count});
                            writeln!(out, "{line}")?;
                        }
                    } else {
                        writeln!(out, "by {}:", c.dimension)?;
                        if c.values.is_empty() {
                            writeln!(out, "  (none)")?;
                        }
                        for (value, count) in &c.values {
                            writeln!(out, "  {count:>10}  {value}")?;
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            EventsCommand::Tail(a) => {
                let source = Source::from_config(&config, a.source.journal);
                tail(&source, &a).await.map_err(hint(&source))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

fn hint(source: &Source) -> impl Fn(gatehouse::GatewayError) -> anyhow::Error + '_ {
    move |e| match source {
        Source::ClickHouse { .. } => {
            anyhow::anyhow!("{e}\n(events not yet shipped are in the local journal: add --journal)")
        }
        Source::Journal(_) => e.into(),
    }
}

async fn tail(source: &Source, a: &TailArgs) -> Result<(), gatehouse::GatewayError> {
    match source {
        Source::Journal(dir) => {
            if !dir.is_dir() {
                return Err(journal_err(
                    dir,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no journal here (has the gateway run with this config?)",
                    ),
                ));
            }
            let mut reader = Reader::new(dir, Position::default());
            let mut raw = Vec::new();
            reader
                .next_batch(None, usize::MAX, &mut raw)
                .map_err(|e| journal_err(dir, e))?;
            let start = raw.len().saturating_sub(a.lines);
            print_raw(&raw[start..], &a.source);
            if !a.follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                raw.clear();
                reader
                    .next_batch(None, usize::MAX, &mut raw)
                    .map_err(|e| journal_err(dir, e))?;
                print_raw(&raw, &a.source);
            }
        }
        Source::ClickHouse { .. } => {
            let mut latest = source
                .search(&Filter {
                    limit: a.lines,
                    ..Filter::default()
                })
                .await?;
            latest.reverse();
            let _ = print_records(&latest, &a.source);
            let mut since = latest.last().map_or_else(now_ms, |r| r.ts_ms);
            // Batches from other nodes land late: look back a window and
            // print only what was not printed yet.
            const WINDOW_MS: u64 = 60_000;
            let mut seen: HashMap<Uuid, u64> = latest.iter().map(|r| (r.id, r.ts_ms)).collect();
            if !a.follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut new = source
                    .search(&Filter {
                        since_ms: Some(since.saturating_sub(WINDOW_MS)),
                        ..Filter::default()
                    })
                    .await?;
                new.retain(|r| !seen.contains_key(&r.id));
                new.reverse();
                let _ = print_records(&new, &a.source);
                for r in &new {
                    seen.insert(r.id, r.ts_ms);
                    since = since.max(r.ts_ms);
                }
                seen.retain(|_, ts| *ts + WINDOW_MS >= since);
            }
        }
    }
}

fn journal_err(dir: &std::path::Path, e: std::io::Error) -> gatehouse::GatewayError {
    gatehouse::GatewayError::Events {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    }
}

fn print_raw(raw: &[Vec<u8>], how: &SourceArgs) {
    let records: Vec<Record> = raw
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let _ = print_records(&records, how);
}

fn print_records(records: &[Record], how: &SourceArgs) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if how.json {
        for r in records {
            writeln!(
                out,
                "{}",
                serde_json::to_string(r).map_err(std::io::Error::other)?
            )?;
        }
        return out.flush();
    }
    if records.is_empty() {
        return Ok(());
    }
    let cut = |s: &str, n: usize| if how.wide { s.to_string() } else { cut(s, n) };
    writeln!(
        out,
        "{:<24} {:<13} {:<12} {:<10} {:<10} {:<28} {:<11} {:<30} ID",
        "TIME", "TYPE", "USER", "DEVICE", "APP", "HOST", "ACTION", "RULE/REASON"
    )?;
    for r in records {
        let c = r.event.columns();
        let detail = if c.rule.is_empty() {
            c.reason.to_string()
        } else {
            match c.severity {
                Some(s) => format!("{} ({s})", c.rule),
                None => c.rule.to_string(),
            }
        };
        writeln!(
            out,
            "{:<24} {:<13} {:<12} {:<10} {:<10} {:<28} {:<11} {:<30} {}",
            format_ms(r.ts_ms),
            c.kind.as_str(),
            cut(or_dash(c.user), 12),
            cut(or_dash(c.device), 10),
            cut(or_dash(c.app), 10),
            cut(or_dash(c.host), 28),
            cut(or_dash(c.action), 11),
            cut(or_dash(&detail), 30),
            r.id
        )?;
    }
    out.flush()
}

fn show(event: &Record, flow: &[Record], how: &SourceArgs) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if how.json {
        let line = serde_json::json!({"event": event, "flow": flow});
        writeln!(out, "{line}")?;
        return out.flush();
    }
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(event).map_err(std::io::Error::other)?
    )?;
    writeln!(
        out,
        "\nflow {} ({} events):",
        event.event.flow_id(),
        flow.len()
    )?;
    drop(out);
    print_records(
        flow,
        &SourceArgs {
            json: false,
            ..*how
        },
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
