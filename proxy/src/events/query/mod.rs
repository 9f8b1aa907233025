//! Reading events back for investigators: search, one event with its flow,
//! counts, and following new events — from ClickHouse when configured, else
//! from the local journal. Both sources answer the same [`Filter`] the same way.

mod clickhouse;
mod journal;
mod time;

use std::path::PathBuf;

use uuid::Uuid;

use crate::config::Config;
use crate::events::EventType;
use crate::events::{Record, Severity};
use crate::GatewayError;

pub use self::time::{format_ms, now_ms, parse_time};

/// Which events to return.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// At or after this time (epoch ms).
    pub since_ms: Option<u64>,
    /// Before this time (epoch ms).
    pub until_ms: Option<u64>,
    /// Exactly this user (the actor for audit events).
    pub user: Option<String>,
    /// Exactly this device.
    pub device: Option<String>,
    /// Exactly this app id.
    pub app: Option<String>,
    /// Exactly this rule id.
    pub rule: Option<String>,
    /// Findings of at least this severity.
    pub severity: Option<Severity>,
    /// Exactly this action / decision.
    pub action: Option<String>,
    /// Only these kinds (empty: all).
    pub types: Vec<EventType>,
    /// Host / SNI containing this text, case-insensitively.
    pub text: Option<String>,
    /// Only events of this conversation (channel, chat, room): messages,
    /// and any event that names one.
    pub conversation: Option<String>,
    /// Only this flow.
    pub flow_id: Option<Uuid>,
    /// Only this event.
    pub id: Option<Uuid>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

impl Filter {
    /// The kinds to look at.
    pub fn kinds(&self) -> Vec<EventType> {
        if self.types.is_empty() {
            EventType::ALL.to_vec()
        } else {
            self.types.clone()
        }
    }

    /// Whether `r` passes (the journal source; ClickHouse gets the same as SQL).
    pub fn matches(&self, r: &Record) -> bool {
        let c = r.event.columns();
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.since_ms.is_none_or(|s| r.ts_ms >= s)
            && self.until_ms.is_none_or(|u| r.ts_ms < u)
            && eq(&self.user, c.user)
            && eq(&self.device, c.device)
            && eq(&self.app, c.app)
            && eq(&self.rule, c.rule)
            && eq(&self.action, c.action)
            && self
                .severity
                .is_none_or(|s| c.severity.is_some_and(|have| have >= s))
            && (self.types.is_empty() || self.types.contains(&c.kind))
            && self
                .text
                .as_deref()
                .is_none_or(|t| c.host.to_lowercase().contains(&t.to_lowercase()))
            && self
                .conversation
                .as_deref()
                .is_none_or(|want| r.event.conversation() == Some(want))
            && self.flow_id.is_none_or(|f| c.flow_id == f)
            && self.id.is_none_or(|id| r.id == id)
    }
}

/// Counts of events by one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// The column (`type`, `app`, `rule`, `user`, `action`).
    pub dimension: &'static str,
    /// Values with their event counts, largest first.
    pub values: Vec<(String, u64)>,
}

/// The dimensions `stats` counts by.
pub const DIMENSIONS: [&str; 5] = ["type", "app", "rule", "user", "action"];

/// Where events are read from.
#[derive(Clone)]
pub enum Source {
    /// The local journal directory.
    Journal(PathBuf),
    /// ClickHouse.
    ClickHouse {
        /// A client for the server (boxed: it is large).
        client: Box<::clickhouse::Client>,
        /// The database.
        database: String,
    },
}

impl Source {
    /// ClickHouse when configured (and `journal` is false), else the journal.
    pub fn from_config(config: &Config, journal: bool) -> Self {
        match &config.clickhouse {
            Some(ch) if !journal => Self::ClickHouse {
                client: Box::new(crate::events::schema::client(ch).with_database(&ch.database)),
                database: ch.database.clone(),
            },
            _ => Self::Journal(config.events.journal_dir.clone()),
        }
    }

    /// Events matching `f`, newest first, at most `f.limit`.
    pub async fn search(&self, f: &Filter) -> Result<Vec<Record>, GatewayError> {
        match self {
            Self::Journal(dir) => journal::search(dir, f),
            Self::ClickHouse { client, .. } => clickhouse::search(client, f).await,
        }
    }

    /// The event `id` and every event of its flow (itself included), oldest first.
    pub async fn show(&self, id: Uuid) -> Result<Option<(Record, Vec<Record>)>, GatewayError> {
        let found = self
            .search(&Filter {
                id: Some(id),
                limit: 1,
                ..Filter::default()
            })
            .await?;
        let Some(event) = found.into_iter().next() else {
            return Ok(None);
        };
        let flow = event.event.flow_id();
        let mut related = if flow.is_nil() {
            vec![event.clone()]
        } else {
            self.search(&Filter {
                flow_id: Some(flow),
                ..Filter::default()
            })
            .await?
        };
        related.sort_by_key(|r| (r.ts_ms, r.id));
        Ok(Some((event, related)))
    }

    /// Counts of events matching `f` by each of [`DIMENSIONS`], top `top` values each.
    pub async fn stats(&self, f: &Filter, top: usize) -> Result<Vec<Counts>, GatewayError> {
        match self {
            Self::Journal(dir) => journal::stats(dir, f, top),
            Self::ClickHouse { client, .. } => clickhouse::stats(client, f, top).await,
        }
    }
}
