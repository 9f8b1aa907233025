//! Decide: every per-flow decision in one place — what the first bytes
//! allow (a malformed ClientHello, a non-TLS protocol, TLS without a name),
//! learned pinning, and `[intercept]` policy by host, app and user. The
//! outcome is a [`Plan`] the flow carries out.

use std::net::IpAddr;
use std::time::Instant;

use gatehouse_inspectors::identify::Protocol;

use crate::config::PolicyAction;
use crate::state::Shared;

use super::context::{CloseReason, Decision, Flow};
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
            let host = id.server_name().map(str::to_string);
            if id.protocol == Protocol::Tls {
                // A ClientHello we cannot parse must not become an unread
                // passthrough: that would be a way around inspection.
                return Plan::Block(Block {
                    reason: format!(
                        "malformed TLS ClientHello: {}",
                        id.error.as_deref().unwrap_or("unparsable")
                    ),
                    close: CloseReason::MalformedClientHello,
                    flagged: true,
                    policy_event: None,
                    tls_alert: false,
                });
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
                    policy_event: None,
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
            // The name to verify: SNI, else the CONNECT host when it is a name.
            let name = hello.sni.clone().or_else(|| {
                flow.target
                    .as_ref()
                    .filter(|t| t.host.parse::<IpAddr>().is_err())
                    .map(|t| t.host.clone())
            });
            match name {
                None => Plan::Passthrough {
                    reason: "TLS without a server name".into(),
                    flagged: true,
                },
                Some(name) => {
                    let pinned = flow.seen.pinned;
                    on_tls(flow, shared, name, hello, pinned)
                }
            }
        }
    }
}

/// Decides on a TLS flow for `name`: learned pinning, then policy.
pub fn on_tls(flow: &mut Flow, shared: &Shared, name: String, hello: Hello, pinned: bool) -> Plan {
    if shared
        .pinning
        .is_pinned(flow.client.ip(), &name, Instant::now())
    {
        return Plan::Passthrough {
            reason: "learned pinning: client refuses our certificate".into(),
            flagged: true,
        };
    }
    let decision = shared.policy.decide(
        Some(&name),
        flow.seen.app.as_deref(),
        pinned,
        &flow.identity,
    );
    match decision.action {
        PolicyAction::Block => Plan::Block(Block {
            reason: decision.reason,
            close: CloseReason::Blocked,
            flagged: false,
            policy_event: Some("policy_block"),
            tls_alert: true,
        }),
        PolicyAction::Passthrough => Plan::Passthrough {
            reason: decision.reason,
            flagged: decision.flagged,
        },
        PolicyAction::Intercept => {
            flow.decide(Decision::Intercept, decision.reason);
            Plan::Intercept { name, hello }
        }
    }
}

/// Decides on one absolute-form plain-HTTP request to `host`. Returns the
/// policy action (recorded in `flow`).
pub fn on_http_request(flow: &mut Flow, shared: &Shared, host: &str) -> PolicyAction {
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
