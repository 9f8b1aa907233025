//! The event pipeline: [`JournalSink`] (emit → bounded queue → journal
//! writer thread) and, when ClickHouse is configured, the shipper task.

mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ClickHouseConfig, EventsConfig, FullPolicy};
use crate::events::journal::{self, JournalWriter};
use crate::events::metrics::{Metrics, MetricsSnapshot, Traffic};
use crate::events::shipper::Shipper;
use crate::events::state::PipelineState as Shared;
use crate::events::{EmitError, Event, EventSink, Record};
use crate::GatewayError;

use crate::events::seal::SealKey;
use writer::Msg;

/// How long [`EventSink::emit_durable`] waits for the journal.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The sink the gateway emits into: stamps each event (UUID v7, time,
/// node), serialises it and queues it for the journal writer.
#[derive(Debug)]
pub struct JournalSink {
    tx: SyncSender<Msg>,
    node: String,
    shared: Arc<Shared>,
    /// The console's key findings' evidence is sealed to; unset, findings
    /// carry no sealed evidence.
    seal: std::sync::OnceLock<SealKey>,
}

impl JournalSink {
    /// The pipeline's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Seals the evidence of every finding emitted from now on to `key`
    /// (set once, before flows start; a second call is ignored).
    pub fn seal_findings_to(&self, key: SealKey) {
        let _ = self.seal.set(key);
    }

    fn encode(&self, id: uuid::Uuid, mut event: Event) -> Option<Vec<u8>> {
        self.shared.metrics.emitted.fetch_add(1, Relaxed);
        if let Event::DlpFinding(f) = &mut event {
            let unsealed = std::mem::take(&mut f.unsealed);
            if let (Some(evidence), Some(key)) = (unsealed.0, self.seal.get()) {
                match key.seal(id, &evidence) {
                    Ok(sealed) => f.sealed = Some(sealed),
                    Err(e) => tracing::error!(error = %e, rule = %f.rule, "evidence not sealed"),
                }
            }
        }
        match serde_json::to_vec(&Record::stamp_as(id, event, &self.node)) {
            Ok(b) => Some(b),
            Err(e) => {
                self.shared.metrics.dropped.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "event not serialisable");
                None
            }
        }
    }

    /// Counts `len` bytes into the queue.
    fn enqueue(&self, len: usize) {
        self.shared.metrics.queue_depth.fetch_add(1, Relaxed);
        self.shared
            .metrics
            .queued_bytes
            .fetch_add(len as u64, Relaxed);
    }

    fn dequeue(&self, len: usize) {
        self.shared.metrics.queue_depth.fetch_sub(1, Relaxed);
        self.shared
            .metrics
            .queued_bytes
            .fetch_sub(len as u64, Relaxed);
    }

    fn lost(&self, len: usize, why: &str) {
        self.dequeue(len);
        self.shared.metrics.dropped.fetch_add(1, Relaxed);
        tracing::error!("event dropped: {why}");
    }
}

impl EventSink for JournalSink {
    fn metrics(&self) -> Option<MetricsSnapshot> {
        Some(JournalSink::metrics(self))
    }

    fn traffic(&self) -> Option<Traffic> {
        Some(self.shared.metrics.traffic.clone())
    }

    fn emit(&self, event: Event) {
        self.emit_as(uuid::Uuid::now_v7(), event);
    }

    fn emit_as(&self, id: uuid::Uuid, event: Event) {
        self.shared.metrics.traffic.observe(&event);
        let Some(bytes) = self.encode(id, event) else {
            return;
        };
        let len = bytes.len();
        self.enqueue(len);
        if self.shared.policy == FullPolicy::FailClosed {
            // Never drop: wait for the writer (listeners stop taking flows
            // well before this blocks; see `accepting`).
            if self.tx.send(Msg::Record(bytes)).is_err() {
                self.lost(len, "the journal writer has stopped");
            }
        } else {
            match self.tx.try_send(Msg::Record(bytes)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.lost(len, "event queue full (events.queue_size)")
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.lost(len, "the journal writer has stopped")
                }
            }
        }
    }

    fn emit_durable(&self, event: Event) -> Result<uuid::Uuid, EmitError> {
        if self.shared.policy == FullPolicy::FailClosed && !self.accepting() {
            return Err(EmitError::Full);
        }
        let id = uuid::Uuid::now_v7();
        let bytes = self.encode(id, event).ok_or(EmitError::Closed)?;
        let len = bytes.len();
        self.enqueue(len);
        if self.tx.send(Msg::Record(bytes)).is_err() {
            self.lost(len, "the journal writer has stopped");
            return Err(EmitError::Closed);
        }
        // The writer answers a flush only once everything queued before it
        // is written and synced; no answer in time is no promise.
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| EmitError::Closed)?;
        rx.recv_timeout(DURABLE_TIMEOUT)
            .map_err(|_| EmitError::NotDurable)?;
        Ok(id)
    }

    fn try_emit(&self, event: Event) -> Result<(), EmitError> {
        if self.shared.policy == FullPolicy::FailClosed && !self.accepting() {
            return Err(EmitError::Full);
        }
        // Counted only once taken, so a refused event is not counted.
        let counted = event.clone();
        let bytes = self
            .encode(uuid::Uuid::now_v7(), event)
            .ok_or(EmitError::Closed)?;
        let len = bytes.len();
        self.enqueue(len);
        match self.tx.try_send(Msg::Record(bytes)) {
            Ok(()) => {
                self.shared.metrics.traffic.observe(&counted);
                Ok(())
            }
            Err(e) => {
                self.dequeue(len);
                self.shared.metrics.emitted.fetch_sub(1, Relaxed);
                Err(match e {
                    TrySendError::Full(_) => EmitError::Full,
                    TrySendError::Disconnected(_) => EmitError::Closed,
                })
            }
        }
    }

    fn accepting(&self) -> bool {
        let m = &self.shared.metrics;
        let ok = self.shared.policy != FullPolicy::FailClosed
            || (!m.journal_full.load(Relaxed)
                && !self.shared.nearly_full()
                && m.queue_depth.load(Relaxed)
                    < self.shared.queue_size - self.shared.queue_size / 10);
        if !ok {
            m.refused_flows.fetch_add(1, Relaxed);
        }
        ok
    }

    fn flush(&self) {
        // A fail-closed writer holding events for room writes them only at
        // shutdown (`Pipeline::shutdown`): waiting here would just time out.
        if self.shared.policy == FullPolicy::FailClosed
            && self.shared.metrics.journal_full.load(Relaxed)
        {
            return;
        }
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() && rx.recv_timeout(Duration::from_secs(30)).is_err()
        {
            tracing::error!("event journal flush timed out");
        }
    }
}

/// The running pipeline: the sink, its writer thread and, with ClickHouse,
/// the shipper.
pub struct Pipeline {
    sink: Arc<JournalSink>,
    writer: Option<std::thread::JoinHandle<()>>,
    shipper: Option<tokio::task::JoinHandle<()>>,
    drain: CancellationToken,
    dir: PathBuf,
    /// Held while the pipeline lives: one gateway per journal directory.
    _lock: std::fs::File,
}

/// Takes the journal directory's lock file (`gatehouse.lock`, holding the
/// owner's PID): a second gateway on the same directory would interleave
/// segments and ship them twice.
fn lock_journal(dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("gatehouse.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let pid = std::process::id();
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{pid}"))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            Err(format!(
                "in use by another gatehouse process{} (lock {}); one gateway per journal directory",
                if owner.is_empty() { String::new() } else { format!(" (pid {owner})") },
                path.display()
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
    }
}

impl Pipeline {
    /// Opens the journal (recovering a torn tail) and starts the writer
    /// thread; with `clickhouse`, also spawns the shipper on the current
    /// tokio runtime (migrations, batches, retention). ClickHouse being
    /// down does not stop the start: events wait in the journal.
    pub fn start(
        events: &EventsConfig,
        clickhouse: Option<&ClickHouseConfig>,
    ) -> Result<Self, GatewayError> {
        let dir = events.journal_dir.clone();
        let fail = |reason: String| GatewayError::Events {
            path: dir.clone(),
            reason,
        };
        let lock = lock_journal(&dir).map_err(fail)?;
        let (w, recovery) =
            JournalWriter::open(&dir, events.segment_bytes).map_err(|e| fail(e.to_string()))?;
        let node = if events.node.is_empty() {
            host_name()
        } else {
            events.node.clone()
        };
        let (durable, _) = watch::channel(w.synced());
        let shared = Arc::new(Shared {
            metrics: Metrics::default(),
            durable,
            max_bytes: events.journal_max_bytes,
            policy: events.full_policy,
            queue_size: events.queue_size as u64,
            stopping: AtomicBool::new(false),
        });
        let m = &shared.metrics;
        m.journal_bytes.store(recovery.bytes, Relaxed);
        if recovery.torn_bytes > 0 {
            m.torn_tail_bytes.store(recovery.torn_bytes, Relaxed);
            m.torn_tail_recoveries.store(1, Relaxed);
        }
        let mut cursor = journal::load_cursor(&dir).map_err(|e| fail(e.to_string()))?;
        let end = w.position();
        if cursor > end {
            // Only with `fsync = "never"`: the crash lost records already
            // shipped. New records start at the journal's end again.
            tracing::warn!(%cursor, %end, "journal cursor beyond the recovered end; moved back to it");
            cursor = end;
            journal::store_cursor(&dir, cursor).map_err(|e| fail(e.to_string()))?;
        }
        let unshipped = journal::bytes_after(&dir, cursor).map_err(|e| fail(e.to_string()))?;
        m.unshipped_bytes.store(unshipped, Relaxed);
        shared.update_full();
        tracing::info!(
            dir = %dir.display(),
            segments = recovery.segments,
            bytes = recovery.bytes,
            unshipped,
            torn_bytes = recovery.torn_bytes,
            node = %node,
            "event journal open"
        );

        let (tx, rx) = mpsc::sync_channel(events.queue_size);
        let writer = {
            let shared = shared.clone();
            let cfg = events.clone();
            std::thread::Builder::new()
                .name("gatehouse-journal".into())
                .spawn(move || writer::run(w, rx, shared, cfg))
                .map_err(|e| fail(format!("cannot start the journal writer: {e}")))?
        };
        let drain = CancellationToken::new();
        let shipper = clickhouse.map(|ch| {
            let s = Shipper::new(ch.clone(), dir.clone(), shared.clone());
            tokio::spawn(s.run(drain.clone()))
        });
        if clickhouse.is_none() {
            tracing::info!("no [clickhouse] configured: events stay in the journal (gatehouse events tail reads them)");
        }
        Ok(Self {
            sink: Arc::new(JournalSink {
                tx,
                node,
                shared,
                seal: std::sync::OnceLock::new(),
            }),
            writer: Some(writer),
            shipper,
            drain,
            dir,
            _lock: lock,
        })
    }

    /// The sink to give the gateway.
    pub fn sink(&self) -> Arc<JournalSink> {
        self.sink.clone()
    }

    /// The pipeline's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.sink.metrics()
    }

    /// The journal directory.
    pub fn journal_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Makes every emitted event durable, lets the shipper send what it can
    /// within `grace`, and stops. Unshipped events stay in the journal for
    /// the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        self.sink.shared.stopping.store(true, Relaxed);
        let (tx, rx) = mpsc::channel();
        let sent = self.sink.tx.send(Msg::Stop(tx)).is_ok();
        let writer = self.writer.take();
        let _ = tokio::task::spawn_blocking(move || {
            if sent && rx.recv_timeout(Duration::from_secs(30)).is_err() {
                tracing::error!("event journal did not flush in time");
            }
            if let Some(w) = writer {
                let _ = w.join();
            }
        })
        .await;
        self.drain.cancel();
        if let Some(mut s) = self.shipper.take() {
            if tokio::time::timeout(grace, &mut s).await.is_err() {
                s.abort();
                tracing::warn!("shipper stopped before catching up; the rest ships at next start");
            }
        }
        let m = self.metrics();
        tracing::info!(
            shipped = m.shipped_events,
            unshipped_bytes = m.unshipped_bytes,
            "event pipeline stopped"
        );
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "gatehouse".into())
}
