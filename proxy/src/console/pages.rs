//! Server-rendered pages (maud: compile-time templates that escape every
//! value by default, no template files, no JavaScript). Forms post to the
//! JSON API endpoints with the CSRF token in a hidden field.

use maud::{html, Markup, DOCTYPE};
use uuid::Uuid;

use super::auth::Principal;
use super::http::has;
use super::incidents::{Incident, Query, Status, ASSIGN, NOTE, STATUS};
use super::service::{ConversationMessage, Inspectability, Usage};
use crate::config::Role;
use crate::events::query::format_ms;
use crate::events::seal::Evidence;
use crate::events::{Event, Record};

/// The console's only stylesheet.
pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2433}\
header{background:#1d2433;color:#fff;padding:.6em 1em;display:flex;gap:1.2em;align-items:center}\
header a{color:#fff}header form{margin-left:auto}main{padding:1em}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
.sev-critical{color:#a00;font-weight:bold}.sev-high{color:#c50}.flagged{background:#fff3c4}\
.evidence{font-family:monospace}.revealed{font-family:monospace;background:#fee;padding:.6em;border:1px solid #c00}\
.error{color:#a00}form.inline{display:inline}fieldset{margin:.6em 0}label{margin-right:.6em}\
nav.filters input,nav.filters select{width:8em}";

fn layout(title: &str, who: Option<&Principal>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " — Gatehouse console" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                header {
                    strong { "Gatehouse console" }
                    @if let Some(p) = who {
                        a href="/incidents" { "Incidents" }
                        a href="/inspectability" { "Inspectability" }
                        span id="whoami" { (p.name) " (" (roles(p)) ")" }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(p.csrf.clone().unwrap_or_default());
                            button type="submit" id="logout" { "Log out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn roles(p: &Principal) -> String {
    p.roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

fn csrf(p: &Principal) -> Markup {
    html! { input type="hidden" name="csrf" value=(p.csrf.clone().unwrap_or_default()); }
}

/// The login page.
pub fn login(message: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            @if let Some(m) = message { p.error id="login-error" { (m) } }
            form method="post" action="/login" {
                p { label for="name" { "Name" } input id="name" name="name" autocomplete="username"; }
                p { label for="password" { "Password" } input id="password" name="password" type="password" autocomplete="current-password"; }
                button type="submit" id="login" { "Log in" }
            }
        },
    )
}

/// An error page.
pub fn error(status: u16, message: &str) -> Markup {
    layout(
        &format!("Error {status}"),
        None,
        html! { p.error id="error" { (message) } p { a href="/incidents" { "Back to incidents" } } },
    )
}

fn sev(s: crate::events::Severity) -> Markup {
    html! { span class=(format!("sev-{s}")) { (s) } }
}

/// The incident list with filters, bulk status and export links.
pub fn incidents(p: &Principal, query: &str, q: &Query, list: &[Incident], total: usize) -> Markup {
    let f = &q.filter;
    let val = |v: &Option<String>| v.clone().unwrap_or_default();
    let export_q: String = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "page" && k != "format")
        .fold(
            form_urlencoded::Serializer::new(String::new()),
            |mut s, (k, v)| {
                s.append_pair(&k, &v);
                s
            },
        )
        .finish();
    let sep = if export_q.is_empty() { "" } else { "&" };
    layout(
        "Incidents",
        Some(p),
        html! {
            nav.filters {
                form method="get" action="/incidents" {
                    label { "Since " input name="since" placeholder="7d or 2026-12-01" value=(form_value(query, "since")); }
                    label { "Until " input name="until" value=(form_value(query, "until")); }
                    label { "User " input name="user" value=(val(&f.user)); }
                    label { "Device " input name="device" value=(val(&f.device)); }
                    label { "App " input name="app" value=(val(&f.app)); }
                    label { "Conversation " input name="conversation" value=(val(&f.conversation)); }
                    label { "Rule " input name="rule" value=(val(&f.rule)); }
                    label { "Severity ≥ " select name="severity" {
                        option value="" { "any" }
                        @for s in crate::events::Severity::ALL {
                            option value=(s) selected[f.severity == Some(s)] { (s) }
                        }
                    } }
                    label { "Action " input name="action" value=(val(&f.action)); }
                    label { "Status " select name="status" {
                        option value="" { "any" }
                        @for s in Status::ALL {
                            option value=(s.as_str()) selected[q.status == Some(s)] { (s.label()) }
                        }
                    } }
                    label { "Assignee " input name="assignee" placeholder="- for none" value=(q.assignee.clone().unwrap_or_default()); }
                    button type="submit" { "Filter" }
                }
            }
            p {
                (total) " incident(s). "
                @if has(p, Role::Investigator) {
                    "Export (masked): "
                    a id="export-jsonl" href=(format!("/api/export?{export_q}{sep}format=jsonl")) { "JSON Lines" }
                    " · "
                    a id="export-csv" href=(format!("/api/export?{export_q}{sep}format=csv")) { "CSV" }
                }
            }
            form method="post" action="/api/incidents/status" {
                (csrf(p))
                table id="incidents" {
                    thead { tr {
                        th {} th { "Last finding" } th { "Who" } th { "App" } th { "Conversation" }
                        th { "Rule" } th { "Severity" } th { "Action" } th { "Findings" } th { "Evidence (masked)" }
                        th { "Status" } th { "Assignee" }
                    } }
                    tbody {
                        @for i in list {
                            tr.incident data-id=(i.id) {
                                td { input type="checkbox" name="ids" value=(i.id); }
                                td { a href=(format!("/incidents/{}", i.id)) { (i.last) } }
                                td { (i.who) }
                                td { (i.app) }
                                td { (i.conversation.clone().unwrap_or_default()) }
                                td { (i.rule) }
                                td { (sev(i.severity)) }
                                td { (i.action) }
                                td { (i.findings.len()) }
                                td.evidence { @for f in &i.findings { span data-finding=(f.id) { (f.evidence) } br; } }
                                td.status { (i.status.label()) }
                                td { (i.assignee) }
                            }
                        }
                    }
                }
                @if has(p, Role::Investigator) {
                    fieldset {
                        legend { "Set the status of the selected incidents" }
                        select name="status" { @for s in Status::ALL { option value=(s.as_str()) { (s.label()) } } }
                        button type="submit" id="bulk-status" { "Apply" }
                    }
                }
            }
            @if q.page > 1 || q.page * q.per_page < total {
                p {
                    @if q.page > 1 { a href=(page_link(query, q.page - 1)) { "← Newer" } " " }
                    "Page " (q.page)
                    @if q.page * q.per_page < total { " " a href=(page_link(query, q.page + 1)) { "Older →" } }
                }
            }
        },
    )
}

fn form_value(query: &str, key: &str) -> String {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn page_link(query: &str, page: usize) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "page") {
        s.append_pair(&k, &v);
    }
    s.append_pair("page", &page.to_string());
    format!("/incidents?{}", s.finish())
}

/// One incident: findings (masked), message metadata, the flow, history,
/// triage forms and the reveal form.
pub fn incident(p: &Principal, i: &Incident, flow: Option<&Record>, can_reveal: bool) -> Markup {
    layout(
        &format!("Incident {}", i.id),
        Some(p),
        html! {
            table id="summary" {
                tr { th { "Who" } td { (i.who) } }
                tr { th { "User / device" } td { (i.user) " / " (i.device) } }
                tr { th { "App" } td { (i.app) } }
                tr { th { "Conversation" } td { (i.conversation.clone().unwrap_or_default()) " " a id="conversation-link" href=(format!("/incidents/{}/conversation", i.id)) { "view conversation" } } }
                tr { th { "Rule" } td { (i.rule) } }
                tr { th { "Severity" } td { (sev(i.severity)) } }
                tr { th { "Action" } td { (i.action) } }
                tr { th { "Status" } td id="status" { (i.status.label()) } }
                tr { th { "Assignee" } td id="assignee" { (i.assignee) } }
                tr { th { "First / last" } td { (format_ms(i.first_ms)) " / " (i.last) } }
            }
            h2 { "Findings" }
            table id="findings" {
                thead { tr { th { "Time" } th { "Finding" } th { "Direction" } th { "Host" } th { "Message" } th { "Evidence (masked)" } th { "Reveal" } } }
                tbody {
                    @for f in &i.findings {
                        tr data-finding=(f.id) {
                            td { (f.time) }
                            td { code { (f.id) } }
                            td { (f.direction) }
                            td { (f.host) }
                            td { @if let Some(m) = f.message_id { code { (m) } } }
                            td.evidence { (f.evidence) }
                            td {
                                @if !f.sealed {
                                    "no sealed evidence"
                                } @else if has(p, Role::Revealer) && can_reveal {
                                    form.reveal method="post" action=(format!("/api/findings/{}/reveal", f.id)) {
                                        (csrf(p))
                                        label { "Reason " textarea name="reason" rows="2" cols="30" {} }
                                        button type="submit" class="reveal-button" { "Reveal (audited)" }
                                    }
                                } @else {
                                    "sealed"
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(r) = flow { (flow_table(r)) }
            h2 { "History and notes" }
            ul id="history" {
                @for h in &i.history {
                    li {
                        (h.time) " — " (h.actor) ": "
                        @match h.action.as_str() {
                            STATUS => { "status → " (Status::parse(&h.value).map_or(h.value.as_str(), |s| s.label())) }
                            ASSIGN => { "assigned to " (h.value) }
                            NOTE => { "note: " span.note { (h.value) } }
                            _ => { (h.action) }
                        }
                        @if !h.reason.is_empty() { " (" (h.reason) ")" }
                    }
                }
            }
            @if has(p, Role::Investigator) {
                form method="post" action=(format!("/api/incidents/{}/status", i.id)) {
                    (csrf(p))
                    fieldset { legend { "Status" }
                        select name="status" id="status-select" { @for s in Status::ALL { option value=(s.as_str()) selected[s == i.status] { (s.label()) } } }
                        button type="submit" id="set-status" { "Set status" }
                    }
                }
                form method="post" action=(format!("/api/incidents/{}/assignee", i.id)) {
                    (csrf(p))
                    fieldset { legend { "Assignee" }
                        input name="assignee" value=(i.assignee);
                        button type="submit" { "Assign" }
                    }
                }
                form method="post" action=(format!("/api/incidents/{}/notes", i.id)) {
                    (csrf(p))
                    fieldset { legend { "Add a note (notes cannot be changed)" }
                        textarea name="note" id="note" rows="3" cols="60" {}
                        button type="submit" id="add-note" { "Add note" }
                    }
                }
            }
        },
    )
}

fn flow_table(r: &Record) -> Markup {
    let (title, rows): (&str, Vec<(&str, String)>) = match &r.event {
        Event::Connection(c) => (
            "The flow (connection event)",
            vec![
                ("Flow", c.flow_id.to_string()),
                ("Client", c.client.to_string()),
                ("Destination", c.destination.clone().unwrap_or_default()),
                ("Host / SNI", c.host.clone()),
                ("Mode", c.mode.clone()),
                ("Decision", format!("{} ({})", c.decision, c.reason)),
                ("Class", c.class.clone().unwrap_or_default()),
                (
                    "TLS (client / upstream)",
                    format!(
                        "{} / {}",
                        c.client_tls.clone().unwrap_or_default(),
                        c.upstream_tls.clone().unwrap_or_default()
                    ),
                ),
                ("Verification", c.verification.clone().unwrap_or_default()),
                (
                    "Bytes up / down",
                    format!("{} / {}", c.bytes_up, c.bytes_down),
                ),
                ("Duration", format!("{} ms", c.duration_ms)),
                ("Closed", c.close_reason.clone()),
            ],
        ),
        Event::FlowUpdate(u) => (
            "The flow (still open: latest update)",
            vec![
                ("Flow", u.flow_id.to_string()),
                ("Client", u.client.to_string()),
                ("Host", u.host.clone()),
                (
                    "Bytes up / down",
                    format!("{} / {}", u.bytes_up, u.bytes_down),
                ),
            ],
        ),
        _ => ("The flow", vec![]),
    };
    html! {
        h2 { (title) }
        table id="flow" { @for (k, v) in rows { tr { th { (k) } td { (v) } } } }
    }
}

/// The page showing revealed evidence, once (no-store, nothing kept).
pub fn revealed(p: &Principal, id: Uuid, e: &Evidence) -> Markup {
    layout(
        "Revealed evidence",
        Some(p),
        html! {
            p { "Finding " code { (id) } ". This reveal is recorded in the audit log. The text is not kept and is not shown again on reload." }
            h2 { "Match" }
            pre.revealed id="revealed" { (e.matched) }
            h2 { "Context" }
            pre.revealed id="revealed-context" { (e.context) }
            p { a href="/incidents" { "Back to incidents" } }
        },
    )
}

/// The conversation around an incident, flagged messages highlighted.
pub fn conversation(p: &Principal, i: &Incident, msgs: &[ConversationMessage]) -> Markup {
    layout(
        &format!(
            "Conversation {}",
            i.conversation
                .clone()
                .unwrap_or_else(|| "(this flow)".into())
        ),
        Some(p),
        html! {
            p { a href=(format!("/incidents/{}", i.id)) { "← Incident" } " · messages are metadata; evidence is masked." }
            table id="messages" {
                thead { tr { th { "Time" } th { "User" } th { "Sender" } th { "App" } th { "Dir." } th { "Chars" } th { "Action" } th { "Findings (masked)" } } }
                tbody {
                    @for m in msgs {
                        tr class=(if m.flagged { "message flagged" } else { "message" }) data-id=(m.id) {
                            td { (m.time) }
                            td { (m.user) }
                            td { (m.sender) }
                            td { (m.app) }
                            td { (m.direction) }
                            td { (m.chars) }
                            td { (m.action) }
                            td.evidence { @for (rule, ev) in &m.findings { (rule) ": " (ev) br; } }
                        }
                    }
                }
            }
        },
    )
}

fn usage_list(m: &std::collections::BTreeMap<String, Usage>) -> Markup {
    html! { @for (app, u) in m { (app) " (" (u.flows) " flows, " (u.bytes) " B)" br; } }
}

/// What the gateway could and could not read, per user/device.
pub fn inspectability(
    p: &Principal,
    query: &str,
    since: u64,
    until: u64,
    rows: &[Inspectability],
) -> Markup {
    layout(
        "Inspectability",
        Some(p),
        html! {
            form method="get" action="/inspectability" {
                label { "From " input name="from" placeholder="7d" value=(form_value(query, "from")); }
                label { "To " input name="to" value=(form_value(query, "to")); }
                button type="submit" { "Show" }
            }
            p { (format_ms(since)) " – " (format_ms(until)) }
            table id="inspectability" {
                thead { tr { th { "User" } th { "Device" } th { "Client" } th { "Read" } th { "Metadata only" } th { "Opaque (by reason)" } th { "Blocked" } th { "Bytes" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.user) } td { (r.device) } td { (r.client) }
                            td { (usage_list(&r.read)) }
                            td { (usage_list(&r.metadata_only)) }
                            td { @for (reason, m) in &r.opaque { strong { (reason) } ": " (usage_list(m)) } }
                            td { (usage_list(&r.blocked)) }
                            td { (r.bytes) }
                        }
                    }
                }
            }
        },
    )
}
