//! The journal writer thread: drains the queue in groups, applies the full
//! policy, writes each group with one write and (by default) one fsync —
//! group commit — then publishes the durable end for the shipper.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{EventsConfig, FsyncPolicy, FullPolicy};
use crate::events::journal::{framed_len, JournalWriter};

use super::Shared;

/// What flows through the queue.
pub(crate) enum Msg {
    /// One serialized [`Record`](crate::events::Record).
    Record(Vec<u8>),
    /// Make everything before this durable, then answer.
    Flush(Sender<()>),
    /// Flush and stop.
    Stop(Sender<()>),
}

const GROUP_RECORDS: usize = 16_384;
const GROUP_BYTES: usize = 16 << 20;

pub(crate) fn run(mut w: JournalWriter, rx: Receiver<Msg>, shared: Arc<Shared>, cfg: EventsConfig) {
    let mut last_sync = Instant::now();
    let mut group: Vec<Vec<u8>> = Vec::new();
    let mut waiters: Vec<Sender<()>> = Vec::new();
    loop {
        let first = if cfg.fsync == FsyncPolicy::Interval && w.synced() != w.position() {
            let left = cfg.fsync_interval.saturating_sub(last_sync.elapsed());
            match rx.recv_timeout(left) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            }
        };
        let mut stop = None;
        let mut bytes = 0;
        let mut taken = 0u64;
        let mut next = first;
        while let Some(m) = next.take() {
            match m {
                Msg::Record(r) => {
                    taken += 1;
                    bytes += r.len();
                    group.push(r);
                }
                Msg::Flush(tx) => waiters.push(tx),
                Msg::Stop(tx) => {
                    stop = Some(tx);
                    break;
                }
            }
            if group.len() < GROUP_RECORDS && bytes < GROUP_BYTES {
                next = rx.try_recv().ok();
            }
        }
        shared.metrics.queue_depth.fetch_sub(taken, Relaxed);
        // Counted out of the queue only once journaled (below), so that
        // "nearly full" sees them meanwhile.
        let group_bytes = bytes as u64;

        // Write what fits; under fail-closed wait for room for the rest.
        let mut rest = &group[..];
        while !rest.is_empty() {
            let fit = make_room(&mut w, rest, &shared, &cfg);
            write_group(&mut w, &rest[..fit], &shared);
            let giving_up = cfg.full_policy != FullPolicy::FailClosed;
            rest = if fit == 0 && giving_up {
                &[] // dropped (counted by make_room)
            } else {
                &rest[fit..]
            };
            if !rest.is_empty() {
                if let Err(e) = w.sync() {
                    tracing::error!(error = %e, "event journal write failed");
                }
                shared.durable.send_replace(w.synced());
            }
        }
        shared.metrics.queued_bytes.fetch_sub(group_bytes, Relaxed);
        group.clear();
        let must_sync = match cfg.fsync {
            FsyncPolicy::Batch => true,
            FsyncPolicy::Interval => last_sync.elapsed() >= cfg.fsync_interval,
            FsyncPolicy::Never => false,
        } || !waiters.is_empty()
            || stop.is_some();
        let res = if must_sync { w.sync() } else { w.write() };
        match res {
            Ok(()) => {
                if must_sync {
                    shared.metrics.syncs.fetch_add(1, Relaxed);
                    last_sync = Instant::now();
                }
            }
            Err(e) => {
                shared.metrics.write_errors.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "event journal write failed; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let durable = if cfg.fsync == FsyncPolicy::Never {
            w.position()
        } else {
            w.synced()
        };
        shared.durable.send_replace(durable);
        shared.update_full();
        if w.buffered() == 0 {
            for tx in waiters.drain(..) {
                let _ = tx.send(());
            }
        }
        if let Some(tx) = stop {
            let _ = tx.send(());
            break;
        }
    }
}

fn write_group(w: &mut JournalWriter, group: &[Vec<u8>], shared: &Shared) {
    let mut added = 0;
    for r in group {
        match w.append(r) {
            Ok(()) => {
                added += framed_len(r.len());
                shared.metrics.written.fetch_add(1, Relaxed);
            }
            Err(e) => {
                // Only an oversized record fails here; IO errors surface at write.
                shared.metrics.dropped.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "event not journaled");
            }
        }
    }
    shared.metrics.journal_bytes.fetch_add(added, Relaxed);
    shared.metrics.unshipped_bytes.fetch_add(added, Relaxed);
}

/// Waits for, makes, or gives up on room for the records of `group` as the
/// full policy says. Returns how many of the first records to write now.
fn make_room(
    w: &mut JournalWriter,
    group: &[Vec<u8>],
    shared: &Shared,
    cfg: &EventsConfig,
) -> usize {
    let mut warned = false;
    loop {
        let used = shared.metrics.journal_bytes.load(Relaxed);
        let mut room = cfg.journal_max_bytes.saturating_sub(used);
        let fit = group
            .iter()
            .take_while(|r| {
                let n = framed_len(r.len());
                let ok = n <= room;
                room = room.saturating_sub(n);
                ok
            })
            .count();
        if fit > 0 {
            return fit;
        }
        match cfg.full_policy {
            // Keep every event: at stop nothing can ship any more, so the
            // held ones go past the limit rather than being lost.
            FullPolicy::FailClosed if shared.stopping.load(Relaxed) => {
                tracing::warn!(
                    held = group.len(),
                    used,
                    max = cfg.journal_max_bytes,
                    "stopping with the event journal full: writing the held events past events.journal_max_bytes"
                );
                return group.len();
            }
            FullPolicy::FailClosed => {
                shared.metrics.journal_full.store(true, Relaxed);
                if !warned {
                    tracing::error!(
                        used,
                        max = cfg.journal_max_bytes,
                        held = group.len(),
                        "event journal full: holding events and refusing new flows until ClickHouse catches up (events.full_policy = fail_closed)"
                    );
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            FullPolicy::DropNew => {
                shared
                    .metrics
                    .dropped
                    .fetch_add(group.len() as u64, Relaxed);
                tracing::error!(
                    dropped = group.len(),
                    "event journal full: dropping new events (events.full_policy = drop_new)"
                );
                return 0;
            }
            FullPolicy::DropOldest => match w.delete_oldest() {
                Ok(Some(freed)) => {
                    shared.metrics.journal_bytes.fetch_sub(freed, Relaxed);
                    shared.metrics.evicted_bytes.fetch_add(freed, Relaxed);
                    tracing::error!(
                        freed,
                        "event journal full: deleted the oldest segment unshipped (events.full_policy = drop_oldest)"
                    );
                }
                // Only the segment being written is left: it may grow past the limit.
                Ok(None) => return group.len(),
                Err(e) => {
                    tracing::error!(error = %e, "event journal full and the oldest segment cannot be deleted");
                    return group.len();
                }
            },
        }
    }
}
