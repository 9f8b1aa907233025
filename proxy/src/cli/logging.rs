//! The binary installs the one tracing subscriber; libraries only emit.

use gatehouse::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the subscriber: filter from `RUST_LOG`, else `log.filter`;
/// format from `--log-format`, else `log.format`.
pub fn init(config: &LogConfig, format: Option<LogFormat>) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(&config.filter)?,
    };
    // Colour only for a person at a terminal: a log file or journald gets
    // plain text (NO_COLOR is honoured too).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format.unwrap_or(config.format) {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    }
    .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
