//! DLP on HTTP bodies no app extractor read, both directions. The window
//! (what the relay holds) is decoded and scanned whole: block answers 403,
//! redact rewrites it as sent. The rest streams through a [`BodyStream`]:
//! findings are recorded as they come; a block, or a redaction that can no
//! longer be applied, cuts the body so the peer never sees it end cleanly.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gatehouse_inspectors::dlp::{
    self, Action, BodyInput, BodyStream, DecodeLimits, Finding, Matched, RuleSet, ScanResult,
};

use crate::events::seal::{Evidence, Unsealed};
use crate::events::{DlpFindingEvent, Event, EventSink, Masked, PolicyEvent};
use crate::relay::hooks::{BodyHooks, Direction, FlowContext, HttpMessage, Verdict};

/// Field name of body findings (decoded parts are `body#json`, …).
const FIELD: &str = "body";

/// The app a body finding carries: the flow's, when identified.
fn app_of(flow: &FlowContext) -> &str {
    flow.app.as_deref().unwrap_or_default()
}

/// What the block page names: the DLP rule, never the matched data.
pub(super) fn policy_name(rule: Option<&str>) -> String {
    match rule {
        Some(r) => format!("DLP rule {r}"),
        None => "data loss prevention".into(),
    }
}

/// One `dlp_finding` event of a streamed body; see [`streamed`].
pub(super) fn emit_finding(
    events: &dyn EventSink,
    flow: &FlowContext,
    message_id: Option<uuid::Uuid>,
    app: &str,
    dir: Direction,
    f: &Finding,
    matched: &Matched,
) {
    events.emit(Event::DlpFinding(streamed(
        flow, message_id, app, dir, f, matched,
    )));
}

/// The `dlp_finding` event of a finding in a streamed body or message: as
/// [`finding`], and the evidence to seal is the match with the text the
/// scanner held around it.
pub(super) fn streamed(
    flow: &FlowContext,
    message_id: Option<uuid::Uuid>,
    app: &str,
    dir: Direction,
    f: &Finding,
    matched: &Matched,
) -> DlpFindingEvent {
    let mut e = finding(flow, message_id, app, dir, f, matched);
    if !matched.is_empty() {
        let end = matched.at + matched.text.len();
        e.unsealed = Unsealed(Some(Evidence::in_text(
            matched,
            &matched.around,
            matched.at,
            end,
        )));
    }
    e
}

/// The `dlp_finding` event of `f` (not yet emitted). Its evidence is the
/// engine's ([`gatehouse_inspectors::dlp::RuleSet::evidence`], the one
/// `rules explain` prints): the rule's context, `keep_last` and
/// `mode = "none"` honoured, other matches in the context masked.
/// `matched`, the raw match, only checks that it never shows.
pub(super) fn finding(
    flow: &FlowContext,
    message_id: Option<uuid::Uuid>,
    app: &str,
    dir: Direction,
    f: &Finding,
    matched: &str,
) -> DlpFindingEvent {
    DlpFindingEvent {
        rule: f.rule.to_string(),
        severity: severity(f.severity),
        score: (f.score * 100.0).round().clamp(0.0, u32::MAX as f64) as u32,
        action: f.action.as_str().into(),
        evidence: evidence(f, matched),
        start: f.start as u64,
        end: f.end as u64,
        related: f
            .related
            .iter()
            .map(|&t| uuid::Uuid::from_u128(t))
            .collect(),
        // Sealed by the journal sink to the console's key, never written as is.
        unsealed: Unsealed(
            (!matched.is_empty()).then(|| Evidence::in_text(matched, matched, 0, matched.len())),
        ),
        // A whole body has no message event of its own: it names the
        // flow's connection event (whose id is the flow id).
        ..flow
            .stamp()
            .finding(app, Some(message_id.unwrap_or(flow.id)), dir)
    }
}

/// Gives the evidence to seal the text around the match, when `text` is
/// the text `f`'s offsets point into.
pub(super) fn with_context(e: &mut DlpFindingEvent, matched: &str, text: &str, f: &Finding) {
    if !matched.is_empty() {
        e.unsealed = Unsealed(Some(Evidence::in_text(matched, text, f.start, f.end)));
    }
}

/// The engine's evidence of `f`; none when the rule says `mode = "none"`.
/// Should the raw match show in it anyway, nothing is kept (fail closed).
fn evidence(f: &Finding, matched: &str) -> Masked {
    let Some(e) = f.excerpt.clone() else {
        return Masked::default();
    };
    let raw = matched.chars().filter(|c| c.is_alphanumeric()).count() >= 4
        && e.as_str().contains(matched);
    if raw {
        tracing::error!(rule = %f.rule, "evidence held the raw match; dropped");
        return Masked::default();
    }
    Masked::from(e)
}

/// The finding events of a scanned body (or WebSocket message): offsets
/// point into its decoded parts, and evidence is masked from them.
/// Most `dlp_finding` events one message (or one body) records, blocking
/// findings first; its `message` event still counts every finding. A body
/// of ten thousand card numbers is one decision, not ten thousand events
/// (each also sealed for the console).
pub(super) const MAX_FINDING_EVENTS: usize = 100;

/// `findings` in the order their events are kept: the strictest action
/// first, otherwise as found.
pub(super) fn by_action(findings: &[dlp::Finding]) -> Vec<&dlp::Finding> {
    let mut order: Vec<&dlp::Finding> = findings.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.action));
    order
}

pub(super) fn findings_of(
    flow: &FlowContext,
    message_id: Option<uuid::Uuid>,
    dir: Direction,
    input: &BodyInput<'_>,
    result: &ScanResult,
    field: &str,
) -> Vec<DlpFindingEvent> {
    if result.findings.is_empty() {
        return Vec::new();
    }
    let decoded = dlp::decode_body(input, &DecodeLimits::default());
    let raw = String::from_utf8_lossy(input.body);
    by_action(&result.findings)
        .into_iter()
        .take(MAX_FINDING_EVENTS)
        .map(|f| {
            let source = decoded
                .parts
                .iter()
                .find(|(label, _)| label.replacen("body", field, 1) == f.field)
                .map_or(&*raw, |(_, t)| t.as_str());
            let matched = source.get(f.start..f.end).unwrap_or("");
            let mut e = finding(flow, message_id, app_of(flow), dir, f, matched);
            with_context(&mut e, matched, source, f);
            e
        })
        .collect()
}

/// A `policy` event for a DLP decision the findings alone do not tell.
fn emit_policy(
    events: &dyn EventSink,
    flow: &FlowContext,
    kind: &str,
    action: &str,
    rule: &str,
    reason: String,
) {
    events.emit(Event::Policy(PolicyEvent {
        // A body's verdict is about the body, whatever app the flow is.
        app: None,
        rule: Some(rule.into()),
        ..flow.stamp().policy(kind, action, &reason)
    }));
}

fn severity(s: dlp::Severity) -> crate::events::Severity {
    use crate::events::Severity;
    match s.as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        _ => Severity::Low,
    }
}

fn what(dir: Direction) -> &'static str {
    match dir {
        Direction::Outbound => "request",
        Direction::Inbound => "response",
    }
}

/// The first rule with `action` among `findings`.
fn rule_with<'a>(
    findings: impl IntoIterator<Item = &'a Finding>,
    action: Action,
) -> Option<&'a str> {
    findings
        .into_iter()
        .find(|f| f.action == action)
        .map(|f| &*f.rule)
}

fn header<'a>(msg: &'a HttpMessage<'_>, name: http::header::HeaderName) -> Option<&'a str> {
    msg.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The Content-Encoding of `msg`, unless identity.
fn coding<'a>(msg: &'a HttpMessage<'_>) -> Option<&'a str> {
    header(msg, http::header::CONTENT_ENCODING)
        .filter(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
}

/// Judges a body window. Returns the verdict, and for a compressed body
/// that goes on, the stream that has decoded the window (the decoder needs
/// every byte from the first).
pub(super) fn judge_window(
    rules: &Arc<RuleSet>,
    events: &dyn EventSink,
    flow: &FlowContext,
    dir: Direction,
    msg: &HttpMessage<'_>,
) -> (Verdict, Option<BodyStream>) {
    let limits = DecodeLimits::default();
    if !msg.complete {
        if let Some(coding) = coding(msg) {
            let mut stream = BodyStream::new(
                rules.clone(),
                flow.app.as_deref(),
                dir,
                FIELD,
                Some(coding),
                &limits,
            );
            let found = stream.push(msg.body);
            for (f, m) in &found {
                emit_finding(events, flow, None, app_of(flow), dir, f, m);
            }
            let findings = found.iter().map(|(f, _)| f);
            let verdict = match findings.clone().map(|f| f.action).max() {
                Some(Action::Block) => Verdict::Block {
                    policy: policy_name(rule_with(findings, Action::Block)),
                },
                Some(Action::Redact) => {
                    let rule = rule_with(findings, Action::Redact).unwrap_or_default();
                    emit_policy(
                        events,
                        flow,
                        "dlp_block",
                        "block",
                        rule,
                        format!(
                            "{rule}: a compressed {} larger than the inspection window cannot be \
                             rewritten; blocked instead of redacted",
                            what(dir)
                        ),
                    );
                    Verdict::Block {
                        policy: policy_name(Some(rule)),
                    }
                }
                _ => Verdict::Allow,
            };
            return (verdict, Some(stream));
        }
    }
    let input = BodyInput {
        content_type: header(msg, http::header::CONTENT_TYPE),
        content_encoding: header(msg, http::header::CONTENT_ENCODING),
        body: msg.body,
    };
    let result = rules.scan_body(&input, flow.app.as_deref(), dir, FIELD, &limits);
    if result.findings.is_empty() {
        return (Verdict::Allow, None);
    }
    let findings = findings_of(flow, None, dir, &input, &result, FIELD);
    let verdict = match result.verdict() {
        Some(Action::Block) => Verdict::Block {
            policy: policy_name(rule_with(&result.findings, Action::Block)),
        },
        Some(Action::Redact) => redact_window(rules, events, flow, dir, &input, &result),
        _ => Verdict::Allow,
    };
    // Recorded with what was done: a redaction that could not be applied
    // was a block.
    let blocked = matches!(verdict, Verdict::Block { .. });
    for mut f in findings {
        if blocked && f.action == "redact" {
            f.action = "block".into();
        }
        events.emit(Event::DlpFinding(f));
    }
    (verdict, None)
}

/// The window rewritten with its redact findings masked, if that leaves
/// nothing to redact when scanned again; otherwise a block.
pub(super) fn redact_window(
    rules: &RuleSet,
    events: &dyn EventSink,
    flow: &FlowContext,
    dir: Direction,
    input: &BodyInput<'_>,
    result: &ScanResult,
) -> Verdict {
    let limits = DecodeLimits::default();
    let rule = rule_with(&result.findings, Action::Redact).unwrap_or_default();
    let rewritten = dlp::redact_body(input, result, &limits).filter(|new| {
        let again = BodyInput {
            body: new,
            ..*input
        };
        let residue = rules.scan_body(&again, flow.app.as_deref(), dir, FIELD, &limits);
        residue.verdict().is_none_or(|a| a < Action::Redact)
    });
    match rewritten {
        Some(new) => Verdict::Rewrite(Bytes::from(new)),
        None => {
            emit_policy(
                events,
                flow,
                "dlp_block",
                "block",
                rule,
                format!(
                    "{rule}: the match could not be rewritten in the {} as sent (encoding the \
                     redaction cannot follow); blocked instead of redacted",
                    what(dir)
                ),
            );
            Verdict::Block {
                policy: policy_name(Some(rule)),
            }
        }
    }
}

/// The rest of one body past its window: scanned as it streams.
pub(super) struct BodyInspection {
    stream: Option<BodyStream>,
    events: Arc<dyn EventSink>,
    dir: Direction,
    /// Redact rules apply and the body is scanned as sent: bytes are held
    /// back until no match can start in them, so a redaction can still
    /// rewrite them (in place, same length).
    hold: bool,
    held: BytesMut,
    /// Body offset of `held[0]`: everything before it has been forwarded.
    held_from: usize,
}

impl BodyInspection {
    /// Inspection of the body after `window`; `stream` continues it (a
    /// compressed one has decoded the window already). `redacts`: some
    /// rule may redact in this direction.
    pub(super) fn new(
        mut stream: BodyStream,
        window: usize,
        events: Arc<dyn EventSink>,
        dir: Direction,
        redacts: bool,
    ) -> Self {
        let hold = redacts && stream.offsets_are_bytes();
        BodyInspection {
            stream: Some(stream),
            events,
            dir,
            hold,
            held: BytesMut::new(),
            held_from: window,
        }
    }

    /// Records findings; a cut when one blocks, or redacts bytes that are
    /// gone (or cannot be located in the bytes as sent).
    fn apply(&mut self, flow: &FlowContext, found: &[(Finding, Matched)]) -> Option<Verdict> {
        for (f, m) in found {
            emit_finding(&*self.events, flow, None, app_of(flow), self.dir, f, m);
        }
        let exact = self.stream.as_mut().is_some_and(|s| s.offsets_are_bytes());
        let mut cut: Option<(&str, &str)> = None;
        for (f, _) in found {
            match f.action {
                Action::Block => cut = cut.or(Some((&f.rule, "blocking finding"))),
                Action::Redact => {
                    let (s, e) = (f.start, f.end);
                    let inside = self.hold
                        && exact
                        && s >= self.held_from
                        && e <= self.held_from + self.held.len();
                    let bytes = if inside {
                        &mut self.held[s - self.held_from..e - self.held_from]
                    } else {
                        &mut [][..]
                    };
                    match std::str::from_utf8(bytes) {
                        Ok(text) if inside => {
                            let masked = dlp::mask_same_len(text, f.keep_last());
                            bytes.copy_from_slice(masked.as_bytes());
                        }
                        _ => cut = cut.or(Some((&f.rule, "redaction of bytes already forwarded"))),
                    }
                }
                _ => {}
            }
        }
        let (rule, why) = cut?;
        emit_policy(
            &*self.events,
            flow,
            "dlp_stream_cut",
            "reset",
            rule,
            format!(
                "{rule}: {why} past the inspection window; the {} was cut after {} bytes had been \
                 forwarded",
                what(self.dir),
                self.held_from
            ),
        );
        self.held.clear();
        Some(Verdict::Block {
            policy: policy_name(Some(rule)),
        })
    }
}

impl BodyHooks for BodyInspection {
    fn on_chunk(&mut self, flow: &FlowContext, chunk: &Bytes) -> Verdict {
        let Some(stream) = self.stream.as_mut() else {
            return Verdict::Allow;
        };
        let found = stream.push(chunk);
        if self.hold {
            self.held.extend_from_slice(chunk);
        }
        if let Some(v) = self.apply(flow, &found) {
            return v;
        }
        if !self.hold {
            return Verdict::Allow;
        }
        let settled = self.stream.as_mut().map_or(0, |s| s.settled());
        let release = settled.saturating_sub(self.held_from).min(self.held.len());
        self.held_from += release;
        Verdict::Rewrite(self.held.split_to(release).freeze())
    }

    fn on_end(&mut self, flow: &FlowContext) -> Verdict {
        let Some(stream) = self.stream.take() else {
            return Verdict::Allow;
        };
        let (found, _) = stream.finish();
        if let Some(v) = self.apply(flow, &found) {
            return v;
        }
        if self.held.is_empty() {
            Verdict::Allow
        } else {
            self.held_from += self.held.len();
            Verdict::Rewrite(self.held.split().freeze())
        }
    }
}
