//! Counters of the event pipeline (plain atomics, read as a snapshot) and
//! of the traffic its events describe ([`Traffic`]); the admin endpoint
//! exposes both.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::events::Event;

/// The live counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) queue_depth: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
    pub(crate) journal_bytes: AtomicU64,
    pub(crate) unshipped_bytes: AtomicU64,
    pub(crate) journal_full: AtomicBool,
    pub(crate) emitted: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) evicted_bytes: AtomicU64,
    pub(crate) refused_flows: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) torn_tail_bytes: AtomicU64,
    pub(crate) torn_tail_recoveries: AtomicU64,
    pub(crate) damaged_skips: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) shipped_events: AtomicU64,
    pub(crate) shipped_batches: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) ship_lag_ms: AtomicU64,
    pub(crate) partitions_dropped: AtomicU64,
    /// What the accepted events counted.
    pub(crate) traffic: Traffic,
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Events waiting in memory for the journal writer.
    pub queue_depth: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Bytes of journal segments on disk.
    pub journal_bytes: u64,
    /// Journal bytes not yet acknowledged by ClickHouse.
    pub unshipped_bytes: u64,
    /// The journal is full: under fail-closed, new flows are refused.
    pub journal_full: bool,
    /// Events handed to the sink.
    pub emitted: u64,
    /// Events dropped (`drop_new` policy, or after the pipeline stopped).
    pub dropped: u64,
    /// Journal bytes deleted unshipped (`drop_oldest` policy).
    pub evicted_bytes: u64,
    /// Times `accepting()` said no (flows refused).
    pub refused_flows: u64,
    /// Records written to the journal.
    pub written: u64,
    /// fsyncs of the journal (group commits).
    pub syncs: u64,
    /// Journal writes that failed (retried).
    pub write_errors: u64,
    /// Bytes of torn tails cut off at open.
    pub torn_tail_bytes: u64,
    /// Opens that found and cut a torn tail.
    pub torn_tail_recoveries: u64,
    /// Damaged segment remainders skipped by the shipper.
    pub damaged_skips: u64,
    /// Journal records that were not events (skipped by the shipper).
    pub undecodable: u64,
    /// Events acknowledged by ClickHouse.
    pub shipped_events: u64,
    /// Batches acknowledged by ClickHouse.
    pub shipped_batches: u64,
    /// Batch attempts that failed (and were retried).
    pub failed_batches: u64,
    /// Age of the newest event of the last shipped batch when it was acknowledged.
    pub ship_lag_ms: u64,
    /// Day partitions dropped by retention.
    pub partitions_dropped: u64,
}

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            queue_depth: self.queue_depth.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            journal_bytes: self.journal_bytes.load(Relaxed),
            unshipped_bytes: self.unshipped_bytes.load(Relaxed),
            journal_full: self.journal_full.load(Relaxed),
            emitted: self.emitted.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            evicted_bytes: self.evicted_bytes.load(Relaxed),
            refused_flows: self.refused_flows.load(Relaxed),
            written: self.written.load(Relaxed),
            syncs: self.syncs.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            torn_tail_bytes: self.torn_tail_bytes.load(Relaxed),
            torn_tail_recoveries: self.torn_tail_recoveries.load(Relaxed),
            damaged_skips: self.damaged_skips.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            shipped_events: self.shipped_events.load(Relaxed),
            shipped_batches: self.shipped_batches.load(Relaxed),
            failed_batches: self.failed_batches.load(Relaxed),
            ship_lag_ms: self.ship_lag_ms.load(Relaxed),
            partitions_dropped: self.partitions_dropped.load(Relaxed),
        }
    }
}

/// Counters of the traffic the events describe, kept by the sink as each
/// event is accepted (so they count exactly what is recorded) and exposed
/// by the admin endpoint in Prometheus format. Every label value comes from
/// a fixed set, the configured rules or the app catalog, so cardinality
/// stays bounded: anything else is counted as `other`.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Connections by mode and decision.
    pub connections: Family<ModeDecision, Counter>,
    /// Bytes relayed, by direction (`up`: client to server).
    pub bytes: Family<DirectionLabel, Counter>,
    /// TLS handshakes that failed, by side (client, upstream, internal) and reason.
    pub tls_failures: Family<SideReason, Counter>,
    /// DLP findings by rule, severity and action.
    pub findings: Family<RuleLabels, Counter>,
    /// Flows and messages blocked, by what blocked them (policy, dlp).
    pub blocks: Family<SourceLabel, Counter>,
    /// Messages read, by app.
    pub messages: Family<AppLabel, Counter>,
    /// Opaque flows (unreadable tunnels) by reason.
    pub opaque: Family<ReasonLabel, Counter>,
}

/// `mode`, `decision` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeDecision {
    /// explicit, explicit-http, transparent, quic.
    pub mode: &'static str,
    /// intercept, passthrough, block, none, error, undecided.
    pub decision: &'static str,
}

/// `direction` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// up or down.
    pub direction: &'static str,
}

/// `side`, `reason` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideReason {
    /// client, upstream or internal.
    pub side: &'static str,
    /// The flow's close reason; for the upstream side, why verification failed.
    pub reason: String,
}

/// `rule`, `severity`, `action` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// Rule id (`pack/rule`), from the loaded rule packs.
    pub rule: String,
    /// low, medium, high, critical.
    pub severity: &'static str,
    /// log, alert, block, redact.
    pub action: &'static str,
}

/// `source` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// policy (a blocked flow) or dlp (a blocked message).
    pub source: &'static str,
}

/// `app` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    /// App id from the catalog.
    pub app: String,
}

/// `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// pinned, e2ee, non-tls-encryption, e2ee-call, media, unknown, other.
    pub reason: &'static str,
}

/// Longest rule id or app id taken as a label; longer ones are `other`.
const MAX_LABEL: usize = 96;

/// `value` when it is one of `set`, else `other`.
fn one_of(value: &str, set: &[&'static str]) -> &'static str {
    set.iter()
        .find(|s| **s == value)
        .copied()
        .unwrap_or("other")
}

/// A label made of a short identifier (rule and app ids), else `other`.
fn ident(value: &str) -> String {
    let ok = !value.is_empty()
        && value.len() <= MAX_LABEL
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b));
    if ok {
        value.to_string()
    } else {
        "other".into()
    }
}

impl Traffic {
    /// Counts what one accepted event says happened.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Connection(c) => {
                let decision = one_of(
                    &c.decision,
                    &["intercept", "passthrough", "block", "none", "error"],
                );
                let decision = if c.decision.is_empty() {
                    "undecided"
                } else {
                    decision
                };
                let mode = one_of(
                    &c.mode,
                    &["explicit", "explicit-http", "transparent", "quic"],
                );
                self.connections
                    .get_or_create(&ModeDecision { mode, decision })
                    .inc();
                self.bytes
                    .get_or_create(&DirectionLabel { direction: "up" })
                    .inc_by(c.bytes_up);
                self.bytes
                    .get_or_create(&DirectionLabel { direction: "down" })
                    .inc_by(c.bytes_down);
                if let Some((side, reason)) = tls_failure(&c.close_reason) {
                    // An unverified upstream says why: the upstream leg's
                    // reasons are a fixed set of short names (`expired`,
                    // `wrong_host`, `unknown_issuer`, …).
                    let reason = match c.verification.as_deref() {
                        Some(v) if side == "upstream" && short_name(v) => v.to_string(),
                        _ => reason.to_string(),
                    };
                    self.tls_failures
                        .get_or_create(&SideReason { side, reason })
                        .inc();
                }
                if decision == "block" {
                    self.blocks
                        .get_or_create(&SourceLabel { source: "policy" })
                        .inc();
                }
            }
            Event::DlpFinding(f) => {
                let action = one_of(&f.action, &["log", "alert", "block", "redact"]);
                self.findings
                    .get_or_create(&RuleLabels {
                        rule: ident(&f.rule),
                        severity: f.severity.as_str(),
                        action,
                    })
                    .inc();
                if action == "block" {
                    self.blocks
                        .get_or_create(&SourceLabel { source: "dlp" })
                        .inc();
                }
            }
            Event::Message(m) => {
                self.messages
                    .get_or_create(&AppLabel { app: ident(&m.app) })
                    .inc();
            }
            Event::OpaqueTunnel(o) => {
                // One count per flow, under its first (main) reason, so
                // the sum over reasons is the number of opaque flows.
                let first = o.reason.split(',').next().unwrap_or("").trim();
                let reason = if first.is_empty() {
                    "unknown"
                } else {
                    one_of(
                        first,
                        &[
                            "pinned",
                            "e2ee",
                            "non-tls-encryption",
                            "e2ee-call",
                            "media",
                            "unknown",
                        ],
                    )
                };
                self.opaque.get_or_create(&ReasonLabel { reason }).inc();
            }
            Event::Policy(_) | Event::Audit(_) | Event::FlowUpdate(_) => {}
        }
    }

    /// Registers every family in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections",
            "Client connections (flows) recorded, by mode and decision",
            self.connections.clone(),
        );
        registry.register(
            "bytes",
            "Bytes relayed by recorded flows, by direction (up: client to server)",
            self.bytes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by side and reason",
            self.tls_failures.clone(),
        );
        registry.register(
            "dlp_findings",
            "DLP findings by rule, severity and action",
            self.findings.clone(),
        );
        registry.register(
            "blocks",
            "Flows (policy) and messages (dlp) blocked",
            self.blocks.clone(),
        );
        registry.register("messages", "Messages read, by app", self.messages.clone());
        registry.register(
            "opaque_flows",
            "Flows the gateway cannot read, by reason",
            self.opaque.clone(),
        );
    }
}

/// A lowercase `snake_case` name of at most 40 bytes.
fn short_name(v: &str) -> bool {
    !v.is_empty() && v.len() <= 40 && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The side and reason of a close reason that is a failed TLS handshake.
fn tls_failure(close_reason: &str) -> Option<(&'static str, &'static str)> {
    Some(match close_reason {
        "malformed_client_hello" => ("client", "malformed_client_hello"),
        "client_tls_error" => ("client", "client_tls_error"),
        "client_tls_timeout" => ("client", "client_tls_timeout"),
        "upstream_unverified" => ("upstream", "upstream_unverified"),
        "leaf_refused" => ("internal", "leaf_refused"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ConnectionEvent;

    #[test]
    fn labels_outside_the_fixed_sets_count_as_other() {
        let t = Traffic::default();
        t.observe(&Event::Connection(ConnectionEvent {
            mode: "explicit".into(),
            decision: "weird\nvalue".into(),
            close_reason: "client_tls_error".into(),
            bytes_up: 3,
            ..ConnectionEvent::default()
        }));
        let mut r = Registry::with_prefix("gatehouse");
        t.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("gatehouse_connections_total{mode=\"explicit\",decision=\"other\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("gatehouse_bytes_total{direction=\"up\"} 3"),
            "{out}"
        );
        assert!(
            out.contains(
                "gatehouse_tls_handshake_failures_total{side=\"client\",reason=\"client_tls_error\"} 1"
            ),
            "{out}"
        );
        t.observe(&Event::OpaqueTunnel(crate::events::OpaqueTunnelEvent {
            flow_id: uuid::Uuid::nil(),
            client: ([127, 0, 0, 1], 1).into(),
            user: String::new(),
            device: String::new(),
            app: None,
            host: String::new(),
            protocol: "tls".into(),
            class: "opaque".into(),
            action: "passthrough".into(),
            bytes_up: 0,
            bytes_down: 0,
            reason: "pinned,e2ee".into(),
            evidence: String::new(),
            confidence: String::new(),
            duration_ms: 0,
        }));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("gatehouse_opaque_flows_total{reason=\"pinned\"} 1"),
            "{out}"
        );
        assert!(!out.contains("reason=\"e2ee\""), "{out}");
        for verification in ["expired", "exception: something odd"] {
            t.observe(&Event::Connection(ConnectionEvent {
                mode: "transparent".into(),
                decision: "block".into(),
                close_reason: "upstream_unverified".into(),
                verification: Some(verification.into()),
                ..ConnectionEvent::default()
            }));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        for series in [
            "gatehouse_tls_handshake_failures_total{side=\"upstream\",reason=\"expired\"} 1",
            "gatehouse_tls_handshake_failures_total{side=\"upstream\",reason=\"upstream_unverified\"} 1",
        ] {
            assert!(out.contains(series), "{series}: {out}");
        }
        assert_eq!(ident("a\"b"), "other");
        assert_eq!(ident("pii/iban"), "pii/iban");
    }
}
