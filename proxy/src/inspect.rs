//! The gateway's own interception hooks: message extraction per app, DLP
//! on every readable message (or decoded body when no app extractor fits),
//! and the events that record it. Rules are swapped atomically on reload;
//! each flow keeps the snapshot it started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use gatehouse_inspectors::dlp::{
    self, Action, BodyInput, DecodeLimits, Field, MessageInput, RuleSet, ScanResult,
};
use gatehouse_inspectors::extract::{self, Extracted, Extractor, XmppExtractor};

use crate::events::{
    DlpFindingEvent, Event, EventSink, Masked, MessageEvent, OpaqueTunnelEvent, Severity,
};
use crate::intercept::hooks::{
    Direction, FlowContext, FlowHooks, HttpMessage, Interceptor, Verdict,
};

/// The current rule set and where it comes from; swapped whole on reload.
pub struct Rules {
    dir: PathBuf,
    current: RwLock<Arc<RuleSet>>,
    stamp: RwLock<Option<SystemTime>>,
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
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(set)),
            stamp: RwLock::new(newest_change(dir)),
        })
    }

    /// The rule set in force now.
    pub fn snapshot(&self) -> Arc<RuleSet> {
        self.current.read().expect("rules lock").clone()
    }

    /// Reloads from disk. An invalid new set is rejected with its errors
    /// and the old one stays in force.
    pub fn reload(&self) -> Result<usize, Vec<dlp::RuleError>> {
        let stamp = newest_change(&self.dir);
        let set = RuleSet::load_dir(&self.dir)?;
        let n = set.len();
        *self.current.write().expect("rules lock") = Arc::new(set);
        *self.stamp.write().expect("rules lock") = stamp;
        Ok(n)
    }

    /// Reloads when a rule file changed since the last load; logs the outcome.
    pub fn reload_if_changed(&self) {
        let now = newest_change(&self.dir);
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
                *self.stamp.write().expect("rules lock") = newest_change(&self.dir);
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

/// Extraction + DLP + events for every intercepted flow.
pub struct Inspection {
    rules: Arc<Rules>,
    events: Arc<dyn EventSink>,
    store_text: bool,
}

impl Inspection {
    /// Hooks that scan with `rules` and record to `events`; message text is
    /// put in `message` events only when `store_text` is set.
    pub fn new(rules: Arc<Rules>, events: Arc<dyn EventSink>, store_text: bool) -> Self {
        Self {
            rules,
            events,
            store_text,
        }
    }
}

impl Interceptor for Inspection {
    fn open(&self, flow: &FlowContext) -> Box<dyn FlowHooks> {
        Box::new(FlowInspection {
            rules: self.rules.snapshot(),
            events: self.events.clone(),
            extractor: Extractor::new(None, &flow.host),
            xmpp: None,
            opaque_reported: false,
            block_rule: None,
            store_text: self.store_text,
        })
    }
}

struct FlowInspection {
    rules: Arc<RuleSet>,
    events: Arc<dyn EventSink>,
    extractor: Extractor,
    xmpp: Option<XmppExtractor>,
    opaque_reported: bool,
    /// Rule id of the last blocking finding, named on the block page.
    block_rule: Option<String>,
    store_text: bool,
}

impl FlowInspection {
    /// Scans every extracted message, records it, and returns the verdict.
    fn judge(
        &mut self,
        flow: &FlowContext,
        extracted: Extracted,
    ) -> (Option<Action>, Vec<(String, ScanResult)>) {
        if let Some(op) = extracted.opaque {
            if !self.opaque_reported {
                self.opaque_reported = true;
                self.events.emit(Event::OpaqueTunnel(OpaqueTunnelEvent {
                    flow_id: flow.id,
                    client: flow.client,
                    user: flow.user.clone().unwrap_or_default(),
                    device: flow.device.clone().unwrap_or_default(),
                    app: Some(op.app.clone()),
                    host: flow.host.clone(),
                    protocol: "tls".into(),
                    class: "opaque".into(),
                    action: "log".into(),
                    bytes_up: 0,
                    bytes_down: 0,
                    reason: format!("{:?}", op.reason).to_lowercase(),
                    evidence: op.evidence,
                    confidence: "high".into(),
                    duration_ms: 0,
                }));
            }
        }
        let mut verdict = None;
        let mut scanned = Vec::new();
        for m in extracted.messages {
            let fields: Vec<Field<'_>> = m
                .texts
                .iter()
                .map(|t| Field {
                    name: &t.field,
                    text: &t.text,
                })
                .collect();
            let input = MessageInput {
                app: Some(&m.app),
                direction: dlp_direction(m.direction),
                conversation: m.conversation.as_deref(),
                fields,
            };
            let result = self.rules.scan(&input);
            let action = result.verdict();
            verdict = verdict.max(action);
            let message_id = uuid::Uuid::now_v7();
            let chars = m.texts.iter().map(|t| t.text.chars().count() as u64).sum();
            self.events.emit(Event::Message(MessageEvent {
                flow_id: flow.id,
                client: flow.client,
                user: flow.user.clone().unwrap_or_default(),
                device: flow.device.clone().unwrap_or_default(),
                app: m.app.clone(),
                host: flow.host.clone(),
                direction: match m.direction {
                    extract::Direction::Outbound => crate::events::Direction::Up,
                    extract::Direction::Inbound => crate::events::Direction::Down,
                },
                conversation: m.conversation.clone(),
                sender: m.sender.clone(),
                chars,
                findings: result.findings.len() as u32,
                action: action.map_or("allow", |a| a.as_str()).into(),
                text: self.store_text.then(|| {
                    let texts: Vec<&str> = m.texts.iter().map(|t| t.text.as_str()).collect();
                    texts.join("\n")
                }),
            }));
            for f in &result.findings {
                let text = m
                    .texts
                    .iter()
                    .find(|t| t.field == f.field)
                    .map(|t| t.text.as_str())
                    .unwrap_or("");
                self.finding(flow, Some(message_id), &m.app, f, text);
            }
            for t in &m.texts {
                if result
                    .findings
                    .iter()
                    .any(|f| f.field == t.field && f.action >= Action::Redact)
                {
                    scanned.push((t.text.clone(), result.clone()));
                }
            }
        }
        (verdict, scanned)
    }

    fn finding(
        &mut self,
        flow: &FlowContext,
        message_id: Option<uuid::Uuid>,
        app: &str,
        f: &dlp::Finding,
        text: &str,
    ) {
        if f.action == Action::Block {
            self.block_rule = Some(f.rule.to_string());
        }
        let matched = text.get(f.start..f.end).unwrap_or("");
        self.events.emit(Event::DlpFinding(DlpFindingEvent {
            flow_id: flow.id,
            message_id,
            client: flow.client,
            user: flow.user.clone().unwrap_or_default(),
            device: flow.device.clone().unwrap_or_default(),
            app: app.into(),
            host: flow.host.clone(),
            rule: f.rule.to_string(),
            severity: severity(f.severity),
            score: (f.score * 100.0).round().clamp(0.0, u32::MAX as f64) as u32,
            action: f.action.as_str().into(),
            evidence: Masked::new(matched),
            start: f.start as u64,
            end: f.end as u64,
        }));
    }

    /// Bodies no app extractor understood: decode and scan them whole.
    fn judge_body(&mut self, flow: &FlowContext, msg: &HttpMessage<'_>) -> Option<Action> {
        let header = |n: http::header::HeaderName| msg.headers.get(n).and_then(|v| v.to_str().ok());
        let input = BodyInput {
            content_type: header(http::header::CONTENT_TYPE),
            content_encoding: header(http::header::CONTENT_ENCODING),
            body: msg.body,
        };
        let result = self.rules.scan_body(
            &input,
            None,
            dlp::Direction::Outbound,
            "body",
            &DecodeLimits::default(),
        );
        if !result.findings.is_empty() {
            // Offsets point into the decoded parts; evidence is masked from them.
            let decoded = dlp::decode_body(&input, &DecodeLimits::default());
            let raw = String::from_utf8_lossy(msg.body).into_owned();
            for f in &result.findings {
                let source = decoded
                    .parts
                    .iter()
                    .find(|(label, _)| *label == f.field)
                    .map_or(raw.as_str(), |(_, t)| t.as_str());
                self.finding(flow, None, "", f, source);
            }
        }
        result.verdict()
    }
}

impl FlowHooks for FlowInspection {
    fn on_request(&mut self, flow: &FlowContext, msg: &HttpMessage<'_>) -> Verdict {
        if msg.body.is_empty() {
            return Verdict::Allow;
        }
        let headers: Vec<(&str, &[u8])> = msg
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let path = msg.uri.path_and_query().map_or("/", |p| p.as_str());
        let extracted = if msg.complete {
            self.extractor
                .on_http_request(msg.method.as_str(), path, &headers, msg.body)
        } else {
            Extracted::default()
        };
        let (verdict, redactions) = if extracted.messages.is_empty() && extracted.opaque.is_none() {
            (self.judge_body(flow, msg), Vec::new())
        } else {
            self.judge(flow, extracted)
        };
        decide(verdict, msg.body, &redactions, self.block_rule.as_deref())
    }

    fn on_ws_message(
        &mut self,
        flow: &FlowContext,
        dir: Direction,
        text: bool,
        payload: &[u8],
    ) -> Verdict {
        let d = match dir {
            Direction::Outbound => extract::Direction::Outbound,
            Direction::Inbound => extract::Direction::Inbound,
        };
        let extracted = self.extractor.on_ws_message(d, text, payload);
        let (verdict, _) = self.judge(flow, extracted);
        match verdict {
            Some(Action::Block) => Verdict::Block {
                policy: policy_name(self.block_rule.as_deref()),
            },
            _ => Verdict::Allow,
        }
    }

    fn on_bytes(&mut self, flow: &FlowContext, dir: Direction, bytes: &[u8]) {
        // Non-HTTP inside TLS: XMPP (5223, or 5222 after STARTTLS) is readable.
        let d = match dir {
            Direction::Outbound => extract::Direction::Outbound,
            Direction::Inbound => extract::Direction::Inbound,
        };
        let x = self.xmpp.get_or_insert_with(XmppExtractor::new);
        let extracted = x.feed(d, bytes);
        if !extracted.messages.is_empty() || extracted.opaque.is_some() {
            let _ = self.judge(flow, extracted);
        }
    }
}

/// Block, redact (rewrite the body with the matches masked) or allow.
fn decide(
    verdict: Option<Action>,
    body: &[u8],
    redactions: &[(String, ScanResult)],
    rule: Option<&str>,
) -> Verdict {
    match verdict {
        Some(Action::Block) => Verdict::Block {
            policy: policy_name(rule),
        },
        Some(Action::Redact) => {
            let mut out = body.to_vec();
            for (text, result) in redactions {
                for f in result
                    .findings
                    .iter()
                    .filter(|f| f.action >= Action::Redact)
                {
                    let Some(matched) = text.get(f.start..f.end) else {
                        continue;
                    };
                    replace_all(&mut out, matched.as_bytes());
                }
            }
            Verdict::Rewrite(Bytes::from(out))
        }
        _ => Verdict::Allow,
    }
}

/// What the block page names: the DLP rule, never the matched data.
fn policy_name(rule: Option<&str>) -> String {
    match rule {
        Some(r) => format!("DLP rule {r}"),
        None => "data loss prevention".into(),
    }
}

/// Masks every occurrence of `needle` in `hay` byte for byte (lengths stay).
fn replace_all(hay: &mut [u8], needle: &[u8]) {
    if needle.is_empty() {
        return;
    }
    let positions: Vec<usize> = memchr::memmem::find_iter(hay, needle).collect();
    for p in positions {
        hay[p..p + needle.len()].iter_mut().for_each(|b| *b = b'*');
    }
}

fn dlp_direction(d: extract::Direction) -> dlp::Direction {
    match d {
        extract::Direction::Outbound => dlp::Direction::Outbound,
        extract::Direction::Inbound => dlp::Direction::Inbound,
    }
}

fn severity(s: dlp::Severity) -> Severity {
    match s.as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        _ => Severity::Low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_in_place() {
        let mut b = b"{\"text\":\"card 4556737586899855 ok\"}".to_vec();
        replace_all(&mut b, b"4556737586899855");
        assert_eq!(&b[..], b"{\"text\":\"card **************** ok\"}");
    }
}
