//! A WebSocket message larger than the held window, scanned as it streams
//! (the fallback for messages no app extractor can hold whole): findings as
//! they come, a block as soon as one blocks (a redaction cannot rewrite a
//! frame already on its way, so it blocks too: fail closed), and one
//! `message` event with `extractor = "fallback"` naming what was done, its
//! findings joined to it.

use std::sync::Arc;

use bytes::Bytes;
use gatehouse_inspectors::dlp::{Action, BodyStream, DecodeLimits, Finding, Matched, RuleSet};

use super::body;
use crate::events::{DlpFindingEvent, Event, EventSink, MessageEvent};
use crate::relay::hooks::{BodyHooks, Direction, FlowContext, Verdict};

/// Field name of streamed WebSocket findings (as for held messages).
const FIELD: &str = "ws";

/// One streamed message's scan and its events.
pub(super) struct WsStream {
    stream: Option<BodyStream>,
    events: Arc<dyn EventSink>,
    /// The flow, for the events recorded if the message never ends.
    flow: FlowContext,
    dir: Direction,
    /// The id of its `message` event, named by its findings.
    id: uuid::Uuid,
    findings: Vec<DlpFindingEvent>,
    strictest: Option<Action>,
    /// The rule that blocked it.
    blocked_by: Option<String>,
    chars: u64,
    recorded: bool,
}

impl WsStream {
    pub(super) fn new(
        rules: &Arc<RuleSet>,
        events: Arc<dyn EventSink>,
        flow: &FlowContext,
        dir: Direction,
    ) -> Self {
        WsStream {
            stream: Some(BodyStream::new(
                rules.clone(),
                flow.app.as_deref(),
                dir,
                FIELD,
                None,
                &DecodeLimits::default(),
            )),
            events,
            flow: flow.clone(),
            dir,
            id: uuid::Uuid::now_v7(),
            findings: Vec::new(),
            strictest: None,
            blocked_by: None,
            chars: 0,
            recorded: false,
        }
    }

    /// Keeps the findings; a block when one blocks or redacts.
    fn take(&mut self, found: Vec<(Finding, Matched)>) -> Option<Verdict> {
        let app = self.flow.app.clone().unwrap_or_default();
        for (f, m) in &found {
            self.strictest = self.strictest.max(Some(f.action));
            if f.action >= Action::Redact && self.blocked_by.is_none() {
                self.blocked_by = Some(f.rule.to_string());
            }
            self.findings.push(body::streamed(
                &self.flow,
                Some(self.id),
                &app,
                self.dir,
                f,
                m,
            ));
        }
        let rule = self.blocked_by.clone()?;
        self.stream = None;
        self.record(true);
        Some(Verdict::Block {
            policy: body::policy_name(Some(&rule)),
        })
    }

    /// The message event, then its findings, with what was done.
    fn record(&mut self, blocked: bool) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let app = self.flow.app.clone().unwrap_or_default();
        let findings = std::mem::take(&mut self.findings);
        let action = if blocked {
            "block"
        } else {
            self.strictest.map_or("allow", |a| a.as_str())
        };
        let message = MessageEvent {
            chars: self.chars,
            findings: findings.len() as u32,
            action: action.into(),
            extractor: "fallback".into(),
            ..self.flow.stamp().message(&app, self.dir)
        };
        self.events.emit_as(self.id, Event::Message(message));
        for mut f in findings {
            if blocked && f.action == "redact" {
                f.action = "block".into();
            }
            self.events.emit(Event::DlpFinding(f));
        }
    }
}

impl BodyHooks for WsStream {
    fn on_chunk(&mut self, _flow: &FlowContext, chunk: &Bytes) -> Verdict {
        let Some(stream) = self.stream.as_mut() else {
            return Verdict::Allow;
        };
        self.chars += chunk.iter().filter(|b| (**b & 0xC0) != 0x80).count() as u64;
        let found = stream.push(chunk);
        self.take(found).unwrap_or_default()
    }

    fn on_end(&mut self, _flow: &FlowContext) -> Verdict {
        let Some(stream) = self.stream.take() else {
            return Verdict::Allow;
        };
        let (found, _) = stream.finish();
        if let Some(v) = self.take(found) {
            return v;
        }
        self.record(false);
        Verdict::Allow
    }
}

impl Drop for WsStream {
    /// A message cut off (connection closed mid-message) is still recorded
    /// with what was found in it: never lose an event.
    fn drop(&mut self) {
        if !self.recorded {
            if let Some(stream) = self.stream.take() {
                let (found, _) = stream.finish();
                let _ = self.take(found);
            }
            self.record(false);
        }
    }
}
