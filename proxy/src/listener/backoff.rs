//! Accept errors (typically `EMFILE`/`ENFILE` when out of descriptors):
//! the pending connection stays queued, so an accept loop that retried at
//! once would spin and flood the log. Back off exponentially and log the
//! first error, then at most one summary per interval.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(10);
const MAX: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Backoff state of one accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: &'static str,
    delay: Duration,
    suppressed: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    /// For the listener named `what` (`proxy.listen`, …).
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            delay: FIRST,
            suppressed: 0,
            last_log: None,
        }
    }

    /// An accept failed: log (rate-limited) and wait before the next try.
    pub async fn failed(&mut self, e: &std::io::Error) {
        let due = self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(
                listener = self.what,
                error = %e,
                suppressed = self.suppressed,
                retry_in = ?self.delay,
                "accept failed; backing off (out of file descriptors?)"
            );
            self.last_log = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX);
    }

    /// An accept succeeded: the next failure starts from the shortest wait.
    pub fn succeeded(&mut self) {
        if self.delay != FIRST {
            if self.suppressed > 0 {
                tracing::info!(
                    listener = self.what,
                    failures = self.suppressed,
                    "accepting again"
                );
            }
            self.delay = FIRST;
            self.suppressed = 0;
            self.last_log = None;
        }
    }
}
