//! Decide: every per-flow decision in one place — what the first bytes
//! allow (TLS the gateway cannot read, a non-TLS protocol, TLS without a
//! name), domain fronting (CONNECT target, SNI and each request's
//! `Host`/`:authority` must name one host), `[intercept]` policy by host,
//! app and user, then pinning. The outcome is a [`Plan`] the flow carries
//! out.
//!
//! Fail closed: a name-less ClientHello is decided on the address (or the
//! CONNECT target) like a name; TLS-looking bytes that cannot be read get
//! `intercept.unparsed_action` (block unless an admin says passthrough);
//! learned pinning never outranks a block and is off unless
//! `intercept.pinning = "learn"`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use gatehouse_inspectors::identify::Protocol;

use crate::config::{PinningMode, PolicyAction, UnparsedAction};
use crate::events::Event;
use crate::policy::pinning_subject;
use crate::relay::hooks::FlowContext;
use crate::relay::http::{blocked_page, wants_json, AuthorityCheck};
use crate::state::Shared;

use super::context::{CloseReason, Decision, Flow, Mode};
use super::peek::{Hello, Peeked};

/// What to do with a flow.
#[derive(Debug)]
pub enum Plan {
    /// The client sent nothing: there is nothing to decide on.
    Nothing,
    /// Refuse it.
    Block(Block),
    /// Relay it unread.
    Passthrough {
        /// Why (recorded).
        reason: String,
        /// Whether the security team should look at it.
        flagged: bool,
    },
    /// XMPP on its plaintext port: relay the negotiation and intercept the
    /// TLS that STARTTLS begins, for `domain` unless the ClientHello names one.
    XmppStartTls {
        /// The server's domain from the stream header (or the target).
        domain: String,
    },
    /// MQTT in the clear (1883, transparent or tunnelled): read packet by
    /// packet like MQTT inside TLS.
    PlainMqtt,
    /// Intercept TLS for `name`, upstream first.
    Intercept {
        /// The name to verify and mint for.
        name: String,
        /// The client's hello.
        hello: Hello,
    },
    /// A TLS flow refused by policy: complete the client's handshake with
    /// a leaf for exactly `name` (no upstream involved) and answer every
    /// HTTP request with the block page, then close.
    BlockPage {
        /// The SNI (or the address / CONNECT target without one).
        name: String,
        /// The client's hello (its ALPN offer).
        hello: Hello,
        /// The block, as recorded.
        block: Block,
    },
}

/// How a block is carried out.
#[derive(Debug)]
pub struct Block {
    /// Why (recorded, and named to the client where a page is shown).
    pub reason: String,
    /// How the flow's record says it ended.
    pub close: CloseReason,
    /// Worth a look.
    pub flagged: bool,
    /// The `policy` event kind to emit, if any.
    pub policy_event: Option<&'static str>,
    /// Fail the client's TLS handshake with an alert.
    pub tls_alert: bool,
}

/// Decides on the first bytes of a flow (already identified into `flow.seen`).
pub fn on_first_bytes(flow: &mut Flow, shared: &Shared, peeked: Peeked) -> Plan {
    match peeked {
        Peeked::Nothing => {
            flow.decide(Decision::None, "client sent nothing");
            flow.end(CloseReason::ClientClosed);
            Plan::Nothing
        }
        Peeked::Other(id) => {
            // What the bytes name, else where they go: a CONNECT to a
            // blocked host stays blocked whatever is sent through it.
            let host = id
                .server_name()
                .map(str::to_string)
                .or_else(|| flow.target.as_ref().map(|t| t.host.clone()));
            if id.protocol == Protocol::Tls {
                // A ClientHello we cannot parse must not become an unread
                // passthrough by default: that would be a way around
                // inspection.
                let why = format!(
                    "malformed TLS ClientHello: {}",
                    id.error.as_deref().unwrap_or("unparsable")
                );
                return unparsed(shared, why, CloseReason::MalformedClientHello);
            }
            let decision = shared.policy.decide(
                host.as_deref(),
                flow.seen.app.as_deref(),
                false,
                &flow.identity,
            );
            if decision.action == PolicyAction::Block {
                Plan::Block(Block {
                    reason: decision.reason,
                    close: CloseReason::Blocked,
                    flagged: false,
                    policy_event: Some("policy_block"),
                    tls_alert: false,
                })
            } else if id.protocol == Protocol::Xmpp && decision.action == PolicyAction::Intercept {
                let domain = host
                    .or_else(|| flow.target.as_ref().map(|t| t.host.clone()))
                    .unwrap_or_default();
                Plan::XmppStartTls { domain }
            } else if id.protocol == Protocol::Mqtt && decision.action == PolicyAction::Intercept {
                flow.decide(Decision::Intercept, "plain MQTT: read packet by packet");
                Plan::PlainMqtt
            } else {
                Plan::Passthrough {
                    reason: format!("{} is not TLS: relayed unread", id.protocol),
                    flagged: true,
                }
            }
        }
        Peeked::Tls(hello, _) => {
            // CONNECT to a name, then a hello for another name: the policy
            // would judge one host while the bytes go to another.
            if let (Some(sni), Some(target)) = (hello.sni.as_deref(), flow.target.as_ref()) {
                let named = target.host.parse::<IpAddr>().is_err();
                if flow.mode == Mode::Explicit && named && !same_host(&target.host, sni) {
                    let reason = format!(
                        "domain-fronting: CONNECT {} but the ClientHello names {sni}",
                        target.host
                    );
                    let name = sni.to_string();
                    return Plan::BlockPage {
                        name,
                        hello,
                        block: fronting_block(reason),
                    };
                }
            }
            // The name to verify: SNI, else the CONNECT host or the
            // destination address (verified against IP SANs, minted as one).
            let name = hello
                .sni
                .clone()
                .or_else(|| flow.target.as_ref().map(|t| t.host.clone()));
            match name {
                None => unparsed(
                    shared,
                    "TLS without a server name or destination".into(),
                    CloseReason::Blocked,
                ),
                Some(name) => {
                    let pinned = flow.seen.pinned;
                    on_tls(flow, shared, name, hello, pinned)
                }
            }
        }
    }
}

/// TLS-looking bytes the gateway cannot read, decided by
/// `intercept.unparsed_action`: blocked (flagged, a `policy` event) unless an
/// administrator named passthrough.
pub fn unparsed(shared: &Shared, why: String, close: CloseReason) -> Plan {
    match shared.config.intercept.unparsed_action {
        UnparsedAction::Block => Plan::Block(Block {
            reason: why,
            close,
            flagged: true,
            policy_event: Some("unparsed"),
            tls_alert: false,
        }),
        UnparsedAction::Passthrough => Plan::Passthrough {
            reason: format!("{why}; relayed unread (intercept.unparsed_action = \"passthrough\")"),
            flagged: true,
        },
    }
}

fn fronting_block(reason: String) -> Block {
    Block {
        reason,
        close: CloseReason::Blocked,
        flagged: true,
        policy_event: Some("domain_fronting"),
        tls_alert: true,
    }
}

/// Decides on a TLS flow for `name` (a name or an address): policy first
/// (a block is never bypassed), then pinning as `intercept.pinning` allows.
pub fn on_tls(flow: &mut Flow, shared: &Shared, name: String, hello: Hello, pinned: bool) -> Plan {
    let decision = shared.policy.decide(
        Some(&name),
        flow.seen.app.as_deref(),
        pinned,
        &flow.identity,
    );
    match decision.action {
        PolicyAction::Block => Plan::BlockPage {
            name,
            hello,
            block: Block {
                reason: decision.reason,
                close: CloseReason::Blocked,
                flagged: false,
                policy_event: Some("policy_block"),
                tls_alert: true,
            },
        },
        PolicyAction::Passthrough => Plan::Passthrough {
            reason: decision.reason,
            flagged: decision.flagged,
        },
        PolicyAction::Intercept => {
            if shared.config.intercept.pinning == PinningMode::Learn
                && shared
                    .pinning
                    .is_pinned(&pinning_key(flow), &name, Instant::now())
            {
                return Plan::Passthrough {
                    reason: format!(
                        "learned pinning: client refuses our certificate ({})",
                        pinning_key(flow)
                    ),
                    flagged: true,
                };
            }
            flow.decide(Decision::Intercept, decision.reason);
            Plan::Intercept { name, hello }
        }
    }
}

/// Who learned pinning is kept for: the flow's user/device, else its address.
pub fn pinning_key(flow: &Flow) -> String {
    pinning_subject(
        flow.identity.user.as_deref(),
        flow.identity.device.as_deref(),
        flow.client.ip(),
    )
}

/// Whether two host names (or authorities) name the same host: compared
/// case-insensitively, ignoring a port and a trailing dot; IPv6 brackets
/// are ignored too.
pub fn same_host(a: &str, b: &str) -> bool {
    normal_host(a) == normal_host(b)
}

fn normal_host(h: &str) -> String {
    let h = h.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The names one request gives for its host: the URI's authority (h2
/// `:authority`, or an absolute-form h1 target) and the `Host` header.
fn request_hosts(req: &http::request::Parts) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = req.uri.authority() {
        out.push(a.as_str().to_string());
    }
    for v in req.headers.get_all(http::header::HOST) {
        out.push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    out
}

/// The per-request half of the fronting check, handed to the HTTP relay:
/// a request whose `Host` or `:authority` names another host than the one
/// the flow was decided on (SNI, CONNECT target, or the absolute URI of a
/// plain request) is answered 421 with the block page and recorded as a
/// `policy` event `domain_fronting`. `address` is the destination address
/// the connection actually goes to (a CONNECT to an address, a redirected
/// flow's original destination): a `Host` naming exactly that address
/// names the same server, not another host, and is let through.
pub fn authority_check(shared: &Shared, address: Option<IpAddr>) -> AuthorityCheck {
    let events = shared.events.clone();
    Arc::new(move |flow: &FlowContext, req: &http::request::Parts| {
        let bad = request_hosts(req).into_iter().find(|h| {
            !same_host(h, &flow.host)
                && !address.is_some_and(|a| normal_host(h).parse::<IpAddr>() == Ok(a))
        })?;
        let reason = format!(
            "domain-fronting: request for {bad} on a connection decided for {}",
            flow.host
        );
        let id = uuid::Uuid::now_v7();
        events.emit_as(
            id,
            Event::Policy(flow.stamp().policy("domain_fronting", "block", &reason)),
        );
        tracing::warn!(flow_id = %flow.id, %reason, "request blocked");
        let mut page = blocked_page(&reason, Some(id), wants_json(&req.headers));
        *page.status_mut() = http::StatusCode::MISDIRECTED_REQUEST;
        page.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        Some(page)
    })
}

/// Whether policy refuses an explicit CONNECT target by its name (or
/// address) before anything is dialed: the flow then never touches the
/// server, and the block is carried out on the client's first bytes (the
/// block page for TLS).
pub fn blocked_before_dial(flow: &Flow, shared: &Shared) -> bool {
    let Some(target) = flow.target.as_ref().filter(|_| flow.mode == Mode::Explicit) else {
        return false;
    };
    let app = shared
        .catalog
        .lookup_host(&target.host)
        .map(|a| a.id.clone());
    let decision = shared
        .policy
        .decide(Some(&target.host), app.as_deref(), false, &flow.identity);
    decision.action == PolicyAction::Block
}

/// Decides on one absolute-form plain-HTTP request to `host`. Returns the
/// policy action (recorded in `flow`).
pub fn on_http_request(flow: &mut Flow, shared: &Shared, host: &str) -> PolicyAction {
    // Plain HTTP, read (when intercepted) by the same inspection.
    flow.seen.protocol = Some("http".into());
    flow.seen.class = Some("inspectable".into());
    flow.seen.app = shared.catalog.lookup_host(host).map(|a| a.id.clone());
    let decision =
        shared
            .policy
            .decide(Some(host), flow.seen.app.as_deref(), false, &flow.identity);
    let action = decision.action;
    flow.decision = match action {
        PolicyAction::Intercept => Decision::Intercept,
        PolicyAction::Passthrough => Decision::Passthrough,
        PolicyAction::Block => Decision::Block,
    };
    flow.reason = decision.reason;
    flow.flagged = decision.flagged;
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_ignores_case_port_and_trailing_dot() {
        assert!(same_host("Chat.Example.com.", "chat.example.com"));
        assert!(same_host("chat.example.com:443", "CHAT.example.com"));
        assert!(same_host("[::1]:8443", "::1"));
        assert!(same_host("127.0.0.1:443", "127.0.0.1"));
        assert!(!same_host("chat.example.com", "cdn.example.com"));
        assert!(!same_host("example.com", "example.com.evil"));
    }

    #[test]
    fn an_address_host_is_normalised_for_comparison() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(normal_host("127.0.0.1:8443").parse::<IpAddr>(), Ok(a));
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(normal_host("[::1]:8443").parse::<IpAddr>(), Ok(v6));
    }

    #[test]
    fn request_hosts_reads_authority_and_host() {
        let req = http::Request::builder()
            .uri("https://a.example/x")
            .header(http::header::HOST, "b.example")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        assert_eq!(request_hosts(&parts), vec!["a.example", "b.example"]);
    }
}
