//! Command-line surface: global flags and the subcommand tree.

mod ca;
mod check;
mod console;
mod events;
mod identify;
mod logging;
mod rules;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gatehouse::config::{self, Loaded, LogFormat};

/// Gatehouse: TLS-intercepting corporate messaging gateway with DLP.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file [default: gatehouse.toml in the working directory if present, else built-in defaults].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log output format of every command [default: `log.format` from config, else human].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Run(RunArgs),
    /// Check the configuration, reporting every problem; exit 1 on any.
    Check(check::CheckArgs),
    /// The interception CA: init, import, show, export.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Investigate recorded events: search, show, stats, tail.
    Events(events::EventsArgs),
    /// Classify the flows of a pcap/pcapng capture, one line per flow.
    Identify(identify::IdentifyArgs),
    /// The investigator's console: keygen, hash-password, token.
    #[command(subcommand)]
    Console(console::ConsoleCommand),
    /// DLP rules: check, test, explain, scan.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
}

/// Overrides for `gatehouse run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Explicit proxy listener, overriding `proxy.listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// ClickHouse URL, overriding `clickhouse.url` (and enabling shipping).
    #[arg(long, value_name = "URL")]
    clickhouse: Option<String>,
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => {
            // `check` reports problems itself; its logs follow the file's
            // `log.*` when the file parses at all (a bad `log.filter` is one
            // of the problems it reports, so that one falls back).
            let log = config::load_unvalidated(cli.config.as_deref())
                .map(|l| l.config.log)
                .unwrap_or_default();
            if logging::init(&log, cli.log_format).is_err() {
                logging::init(&config::LogConfig::default(), cli.log_format)?;
            }
            Ok(check::main(cli.config.as_deref(), args))
        }
        Command::Identify(args) => {
            let log = config::load_unvalidated(cli.config.as_deref())
                .map(|l| l.config.log)
                .unwrap_or_default();
            logging::init(&log, cli.log_format)?;
            Ok(identify::main(args))
        }
        Command::Console(cmd) => console::main(cmd),
        Command::Rules(cmd) => {
            let Some(loaded) = load_or_report(cli.config.as_deref())? else {
                return Ok(ExitCode::FAILURE);
            };
            logging::init(&loaded.config.log, cli.log_format)?;
            rules::main(&loaded.config, cmd)
        }
        Command::Ca(cmd) => {
            // `show` and `export` need only the certificate: the config is
            // parsed, not checked (no CA key, no rules, no warnings).
            let loaded = if cmd.needs_only_the_certificate() {
                config::load_unvalidated(cli.config.as_deref())
                    .map_err(|problems| report(&problems))
                    .ok()
            } else {
                load_or_report(cli.config.as_deref())?
            };
            let Some(loaded) = loaded else {
                return Ok(ExitCode::FAILURE);
            };
            logging::init(&loaded.config.log, cli.log_format)?;
            ca::main(&loaded.config, cmd)
        }
        Command::Run(args) => {
            let Some(loaded) = load_or_report(cli.config.as_deref())? else {
                return Ok(ExitCode::FAILURE);
            };
            logging::init(&loaded.config.log, cli.log_format)?;
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            run::main(loaded, args)
        }
        Command::Events(args) => {
            let Some(loaded) = load_or_report(cli.config.as_deref())? else {
                return Ok(ExitCode::FAILURE);
            };
            logging::init(&loaded.config.log, cli.log_format)?;
            events::main(loaded.config, args)
        }
    }
}

/// An error and its causes on one line, each said once: a cause whose text
/// the message already holds (an I/O error repeated by its wrapper) is
/// left out.
pub fn cause_chain(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

/// Whether `e` is stdout closed under us (`gatehouse events search | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Loads the config; prints every problem and returns `None` when it is unusable.
fn load_or_report(path: Option<&std::path::Path>) -> anyhow::Result<Option<Loaded>> {
    match config::load(path) {
        Ok(l) => Ok(Some(l)),
        Err(problems) => {
            report(&problems);
            Ok(None)
        }
    }
}

fn report(problems: &config::Problems) {
    eprint!("{problems}");
    eprintln!(
        "{} problem(s); see gatehouse.example.toml",
        problems.error_count()
    );
}
