//! What the console does, for the API and the pages alike: incidents,
//! triage, conversation, reveal, export, inspectability, audit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use uuid::Uuid;

use super::auth::{Auth, Principal};
use super::incidents::{self, Incident, Query, Status};
use crate::config::{Config, ConsoleConfig, Role};
use crate::events::query::{format_ms, now_ms, Filter, Source};
use crate::events::seal::{Evidence, OpenKey};
use crate::events::{AuditEvent, Event, EventSink, EventType, Record};

/// Audit events this console emitted lately: shown at once, before the
/// shipper has put them into ClickHouse.
const RECENT_MS: u64 = 10 * 60 * 1000;

/// A refusal with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// HTTP status code.
    pub status: u16,
    /// What to tell the caller.
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

fn internal(e: impl std::fmt::Display) -> Refused {
    tracing::error!(error = %e, "console: query failed");
    refused(503, format!("events cannot be read: {e}"))
}

/// The console: accounts, where events are read, where audit events go,
/// and the key that opens sealed evidence.
pub struct Console {
    pub(super) config: ConsoleConfig,
    pub(super) auth: Arc<Auth>,
    source: Source,
    events: Arc<dyn EventSink>,
    open_key: Option<OpenKey>,
    recent: Mutex<Vec<Record>>,
}

impl Console {
    /// The console of `config` (which has `[console]`), reading events as
    /// `gatehouse events` does and recording audit events into `events`.
    /// Fails when the private key file cannot be used.
    pub fn new(config: &Config, events: Arc<dyn EventSink>) -> Result<Self, String> {
        let console = config.console.clone().unwrap_or_default();
        let open_key = match &console.private_key_file {
            Some(path) => {
                Some(OpenKey::load(path).map_err(|e| format!("console.private_key_file: {e}"))?)
            }
            None => None,
        };
        Ok(Self {
            auth: Arc::new(Auth::new(&console)),
            config: console,
            source: Source::from_config(config, false),
            events,
            open_key,
            recent: Mutex::default(),
        })
    }

    /// The accounts, for a blocking login thread.
    pub(super) fn auth_handle(&self) -> Arc<Auth> {
        self.auth.clone()
    }

    /// Records an audit event (not waiting for the journal).
    pub fn audit(
        &self,
        actor: &str,
        client: SocketAddr,
        action: &str,
        target: Option<Uuid>,
        reason: &str,
        detail: &str,
    ) {
        let event = Event::Audit(AuditEvent {
            actor: actor.into(),
            client: Some(client),
            action: action.into(),
            target,
            reason: reason.into(),
            detail: detail.into(),
        });
        let id = Uuid::now_v7();
        let record = Record::stamp_as(id, event.clone(), "console");
        self.events.emit_as(id, event);
        let mut recent = self.recent.lock().expect("recent lock");
        let now = now_ms();
        recent.retain(|r| r.ts_ms + RECENT_MS > now);
        recent.push(record);
    }

    async fn triage(&self) -> Result<Vec<Record>, Refused> {
        let mut out = Vec::new();
        for action in [incidents::STATUS, incidents::ASSIGN, incidents::NOTE] {
            let f = Filter {
                types: vec![EventType::Audit],
                action: Some(action.into()),
                ..Filter::default()
            };
            out.extend(self.source.search(&f).await.map_err(internal)?);
        }
        out.extend(self.recent.lock().expect("recent lock").iter().cloned());
        Ok(out)
    }

    /// Incidents matching `q` (one page) and how many match in all.
    pub async fn incidents(&self, q: &Query) -> Result<(Vec<Incident>, usize), Refused> {
        let all = self.all_incidents(q).await?;
        let total = all.len();
        let page = all
            .into_iter()
            .skip((q.page - 1) * q.per_page)
            .take(q.per_page)
            .collect();
        Ok((page, total))
    }

    /// Every incident matching `q` (no paging).
    pub async fn all_incidents(&self, q: &Query) -> Result<Vec<Incident>, Refused> {
        let findings = self.source.search(&q.filter).await.map_err(internal)?;
        let triage = self.triage().await?;
        Ok(incidents::group(&findings, &triage, self.window_ms())
            .into_iter()
            .filter(|i| q.keeps(i))
            .collect())
    }

    fn window_ms(&self) -> u64 {
        self.config.incident_window.as_millis() as u64
    }

    async fn finding(&self, id: Uuid) -> Result<Option<Record>, Refused> {
        let f = Filter {
            types: vec![EventType::DlpFinding],
            id: Some(id),
            limit: 1,
            ..Filter::default()
        };
        Ok(self
            .source
            .search(&f)
            .await
            .map_err(internal)?
            .into_iter()
            .next())
    }

    /// The incident holding finding `id` (an incident's id is its first finding's).
    pub async fn incident(&self, id: Uuid) -> Result<Option<Incident>, Refused> {
        let Some(r) = self.finding(id).await? else {
            return Ok(None);
        };
        let Event::DlpFinding(f) = &r.event else {
            return Ok(None);
        };
        let (start, end) = incidents::window_of(r.ts_ms, self.window_ms());
        let q = Filter {
            types: vec![EventType::DlpFinding],
            since_ms: Some(start),
            until_ms: Some(end),
            rule: Some(f.rule.clone()),
            user: Some(f.user.clone()),
            conversation: f.conversation.clone(),
            ..Filter::default()
        };
        let findings = self.source.search(&q).await.map_err(internal)?;
        let triage = self.triage().await?;
        Ok(incidents::group(&findings, &triage, self.window_ms())
            .into_iter()
            .find(|i| i.findings.iter().any(|x| x.id == id)))
    }

    /// The `connection` event (else the latest `flow_update`) of `flow`.
    pub async fn flow(&self, flow: Uuid) -> Result<Option<Record>, Refused> {
        let f = Filter {
            types: vec![EventType::Connection, EventType::FlowUpdate],
            flow_id: Some(flow),
            ..Filter::default()
        };
        let mut found = self.source.search(&f).await.map_err(internal)?;
        found.sort_by_key(|r| {
            (
                r.event.kind() != EventType::Connection,
                std::cmp::Reverse(r.ts_ms),
            )
        });
        Ok(found.into_iter().next())
    }

    /// The messages around the incident in its conversation (else its
    /// flow), oldest first, the flagged ones marked; masked.
    pub async fn conversation(&self, inc: &Incident) -> Result<Vec<ConversationMessage>, Refused> {
        let day = 24 * 3600 * 1000;
        let mut f = Filter {
            types: vec![EventType::Message],
            since_ms: Some(inc.first_ms.saturating_sub(day)),
            until_ms: Some(inc.last_ms + day),
            limit: 500,
            ..Filter::default()
        };
        match &inc.conversation {
            Some(c) => f.conversation = Some(c.clone()),
            None => f.flow_id = inc.findings.first().map(|x| x.flow_id),
        }
        let messages = self.source.search(&f).await.map_err(internal)?;
        let mut ff = f.clone();
        ff.types = vec![EventType::DlpFinding];
        ff.limit = 2000;
        let findings = self.source.search(&ff).await.map_err(internal)?;
        let mut evidence: BTreeMap<Uuid, Vec<(String, String)>> = BTreeMap::new();
        for r in &findings {
            if let Event::DlpFinding(x) = &r.event {
                if let Some(m) = x.message_id {
                    evidence
                        .entry(m)
                        .or_default()
                        .push((x.rule.clone(), x.evidence.as_str().to_string()));
                }
            }
        }
        let flagged: Vec<Uuid> = inc.findings.iter().filter_map(|x| x.message_id).collect();
        let mut out: Vec<ConversationMessage> = messages
            .iter()
            .filter_map(|r| match &r.event {
                Event::Message(m) => Some(ConversationMessage {
                    id: r.id,
                    ts_ms: r.ts_ms,
                    time: format_ms(r.ts_ms),
                    user: m.user.clone(),
                    sender: m.sender.clone().unwrap_or_default(),
                    app: m.app.clone(),
                    direction: match m.direction {
                        crate::events::Direction::Outbound => "up".into(),
                        crate::events::Direction::Inbound => "down".into(),
                    },
                    chars: m.chars,
                    action: m.action.clone(),
                    flagged: flagged.contains(&r.id),
                    findings: evidence.remove(&r.id).unwrap_or_default(),
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|m| (m.ts_ms, m.id));
        Ok(out)
    }

    /// Records a triage step on incident `id` by `who`.
    pub async fn triage_step(
        &self,
        who: &Principal,
        client: SocketAddr,
        id: Uuid,
        action: &str,
        value: &str,
        reason: &str,
    ) -> Result<(), Refused> {
        if !who.can(Role::Investigator) {
            return Err(refused(403, "triage needs the investigator role"));
        }
        match action {
            incidents::STATUS if Status::parse(value).is_none() => {
                return Err(refused(
                    400,
                    "status must be new, in_review, resolved, false_positive or dismissed",
                ))
            }
            incidents::NOTE if value.trim().is_empty() => {
                return Err(refused(400, "a note must not be empty"))
            }
            _ => {}
        }
        if self.incident(id).await?.is_none() {
            return Err(refused(404, "no such incident"));
        }
        self.audit(&who.name, client, action, Some(id), reason, value.trim());
        Ok(())
    }

    /// Reveals finding `id`'s sealed evidence to `who` for `reason`: the
    /// `audit` event is durable in the journal before this returns the text.
    pub async fn reveal(
        &self,
        who: &Principal,
        client: SocketAddr,
        id: Uuid,
        reason: &str,
    ) -> Result<Evidence, Refused> {
        if !who.can(Role::Revealer) {
            self.audit(
                &who.name,
                client,
                "reveal_denied",
                Some(id),
                reason,
                "no revealer role",
            );
            return Err(refused(403, "revealing evidence needs the revealer role"));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(refused(400, "a reason is required to reveal evidence"));
        }
        let Some(key) = &self.open_key else {
            return Err(refused(
                503,
                "console.private_key_file is not configured here: nothing can be revealed",
            ));
        };
        let Some(r) = self.finding(id).await? else {
            return Err(refused(404, "no such finding"));
        };
        let Event::DlpFinding(f) = &r.event else {
            return Err(refused(404, "no such finding"));
        };
        let Some(sealed) = f.sealed.clone() else {
            return Err(refused(404, "this finding carries no sealed evidence"));
        };
        let event = Event::Audit(AuditEvent {
            actor: who.name.clone(),
            client: Some(client),
            action: "reveal".into(),
            target: Some(id),
            reason: reason.into(),
            detail: format!("rule {}", f.rule),
        });
        let events = self.events.clone();
        // Waits for the journal's fsync: blocking.
        let durable = tokio::task::spawn_blocking(move || events.emit_durable(event))
            .await
            .map_err(|e| refused(503, format!("audit not recorded: {e}")))?;
        if let Err(e) = durable {
            tracing::error!(error = %e, finding = %id, "reveal refused: its audit event is not durable");
            return Err(refused(
                503,
                format!("reveal refused: the audit event could not be made durable ({e})"),
            ));
        }
        key.open(id, &sealed)
            .map_err(|e| refused(500, e.to_string()))
    }

    /// The findings of the incidents matching `q`, masked, as JSON Lines or
    /// CSV; audited (one event per export).
    pub async fn export(
        &self,
        who: &Principal,
        client: SocketAddr,
        q: &Query,
        format: &str,
        query_text: &str,
    ) -> Result<String, Refused> {
        if !who.can(Role::Investigator) {
            return Err(refused(403, "export needs the investigator role"));
        }
        if format != "jsonl" && format != "csv" {
            return Err(refused(400, "format must be jsonl or csv"));
        }
        let all = self.all_incidents(q).await?;
        let rows: Vec<ExportRow> = all
            .iter()
            .flat_map(|i| {
                i.findings.iter().map(move |f| ExportRow {
                    incident: i.id,
                    status: i.status.as_str(),
                    assignee: &i.assignee,
                    finding: f.id,
                    time: &f.time,
                    user: &i.user,
                    device: &i.device,
                    app: &f.app,
                    conversation: i.conversation.as_deref().unwrap_or(""),
                    rule: &f.rule,
                    severity: f.severity.as_str(),
                    action: &f.action,
                    evidence: &f.evidence,
                })
            })
            .collect();
        self.audit(
            &who.name,
            client,
            "export",
            None,
            "",
            &format!("format={format} rows={} filters={query_text}", rows.len()),
        );
        Ok(if format == "jsonl" {
            rows.iter()
                .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
                .collect()
        } else {
            let mut out = String::from(
                "incident,status,assignee,finding,time,user,device,app,conversation,rule,severity,action,evidence\n",
            );
            for r in &rows {
                let cells = [
                    r.incident.to_string(),
                    r.status.into(),
                    r.assignee.into(),
                    r.finding.to_string(),
                    r.time.into(),
                    r.user.into(),
                    r.device.into(),
                    r.app.into(),
                    r.conversation.into(),
                    r.rule.into(),
                    r.severity.into(),
                    r.action.into(),
                    r.evidence.into(),
                ];
                out.push_str(
                    &cells
                        .iter()
                        .map(|c| csv_cell(c))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                out.push('\n');
            }
            out
        })
    }

    /// Per user/device over `[since, until)`: apps read, metadata-only,
    /// opaque by reason, with bytes (from `connection` events).
    pub async fn inspectability(
        &self,
        since: u64,
        until: u64,
    ) -> Result<Vec<Inspectability>, Refused> {
        let f = Filter {
            types: vec![EventType::Connection],
            since_ms: Some(since),
            until_ms: Some(until),
            limit: 200_000,
            ..Filter::default()
        };
        let flows = self.source.search(&f).await.map_err(internal)?;
        let mut by: BTreeMap<(String, String), Inspectability> = BTreeMap::new();
        for r in &flows {
            let Event::Connection(c) = &r.event else {
                continue;
            };
            let who_key = (c.user.clone(), c.device.clone());
            let e = by.entry(who_key).or_insert_with(|| Inspectability {
                user: c.user.clone(),
                device: c.device.clone(),
                client: if c.user.is_empty() && c.device.is_empty() {
                    crate::config::canonical_ip(c.client.ip()).to_string()
                } else {
                    String::new()
                },
                ..Inspectability::default()
            });
            let app = c
                .app
                .clone()
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| c.host.clone());
            let bytes = c.bytes_up + c.bytes_down;
            let (class, reasons): (&str, Vec<String>) = match c.class.as_deref() {
                Some("inspectable") => ("read", vec![]),
                Some("metadata-only") => ("metadata_only", vec![]),
                Some("opaque") => (
                    "opaque",
                    if c.class_reasons.is_empty() {
                        vec!["unknown".into()]
                    } else {
                        c.class_reasons.clone()
                    },
                ),
                _ if c.decision == "intercept" => ("read", vec![]),
                _ if c.decision == "block" => ("blocked", vec![]),
                _ => ("metadata_only", vec![]),
            };
            let add = |m: &mut BTreeMap<String, Usage>| {
                let u = m.entry(app.clone()).or_default();
                u.flows += 1;
                u.bytes += bytes;
            };
            match class {
                "read" => add(&mut e.read),
                "metadata_only" => add(&mut e.metadata_only),
                "blocked" => add(&mut e.blocked),
                _ => {
                    for reason in reasons {
                        add(e.opaque.entry(reason).or_default());
                    }
                }
            }
            e.bytes += bytes;
        }
        Ok(by.into_values().collect())
    }
}

/// Flows and bytes of one app.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Connections.
    pub flows: u64,
    /// Bytes both ways.
    pub bytes: u64,
}

/// What the gateway could see of one user/device.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inspectability {
    /// User, when known.
    pub user: String,
    /// Device, when known.
    pub device: String,
    /// Client address when neither is known.
    pub client: String,
    /// Apps whose messages were read.
    pub read: BTreeMap<String, Usage>,
    /// Apps seen by metadata only (passthrough).
    pub metadata_only: BTreeMap<String, Usage>,
    /// Opaque flows by reason (e2ee, pinned, non-tls-encryption, …), then app.
    pub opaque: BTreeMap<String, BTreeMap<String, Usage>>,
    /// Blocked flows.
    pub blocked: BTreeMap<String, Usage>,
    /// Bytes in all.
    pub bytes: u64,
}

/// A message of a conversation view (metadata; evidence masked).
#[derive(Debug, Clone, Serialize)]
pub struct ConversationMessage {
    /// Message event id.
    pub id: Uuid,
    /// When, epoch ms.
    pub ts_ms: u64,
    /// When, RFC 3339.
    pub time: String,
    /// User of the flow.
    pub user: String,
    /// Sender, as the app names it.
    pub sender: String,
    /// App id.
    pub app: String,
    /// up / down.
    pub direction: String,
    /// Length in characters.
    pub chars: u64,
    /// What the gateway did.
    pub action: String,
    /// One of the incident's findings is in it.
    pub flagged: bool,
    /// (rule, masked evidence) of its findings.
    pub findings: Vec<(String, String)>,
}

#[derive(Serialize)]
struct ExportRow<'a> {
    incident: Uuid,
    status: &'a str,
    assignee: &'a str,
    finding: Uuid,
    time: &'a str,
    user: &'a str,
    device: &'a str,
    app: &'a str,
    conversation: &'a str,
    rule: &'a str,
    severity: &'a str,
    action: &'a str,
    evidence: &'a str,
}

/// One CSV cell (RFC 4180 quoting); a leading `= + - @` is prefixed with
/// `'` so a spreadsheet does not run it as a formula.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::seal::Evidence;
    use crate::events::{EmitError, FlowStamp};

    /// A sink that records what it is given and can refuse durability.
    struct Sink {
        durable: bool,
        audits: Mutex<Vec<Event>>,
    }

    impl EventSink for Sink {
        fn emit(&self, event: Event) {
            self.audits.lock().unwrap().push(event);
        }
        fn emit_durable(&self, event: Event) -> Result<Uuid, EmitError> {
            if !self.durable {
                return Err(EmitError::NotDurable);
            }
            self.audits.lock().unwrap().push(event);
            Ok(Uuid::now_v7())
        }
    }

    /// A journal holding one finding sealed to a fresh key; the console's config.
    fn setup(dir: &std::path::Path) -> (Config, Uuid) {
        use std::os::unix::fs::PermissionsExt;
        let key = OpenKey::generate();
        let key_file = dir.join("console.key");
        std::fs::write(&key_file, key.to_base64()).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let stamp = FlowStamp {
            flow_id: Uuid::now_v7(),
            client: "10.0.0.1:4000".parse().unwrap(),
            user: "u".into(),
            device: String::new(),
            app: Some("slack".into()),
            host: "slack.com".into(),
        };
        let mut f = stamp.finding("slack", None, crate::events::Direction::Outbound);
        f.rule = "pci/card".into();
        let id = Uuid::now_v7();
        f.sealed = Some(
            key.public()
                .seal(
                    id,
                    &Evidence::in_text("4111111111111111", "4111111111111111", 0, 16),
                )
                .unwrap(),
        );
        let journal = dir.join("journal");
        let (mut w, _) = crate::events::journal::JournalWriter::open(&journal, 1 << 20).unwrap();
        w.append(&serde_json::to_vec(&Record::stamp_as(id, Event::DlpFinding(f), "n")).unwrap())
            .unwrap();
        w.sync().unwrap();
        let mut config = Config::default();
        config.events.journal_dir = journal;
        config.console = Some(ConsoleConfig {
            private_key_file: Some(key_file),
            ..ConsoleConfig::default()
        });
        (config, id)
    }

    fn revealer() -> Principal {
        Principal {
            name: "rita".into(),
            roles: vec![Role::Revealer],
            csrf: None,
        }
    }

    #[tokio::test]
    async fn a_reveal_whose_audit_cannot_be_made_durable_shows_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (config, id) = setup(dir.path());
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let refusing = Arc::new(Sink {
            durable: false,
            audits: Mutex::default(),
        });
        let console = Console::new(&config, refusing.clone()).unwrap();
        let r = console.reveal(&revealer(), client, id, "case 1").await;
        assert_eq!(r.unwrap_err().status, 503);
        assert!(refusing.audits.lock().unwrap().is_empty());

        let durable = Arc::new(Sink {
            durable: true,
            audits: Mutex::default(),
        });
        let console = Console::new(&config, durable.clone()).unwrap();
        assert_eq!(
            console
                .reveal(&revealer(), client, id, " ")
                .await
                .unwrap_err()
                .status,
            400
        );
        let shown = console
            .reveal(&revealer(), client, id, "case 1")
            .await
            .unwrap();
        assert_eq!(shown.matched, "4111111111111111");
        let audits = durable.audits.lock().unwrap();
        assert!(
            matches!(&audits[..], [Event::Audit(a)] if a.action == "reveal" && a.target == Some(id) && a.reason == "case 1")
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("plain"), "plain");
    }
}
