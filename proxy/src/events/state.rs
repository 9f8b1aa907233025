//! State shared by the event sink, the journal writer thread and the
//! shipper. Its own module so that the shipper does not import the
//! pipeline that spawns it.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::sync::watch;

use crate::config::FullPolicy;
use crate::events::journal::Position;
use crate::events::metrics::Metrics;

/// State shared by the sink, the writer thread and the shipper.
#[derive(Debug)]
pub(crate) struct PipelineState {
    pub(crate) metrics: Metrics,
    /// The end of the durable journal; the shipper reads up to it.
    pub(crate) durable: watch::Sender<Position>,
    pub(crate) max_bytes: u64,
    pub(crate) policy: FullPolicy,
    pub(crate) queue_size: u64,
    /// Set at shutdown: a writer waiting for room (fail-closed) gives up.
    pub(crate) stopping: AtomicBool,
}

impl PipelineState {
    /// Whether the journal plus what waits in the queue is within a tenth
    /// of the limit. The reserve lets flows already running record their end.
    pub(crate) fn nearly_full(&self) -> bool {
        let used =
            self.metrics.journal_bytes.load(Relaxed) + self.metrics.queued_bytes.load(Relaxed);
        used + self.max_bytes / 10 >= self.max_bytes
    }

    /// Recomputes the "full" gauge (and logs its changes).
    pub(crate) fn update_full(&self) {
        let used = self.metrics.journal_bytes.load(Relaxed);
        let full = self.nearly_full();
        let was = self.metrics.journal_full.swap(full, Relaxed);
        if full && !was {
            tracing::error!(
                used,
                max = self.max_bytes,
                "event journal full: new flows are refused until events are shipped (events.full_policy)"
            );
        } else if was && !full {
            tracing::info!(used, "event journal has room again: accepting new flows");
        }
    }
}
