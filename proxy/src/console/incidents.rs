//! Incidents: DLP findings grouped by who (user, else device, else client
//! address) + conversation + rule within one `console.incident_window`
//! (aligned to the epoch), with their triage state rebuilt from `audit`
//! events (`incident_status`, `incident_assign`, `incident_note`: the
//! latest wins; notes append).

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::events::query::{format_ms, Filter};
use crate::events::{AuditEvent, DlpFindingEvent, Event, EventType, Record, Severity};

/// Triage status of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nobody has looked yet.
    #[default]
    New,
    /// Someone is on it.
    InReview,
    /// Handled.
    Resolved,
    /// The rule was wrong here.
    FalsePositive,
    /// Not worth handling.
    Dismissed,
}

impl Status {
    /// Every status, in workflow order.
    pub const ALL: [Status; 5] = [
        Self::New,
        Self::InReview,
        Self::Resolved,
        Self::FalsePositive,
        Self::Dismissed,
    ];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::InReview => "in_review",
            Self::Resolved => "resolved",
            Self::FalsePositive => "false_positive",
            Self::Dismissed => "dismissed",
        }
    }

    /// Its label on pages.
    pub fn label(self) -> &'static str {
        match self {
            Self::New => "New",
            Self::InReview => "In review",
            Self::Resolved => "Resolved",
            Self::FalsePositive => "False positive",
            Self::Dismissed => "Dismissed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Audit actions of triage.
pub const STATUS: &str = "incident_status";
/// Assignee changes.
pub const ASSIGN: &str = "incident_assign";
/// Notes.
pub const NOTE: &str = "incident_note";

/// One finding as the console shows it: masked evidence only.
#[derive(Debug, Clone, Serialize)]
pub struct FindingView {
    /// The finding's event id (what reveal takes).
    pub id: Uuid,
    /// When, epoch ms.
    pub ts_ms: u64,
    /// When, RFC 3339.
    pub time: String,
    /// Rule id.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// What the gateway did.
    pub action: String,
    /// The masked excerpt.
    pub evidence: String,
    /// Whether sealed evidence can be revealed.
    pub sealed: bool,
    /// The message event it belongs to.
    pub message_id: Option<Uuid>,
    /// The flow.
    pub flow_id: Uuid,
    /// App id.
    pub app: String,
    /// Host / SNI.
    pub host: String,
    /// up / down.
    pub direction: String,
}

impl FindingView {
    fn new(r: &Record, f: &DlpFindingEvent) -> Self {
        Self {
            id: r.id,
            ts_ms: r.ts_ms,
            time: format_ms(r.ts_ms),
            rule: f.rule.clone(),
            severity: f.severity,
            action: f.action.clone(),
            evidence: f.evidence.as_str().to_string(),
            sealed: f.sealed.is_some(),
            message_id: f.message_id,
            flow_id: f.flow_id,
            app: f.app.clone(),
            host: f.host.clone(),
            direction: match f.direction {
                crate::events::Direction::Outbound => "up".into(),
                crate::events::Direction::Inbound => "down".into(),
            },
        }
    }
}

/// One triage step.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The audit event's id.
    pub id: Uuid,
    /// When, epoch ms.
    pub ts_ms: u64,
    /// When, RFC 3339.
    pub time: String,
    /// Who.
    pub actor: String,
    /// `incident_status`, `incident_assign` or `incident_note`.
    pub action: String,
    /// The new status, assignee or the note.
    pub value: String,
    /// A reason given with a status change.
    pub reason: String,
}

/// An incident with its findings and triage state.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// The id of its first finding.
    pub id: Uuid,
    /// User, else device, else client address.
    pub who: String,
    /// The user, when known.
    pub user: String,
    /// The device, when known.
    pub device: String,
    /// App id (of the first finding).
    pub app: String,
    /// Conversation, when the app names one.
    pub conversation: Option<String>,
    /// Rule id.
    pub rule: String,
    /// Highest severity of its findings.
    pub severity: Severity,
    /// Strictest action taken.
    pub action: String,
    /// First finding, epoch ms.
    pub first_ms: u64,
    /// Last finding, epoch ms.
    pub last_ms: u64,
    /// Last finding, RFC 3339.
    pub last: String,
    /// Triage status.
    pub status: Status,
    /// Who is on it ("" for nobody).
    pub assignee: String,
    /// Findings, oldest first.
    pub findings: Vec<FindingView>,
    /// Notes and changes, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// The grouping key of a finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    who: String,
    conversation: String,
    rule: String,
    bucket: u64,
}

fn who(f: &DlpFindingEvent) -> String {
    if !f.user.is_empty() {
        f.user.clone()
    } else if !f.device.is_empty() {
        f.device.clone()
    } else {
        crate::config::canonical_ip(f.client.ip()).to_string()
    }
}

fn key(r: &Record, f: &DlpFindingEvent, window_ms: u64) -> Key {
    Key {
        who: who(f),
        conversation: f.conversation.clone().unwrap_or_default(),
        rule: f.rule.clone(),
        bucket: r.ts_ms / window_ms.max(1),
    }
}

fn action_rank(a: &str) -> u8 {
    match a {
        "block" => 4,
        "redact" => 3,
        "alert" => 2,
        "log" => 1,
        _ => 0,
    }
}

/// The window an incident of finding `r` spans: `[start, end)` epoch ms.
pub fn window_of(ts_ms: u64, window_ms: u64) -> (u64, u64) {
    let w = window_ms.max(1);
    let start = ts_ms / w * w;
    (start, start + w)
}

/// Groups finding records into incidents (newest last finding first) and
/// applies triage events.
pub fn group(findings: &[Record], triage: &[Record], window_ms: u64) -> Vec<Incident> {
    let mut groups: BTreeMap<Key, Vec<(&Record, &DlpFindingEvent)>> = BTreeMap::new();
    for r in findings {
        if let Event::DlpFinding(f) = &r.event {
            groups.entry(key(r, f, window_ms)).or_default().push((r, f));
        }
    }
    let mut out: Vec<Incident> = groups
        .into_values()
        .map(|mut members| {
            members.sort_by_key(|(r, _)| (r.ts_ms, r.id));
            let (r0, f0) = members[0];
            let last_ms = members.last().map_or(r0.ts_ms, |(r, _)| r.ts_ms);
            Incident {
                id: r0.id,
                who: who(f0),
                user: f0.user.clone(),
                device: f0.device.clone(),
                app: f0.app.clone(),
                conversation: f0.conversation.clone(),
                rule: f0.rule.clone(),
                severity: members
                    .iter()
                    .map(|(_, f)| f.severity)
                    .max()
                    .unwrap_or_default(),
                action: members
                    .iter()
                    .map(|(_, f)| f.action.as_str())
                    .max_by_key(|a| action_rank(a))
                    .unwrap_or_default()
                    .to_string(),
                first_ms: r0.ts_ms,
                last_ms,
                last: format_ms(last_ms),
                status: Status::New,
                assignee: String::new(),
                findings: members
                    .iter()
                    .map(|(r, f)| FindingView::new(r, f))
                    .collect(),
                history: Vec::new(),
            }
        })
        .collect();
    let mut steps: Vec<(&Record, &AuditEvent)> = triage
        .iter()
        .filter_map(|r| match &r.event {
            Event::Audit(a) if a.target.is_some() => Some((r, a)),
            _ => None,
        })
        .collect();
    steps.sort_by_key(|(r, _)| (r.ts_ms, r.id));
    steps.dedup_by_key(|(r, _)| r.id);
    let mut by_id: BTreeMap<Uuid, usize> = BTreeMap::new();
    for (i, inc) in out.iter().enumerate() {
        by_id.insert(inc.id, i);
    }
    for (r, a) in steps {
        let Some(&i) = a.target.as_ref().and_then(|t| by_id.get(t)) else {
            continue;
        };
        let inc = &mut out[i];
        match a.action.as_str() {
            STATUS => match Status::parse(&a.detail) {
                Some(s) => inc.status = s,
                None => continue,
            },
            ASSIGN => inc.assignee = a.detail.clone(),
            NOTE => {}
            _ => continue,
        }
        inc.history.push(HistoryEntry {
            id: r.id,
            ts_ms: r.ts_ms,
            time: format_ms(r.ts_ms),
            actor: a.actor.clone(),
            action: a.action.clone(),
            value: a.detail.clone(),
            reason: a.reason.clone(),
        });
    }
    out.sort_by(|a, b| b.last_ms.cmp(&a.last_ms).then(b.id.cmp(&a.id)));
    out
}

/// What the incident list asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// Event filters (time, user, device, app, conversation, rule, severity, action).
    pub filter: Filter,
    /// Only this status.
    pub status: Option<Status>,
    /// Only this assignee ("-" for unassigned).
    pub assignee: Option<String>,
    /// 1-based page.
    pub page: usize,
    /// Incidents per page.
    pub per_page: usize,
}

/// Most findings one listing considers.
pub const MAX_FINDINGS: usize = 20_000;

impl Query {
    /// Parses the query string of `/incidents` and `/api/incidents` (and
    /// export): `since`/`from`, `until`/`to`, `user`, `device`, `app`,
    /// `conversation`, `rule`, `severity` (at least), `action`, `status`,
    /// `assignee`, `page`, `per_page`.
    pub fn parse(query: &str, now_ms: u64) -> Result<Self, String> {
        let mut q = Query {
            page: 1,
            per_page: 50,
            ..Query::default()
        };
        q.filter.types = vec![EventType::DlpFinding];
        q.filter.limit = MAX_FINDINGS;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_string();
            if v.is_empty() {
                continue;
            }
            let bad = |e: String| format!("`{k}`: {e}");
            match &*k {
                "since" | "from" => {
                    q.filter.since_ms =
                        Some(crate::events::query::parse_time(&v, now_ms).map_err(bad)?)
                }
                "until" | "to" => {
                    q.filter.until_ms =
                        Some(crate::events::query::parse_time(&v, now_ms).map_err(bad)?)
                }
                "user" => q.filter.user = Some(v),
                "device" => q.filter.device = Some(v),
                "app" => q.filter.app = Some(v),
                "conversation" => q.filter.conversation = Some(v),
                "rule" => q.filter.rule = Some(v),
                "severity" => q.filter.severity = Some(v.parse().map_err(bad)?),
                "action" => q.filter.action = Some(v),
                "status" => {
                    q.status = Some(Status::parse(&v).ok_or_else(|| {
                        bad("one of new, in_review, resolved, false_positive, dismissed".into())
                    })?)
                }
                "assignee" => q.assignee = Some(v),
                "page" => q.page = v.parse::<usize>().map_err(|e| bad(e.to_string()))?.max(1),
                "per_page" => {
                    q.per_page = v
                        .parse::<usize>()
                        .map_err(|e| bad(e.to_string()))?
                        .clamp(1, 500)
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether `i` passes the triage filters.
    pub fn keeps(&self, i: &Incident) -> bool {
        self.status.is_none_or(|s| i.status == s)
            && self.assignee.as_deref().is_none_or(|a| {
                if a == "-" {
                    i.assignee.is_empty()
                } else {
                    i.assignee == a
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{FlowStamp, Masked};

    fn finding(user: &str, conv: &str, rule: &str, ts_ms: u64) -> Record {
        let stamp = FlowStamp {
            flow_id: Uuid::now_v7(),
            client: "10.0.0.1:5000".parse().unwrap(),
            user: user.into(),
            device: String::new(),
            app: Some("slack".into()),
            host: "slack.com".into(),
        };
        let mut f = stamp.finding("slack", None, crate::events::Direction::Outbound);
        f.rule = rule.into();
        f.action = "alert".into();
        f.evidence = Masked::new("4111111111111111");
        f.conversation = Some(conv.into());
        let mut r = Record::stamp(Event::DlpFinding(f), "n");
        r.ts_ms = ts_ms;
        r
    }

    fn audit(target: Uuid, action: &str, detail: &str, ts_ms: u64) -> Record {
        let mut r = Record::stamp(
            Event::Audit(AuditEvent {
                actor: "ana".into(),
                client: None,
                action: action.into(),
                target: Some(target),
                reason: String::new(),
                detail: detail.into(),
            }),
            "n",
        );
        r.ts_ms = ts_ms;
        r
    }

    #[test]
    fn findings_group_by_who_conversation_rule_and_window() {
        let h = 3_600_000;
        let fs = vec![
            finding("ana", "C1", "pci/card", 10 * h + 1),
            finding("ana", "C1", "pci/card", 10 * h + 500),
            finding("ana", "C2", "pci/card", 10 * h + 2),
            finding("bob", "C1", "pci/card", 10 * h + 3),
            finding("ana", "C1", "secrets/aws", 10 * h + 4),
            finding("ana", "C1", "pci/card", 11 * h + 1),
        ];
        let incidents = group(&fs, &[], h);
        assert_eq!(incidents.len(), 5);
        let two = incidents.iter().find(|i| i.findings.len() == 2).unwrap();
        assert_eq!(
            two.id, fs[0].id,
            "an incident is named by its first finding"
        );
        assert_eq!(incidents[0].id, fs[5].id, "newest first");
    }

    #[test]
    fn triage_state_is_the_latest_event_and_notes_append() {
        let fs = vec![finding("ana", "C1", "r", 1000)];
        let id = fs[0].id;
        let triage = vec![
            audit(id, STATUS, "in_review", 2000),
            audit(id, NOTE, "looking", 2500),
            audit(id, ASSIGN, "bob", 2600),
            audit(id, STATUS, "resolved", 3000),
            audit(id, STATUS, "new", 4000),
            audit(Uuid::now_v7(), STATUS, "dismissed", 5000),
        ];
        let i = &group(&fs, &triage, 3_600_000)[0];
        assert_eq!(i.status, Status::New, "reopened");
        assert_eq!(i.assignee, "bob");
        assert_eq!(i.history.len(), 5);
        assert_eq!(i.history[1].value, "looking");
    }

    #[test]
    fn the_query_string_parses_every_filter() {
        let q = Query::parse(
            "since=2026-01-01&user=ana&app=slack&rule=pci%2Fcard&severity=high&action=block&status=in_review&assignee=-&page=2&per_page=10&conversation=C1&device=d",
            0,
        )
        .unwrap();
        assert_eq!(q.filter.user.as_deref(), Some("ana"));
        assert_eq!(q.filter.rule.as_deref(), Some("pci/card"));
        assert_eq!(q.filter.severity, Some(Severity::High));
        assert_eq!(q.status, Some(Status::InReview));
        assert_eq!((q.page, q.per_page), (2, 10));
        assert!(Query::parse("status=open", 0)
            .unwrap_err()
            .contains("status"));
    }
}
