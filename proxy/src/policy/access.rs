//! Never an open proxy: client allow-list and destination deny-list.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::config::{canonical_ip, Cidr, ProxyConfig};

/// Client and destination access rules, built once from `[proxy]`.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    clients: Vec<Cidr>,
    destinations: Vec<Cidr>,
}

impl AccessPolicy {
    /// Builds the policy from `[proxy]`.
    pub fn new(config: &ProxyConfig) -> Self {
        Self {
            clients: config.allowed_clients.clone(),
            destinations: config.allowed_destinations.clone(),
        }
    }

    /// Whether a client at `ip` may use the gateway.
    pub fn client_allowed(&self, ip: IpAddr) -> bool {
        self.clients.iter().any(|c| c.contains(ip))
    }

    /// Whether the gateway may connect to `ip` for a client: public addresses
    /// always; loopback, private, link-local and metadata only when listed in
    /// `allowed_destinations`.
    ///
    /// An IPv6 address that carries an IPv4 address (NAT64, IPv4-compatible,
    /// 6to4, Teredo) reaches that IPv4 host through a translator or tunnel,
    /// so each embedded address must be allowed too.
    pub fn destination_allowed(&self, ip: IpAddr) -> bool {
        let allowed = |ip: IpAddr| {
            !is_special_destination(ip) || self.destinations.iter().any(|c| c.contains(ip))
        };
        if !allowed(ip) {
            return false;
        }
        let listed = self.destinations.iter().any(|c| c.contains(ip));
        listed || embedded_ipv4(ip).into_iter().all(|v4| allowed(v4.into()))
    }
}

/// Ranges a proxy must not reach on a client's behalf by default: the
/// gateway's own host, internal networks, link-local (cloud metadata lives at
/// 169.254.169.254 and fd00:ec2::254) and addresses that are not unicast.
const SPECIAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fec0::/10",
    "fe80::/10",
    "ff00::/8",
];

/// Whether `ip` is loopback, private, link-local, metadata or otherwise not a
/// public unicast address.
pub fn is_special_destination(ip: IpAddr) -> bool {
    static NETS: std::sync::OnceLock<Vec<IpNet>> = std::sync::OnceLock::new();
    let nets = NETS.get_or_init(|| {
        SPECIAL
            .iter()
            .map(|s| s.parse::<IpNet>().expect("static CIDR"))
            .collect()
    });
    let ip = canonical_ip(ip);
    nets.iter().any(|net| net.contains(&ip))
}

/// The IPv4 addresses an IPv6 address carries: NAT64 (`64:ff9b::/96`),
/// IPv4-compatible (`::a.b.c.d`), 6to4 (`2002::/16`) and Teredo
/// (`2001::/32`: server and obfuscated client). IPv4-mapped addresses are
/// canonicalised before this (`canonical_ip`).
pub fn embedded_ipv4(ip: IpAddr) -> Vec<Ipv4Addr> {
    let IpAddr::V6(v6) = canonical_ip(ip) else {
        return Vec::new();
    };
    let seg = v6.segments();
    let bits = u128::from(v6);
    let low32 = Ipv4Addr::from(bits as u32);
    match seg {
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => vec![low32],
        // `::` and `::1` are themselves special; the rest of ::/96 is IPv4-compatible.
        [0, 0, 0, 0, 0, 0, _, _] if bits > 1 => vec![low32],
        [0x2002, ..] => vec![Ipv4Addr::from((bits >> 80) as u32)],
        [0x2001, 0, ..] => vec![
            Ipv4Addr::from((bits >> 64) as u32),
            Ipv4Addr::from(!(bits as u32)),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_and_metadata_are_refused_by_default() {
        let p = AccessPolicy::new(&ProxyConfig::default());
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!p.destination_allowed(ip(s)), "{s} should be refused");
        }
        for s in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(p.destination_allowed(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn ipv6_forms_embedding_a_denied_ipv4_are_refused() {
        let p = AccessPolicy::new(&ProxyConfig::default());
        for s in [
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "::7f00:1",
            "::a9fe:a9fe",
            "::0a00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:0:a9fe:a9fe::1",
            "fec0::1",
            "feff::1",
        ] {
            assert!(!p.destination_allowed(ip(s)), "{s} should be refused");
        }
        for s in ["64:ff9b::808:808", "2002:808:808::1", "::808:808"] {
            assert!(p.destination_allowed(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn allowed_destinations_open_specific_ranges() {
        let cfg = ProxyConfig {
            allowed_destinations: vec!["127.0.0.0/8".parse().unwrap()],
            ..ProxyConfig::default()
        };
        let p = AccessPolicy::new(&cfg);
        assert!(p.destination_allowed(ip("127.0.0.1")));
        assert!(!p.destination_allowed(ip("10.0.0.1")));
    }

    #[test]
    fn only_listed_clients_are_allowed() {
        let p = AccessPolicy::new(&ProxyConfig::default());
        assert!(p.client_allowed(ip("127.0.0.1")));
        assert!(p.client_allowed(ip("::1")));
        assert!(!p.client_allowed(ip("10.8.0.2")));
    }
}
