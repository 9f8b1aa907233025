//! Update: while a flow is open, a `flow_update` event every
//! `events.flow_update_interval` in which bytes moved — its progress so far
//! (bytes, requests, duration). The `connection` event still comes at its
//! end; the updates bound what a crash can leave unrecorded to one interval.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::events::{now_ms, Event, EventSink, FlowUpdateEvent};
use crate::relay::count::Counters;

use super::context::Flow;

impl Flow {
    /// What every update of this flow carries, as the flow stands now.
    fn update_template(&self) -> FlowUpdateEvent {
        FlowUpdateEvent {
            flow_id: self.id,
            client: self.client,
            destination: self.target.as_ref().map(|t| t.host_port()),
            decision: self.decision.as_str().into(),
            user: self.identity.user.clone().unwrap_or_default(),
            device: self.identity.device.clone().unwrap_or_default(),
            host: self.host_name(),
            app: self.seen.app.clone(),
            mode: self.mode.as_str().into(),
            bytes_up: 0,
            bytes_down: 0,
            requests: 0,
            started_ms: self.started_ms,
            duration_ms: 0,
            seq: 0,
        }
    }

    /// Records this flow's progress every `every` while bytes move on
    /// `bytes` (`requests` counts HTTP requests, when the flow has them);
    /// never ends — race it against the relay. `every` of zero records
    /// nothing.
    pub fn updates(
        &self,
        bytes: Arc<Counters>,
        requests: Option<Arc<AtomicU64>>,
        events: Arc<dyn EventSink>,
        every: Duration,
    ) -> impl std::future::Future<Output = Infallible> + Send + 'static {
        let template = self.update_template();
        async move {
            if every.is_zero() {
                return std::future::pending().await;
            }
            let read = || {
                (
                    bytes.read.load(Relaxed),
                    bytes.written.load(Relaxed),
                    requests.as_ref().map_or(0, |r| r.load(Relaxed)),
                )
            };
            let mut last = (0, 0, 0);
            let mut seq = 0;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = read();
                if now == last {
                    continue;
                }
                last = now;
                seq += 1;
                let mut update = template.clone();
                (update.bytes_up, update.bytes_down, update.requests) = now;
                update.duration_ms = now_ms().saturating_sub(update.started_ms);
                update.seq = seq;
                events.emit(Event::FlowUpdate(update));
            }
        }
    }
}
