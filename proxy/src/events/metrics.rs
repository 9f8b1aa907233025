//! Counters of the event pipeline: plain atomics, read as a snapshot (the
//! admin endpoint will expose them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

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
