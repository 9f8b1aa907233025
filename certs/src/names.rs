//! Which names a certificate covers: RFC 6125 matching of a requested name
//! against presented subjectAltNames, and RFC 5280 name constraints.
//!
//! Only subjectAltNames count; the subject CN is ignored, as webpki (which
//! verifies the upstream leg) ignores it too.

use std::fmt;
use std::net::IpAddr;

use x509_parser::extensions::{GeneralName, NameConstraints};

use crate::CertError;

/// The name a leaf is minted for: the client's SNI, or the IP address it
/// connected to when it sent none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LeafName {
    /// A DNS name, lowercase, without a trailing dot.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl LeafName {
    /// Parses an SNI host name or an IP literal.
    pub fn parse(host: &str) -> Result<Self, CertError> {
        let invalid = || CertError::InvalidName {
            name: host.to_string(),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let trimmed = host.strip_suffix('.').unwrap_or(host);
        // A wildcard is a pattern, never a name a client asks for.
        if trimmed.contains('*') {
            return Err(invalid());
        }
        let dns = rustls_pki_types::DnsName::try_from(trimmed).map_err(|_| invalid())?;
        Ok(Self::Dns(dns.as_ref().to_ascii_lowercase()))
    }
}

impl fmt::Display for LeafName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(d) => f.write_str(d),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Whether any presented subjectAltName covers `name`.
pub(crate) fn covered_by(name: &LeafName, presented: &[GeneralName<'_>]) -> bool {
    presented.iter().any(|gn| match (name, gn) {
        (LeafName::Dns(n), GeneralName::DNSName(p)) => dns_matches(p, n),
        (LeafName::Ip(ip), GeneralName::IPAddress(p)) => ip_bytes(ip) == *p,
        _ => false,
    })
}

/// RFC 6125 §6.4: exact match, or a wildcard that is the whole left-most
/// label and stands for exactly one label. Partial wildcards (`f*.x.com`)
/// and wildcards over a single remaining label (`*.com`) never match.
pub(crate) fn dns_matches(presented: &str, reference: &str) -> bool {
    let presented = presented.strip_suffix('.').unwrap_or(presented);
    match presented.strip_prefix("*.") {
        Some(rest) => {
            if rest.contains('*') || !rest.contains('.') {
                return false;
            }
            match reference.split_once('.') {
                Some((label, ref_rest)) => !label.is_empty() && ref_rest.eq_ignore_ascii_case(rest),
                None => false,
            }
        }
        None => !presented.contains('*') && presented.eq_ignore_ascii_case(reference),
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// A CA's name constraints, owned so minting need not re-parse the CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Constraints {
    permitted: Vec<Subtree>,
    excluded: Vec<Subtree>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subtree {
    Dns(String),
    Ip(Vec<u8>),
    /// A name type leaves never carry: it constrains nothing we mint.
    Other,
}

impl Constraints {
    pub(crate) fn from_x509(nc: &NameConstraints<'_>) -> Self {
        let own = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
            subtrees
                .iter()
                .flatten()
                .map(|s| match &s.base {
                    GeneralName::DNSName(d) => Subtree::Dns(d.to_string()),
                    GeneralName::IPAddress(b) => Subtree::Ip(b.to_vec()),
                    _ => Subtree::Other,
                })
                .collect()
        };
        Self {
            permitted: own(&nc.permitted_subtrees),
            excluded: own(&nc.excluded_subtrees),
        }
    }

    /// Whether `name` is allowed (RFC 5280 §4.2.1.10). Subtrees of another
    /// name type do not constrain `name`.
    pub(crate) fn allow(&self, name: &LeafName) -> bool {
        let matches = |s: &Subtree| match (name, s) {
            (LeafName::Dns(n), Subtree::Dns(c)) => dns_in_subtree(n, c),
            (LeafName::Ip(ip), Subtree::Ip(c)) => ip_in_subtree(ip, c),
            _ => false,
        };
        let same_type = |s: &Subtree| {
            matches!(
                (name, s),
                (LeafName::Dns(_), Subtree::Dns(_)) | (LeafName::Ip(_), Subtree::Ip(_))
            )
        };
        if self.excluded.iter().any(matches) {
            return false;
        }
        !self.permitted.iter().any(same_type) || self.permitted.iter().any(matches)
    }
}

/// `example.com` permits itself and its subdomains; `.example.com` only
/// its subdomains.
fn dns_in_subtree(name: &str, constraint: &str) -> bool {
    if constraint.is_empty() {
        return true;
    }
    match constraint.strip_prefix('.') {
        Some(suffix) => ends_with_label_suffix(name, suffix),
        None => name.eq_ignore_ascii_case(constraint) || ends_with_label_suffix(name, constraint),
    }
}

fn ends_with_label_suffix(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// An iPAddress subtree is the address followed by a mask of equal length.
fn ip_in_subtree(ip: &IpAddr, constraint: &[u8]) -> bool {
    let addr = ip_bytes(ip);
    if constraint.len() != addr.len() * 2 {
        return false;
    }
    let (net, mask) = constraint.split_at(addr.len());
    addr.iter()
        .zip(net)
        .zip(mask)
        .all(|((a, n), m)| a & m == n & m)
}

/// A human form of a GeneralName in a name constraint, for `ca show`.
pub(crate) fn describe_general_name(gn: &GeneralName<'_>) -> String {
    match gn {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
            let (net, mask) = b.split_at(b.len() / 2);
            let prefix: u32 = mask.iter().map(|m| m.count_ones()).sum();
            let addr = if net.len() == 4 {
                IpAddr::from(<[u8; 4]>::try_from(net).expect("length checked"))
            } else {
                IpAddr::from(<[u8; 16]>::try_from(net).expect("length checked"))
            };
            format!("IP:{addr}/{prefix}")
        }
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::DirectoryName(n) => format!("DirName:{n}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_and_rejects() {
        assert_eq!(
            LeafName::parse("WWW.Example.COM.").unwrap(),
            LeafName::Dns("www.example.com".into())
        );
        assert_eq!(
            LeafName::parse("10.1.2.3").unwrap(),
            LeafName::Ip("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            LeafName::parse("::1").unwrap(),
            LeafName::Ip("::1".parse().unwrap())
        );
        for bad in ["", "*.example.com", "a b.com", "exa mple", "-"] {
            assert!(LeafName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn wildcard_rules() {
        let cases = [
            ("example.com", "example.com", true),
            ("EXAMPLE.com", "example.com", true),
            ("example.com.", "example.com", true),
            ("example.com", "www.example.com", false),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "WWW.EXAMPLE.COM", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.com", "example.com", false),
            ("f*.example.com", "foo.example.com", false),
            ("*oo.example.com", "foo.example.com", false),
            ("www.*.com", "www.example.com", false),
            ("*.*.example.com", "a.b.example.com", false),
            ("*", "localhost", false),
        ];
        for (presented, reference, want) in cases {
            assert_eq!(
                dns_matches(presented, reference),
                want,
                "{presented} vs {reference}"
            );
        }
    }

    #[test]
    fn covered_by_checks_type() {
        let sans = [
            GeneralName::DNSName("*.example.com"),
            GeneralName::IPAddress(&[192, 0, 2, 7]),
        ];
        assert!(covered_by(
            &LeafName::parse("a.example.com").unwrap(),
            &sans
        ));
        assert!(covered_by(&LeafName::parse("192.0.2.7").unwrap(), &sans));
        assert!(!covered_by(&LeafName::parse("192.0.2.8").unwrap(), &sans));
        assert!(!covered_by(&LeafName::parse("example.com").unwrap(), &sans));
        // A DNS SAN spelling an address does not cover the address.
        let dns_ip = [GeneralName::DNSName("192.0.2.7")];
        assert!(!covered_by(&LeafName::parse("192.0.2.7").unwrap(), &dns_ip));
    }

    #[test]
    fn dns_subtrees() {
        assert!(dns_in_subtree("corp.example", "corp.example"));
        assert!(dns_in_subtree("a.corp.example", "corp.example"));
        assert!(!dns_in_subtree("evilcorp.example", "corp.example"));
        assert!(!dns_in_subtree("corp.example", ".corp.example"));
        assert!(dns_in_subtree("a.corp.example", ".corp.example"));
    }

    #[test]
    fn constraints_allow() {
        let c = Constraints {
            permitted: vec![Subtree::Dns("corp.example".into())],
            excluded: vec![Subtree::Dns("secret.corp.example".into())],
        };
        assert!(c.allow(&LeafName::parse("mail.corp.example").unwrap()));
        assert!(!c.allow(&LeafName::parse("example.org").unwrap()));
        assert!(!c.allow(&LeafName::parse("x.secret.corp.example").unwrap()));
        // No IP subtree: addresses are unconstrained.
        assert!(c.allow(&LeafName::parse("192.0.2.1").unwrap()));
        assert!(Constraints::default().allow(&LeafName::parse("any.where").unwrap()));
    }

    #[test]
    fn ip_subtrees() {
        let ten8 = [10, 0, 0, 0, 255, 0, 0, 0];
        assert!(ip_in_subtree(&"10.9.8.7".parse().unwrap(), &ten8));
        assert!(!ip_in_subtree(&"11.0.0.1".parse().unwrap(), &ten8));
        assert!(!ip_in_subtree(&"::1".parse().unwrap(), &ten8));
        assert_eq!(
            describe_general_name(&GeneralName::IPAddress(&ten8)),
            "IP:10.0.0.0/8"
        );
    }
}
