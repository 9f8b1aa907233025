//! `[dns]`: the transparent UDP 53 listener (DNS queries redirected with
//! nftables TPROXY), its resolver rules and bounds.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Cidr, Config, Problem};

/// `[dns]`: off when absent.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Where TPROXY delivers the datagrams (needs `CAP_NET_ADMIN` for
    /// `IP_TRANSPARENT`); `[::]` takes IPv4 and IPv6.
    pub listen: SocketAddr,
    /// Send every query to this resolver (the corporate one) instead of
    /// the address the client wrote to; the answer still comes back from
    /// the original address. Absent: each query goes to its original
    /// destination, checked like any flow's.
    pub upstream: Option<SocketAddr>,
    /// Resolver addresses a query may go to although they are private,
    /// loopback or link-local (the VPN's own resolver), besides
    /// `proxy.allowed_destinations`.
    pub resolvers: Vec<Cidr>,
    /// DNS flows (client address and port, resolver) tracked at once.
    pub max_flows: usize,
    /// New flows one client address may open per second (burst of twice
    /// as many); stub resolvers use a port per query, so this is about
    /// queries per second. More are dropped unrecorded.
    pub new_flows_per_second: u32,
    /// Time the resolver has to answer a query; also how long a flow waits
    /// for the client's next query.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Largest query or answer relayed, in bytes; larger ones are dropped
    /// with an event.
    pub max_message_bytes: usize,
    /// Longest an answer's address → name mapping is remembered (the
    /// record's TTL, at most this).
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Remove the `ech` parameter of HTTPS records, so that clients send
    /// their server name in the clear where the gateway's policy reads it.
    pub strip_ech: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8053)),
            upstream: None,
            resolvers: Vec::new(),
            max_flows: 10_000,
            new_flows_per_second: 50,
            query_timeout: Duration::from_secs(3),
            max_message_bytes: 4096,
            max_ttl: Duration::from_secs(3600),
            strip_ech: true,
        }
    }
}

/// Problems of `[dns]`, each naming its key.
pub(super) fn check(config: &Config, out: &mut Vec<Problem>, file: Option<&Path>) {
    let Some(d) = &config.dns else { return };
    for (key, bad, what) in [
        ("dns.max_flows", d.max_flows == 0, "must be at least 1"),
        (
            "dns.new_flows_per_second",
            d.new_flows_per_second == 0,
            "must be at least 1",
        ),
        (
            "dns.max_message_bytes",
            !(512..=65_535).contains(&d.max_message_bytes),
            "must be between 512 and 65535",
        ),
        (
            "dns.query_timeout",
            d.query_timeout.is_zero(),
            "must be longer than zero",
        ),
        (
            "dns.max_ttl",
            d.max_ttl.is_zero(),
            "must be longer than zero",
        ),
        (
            "dns.upstream",
            d.upstream
                .is_some_and(|u| u.port() == 0 || u.ip().is_unspecified()),
            "must be a resolver's address and port",
        ),
    ] {
        if bad {
            out.push(Problem::error(file, key, what));
        }
    }
    // Both UDP listeners set SO_REUSEADDR: on one port they would split
    // the datagrams between them.
    if let Some(q) = &config.quic {
        let (a, b) = (d.listen, q.listen);
        let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
        if a.port() != 0 && a.port() == b.port() && overlap {
            out.push(Problem::error(
                file,
                "dns.listen",
                format!("{a} is already used by quic.listen"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::load_str;

    fn errors(text: &str) -> Vec<String> {
        match load_str(text, Path::new("/nonexistent/gatehouse.toml")) {
            Ok(_) => Vec::new(),
            Err(p) => {
                p.0.iter()
                    .filter(|p| p.is_error())
                    .map(|p| p.to_string())
                    .collect()
            }
        }
    }

    #[test]
    fn dns_mistakes_name_their_key_and_file() {
        let all = errors(
            "[dns]\nlisten = \"[::]:8053\"\nmax_flows = 0\nquery_timeout = \"0s\"\n\
             max_message_bytes = 10\nupstream = \"10.8.0.53:0\"\n",
        )
        .join("\n");
        for key in [
            "dns.max_flows",
            "dns.query_timeout",
            "dns.max_message_bytes",
            "dns.upstream",
        ] {
            assert!(all.contains(key), "{key}: {all}");
        }
        assert!(all.contains("/nonexistent/gatehouse.toml"), "{all}");
        let bad = errors("[dns]\nresolvers = [\"10.8.0.300\"]\n").join("\n");
        assert!(bad.contains("dns.resolvers"), "{bad}");
        let same =
            errors("[quic]\nlisten = \"[::]:8443\"\n[dns]\nlisten = \"0.0.0.0:8443\"\n").join("\n");
        assert!(same.contains("dns.listen"), "{same}");
        let typo = errors("[dns]\nlisen = \"[::]:53\"\n").join("\n");
        assert!(typo.contains("lisen"), "{typo}");
    }

    #[test]
    fn dns_is_off_by_default_and_defaults_are_sane() {
        let ok = load_str("", Path::new("/x/gatehouse.toml")).unwrap();
        assert!(ok.config.dns.is_none());
        let ok = load_str(
            "[dns]\nlisten = \"[::]:8053\"\nresolvers = [\"10.8.0.53\"]\n",
            Path::new("/x/gatehouse.toml"),
        )
        .unwrap();
        let d = ok.config.dns.unwrap();
        assert!(d.strip_ech);
        assert!(d.resolvers[0].contains("10.8.0.53".parse().unwrap()));
    }
}
