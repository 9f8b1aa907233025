//! What a client did before a flow, for flows that say nothing of
//! themselves: the DNS answers it received (address → name, via
//! [`ResolvedNames`]) and the apps it was seen signalling with (a call's
//! media follows its app's TLS or MQTT signalling within seconds).
//!
//! Sans-IO: time is seconds on the caller's scale; the capture reader
//! feeds it in packet order, the gateway could feed it from its events.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::dns::{AnswerData, DnsMessage};
use super::resolved::{ResolvedLimits, ResolvedNames};

/// Bounds of a [`ClientContext`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextLimits {
    /// Resolved-name map bounds.
    pub resolved: ResolvedLimits,
    /// How long an app's signalling counts as "just before", seconds.
    pub signal_window: f64,
    /// Clients remembered at most (each keeps at most 8 recent apps).
    pub clients: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        Self {
            resolved: ResolvedLimits::default(),
            signal_window: 300.0,
            clients: 65_536,
        }
    }
}

/// Resolved names and recent signalling, per client.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    limits: ContextLimits,
    /// Keyed by (client, server address): answers are per resolver client,
    /// but an address means the same name to every client, so the map is
    /// shared and the client only matters for signalling.
    resolved: ResolvedNames,
    /// Per client: (time, app, server address), oldest first.
    recent: HashMap<IpAddr, VecDeque<(f64, String, IpAddr)>>,
}

impl ClientContext {
    /// An empty context with these bounds.
    pub fn new(limits: ContextLimits) -> Self {
        Self {
            limits,
            resolved: ResolvedNames::new(limits.resolved),
            recent: HashMap::new(),
        }
    }

    /// Takes the address records of a DNS response: each address stands
    /// for the name the client asked for (the question, not the CDN name
    /// at the end of a CNAME chain).
    pub fn observe_dns(&mut self, msg: &DnsMessage, now: f64) {
        if !msg.response || msg.rcode != 0 {
            return;
        }
        for a in &msg.answers {
            if let AnswerData::Address(addr) = a.data {
                self.resolved.insert(addr, &msg.qname, a.ttl, now);
            }
        }
    }

    /// Takes `name` for `addr` from another source than DNS (a TLS flow's
    /// SNI to that address, or the gateway's own resolution of a CONNECT
    /// host), valid for `ttl_secs`.
    pub fn observe_name(&mut self, addr: IpAddr, name: &str, ttl_secs: u32, now: f64) {
        self.resolved.insert(addr, name, ttl_secs, now);
    }

    /// Records that `client` used `app` with `server` (a verdict of medium
    /// confidence or better) at `now`.
    pub fn observe_app(&mut self, client: IpAddr, server: IpAddr, app: &str, now: f64) {
        if !self.recent.contains_key(&client) && self.recent.len() >= self.limits.clients {
            // Forget the client whose latest activity is oldest.
            if let Some(old) = self
                .recent
                .iter()
                .min_by(|a, b| {
                    let t =
                        |q: &VecDeque<(f64, String, IpAddr)>| q.back().map_or(f64::MIN, |e| e.0);
                    t(a.1).total_cmp(&t(b.1))
                })
                .map(|(k, _)| *k)
            {
                self.recent.remove(&old);
            }
        }
        let q = self.recent.entry(client).or_default();
        q.retain(|(_, a, s)| a != app || *s != server);
        q.push_back((now, app.to_owned(), server));
        while q.len() > 8 {
            q.pop_front();
        }
    }

    /// The name `addr` was resolved from, if still live at `now`.
    pub fn resolved(&self, addr: IpAddr, now: f64) -> Option<&str> {
        self.resolved.lookup(addr, now)
    }

    /// Apps `client` used within the window before `now`, most recent
    /// first.
    pub fn signalled(&self, client: IpAddr, now: f64) -> Vec<String> {
        self.recent_apps(client, None, now)
    }

    /// Apps `client` used with this very `server` within the window before
    /// `now` (a call relayed by the host that carried its signalling).
    pub fn signalled_to(&self, client: IpAddr, server: IpAddr, now: f64) -> Vec<String> {
        self.recent_apps(client, Some(server), now)
    }

    fn recent_apps(&self, client: IpAddr, server: Option<IpAddr>, now: f64) -> Vec<String> {
        let window = self.limits.signal_window;
        let mut out: Vec<String> = Vec::new();
        for (t, a, s) in self.recent.get(&client).into_iter().flatten().rev() {
            if *t <= now && now - *t <= window && server.is_none_or(|x| x == *s) && !out.contains(a)
            {
                out.push(a.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::dns;

    #[test]
    fn answers_and_signalling_are_remembered_within_bounds() {
        let mut c = ClientContext::new(ContextLimits::default());
        let addr: IpAddr = "157.240.1.53".parse().unwrap();
        let r = dns::build_response(1, "g.whatsapp.net", dns::TYPE_A, &[addr], 120);
        c.observe_dns(&dns::parse(&r).unwrap(), 10.0);
        assert_eq!(c.resolved(addr, 100.0), Some("g.whatsapp.net"));
        let client: IpAddr = "10.8.0.2".parse().unwrap();
        let (wa, slack): (IpAddr, IpAddr) =
            ("157.240.1.60".parse().unwrap(), "3.3.3.3".parse().unwrap());
        c.observe_app(client, wa, "whatsapp", 11.0);
        c.observe_app(client, slack, "slack", 12.0);
        c.observe_app(client, wa, "whatsapp", 13.0);
        assert_eq!(c.signalled(client, 14.0), vec!["whatsapp", "slack"]);
        assert_eq!(c.signalled_to(client, slack, 14.0), vec!["slack"]);
        assert!(c.signalled(client, 1000.0).is_empty());
    }
}
