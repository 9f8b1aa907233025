//! The shipper: reads the durable journal from the acknowledged cursor,
//! batches by size and time, inserts into ClickHouse (one INSERT per table
//! per batch), retries with backoff, and acknowledges — cursor fsynced,
//! shipped segments deleted — only after ClickHouse accepted the batch.
//!
//! A crash between insert and acknowledgement replays the batch; the tables
//! collapse replays on the event id, so queries show each event once.

mod backoff;
pub mod retention;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::Client;
use tokio_util::sync::CancellationToken;

use crate::config::ClickHouseConfig;
use crate::events::journal::{self, Reader};
use crate::events::schema::{self, EventRow};
use crate::events::state::PipelineState as Shared;
use crate::events::{EventType, Record};

pub use backoff::Backoff;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Ships the journal into ClickHouse.
pub(crate) struct Shipper {
    cfg: ClickHouseConfig,
    dir: PathBuf,
    shared: Arc<Shared>,
    client: Client,
}

/// The INSERT of one batch, running while the next batch is read and decoded.
struct InFlight {
    handle: tokio::task::JoinHandle<Option<Batch>>,
    /// Journal position just after the batch: acknowledged once inserted.
    pos: journal::Position,
    started: Instant,
    decoded: Duration,
}

/// Rows of one batch, by event type, and the newest event time.
struct Batch {
    rows: BTreeMap<EventType, Vec<EventRow>>,
    events: u64,
    newest_ms: u64,
}

impl Shipper {
    pub(crate) fn new(cfg: ClickHouseConfig, dir: PathBuf, shared: Arc<Shared>) -> Self {
        let client = schema::client(&cfg);
        Self {
            cfg,
            dir,
            shared,
            client,
        }
    }

    /// Runs until `drain` is cancelled and everything durable is shipped
    /// (the caller bounds that wait).
    pub(crate) async fn run(self, drain: CancellationToken) {
        let mut backoff = Backoff::new(self.cfg.backoff_min, self.cfg.backoff_max);
        loop {
            match schema::migrate(&self.client, &self.cfg.database).await {
                Ok(_) => break,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, url = %self.cfg.url, retry_in = ?delay,
                        "ClickHouse not ready (schema migration failed); events wait in the journal");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = drain.cancelled() => return,
                    }
                }
            }
        }
        backoff.reset();
        let client = self.client.clone().with_database(&self.cfg.database);
        tokio::spawn(retention_loop(
            client.clone(),
            self.cfg.clone(),
            self.shared.clone(),
            drain.clone(),
        ));
        let cursor = match journal::load_cursor(&self.dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the journal cursor; shipping stopped");
                return;
            }
        };
        let mut reader = Some(Reader::new(&self.dir, cursor));
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut first_seen: Option<Instant> = None;
        let mut durable = self.shared.durable.subscribe();
        let mut in_flight: Option<InFlight> = None;
        loop {
            if in_flight.as_ref().is_some_and(|f| f.handle.is_finished()) {
                let f = in_flight.take().expect("checked");
                if !self.finish(f).await {
                    return;
                }
            }
            let until = *durable.borrow_and_update();
            let want = self.cfg.batch_size.saturating_sub(pending.len());
            let (r, p, res) = {
                let mut r = reader.take().expect("reader is put back");
                let mut p = std::mem::take(&mut pending);
                tokio::task::spawn_blocking(move || {
                    let res = r.next_batch(Some(until), want, &mut p);
                    (r, p, res)
                })
                .await
                .expect("journal read task")
            };
            reader = Some(r);
            pending = p;
            if let Err(e) = res {
                tracing::error!(error = %e, "journal read failed; retrying");
                tokio::time::sleep(self.cfg.backoff_min).await;
                continue;
            }
            let caught_up = reader.as_ref().is_some_and(|r| r.position() >= until);
            if !pending.is_empty() && first_seen.is_none() {
                first_seen = Some(Instant::now());
            }
            let due = first_seen.is_some_and(|t| t.elapsed() >= self.cfg.batch_interval);
            let draining = drain.is_cancelled();
            if !pending.is_empty()
                && (pending.len() >= self.cfg.batch_size || due || (draining && caught_up))
            {
                let pos = reader.as_ref().expect("reader").position();
                // Decoding 10⁵ records is CPU work: keep it off the runtime's
                // workers. It overlaps the previous batch's INSERT.
                let records = std::mem::take(&mut pending);
                let shared = self.shared.clone();
                let started = Instant::now();
                let batch = tokio::task::spawn_blocking(move || decode(records, &shared))
                    .await
                    .expect("decode task");
                let decoded = started.elapsed();
                // One INSERT in flight at a time, acknowledged in order.
                if let Some(f) = in_flight.take() {
                    if !self.finish(f).await {
                        return; // stopping; the journal keeps the batch
                    }
                }
                in_flight = Some(InFlight {
                    handle: tokio::spawn(ship(
                        client.clone(),
                        batch,
                        Backoff::new(self.cfg.backoff_min, self.cfg.backoff_max),
                        drain.clone(),
                        self.shared.clone(),
                    )),
                    pos,
                    started: Instant::now(),
                    decoded,
                });
                first_seen = None;
                continue;
            }
            if draining && caught_up && pending.is_empty() {
                if let Some(f) = in_flight.take() {
                    self.finish(f).await;
                }
                return;
            }
            if !caught_up && pending.len() < self.cfg.batch_size {
                continue; // more is durable already
            }
            let wait = first_seen.map_or(self.cfg.batch_interval, |t| {
                self.cfg.batch_interval.saturating_sub(t.elapsed())
            });
            tokio::select! {
                _ = durable.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = drain.cancelled(), if !draining => {}
                // Acknowledge a finished INSERT promptly (see the loop's top).
                _ = tokio::time::sleep(Duration::from_millis(10)), if in_flight.is_some() => {}
            }
        }
    }

    /// Waits for the INSERT in flight and acknowledges it; false if it gave
    /// up because the shipper is stopping.
    async fn finish(&self, f: InFlight) -> bool {
        let Ok(Some(batch)) = f.handle.await else {
            return false;
        };
        let inserted = f.started.elapsed();
        self.acknowledge(f.pos, &batch).await;
        tracing::debug!(
            events = batch.events,
            decode_ms = f.decoded.as_millis() as u64,
            insert_ms = inserted.as_millis() as u64,
            ack_ms = (f.started.elapsed() - inserted).as_millis() as u64,
            "batch shipped"
        );
        true
    }

    async fn acknowledge(&self, pos: journal::Position, batch: &Batch) {
        let dir = self.dir.clone();
        let res = tokio::task::spawn_blocking(move || {
            let freed = journal::ack(&dir, pos)?;
            let left = journal::bytes_after(&dir, pos)?;
            Ok::<_, std::io::Error>((freed, left))
        })
        .await
        .expect("journal ack task");
        let m = &self.shared.metrics;
        m.shipped_events.fetch_add(batch.events, Relaxed);
        m.shipped_batches.fetch_add(1, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        m.ship_lag_ms
            .store(now.saturating_sub(batch.newest_ms), Relaxed);
        match res {
            Ok((freed, left)) => {
                m.journal_bytes
                    .fetch_sub(freed.min(m.journal_bytes.load(Relaxed)), Relaxed);
                m.unshipped_bytes.store(left, Relaxed);
                self.shared.update_full();
            }
            // Shipped but not recorded: the batch is sent again later and
            // collapses on its ids.
            Err(e) => tracing::error!(error = %e, "cannot store the journal cursor"),
        }
    }
}

/// Inserts the batch, retrying with backoff until it succeeds; `None` if
/// told to stop meanwhile.
async fn ship(
    client: Client,
    batch: Batch,
    mut backoff: Backoff,
    drain: CancellationToken,
    shared: Arc<Shared>,
) -> Option<Batch> {
    loop {
        match insert(&client, &batch).await {
            Ok(()) => return Some(batch),
            Err(e) => {
                shared.metrics.failed_batches.fetch_add(1, Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, events = batch.events, retry_in = ?delay,
                    "shipping events to ClickHouse failed; they wait in the journal");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = drain.cancelled() => return None,
                }
            }
        }
    }
}

/// Journal records → rows by table.
fn decode(records: Vec<Vec<u8>>, shared: &Shared) -> Batch {
    let mut batch = Batch {
        rows: BTreeMap::new(),
        events: 0,
        newest_ms: 0,
    };
    for bytes in records {
        let parsed = serde_json::from_slice::<Record>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                String::from_utf8(bytes)
                    .map(|json| (r, json))
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok((record, json)) => {
                batch.newest_ms = batch.newest_ms.max(record.ts_ms);
                batch.events += 1;
                batch
                    .rows
                    .entry(record.event.kind())
                    .or_default()
                    .push(EventRow::new(&record, json));
            }
            Err(e) => {
                // A record this version cannot read (e.g. written by a
                // newer one): counted and logged; the rest keeps flowing.
                shared.metrics.undecodable.fetch_add(1, Relaxed);
                tracing::error!(error = %e, "journal record is not an event this gatehouse knows; not shipped");
            }
        }
    }
    batch
}

async fn insert(client: &Client, batch: &Batch) -> Result<(), clickhouse::error::Error> {
    for (kind, rows) in &batch.rows {
        let mut insert = client
            .insert::<EventRow>(schema::table(*kind))
            .await?
            .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    Ok(())
}

async fn retention_loop(
    client: Client,
    cfg: ClickHouseConfig,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        match retention::drop_expired(
            &client,
            &cfg.database,
            &cfg.retention_days,
            time::OffsetDateTime::now_utc(),
        )
        .await
        {
            Ok(d) => {
                shared
                    .metrics
                    .partitions_dropped
                    .fetch_add(d.len() as u64, Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "retention run failed; trying again tomorrow"),
        }
        tokio::select! {
            _ = tokio::time::sleep(DAY) => {}
            _ = stop.cancelled() => return,
        }
    }
}
