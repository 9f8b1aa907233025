//! The gateway's own interception hooks: message extraction per app, DLP
//! on every readable message (or decoded body when no app extractor fits),
//! and the events that record it. Rules are swapped atomically on reload;
//! each flow keeps the snapshot it started with.
//!
//! May import: `relay::hooks` (the trait it implements), `events` and the
//! inspectors crate; never `flow`, `state` or `listener`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use gatehouse_inspectors::dlp::{
    self, Action, BodyInput, BodyStream, ConversationTracker, DecodeLimits, Field, MessageInput,
    RuleSet, ScanResult,
};
use gatehouse_inspectors::extract::{self, Extracted, Extractor, XmppExtractor};

use crate::events::{DlpFindingEvent, Encryption, Event, EventSink, MessageEvent};
use crate::relay::hooks::{
    BodyHooks, Direction, FlowContext, FlowHooks, HttpMessage, Interceptor, RulesStatus, Verdict,
};

mod body;
mod mqtt;
mod stream;
mod ws_stream;

/// The current rule set and where it comes from; swapped whole on reload.
pub struct Rules {
    dir: RwLock<PathBuf>,
    current: RwLock<Arc<RuleSet>>,
    stamp: RwLock<Option<SystemTime>>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl Rules {
    /// Loads `dir`; an absent directory gives an empty set (with a warning).
    pub fn load(dir: &Path) -> Result<Self, Vec<dlp::RuleError>> {
        let set = if dir.is_dir() {
            RuleSet::load_dir(dir)?
        } else {
            tracing::warn!(dir = %dir.display(), "no rules directory: DLP finds nothing");
            RuleSet::from_sources::<&str, &str>(&[])?
        };
        Ok(Self {
            dir: RwLock::new(dir.to_path_buf()),
            current: RwLock::new(Arc::new(set)),
            stamp: RwLock::new(newest_change(dir)),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// The directory the rules come from.
    pub fn dir(&self) -> PathBuf {
        self.dir.read().expect("rules lock").clone()
    }

    /// Puts `other` (loaded, so valid) in force, directory and all: a
    /// config reload that may have moved `rules.dir`.
    pub fn replace_with(&self, other: Rules) {
        let Rules {
            dir,
            current,
            stamp,
            ..
        } = other;
        *self.current.write().expect("rules lock") = current.into_inner().expect("rules lock");
        self.reloads.fetch_add(1, Relaxed);
        *self.stamp.write().expect("rules lock") = stamp.into_inner().expect("rules lock");
        *self.dir.write().expect("rules lock") = dir.into_inner().expect("rules lock");
    }

    /// The rule set in force now.
    pub fn snapshot(&self) -> Arc<RuleSet> {
        self.current.read().expect("rules lock").clone()
    }

    /// Reloads from disk. An invalid new set is rejected with its errors
    /// and the old one stays in force.
    pub fn reload(&self) -> Result<usize, Vec<dlp::RuleError>> {
        let dir = self.dir();
        let stamp = newest_change(&dir);
        let set = RuleSet::load_dir(&dir)?;
        let n = set.len();
        *self.current.write().expect("rules lock") = Arc::new(set);
        *self.stamp.write().expect("rules lock") = stamp;
        self.reloads.fetch_add(1, Relaxed);
        Ok(n)
    }

    /// Reloads when a rule file changed since the last load; logs the outcome.
    pub fn reload_if_changed(&self) {
        let now = newest_change(&self.dir());
        if now == *self.stamp.read().expect("rules lock") {
            return;
        }
        self.reload_logged("file change");
    }

    /// Reloads and logs what happened (for SIGHUP and file changes).
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(n) => tracing::info!(rules = n, %why, "DLP rules reloaded"),
            Err(errors) => {
                self.reload_failures.fetch_add(1, Relaxed);
                *self.stamp.write().expect("rules lock") = newest_change(&self.dir());
                for e in &errors {
                    tracing::error!(error = %e, "rule error");
                }
                tracing::error!(errors = errors.len(), %why, "new DLP rules rejected; the previous rules stay in force");
            }
        }
    }
}

/// Latest modification time of any file in `dir` (recursively), and the count
/// folded in so a deletion also counts as a change.
fn newest_change(dir: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>, count: &mut u32) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, newest, count);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                *count += 1;
                *newest = (*newest).max(Some(m));
            }
        }
    }
    let (mut newest, mut count) = (None, 0u32);
    walk(dir, &mut newest, &mut count);
    newest.map(|t| t + std::time::Duration::from_nanos(u64::from(count)))
}

/// Bounds of the conversation counts (`count.conversation`): (user, app,
/// conversation, rule) entries kept, and messages remembered per entry.
/// About 2.5 KiB per full entry, so at most some 25 MiB.
pub const CONVERSATION_ENTRIES: usize = 10_000;
/// See [`CONVERSATION_ENTRIES`].
pub const CONVERSATION_MESSAGES: usize = 64;

/// Extraction + DLP + events for every intercepted flow.
pub struct Inspection {
    rules: Arc<Rules>,
    events: Arc<dyn EventSink>,
    /// `events.store_message_text`; changed by a config reload.
    store_text: AtomicBool,
    /// `intercept.inspect_window`; changed by a config reload.
    window: AtomicUsize,
    /// Per-conversation match counts, shared by every flow of the gateway
    /// (a conversation spans many connections) and kept across rule
    /// reloads.
    conversations: Arc<ConversationTracker>,
    /// Origin of the monotonic time the tracker counts in.
    clock: std::time::Instant,
}

impl Inspection {
    /// Hooks that scan with `rules` and record to `events`; message text is
    /// put in `message` events only when `store_text` is set.
    pub fn new(rules: Arc<Rules>, events: Arc<dyn EventSink>, store_text: bool) -> Self {
        Self {
            rules,
            events,
            store_text: AtomicBool::new(store_text),
            window: AtomicUsize::new(1024 * 1024),
            conversations: Arc::new(ConversationTracker::new(
                CONVERSATION_ENTRIES,
                CONVERSATION_MESSAGES,
            )),
            clock: std::time::Instant::now(),
        }
    }

    /// Holds at most `window` bytes of one MQTT packet for inspection
    /// (`intercept.inspect_window`); a larger packet blocks its flow.
    pub fn with_window(self, window: usize) -> Self {
        self.window.store(window, Ordering::Relaxed);
        self
    }

    /// New flows store message text or not, and hold at most `window`
    /// bytes of one MQTT packet (a config reload); flows under way keep
    /// what they started with.
    pub fn set_options(&self, store_text: bool, window: usize) {
        self.store_text.store(store_text, Ordering::Relaxed);
        self.window.store(window, Ordering::Relaxed);
    }

    /// The conversation counts every flow adds to.
    pub fn conversations(&self) -> &Arc<ConversationTracker> {
        &self.conversations
    }
}

impl Interceptor for Inspection {
    fn rules_status(&self) -> Option<RulesStatus> {
        Some(RulesStatus {
            rules: self.rules.snapshot().len(),
            reloads: self.rules.reloads.load(Relaxed),
            reload_failures: self.rules.reload_failures.load(Relaxed),
        })
    }

    fn open(&self, flow: &FlowContext) -> Box<dyn FlowHooks> {
        let rules = self.rules.snapshot();
        let scope = |d| {
            (
                rules.admits_direction(flow.app.as_deref(), d),
                rules.redacts_direction(flow.app.as_deref(), d),
            )
        };
        let (scan_up, redact_up) = scope(dlp::Direction::Outbound);
        let (scan_down, redact_down) = scope(dlp::Direction::Inbound);
        Box::new(FlowInspection {
            events: self.events.clone(),
            extractor: Extractor::new(flow.app.as_deref(), &flow.host),
            stream: ByteStream::Unknown,
            ws_mqtt: None,
            window: self.window.load(Ordering::Relaxed),
            opaque_reported: false,
            block_rule: None,
            block_event: None,
            store_text: self.store_text.load(Ordering::Relaxed),
            bodies: [(scan_up, redact_up), (scan_down, redact_down)],
            started: None,
            rules,
            conversations: self.conversations.clone(),
            clock: self.clock,
        })
    }
}

/// The reader of a non-HTTP byte stream, chosen by its first bytes.
enum ByteStream {
    Unknown,
    Xmpp(XmppExtractor),
    Mqtt(mqtt::MqttInspect),
    Fallback(stream::Fallback),
}

/// Messages judged but not yet recorded, with what to redact.
#[derive(Default)]
struct Judged {
    verdict: Option<Action>,
    redactions: Vec<(String, ScanResult)>,
    pending: Vec<Pending>,
}

/// One message's events, recorded once the gateway knows what it did.
struct Pending {
    id: uuid::Uuid,
    message: MessageEvent,
    findings: Vec<DlpFindingEvent>,
}

struct FlowInspection {
    rules: Arc<RuleSet>,
    events: Arc<dyn EventSink>,
    extractor: Extractor,
    /// What reads the flow's bytes when it is not HTTP.
    stream: ByteStream,
    /// An MQTT session inside the flow's WebSocket messages.
    ws_mqtt: Option<mqtt::MqttInspect>,
    /// Bytes of one MQTT packet held at most.
    window: usize,
    opaque_reported: bool,
    /// Rule id of the last blocking finding, named on the block page.
    block_rule: Option<String>,
    /// The event that recorded the last block, named on the block page.
    block_event: Option<uuid::Uuid>,
    store_text: bool,
    /// Per direction (outbound, inbound): whether any rule could fire on a
    /// body, and whether any could redact. No rule: no body scan at all.
    bodies: [(bool, bool); 2],
    /// A compressed body's stream, begun on its window by `on_request` /
    /// `on_response` and handed to the relay by `stream_body` right after.
    started: Option<BodyStream>,
    /// The gateway's conversation counts, and the origin of their clock.
    conversations: Arc<ConversationTracker>,
    clock: std::time::Instant,
}

impl FlowInspection {
    fn body_scope(&self, dir: Direction) -> (bool, bool) {
        self.bodies[usize::from(dir == Direction::Inbound)]
    }

    /// Scans every extracted message and returns the verdict, the texts
    /// (and findings) to redact, and the events to record once the gateway
    /// knows what it did ([`record`](Self::record)).
    fn judge(&mut self, flow: &FlowContext, extracted: Extracted) -> Judged {
        // An encrypted message Gatehouse can see is its own event (added
        // after the readable ones below); the flow-level `opaque_tunnel`
        // is for whole-tunnel encryption.
        if let Some(op) = extracted.opaque.filter(|_| extracted.encrypted.is_empty()) {
            if !self.opaque_reported {
                self.opaque_reported = true;
                let mut o = flow.stamp().opaque("tls", "log");
                o.app = Some(op.app.clone());
                o.reason = format!("{:?}", op.reason).to_lowercase();
                o.evidence = op.evidence;
                o.confidence = "high".into();
                self.events.emit(Event::OpaqueTunnel(o));
            }
        }
        let mut judged = Judged::default();
        for m in extracted.messages {
            let id = uuid::Uuid::now_v7();
            // Counted per user + app + conversation, across connections;
            // the message id names it in a finding the count makes.
            let key = conversation_key(flow, &m);
            let input = MessageInput {
                conversation: Some(&key),
                ..message_input(&m)
            };
            let result = self.rules.scan_counted(
                &input,
                &self.conversations,
                self.clock.elapsed(),
                id.as_u128(),
            );
            let action = result.verdict();
            judged.verdict = judged.verdict.max(action);
            let chars = m.texts.iter().map(|t| t.text.chars().count() as u64).sum();
            let message = MessageEvent {
                conversation: m.conversation.clone(),
                sender: m.sender.clone(),
                chars,
                findings: result.findings.len() as u32,
                action: action.map_or("allow", |a| a.as_str()).into(),
                text: self.store_text.then(|| {
                    let texts: Vec<&str> = m.texts.iter().map(|t| t.text.as_str()).collect();
                    texts.join("\n")
                }),
                ..flow.stamp().message(&m.app, m.direction)
            };
            let mut findings = Vec::new();
            // Fields that repeat each other (Slack `text` + `blocks`, Matrix
            // `body` + `formatted_body`) hold the same secret twice: one
            // finding per rule and matched value per message. Redaction
            // still masks every occurrence.
            let mut seen = std::collections::HashSet::new();
            let mut counted = 0u32;
            for f in body::by_action(&result.findings) {
                if f.action == Action::Block {
                    self.block_rule = Some(f.rule.to_string());
                    self.block_event = Some(id);
                }
                let text = m
                    .texts
                    .iter()
                    .find(|t| t.field == f.field)
                    .map(|t| t.text.as_str())
                    .unwrap_or("");
                let matched = text.get(f.start..f.end).unwrap_or("");
                if !seen.insert((f.rule.clone(), normalized(matched))) {
                    continue;
                }
                counted += 1;
                if findings.len() >= body::MAX_FINDING_EVENTS {
                    continue;
                }
                let mut e = body::finding(flow, Some(id), &m.app, m.direction, f, matched);
                body::with_context(&mut e, matched, text, f);
                e.conversation = m.conversation.clone();
                findings.push(e);
            }
            for t in &m.texts {
                if result
                    .findings
                    .iter()
                    .any(|f| f.field == t.field && f.action >= Action::Redact)
                {
                    judged.redactions.push((t.text.clone(), result.clone()));
                }
            }
            let mut message = message;
            message.findings = counted;
            judged.pending.push(Pending {
                id,
                message,
                findings,
            });
        }
        judged
            .pending
            .extend(encrypted_messages(flow, &extracted.encrypted));
        judged
    }

    /// Scans the files a request uploads, as content whatever its message
    /// said, and adds their findings to the first judged message (or, with
    /// none, to the flow's connection event). Returns the strictest action:
    /// a file cannot be rewritten, so a redaction is carried out as a block.
    fn judge_uploads(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        uploads: &[extract::Upload],
        judged: &mut Judged,
    ) -> Option<Action> {
        let mut worst = None;
        let app = judged
            .pending
            .first()
            .map(|p| p.message.app.clone())
            .or_else(|| flow.app.clone());
        for u in uploads {
            let input = BodyInput {
                content_type: u.content_type.as_deref(),
                content_encoding: None,
                body: &u.data,
            };
            let result = self.rules.scan_body(
                &input,
                app.as_deref(),
                dir,
                "upload",
                &DecodeLimits::default(),
            );
            let Some(action) = result.verdict() else {
                continue;
            };
            let message_id = judged.pending.first().map(|p| p.id);
            let findings = body::findings_of(flow, message_id, dir, &input, &result, "upload");
            if action >= Action::Redact {
                self.block_rule = result
                    .findings
                    .iter()
                    .find(|f| f.action >= Action::Redact)
                    .map(|f| f.rule.to_string());
                self.block_event = Some(message_id.unwrap_or(flow.id));
            }
            worst = worst.max(Some(action));
            match judged.pending.first_mut() {
                Some(p) => {
                    p.message.findings += findings.len() as u32;
                    let rank = |a: &str| {
                        ["allow", "log", "alert", "redact", "block"]
                            .iter()
                            .position(|r| *r == a)
                    };
                    if rank(action.as_str()) > rank(&p.message.action) {
                        p.message.action = action.as_str().into();
                    }
                    p.findings.extend(findings);
                }
                None => {
                    for mut f in findings {
                        if action >= Action::Redact && f.action == "redact" {
                            f.action = "block".into();
                        }
                        self.events.emit(Event::DlpFinding(f));
                    }
                }
            }
        }
        worst
    }

    /// Records judged messages with what the gateway did: a unit that was
    /// blocked says `block` for every message in it, and a redaction that
    /// became a block says so on its findings.
    fn record(&mut self, pending: Vec<Pending>, done: &Verdict) {
        let blocked = matches!(done, Verdict::Block { .. });
        for p in pending {
            let Pending {
                id,
                mut message,
                findings,
            } = p;
            if blocked {
                message.action = "block".into();
                self.block_event = self.block_event.or(Some(id));
            }
            self.events.emit_as(id, Event::Message(message));
            for mut f in findings {
                if blocked && f.action == "redact" {
                    f.action = "block".into();
                }
                self.events.emit(Event::DlpFinding(f));
            }
        }
    }

    /// Judges extracted messages of a unit that can only be passed or
    /// blocked (a WebSocket message, a stanza in a byte stream): redaction
    /// is carried out as a block (fail closed), and recorded as one.
    fn judge_whole(&mut self, flow: &FlowContext, extracted: Extracted) -> Verdict {
        let judged = self.judge(flow, extracted);
        let verdict = match judged.verdict {
            Some(a) if a >= Action::Redact => {
                if a == Action::Redact {
                    let rule = judged
                        .pending
                        .iter()
                        .flat_map(|p| &p.findings)
                        .find(|f| f.action == "redact")
                        .map(|f| f.rule.clone());
                    self.block_rule = rule;
                }
                Verdict::Block {
                    policy: body::policy_name(self.block_rule.as_deref()),
                }
            }
            _ => Verdict::Allow,
        };
        self.record(judged.pending, &verdict);
        verdict
    }

    /// A WebSocket message an app extractor read: blocked, or redacted by
    /// rewriting the message (the relay re-frames it) when every finding
    /// that asks for more than an alert asks for redaction and the rewrite,
    /// extracted again, leaves nothing to redact; else blocked.
    fn judge_ws(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        text: bool,
        payload: &[u8],
        extracted: Extracted,
    ) -> Verdict {
        let judged = self.judge(flow, extracted);
        let verdict = match judged.verdict {
            Some(Action::Redact) => self.redact_ws(flow, dir, text, payload, &judged.redactions),
            Some(a) if a >= Action::Redact => Verdict::Block {
                policy: body::policy_name(self.block_rule.as_deref()),
            },
            _ => Verdict::Allow,
        };
        self.record(judged.pending, &verdict);
        verdict
    }

    /// The message with its redact findings masked, if extracting it again
    /// finds nothing left to redact; else a block naming the rule.
    fn redact_ws(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        text: bool,
        payload: &[u8],
        redactions: &[(String, ScanResult)],
    ) -> Verdict {
        let (texts, rule) = redacted_matches(redactions);
        let json = matches!(payload.trim_ascii_start().first(), Some(b'{' | b'['));
        let input = BodyInput {
            content_type: json.then_some("application/json"),
            content_encoding: None,
            body: payload,
        };
        let clean = dlp::redact_texts(&input, &texts, &DecodeLimits::default()).filter(|new| {
            let mut again = Extractor::new(flow.app.as_deref(), &flow.host);
            again
                .on_ws_message(dir, text, new)
                .messages
                .iter()
                .all(|m| {
                    self.rules
                        .scan(&message_input(m))
                        .verdict()
                        .is_none_or(|a| a < Action::Redact)
                })
        });
        match clean {
            Some(new) => Verdict::Rewrite(Bytes::from(new)),
            None => {
                self.block_rule = rule;
                Verdict::Block {
                    policy: body::policy_name(self.block_rule.as_deref()),
                }
            }
        }
    }

    /// A WebSocket message no app extractor read: scanned whole (JSON,
    /// form and base64 decoded where they parse) and recorded as a
    /// `fallback` message, when any rule applies to its direction.
    fn judge_ws_fallback(&mut self, flow: &FlowContext, dir: Direction, payload: &[u8]) -> Verdict {
        if payload.is_empty() || !self.body_scope(dir).0 {
            return Verdict::Allow;
        }
        let json = matches!(payload.trim_ascii_start().first(), Some(b'{' | b'['));
        let input = BodyInput {
            content_type: json.then_some("application/json"),
            content_encoding: None,
            body: payload,
        };
        let limits = DecodeLimits::default();
        let result = self
            .rules
            .scan_body(&input, flow.app.as_deref(), dir, "ws", &limits);
        let id = uuid::Uuid::now_v7();
        let app = flow.app.clone().unwrap_or_default();
        let findings = body::findings_of(flow, Some(id), dir, &input, &result, "ws");
        let verdict = match result.verdict() {
            // Redacted by rewriting the message, when the rewrite scans clean.
            Some(Action::Redact) => {
                let v = body::redact_window(&self.rules, &*self.events, flow, dir, &input, &result);
                if matches!(v, Verdict::Block { .. }) {
                    self.block_rule = result
                        .findings
                        .iter()
                        .find(|f| f.action >= Action::Redact)
                        .map(|f| f.rule.to_string());
                    self.block_event = Some(id);
                }
                v
            }
            Some(a) if a >= Action::Redact => {
                self.block_rule = result
                    .findings
                    .iter()
                    .find(|f| f.action >= Action::Redact)
                    .map(|f| f.rule.to_string());
                self.block_event = Some(id);
                Verdict::Block {
                    policy: body::policy_name(self.block_rule.as_deref()),
                }
            }
            _ => Verdict::Allow,
        };
        let message = MessageEvent {
            chars: String::from_utf8_lossy(payload).chars().count() as u64,
            findings: result.findings.len() as u32,
            action: result.verdict().map_or("allow", |a| a.as_str()).into(),
            text: self
                .store_text
                .then(|| String::from_utf8_lossy(payload).into_owned()),
            extractor: "fallback".into(),
            ..flow.stamp().message(&app, dir)
        };
        self.record(
            vec![Pending {
                id,
                message,
                findings,
            }],
            &verdict,
        );
        verdict
    }

    /// Which reader claims a byte stream that starts with `bytes`.
    fn claim(&self, dir: Direction, bytes: &[u8]) -> ByteStream {
        use gatehouse_inspectors::identify::{xmpp, Sniff};
        if dir == Direction::Outbound {
            if mqtt::MqttInspect::opens(bytes) {
                return ByteStream::Mqtt(mqtt::MqttInspect::new(self.window));
            }
            if !matches!(xmpp::detect(bytes), Sniff::No) {
                return ByteStream::Xmpp(XmppExtractor::new());
            }
        }
        ByteStream::Fallback(stream::Fallback::new(self.rules.clone(), self.store_text))
    }

    /// MQTT over WebSocket (binary messages, once the client's first one
    /// was a CONNECT): PUBLISH packets judged as messages. None when the
    /// flow's WebSocket does not carry MQTT.
    fn ws_mqtt(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        text: bool,
        payload: &[u8],
    ) -> Option<Verdict> {
        if text {
            return None;
        }
        if self.ws_mqtt.is_none() && dir == Direction::Outbound && mqtt::MqttInspect::opens(payload)
        {
            self.ws_mqtt = Some(mqtt::MqttInspect::new(self.window));
        }
        let session = self.ws_mqtt.as_mut()?;
        let app = flow.app.as_deref().unwrap_or("mqtt");
        Some(match session.feed(app, dir, payload) {
            Ok(e) if e.messages.is_empty() => Verdict::Allow,
            Ok(e) => self.judge_whole(flow, e),
            Err(e) => self.on_undecodable(flow, dir, &e.to_string()),
        })
    }

    /// A body no app extractor read: scanned if any rule applies.
    fn judge_body(&mut self, flow: &FlowContext, dir: Direction, msg: &HttpMessage<'_>) -> Verdict {
        if !self.body_scope(dir).0 {
            return Verdict::Allow;
        }
        let (verdict, started) = body::judge_window(&self.rules, &*self.events, flow, dir, msg);
        self.started = started;
        if matches!(verdict, Verdict::Block { .. }) {
            // A whole body's findings name the flow's connection event.
            self.block_event = Some(flow.id);
        }
        verdict
    }

    /// Masks the redact findings of extracted messages in the body as sent;
    /// blocks when that leaves something the extractor still finds.
    fn redact_messages(
        &mut self,
        flow: &FlowContext,
        msg: &HttpMessage<'_>,
        path: &str,
        headers: &[(&str, &[u8])],
        redactions: &[(String, ScanResult)],
    ) -> Verdict {
        let (texts, rule) = redacted_matches(redactions);
        let input = BodyInput {
            content_type: msg
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            content_encoding: msg
                .headers
                .get(http::header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok()),
            body: msg.body,
        };
        let clean = dlp::redact_texts(&input, &texts, &DecodeLimits::default()).filter(|new| {
            // Extract again from what would be sent: nothing may be left.
            let mut again = Extractor::new(flow.app.as_deref(), &flow.host);
            let extracted = again.on_http_request(msg.method.as_str(), path, headers, new);
            extracted.messages.iter().all(|m| {
                self.rules
                    .scan(&message_input(m))
                    .verdict()
                    .is_none_or(|a| a < Action::Redact)
            })
        });
        match clean {
            Some(new) => Verdict::Rewrite(Bytes::from(new)),
            None => Verdict::Block {
                policy: body::policy_name(rule.as_deref()),
            },
        }
    }
}

/// The matched texts of the findings that ask for redaction (with how
/// many characters each keeps visible), and the first redacting rule.
fn redacted_matches(redactions: &[(String, ScanResult)]) -> (Vec<(&str, usize)>, Option<String>) {
    let mut texts = Vec::new();
    for (text, result) in redactions {
        for f in result
            .findings
            .iter()
            .filter(|f| f.action >= Action::Redact)
        {
            if let Some(matched) = text.get(f.start..f.end) {
                texts.push((matched, f.keep_last()));
            }
        }
    }
    let rule = redactions
        .iter()
        .flat_map(|(_, r)| &r.findings)
        .find(|f| f.action == Action::Redact)
        .map(|f| f.rule.to_string());
    (texts, rule)
}

/// One `message` event per end-to-end encrypted message: where it went and
/// how it is encrypted, never content (there is none to read). Allowed,
/// unless the unit carrying it is blocked ([`FlowInspection::record`]).
fn encrypted_messages(flow: &FlowContext, encrypted: &[extract::EncryptedMessage]) -> Vec<Pending> {
    encrypted
        .iter()
        .map(|e| Pending {
            id: uuid::Uuid::now_v7(),
            message: MessageEvent {
                conversation: e.conversation.clone(),
                sender: e.sender.clone(),
                action: "allow".into(),
                extractor: "e2ee".into(),
                e2ee: Some(Encryption {
                    algorithm: e.algorithm.clone(),
                    bytes: e.size,
                }),
                ..flow.stamp().message(&e.app, e.direction)
            },
            findings: Vec::new(),
        })
        .collect()
}

/// A matched value with separators and case folded, so the same secret
/// written twice (`4556 7375…` in markup, `4556737…` in text) is one.
fn normalized(matched: &str) -> String {
    matched
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whose conversation a message is in: the identity's user, else its
/// device, else the client's IP address; then the app and the app's
/// conversation id. A message without one counts in one per-app bucket for
/// that user (stricter: it adds up with every such message).
fn conversation_key(flow: &FlowContext, m: &extract::Message) -> String {
    let who = match (&flow.user, &flow.device) {
        (Some(u), _) if !u.is_empty() => format!("user:{u}"),
        (_, Some(d)) if !d.is_empty() => format!("device:{d}"),
        _ => format!("ip:{}", flow.client.ip()),
    };
    let conversation = m.conversation.as_deref().unwrap_or("");
    // Unit separators: no user, app or conversation id holds them.
    format!("{who}\u{1f}{}\u{1f}{conversation}", m.app)
}

fn message_input(m: &extract::Message) -> MessageInput<'_> {
    MessageInput {
        app: Some(&m.app),
        direction: m.direction,
        conversation: m.conversation.as_deref(),
        fields: m
            .texts
            .iter()
            .map(|t| Field {
                name: &t.field,
                text: &t.text,
            })
            .collect(),
    }
}

/// `text/event-stream` responses are never held: each event must reach the
/// client when it is sent. They are still scanned as they stream.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

impl FlowHooks for FlowInspection {
    fn on_request(&mut self, flow: &FlowContext, msg: &HttpMessage<'_>) -> Verdict {
        self.started = None;
        if msg.body.is_empty() {
            return Verdict::Allow;
        }
        let headers: Vec<(&str, &[u8])> = msg
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let path = msg.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut extracted = if msg.complete {
            self.extractor
                .on_http_request(msg.method.as_str(), path, &headers, msg.body)
        } else {
            Extracted::default()
        };
        let uploads = std::mem::take(&mut extracted.uploads);
        if extracted.messages.is_empty() && extracted.opaque.is_none() {
            // The whole-body scan reads the body, multipart parts declared
            // textual included; binary-typed file parts are read here.
            let multipart = msg
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("multipart/")
                });
            let files: Vec<_> = uploads
                .into_iter()
                .filter(|u| multipart && !u.declared_textual())
                .collect();
            if !files.is_empty() && self.body_scope(Direction::Outbound).0 {
                let mut none = Judged::default();
                let worst = self.judge_uploads(flow, Direction::Outbound, &files, &mut none);
                if worst.is_some_and(|a| a >= Action::Redact) {
                    return Verdict::Block {
                        policy: body::policy_name(self.block_rule.as_deref()),
                    };
                }
            }
            return self.judge_body(flow, Direction::Outbound, msg);
        }
        let mut judged = self.judge(flow, extracted);
        let files = self.judge_uploads(flow, Direction::Outbound, &uploads, &mut judged);
        let verdict = match judged.verdict {
            _ if files.is_some_and(|a| a >= Action::Redact) => Verdict::Block {
                policy: body::policy_name(self.block_rule.as_deref()),
            },
            Some(Action::Block) => Verdict::Block {
                policy: body::policy_name(self.block_rule.as_deref()),
            },
            Some(Action::Redact) => {
                self.redact_messages(flow, msg, path, &headers, &judged.redactions)
            }
            _ => Verdict::Allow,
        };
        self.record(judged.pending, &verdict);
        verdict
    }

    fn hold_response(&mut self, _flow: &FlowContext, head: &HttpMessage<'_>) -> bool {
        self.body_scope(Direction::Inbound).0 && !is_event_stream(head.headers)
    }

    fn on_response(&mut self, flow: &FlowContext, msg: &HttpMessage<'_>) -> Verdict {
        self.started = None;
        if msg.body.is_empty() {
            return Verdict::Allow;
        }
        self.judge_body(flow, Direction::Inbound, msg)
    }

    fn stream_body(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        msg: &HttpMessage<'_>,
    ) -> Option<Box<dyn BodyHooks>> {
        let (scan, redacts) = self.body_scope(dir);
        if !scan {
            return None;
        }
        let stream = match self.started.take() {
            Some(s) => s,
            None => {
                let coding = msg
                    .headers
                    .get(http::header::CONTENT_ENCODING)
                    .and_then(|v| v.to_str().ok());
                let mut s = BodyStream::new(
                    self.rules.clone(),
                    flow.app.as_deref(),
                    dir,
                    "body",
                    coding,
                    &DecodeLimits::default(),
                );
                // Nothing past the window is final yet; only the overlap is kept.
                let _ = s.resume(msg.body);
                s
            }
        };
        Some(Box::new(body::BodyInspection::new(
            stream,
            msg.body.len(),
            self.events.clone(),
            dir,
            redacts,
        )))
    }

    fn on_ws_message(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        text: bool,
        payload: &[u8],
    ) -> Verdict {
        let extracted = self.extractor.on_ws_message(dir, text, payload);
        if extracted.messages.is_empty() && extracted.opaque.is_none() {
            if let Some(v) = self.ws_mqtt(flow, dir, text, payload) {
                return v;
            }
            return self.judge_ws_fallback(flow, dir, payload);
        }
        self.judge_ws(flow, dir, text, payload, extracted)
    }

    fn ws_stream(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        _text: bool,
    ) -> Option<Box<dyn BodyHooks>> {
        // Too large to hold: scanned as it streams, as a fallback message.
        self.body_scope(dir).0.then(|| {
            Box::new(ws_stream::WsStream::new(
                &self.rules,
                self.events.clone(),
                flow,
                dir,
            )) as Box<dyn BodyHooks>
        })
    }

    fn on_bytes(&mut self, flow: &FlowContext, dir: Direction, bytes: &[u8]) -> Verdict {
        if bytes.is_empty() {
            return Verdict::Allow;
        }
        if matches!(self.stream, ByteStream::Unknown) {
            self.stream = self.claim(dir, bytes);
        }
        // Non-HTTP inside TLS (or plain, when read transparently): XMPP
        // and MQTT are read message by message; anything else is scanned
        // as a stream.
        let extracted = match &mut self.stream {
            ByteStream::Xmpp(x) => x.feed(dir, bytes),
            ByteStream::Mqtt(m) => {
                let app = flow.app.as_deref().unwrap_or("mqtt");
                match m.feed(app, dir, bytes) {
                    Ok(e) => e,
                    Err(e) => return self.on_undecodable(flow, dir, &e.to_string()),
                }
            }
            ByteStream::Fallback(f) => {
                let (verdict, blocked) = f.chunk(&*self.events, flow, dir, bytes);
                if let Some((id, rule)) = blocked {
                    self.block_event = Some(id);
                    self.block_rule = Some(rule);
                }
                return verdict;
            }
            ByteStream::Unknown => unreachable!("claimed above"),
        };
        if extracted.messages.is_empty() && extracted.opaque.is_none() {
            return Verdict::Allow;
        }
        self.judge_whole(flow, extracted)
    }

    fn on_close(&mut self, flow: &FlowContext) {
        if let ByteStream::Fallback(f) = &mut self.stream {
            f.close(&*self.events, flow);
        }
    }

    fn on_undecodable(&mut self, flow: &FlowContext, dir: Direction, what: &str) -> Verdict {
        let reason = format!(
            "{what}: cannot be decoded for inspection; blocked ({})",
            if dir == Direction::Outbound {
                "outbound"
            } else {
                "inbound"
            }
        );
        let id = uuid::Uuid::now_v7();
        self.events.emit_as(
            id,
            Event::Policy(flow.stamp().policy("undecodable", "block", &reason)),
        );
        self.block_event = Some(id);
        Verdict::Block {
            policy: "undecodable content".into(),
        }
    }

    fn block_event(&self) -> Option<uuid::Uuid> {
        self.block_event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(user: Option<&str>, device: Option<&str>, ip: &str) -> FlowContext {
        FlowContext {
            id: uuid::Uuid::now_v7(),
            client: format!("{ip}:40000").parse().unwrap(),
            user: user.map(Into::into),
            device: device.map(Into::into),
            host: "slack.com".into(),
            app: Some("slack".into()),
            alpn: None,
        }
    }

    fn msg(app: &str, conversation: Option<&str>) -> extract::Message {
        let mut m = extract::Message::new(app, Direction::Outbound);
        m.conversation = conversation.map(Into::into);
        m
    }

    #[test]
    fn conversations_are_counted_per_user_else_device_else_ip_and_app() {
        let key = |f: &FlowContext, app, c| conversation_key(f, &msg(app, c));
        let alice = flow(Some("alice"), Some("phone-1"), "10.0.0.1");
        // The user, whatever connection or address it comes from.
        assert_eq!(
            key(&alice, "slack", Some("C1")),
            key(&flow(Some("alice"), None, "10.0.0.9"), "slack", Some("C1"))
        );
        assert_ne!(
            key(&alice, "slack", Some("C1")),
            key(
                &flow(Some("bob"), Some("phone-1"), "10.0.0.1"),
                "slack",
                Some("C1")
            )
        );
        assert_ne!(
            key(&alice, "slack", Some("C1")),
            key(&alice, "slack", Some("C2"))
        );
        assert_ne!(
            key(&alice, "slack", Some("C1")),
            key(&alice, "discord", Some("C1"))
        );
        // No user: the device; neither: the client's IP address.
        let device = flow(None, Some("phone-1"), "10.0.0.1");
        assert_eq!(
            key(&device, "slack", Some("C1")),
            key(
                &flow(None, Some("phone-1"), "10.0.0.2"),
                "slack",
                Some("C1")
            )
        );
        let anon = flow(None, None, "10.0.0.1");
        assert_ne!(
            key(&anon, "slack", Some("C1")),
            key(&device, "slack", Some("C1"))
        );
        assert_ne!(
            key(&anon, "slack", Some("C1")),
            key(&flow(None, None, "10.0.0.2"), "slack", Some("C1"))
        );
    }
}
