//! The byte-stream fallback: a decrypted stream no parser claims is
//! scanned as it passes, per direction, with the streaming scanner (memory
//! bounded by the rules' longest match plus context, whatever the stream's
//! length). A match is judged before the chunk that completes it is
//! forwarded — [`StreamScanner::peek_matched`] sees it while it is still in
//! the holdback zone — so a block cuts the stream with the secret
//! undelivered.
//!
//! Events, without flooding the journal: the bytes of one direction form a
//! `fallback` message that ends at the first chunk with a finding (the
//! message is recorded then, with its findings) or at the flow's close
//! (recorded only when it carried bytes). A long stream with findings gives
//! one message per chunk that had any.

use std::sync::Arc;

use gatehouse_inspectors::dlp::{Action, Finding, Matched, RuleSet, StreamScanner};

use crate::events::{DlpFindingEvent, Event, EventSink, MessageEvent};
use crate::relay::hooks::{Direction, FlowContext, Verdict};

use super::body;

/// One direction's stream.
struct Unit {
    scanner: StreamScanner,
    /// The message event the next findings join.
    id: uuid::Uuid,
    /// Bytes since the last recorded message.
    bytes: u64,
}

/// Both directions of one flow's byte stream.
pub(super) struct Fallback {
    rules: Arc<RuleSet>,
    units: [Option<Unit>; 2],
    store_text: bool,
}

impl Fallback {
    pub(super) fn new(rules: Arc<RuleSet>, store_text: bool) -> Self {
        Self {
            rules,
            units: [None, None],
            store_text,
        }
    }

    /// Judges `bytes` before they are forwarded. A block records the
    /// message with its findings and returns the rule that blocked.
    pub(super) fn chunk(
        &mut self,
        events: &dyn EventSink,
        flow: &FlowContext,
        dir: Direction,
        bytes: &[u8],
    ) -> (Verdict, Option<(uuid::Uuid, String)>) {
        let rules = self.rules.clone();
        let unit = self.units[usize::from(dir == Direction::Inbound)].get_or_insert_with(|| Unit {
            scanner: StreamScanner::new(rules, flow.app.as_deref(), dir, "stream"),
            id: uuid::Uuid::now_v7(),
            bytes: 0,
        });
        unit.bytes += bytes.len() as u64;
        let mut found = unit.scanner.push_matched(bytes);
        // Not final yet, but a block must not wait for the next chunk: the
        // one completing the match would be forwarded by then.
        let early: Vec<_> = unit
            .scanner
            .peek_matched()
            .into_iter()
            .filter(|(f, _)| f.action >= Action::Redact)
            .collect();
        let blocks = !early.is_empty() || found.iter().any(|(f, _)| f.action >= Action::Redact);
        if !blocks && found.is_empty() {
            return (Verdict::Allow, None);
        }
        if blocks {
            found.extend(early);
        }
        let rule = found
            .iter()
            .filter(|(f, _)| f.action >= Action::Redact)
            .map(|(f, _)| f.rule.to_string())
            .next();
        let id = unit.id;
        let text = self
            .store_text
            .then(|| String::from_utf8_lossy(bytes).into_owned());
        let verdict = if blocks {
            // Redaction is not possible on a byte stream: carried out as a block.
            Verdict::Block {
                policy: body::policy_name(rule.as_deref()),
            }
        } else {
            Verdict::Allow
        };
        record(events, flow, dir, unit.bytes, id, &found, blocks, text);
        unit.id = uuid::Uuid::now_v7();
        unit.bytes = 0;
        (verdict, rule.filter(|_| blocks).map(|r| (id, r)))
    }

    /// The flow ended: the rest of each direction is recorded as a message
    /// (with the findings only the end of the stream made final).
    pub(super) fn close(&mut self, events: &dyn EventSink, flow: &FlowContext) {
        for (i, unit) in self.units.iter_mut().enumerate() {
            let Some(unit) = unit.take() else { continue };
            let dir = if i == 0 {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            let (found, _) = unit.scanner.finish_matched();
            if unit.bytes > 0 || !found.is_empty() {
                record(events, flow, dir, unit.bytes, unit.id, &found, false, None);
            }
        }
    }
}

/// Records one `fallback` message and its findings.
#[allow(clippy::too_many_arguments)]
fn record(
    events: &dyn EventSink,
    flow: &FlowContext,
    dir: Direction,
    bytes: u64,
    id: uuid::Uuid,
    found: &[(Finding, Matched)],
    blocked: bool,
    text: Option<String>,
) {
    let app = flow.app.clone().unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let findings: Vec<DlpFindingEvent> = found
        .iter()
        .filter(|(f, _)| seen.insert((f.rule.to_string(), f.start, f.end)))
        .map(|(f, matched)| {
            let mut e = body::streamed(flow, Some(id), &app, dir, f, matched);
            if blocked && f.action == Action::Redact {
                e.action = "block".into();
            }
            e
        })
        .collect();
    let action = if blocked {
        "block"
    } else {
        found
            .iter()
            .map(|(f, _)| f.action)
            .max()
            .map_or("allow", |a| a.as_str())
    };
    let message = MessageEvent {
        chars: bytes,
        findings: findings.len() as u32,
        action: action.into(),
        text,
        extractor: "fallback".into(),
        ..flow.stamp().message(&app, dir)
    };
    events.emit_as(id, Event::Message(message));
    for f in findings {
        events.emit(Event::DlpFinding(f));
    }
}
