//! Published address ranges of messaging apps (`inspectors/catalog/
//! ranges.toml`, compiled in): weak evidence for flows that name nothing.
//!
//! Each block keeps its source so the evidence can say where it came from;
//! a block shared by several apps returns all of them, and the caller
//! decides (usually: none, unless other evidence narrows it to one).

use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::InspectError;

/// The shipped range data.
pub const BUILTIN_TOML: &str = include_str!("../../catalog/ranges.toml");

/// One `[[source]]` of the data file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RangeSource {
    /// The apps whose traffic these blocks carry.
    pub apps: Vec<String>,
    /// What the source is.
    pub name: String,
    /// Where it is published.
    pub url: String,
    /// When the blocks were taken from it (YYYY-MM-DD).
    pub retrieved: String,
    /// Caveats for readers.
    pub note: Option<String>,
    /// The blocks, as `addr/prefix`.
    pub cidrs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeFile {
    #[serde(rename = "source")]
    sources: Vec<RangeSource>,
}

/// A block matched by an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeMatch<'a> {
    /// The block, as written in the data.
    pub cidr: &'a str,
    /// Its source.
    pub source: &'a RangeSource,
}

/// The compiled ranges.
#[derive(Debug, Clone)]
pub struct Ranges {
    sources: Vec<RangeSource>,
    /// (first, last, source index, cidr index), addresses as IPv6
    /// (IPv4 mapped), sorted by first address.
    blocks: Vec<(u128, u128, usize, usize)>,
}

fn as_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn parse_cidr(text: &str) -> Option<(u128, u128)> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    let prefix = match addr {
        IpAddr::V4(_) if prefix <= 32 => prefix + 96,
        IpAddr::V6(_) if prefix <= 128 => prefix,
        _ => return None,
    };
    let host_bits = 128 - prefix;
    let mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let first = as_u128(addr);
    // A block written with host bits set is a typo, not a block.
    (first & mask == 0).then_some((first, first | mask))
}

impl Ranges {
    /// The shipped ranges, parsed once.
    pub fn builtin() -> &'static Ranges {
        static BUILTIN: OnceLock<Ranges> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            Ranges::from_toml(BUILTIN_TOML).expect("the shipped ranges are validated by tests")
        })
    }

    /// Parses range data, reporting every bad block at once.
    pub fn from_toml(text: &str) -> Result<Ranges, InspectError> {
        let file: RangeFile = toml::from_str(text).map_err(|e| InspectError::Malformed {
            protocol: "address ranges",
            reason: e.to_string(),
        })?;
        let mut blocks = Vec::new();
        let mut problems = Vec::new();
        for (si, s) in file.sources.iter().enumerate() {
            if s.apps.is_empty() {
                problems.push(format!("source[{si}]: no apps"));
            }
            for (ci, c) in s.cidrs.iter().enumerate() {
                match parse_cidr(c) {
                    Some((lo, hi)) => blocks.push((lo, hi, si, ci)),
                    None => problems.push(format!("source[{si}].cidrs[{ci}]: bad block {c:?}")),
                }
            }
        }
        if !problems.is_empty() {
            return Err(InspectError::Malformed {
                protocol: "address ranges",
                reason: problems.join("; "),
            });
        }
        blocks.sort_unstable();
        Ok(Ranges {
            sources: file.sources,
            blocks,
        })
    }

    /// The sources, in file order.
    pub fn sources(&self) -> &[RangeSource] {
        &self.sources
    }

    /// Every block containing `addr` (most specific first).
    pub fn lookup(&self, addr: IpAddr) -> Vec<RangeMatch<'_>> {
        let a = as_u128(addr);
        let end = self.blocks.partition_point(|b| b.0 <= a);
        let mut hits: Vec<_> = self.blocks[..end].iter().filter(|b| b.1 >= a).collect();
        hits.sort_by_key(|b| b.1 - b.0);
        hits.into_iter()
            .map(|&(_, _, si, ci)| RangeMatch {
                cidr: &self.sources[si].cidrs[ci],
                source: &self.sources[si],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn shipped_ranges_parse_and_name_their_apps() {
        let r = Ranges::builtin();
        let hit = r.lookup(ip("149.154.167.51"));
        assert_eq!(hit[0].source.apps, vec!["telegram"]);
        assert_eq!(hit[0].cidr, "149.154.160.0/20");
        let meta = r.lookup(ip("157.240.1.53"));
        assert_eq!(meta[0].source.apps.len(), 3);
        assert_eq!(r.lookup(ip("2603:1063::1"))[0].source.apps, vec!["teams"]);
        assert!(r.lookup(ip("127.0.0.1")).is_empty());
        assert!(r.lookup(ip("8.8.8.8")).is_empty());
        for s in r.sources() {
            assert!(s.url.starts_with("https://"), "{}", s.name);
            assert_eq!(s.retrieved.len(), 10, "{}", s.name);
        }
    }

    #[test]
    fn bad_blocks_are_all_reported() {
        let e = Ranges::from_toml(
            "[[source]]\napps=[\"x\"]\nname=\"n\"\nurl=\"u\"\nretrieved=\"d\"\n\
             cidrs=[\"1.2.3.4/24\", \"300.1.1.1/8\", \"::/129\"]\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("cidrs[0]") && text.contains("cidrs[1]") && text.contains("cidrs[2]")
        );
    }

    #[test]
    fn ipv4_mapped_and_edges() {
        let r = Ranges::from_toml(
            "[[source]]\napps=[\"x\"]\nname=\"n\"\nurl=\"u\"\nretrieved=\"d\"\ncidrs=[\"10.0.0.0/8\", \"0.0.0.0/0\"]\n",
        )
        .unwrap();
        assert_eq!(r.lookup(ip("10.255.255.255")).len(), 2);
        assert_eq!(r.lookup(ip("10.255.255.255"))[0].cidr, "10.0.0.0/8");
        assert_eq!(r.lookup(ip("11.0.0.0")).len(), 1);
        assert!(r.lookup(ip("::1")).is_empty());
    }
}
