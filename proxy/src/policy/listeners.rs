//! The gateway's own listeners are never a destination: a tunnel into the
//! explicit proxy nests flows and loses attribution, and one into the admin
//! listener reaches what only loopback should.

use std::net::{IpAddr, SocketAddr};

use crate::config::canonical_ip;

/// Every address the gateway listens on (explicit proxy, transparent,
/// admin and any other bound listener).
#[derive(Debug, Clone, Default)]
pub struct OwnListeners(Vec<SocketAddr>);

impl OwnListeners {
    /// The bound addresses.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(addrs.into_iter().collect())
    }

    /// Whether connecting to `dst` would reach one of the listeners: the
    /// same address, or the same port on an address of this host when the
    /// listener is bound to `0.0.0.0` / `::` (or `dst` is unspecified,
    /// which the kernel sends to this host).
    pub fn contains(&self, dst: SocketAddr) -> bool {
        let ip = canonical_ip(dst.ip());
        let mut local = None;
        self.0.iter().any(|l| {
            if l.port() != dst.port() {
                return false;
            }
            let own = canonical_ip(l.ip());
            if own == ip || (ip.is_unspecified() && (own.is_loopback() || own.is_unspecified())) {
                return true;
            }
            own.is_unspecified() && *local.get_or_insert_with(|| host_address(ip))
        })
    }
}

/// Whether `ip` belongs to this host: loopback, or on one of its interfaces.
fn host_address(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        // Unknown: refusing is the safe side for a port the gateway listens on.
        return true;
    };
    addrs.filter_map(|a| a.address).any(|a| {
        let found = if let Some(v4) = a.as_sockaddr_in() {
            Some(IpAddr::V4(v4.ip()))
        } else {
            a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        };
        found.map(canonical_ip) == Some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_addresses_and_wildcard_binds_by_port() {
        let own = OwnListeners::new([sa("127.0.0.1:3128"), sa("0.0.0.0:8443"), sa("[::]:9090")]);
        for dst in [
            "127.0.0.1:3128",
            "0.0.0.0:3128",
            "[::ffff:127.0.0.1]:3128",
            "127.0.0.1:8443",
            "127.9.9.9:8443",
            "[::1]:9090",
            "127.0.0.1:9090",
        ] {
            assert!(own.contains(sa(dst)), "{dst} is the gateway");
        }
        for dst in ["127.0.0.2:3128", "127.0.0.1:80", "93.184.216.34:8443"] {
            assert!(!own.contains(sa(dst)), "{dst} is not the gateway");
        }
    }
}
