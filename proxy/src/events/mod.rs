//! Events: every decision the gateway makes, recorded so that nothing
//! acknowledged is lost and investigators can find it.
//!
//! `emit` → bounded queue → durable [`journal`] (group commit) → [`shipper`]
//! into ClickHouse in batches. [`Pipeline`] wires them; [`LogSink`] is the
//! stand-in for tests and tools that need no journal.
//!
//! May import: `config` and `error`; nothing that emits events (flows,
//! relays, inspection) — they import it.

mod columns;
pub mod journal;
mod metrics;
mod model;
mod pipeline;
pub mod query;
pub mod schema;
pub mod seal;
pub mod shipper;
mod state;

pub use columns::Columns;
pub use metrics::{MetricsSnapshot, Traffic};
pub use model::Encryption;
pub use model::{
    AuditEvent, ConnectionEvent, Direction, DlpFindingEvent, Event, EventType, FlowStamp,
    FlowUpdateEvent, Masked, MessageEvent, OpaqueTunnelEvent, PolicyEvent, Record, Severity,
};
pub use pipeline::{JournalSink, Pipeline};

/// Why an event was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The queue or the journal is full (fail-closed): refuse the flow.
    #[error("event journal full")]
    Full,
    /// The pipeline has stopped.
    #[error("event pipeline stopped")]
    Closed,
    /// The journal did not confirm the event durable in time (or this sink
    /// cannot make events durable).
    #[error("event not made durable")]
    NotDurable,
}

/// Where events go. Implementations must not lose an event they accepted.
pub trait EventSink: Send + Sync + 'static {
    /// Hands over one event. Under the fail-closed policy this waits for
    /// room rather than drop it; listeners check [`accepting`](Self::accepting)
    /// before taking a flow so that it rarely has to.
    fn emit(&self, event: Event);

    /// Hands over one event to be recorded under `id` (made with
    /// [`uuid::Uuid::now_v7`]), so that other events can name it (a finding
    /// its message) before it is recorded. Sinks that do not record ids
    /// just emit it.
    fn emit_as(&self, id: uuid::Uuid, event: Event) {
        let _ = id;
        self.emit(event);
    }

    /// Hands over one event unless the sink is full; never waits.
    fn try_emit(&self, event: Event) -> Result<(), EmitError> {
        self.emit(event);
        Ok(())
    }

    /// Records `event` and returns only once it is durable (written and
    /// synced in the journal), with its id; an error means it may not be.
    /// For actions that must be on record before they happen (revealing
    /// evidence): the default refuses, so a sink without a journal fails
    /// closed.
    fn emit_durable(&self, event: Event) -> Result<uuid::Uuid, EmitError> {
        let _ = event;
        Err(EmitError::NotDurable)
    }

    /// Whether new flows may start: false when the journal is full under the
    /// fail-closed policy. Listeners refuse new flows meanwhile.
    fn accepting(&self) -> bool {
        true
    }

    /// Makes every accepted event durable; called at shutdown.
    fn flush(&self) {}

    /// Counters of the pipeline behind this sink, for the admin endpoint.
    fn metrics(&self) -> Option<MetricsSnapshot> {
        None
    }

    /// Traffic counters of the events this sink accepted, for `/metrics`.
    fn traffic(&self) -> Option<Traffic> {
        None
    }
}

/// Writes each event to the log at info level.
#[derive(Debug, Default)]
pub struct LogSink;

impl EventSink for LogSink {
    fn emit(&self, event: Event) {
        match serde_json::to_string(&event) {
            Ok(json) => tracing::info!(target: "gatehouse::event", event = %json, "event"),
            Err(e) => tracing::error!(error = %e, "event not serialisable"),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::config::{ClickHouseConfig, Config, EventsConfig};

    /// The documented `[events]` and (commented) `[clickhouse]` sections of
    /// the example file are exactly the defaults.
    #[test]
    fn example_config_documents_the_defaults() {
        let text = include_str!("../../../gatehouse.example.toml");
        let start = text.find("[events]").unwrap();
        let end = text.find("[admin]").unwrap();
        let section: String = text[start..end]
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if is_setting(rest) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config: Config = toml::from_str(&section).unwrap();
        assert_eq!(config.events, EventsConfig::default());
        assert_eq!(config.clickhouse, Some(ClickHouseConfig::default()));
    }

    fn is_setting(line: &str) -> bool {
        line.starts_with('[')
            || line
                .split_once(" = ")
                .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    }
}
