//! Per-flow decision: intercept, passthrough or block.

use crate::config::{InterceptConfig, PolicyAction, PolicyRule, QuicAction};

use super::identity::Identity;

/// What to do with a flow, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The action.
    pub action: PolicyAction,
    /// Why, for events.
    pub reason: String,
    /// A passthrough the security team should see (pinned, unreadable).
    pub flagged: bool,
}

/// The compiled policy of `[intercept]`.
#[derive(Debug, Clone)]
pub struct Policy {
    default: PolicyAction,
    rules: Vec<PolicyRule>,
    builtin_pinned: bool,
}

impl Policy {
    /// Builds the policy from `[intercept]`.
    pub fn new(config: &InterceptConfig) -> Self {
        Self {
            default: config.default_action,
            rules: config.rules.clone(),
            builtin_pinned: config.builtin_pinned_passthrough
                && config.pinning != crate::config::PinningMode::Off,
        }
    }

    /// Decides for a flow to `host` (SNI or CONNECT host) of `app` (from
    /// the catalog; `pinned` when the catalog says its clients pin) by `who`.
    pub fn decide(
        &self,
        host: Option<&str>,
        app: Option<&str>,
        pinned: bool,
        who: &Identity,
    ) -> Decision {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule_matches(rule, host, app, who) {
                let reason = if rule.reason.is_empty() {
                    format!("intercept.rules[{i}]")
                } else {
                    rule.reason.clone()
                };
                return Decision {
                    action: rule.action,
                    flagged: rule.action == PolicyAction::Passthrough,
                    reason,
                };
            }
        }
        if self.builtin_pinned && pinned {
            return Decision {
                action: PolicyAction::Passthrough,
                reason: format!("known pinned app: {}", app.unwrap_or("unknown")),
                flagged: true,
            };
        }
        Decision {
            action: self.default,
            reason: "default".into(),
            flagged: self.default == PolicyAction::Passthrough,
        }
    }
}

impl Policy {
    /// Decides for a QUIC flow: the first matching rule's `quic` (a rule
    /// whose `action` is block blocks QUIC too); no rule matching: block,
    /// so the client falls back to TCP where the full policy applies.
    pub fn decide_quic(
        &self,
        host: Option<&str>,
        app: Option<&str>,
        who: &Identity,
    ) -> QuicDecision {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule_matches(rule, host, app, who) {
                let reason = if rule.reason.is_empty() {
                    format!("intercept.rules[{i}].quic")
                } else {
                    rule.reason.clone()
                };
                let action = if rule.action == PolicyAction::Block {
                    QuicAction::Block
                } else {
                    rule.quic
                };
                return QuicDecision {
                    action,
                    reason,
                    by_rule: true,
                };
            }
        }
        QuicDecision {
            action: QuicAction::Block,
            reason: "QUIC is blocked unless a rule says otherwise: the client falls back to TCP"
                .into(),
            by_rule: false,
        }
    }
}

/// What a QUIC flow gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicDecision {
    /// The action.
    pub action: QuicAction,
    /// Why, for events.
    pub reason: String,
    /// A rule decided (else the default block, which is no policy event).
    pub by_rule: bool,
}

fn rule_matches(rule: &PolicyRule, host: Option<&str>, app: Option<&str>, who: &Identity) -> bool {
    let app_ok = rule.apps.is_empty() || app.is_some_and(|a| rule.apps.iter().any(|r| r == a));
    let host_ok = rule.hosts.is_empty()
        || host.is_some_and(|h| rule.hosts.iter().any(|p| host_matches(p, h)));
    let user_ok =
        rule.users.is_empty() || who.user.as_ref().is_some_and(|u| rule.users.contains(u));
    let group_ok = rule.groups.is_empty() || who.groups.iter().any(|g| rule.groups.contains(g));
    app_ok && host_ok && user_ok && group_ok
}

/// `example.com` matches exactly; `*.example.com` matches any subdomain
/// (not the apex). Case-insensitive; a trailing dot is ignored.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.EXAMPLE.com."));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(host_matches("example.com", "Example.COM"));
    }

    #[test]
    fn rules_can_name_apps() {
        let cfg = InterceptConfig {
            rules: vec![PolicyRule {
                hosts: vec![],
                apps: vec!["telegram".into()],
                users: vec![],
                groups: vec![],
                action: PolicyAction::Block,
                reason: "Telegram is not approved".into(),
                quic: QuicAction::Block,
            }],
            ..InterceptConfig::default()
        };
        let p = Policy::new(&cfg);
        let anon = Identity::default();
        let d = p.decide(None, Some("telegram"), false, &anon);
        assert_eq!(
            (d.action, d.reason.as_str()),
            (PolicyAction::Block, "Telegram is not approved")
        );
        assert_eq!(
            p.decide(None, Some("slack"), false, &anon).action,
            PolicyAction::Intercept
        );
    }

    #[test]
    fn quic_follows_the_first_rule_and_is_blocked_by_default() {
        let cfg = InterceptConfig {
            rules: vec![
                PolicyRule {
                    hosts: vec!["*.blocked.test".into()],
                    apps: vec![],
                    users: vec![],
                    groups: vec![],
                    action: PolicyAction::Block,
                    reason: String::new(),
                    quic: QuicAction::Pass,
                },
                PolicyRule {
                    hosts: vec!["*.pass.test".into()],
                    apps: vec![],
                    users: vec![],
                    groups: vec![],
                    action: PolicyAction::Intercept,
                    reason: "quic ok".into(),
                    quic: QuicAction::Pass,
                },
            ],
            ..InterceptConfig::default()
        };
        let p = Policy::new(&cfg);
        let anon = Identity::default();
        let d = p.decide_quic(Some("a.pass.test"), None, &anon);
        assert_eq!(
            (d.action, d.reason.as_str(), d.by_rule),
            (QuicAction::Pass, "quic ok", true)
        );
        let d = p.decide_quic(Some("a.blocked.test"), None, &anon);
        assert_eq!((d.action, d.by_rule), (QuicAction::Block, true));
        let d = p.decide_quic(Some("other.test"), None, &anon);
        assert_eq!((d.action, d.by_rule), (QuicAction::Block, false));
    }

    #[test]
    fn rules_first_match_then_pinned_then_default() {
        let cfg = InterceptConfig {
            rules: vec![
                PolicyRule {
                    hosts: vec!["*.telegram.org".into()],
                    apps: vec![],
                    users: vec![],
                    groups: vec![],
                    action: PolicyAction::Block,
                    reason: "no telegram".into(),
                    quic: QuicAction::Block,
                },
                PolicyRule {
                    hosts: vec![],
                    apps: vec![],
                    users: vec![],
                    groups: vec!["execs".into()],
                    action: PolicyAction::Passthrough,
                    reason: String::new(),
                    quic: QuicAction::Pass,
                },
            ],
            ..InterceptConfig::default()
        };
        let p = Policy::new(&cfg);
        let anon = Identity::default();
        assert_eq!(
            p.decide(Some("web.telegram.org"), None, false, &anon)
                .action,
            PolicyAction::Block
        );
        let d = p.decide(Some("g.whatsapp.net"), Some("whatsapp"), true, &anon);
        assert_eq!((d.action, d.flagged), (PolicyAction::Passthrough, true));
        assert_eq!(
            p.decide(Some("slack.com"), Some("slack"), false, &anon)
                .action,
            PolicyAction::Intercept
        );
        let exec = Identity {
            groups: vec!["execs".into()],
            ..Identity::default()
        };
        let d = p.decide(Some("slack.com"), Some("slack"), false, &exec);
        assert_eq!(
            (d.action, d.reason.as_str()),
            (PolicyAction::Passthrough, "intercept.rules[1]")
        );
    }
}
