//! Never an open proxy: client allow-list and destination deny-list.

use std::net::IpAddr;

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
    pub fn destination_allowed(&self, ip: IpAddr) -> bool {
        !is_special_destination(ip) || self.destinations.iter().any(|c| c.contains(ip))
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
