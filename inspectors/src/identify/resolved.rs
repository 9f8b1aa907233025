//! Which name an address was resolved from: fed from the DNS responses a
//! client received, looked up when a later flow goes to that address
//! without saying a name (no SNI: MTProto, WhatsApp Noise, calls).
//!
//! Bounded and TTL-respecting, and sans-IO: time is passed in as seconds
//! on any monotonic scale the caller chooses (capture timestamps, or a
//! gateway's `Instant` offset).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Bounds of a [`ResolvedNames`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedLimits {
    /// Addresses remembered at most; the oldest insertion goes first.
    pub capacity: usize,
    /// TTLs are clamped to at most this many seconds (resolvers and
    /// clients cache no longer; a hostile TTL must not pin an entry).
    pub max_ttl: f64,
    /// And at least this many: a client keeps using an address for a
    /// while after a short TTL ran out (connections outlive records).
    pub min_ttl: f64,
}

impl Default for ResolvedLimits {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_ttl: 24.0 * 3600.0,
            min_ttl: 60.0,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    expires: f64,
    /// Matches the queue entry that owns this address.
    generation: u64,
}

/// Address → the name it was resolved from, until the record's TTL ends.
#[derive(Debug, Clone, Default)]
pub struct ResolvedNames {
    limits: ResolvedLimits,
    map: HashMap<IpAddr, Entry>,
    /// Insertion order for eviction: (address, generation).
    order: VecDeque<(IpAddr, u64)>,
    generation: u64,
}

impl ResolvedNames {
    /// An empty map with these bounds.
    pub fn new(limits: ResolvedLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Remembers that `addr` was resolved from `name` at `now` with this
    /// TTL. A newer answer for the same address replaces the older one.
    pub fn insert(&mut self, addr: IpAddr, name: &str, ttl_secs: u32, now: f64) {
        if self.limits.capacity == 0 {
            return;
        }
        let ttl = f64::from(ttl_secs).clamp(self.limits.min_ttl, self.limits.max_ttl);
        self.generation += 1;
        self.map.insert(
            addr,
            Entry {
                name: name.trim_end_matches('.').to_ascii_lowercase(),
                expires: now + ttl,
                generation: self.generation,
            },
        );
        self.order.push_back((addr, self.generation));
        // Stale queue entries (replaced addresses) are dropped as they
        // reach the front, so the queue stays within twice the capacity.
        while self.map.len() > self.limits.capacity || self.order.len() > 2 * self.limits.capacity {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .map
                .get(&old)
                .is_some_and(|e| e.generation == generation)
            {
                self.map.remove(&old);
            }
        }
    }

    /// The name `addr` was resolved from, if that record is still live at
    /// `now`.
    pub fn lookup(&self, addr: IpAddr, now: f64) -> Option<&str> {
        self.map
            .get(&addr)
            .filter(|e| now <= e.expires)
            .map(|e| e.name.as_str())
    }

    /// Forgets records whose TTL ran out before `now`.
    pub fn expire(&mut self, now: f64) {
        self.map.retain(|_, e| now <= e.expires);
        let map = &self.map;
        self.order
            .retain(|(a, g)| map.get(a).is_some_and(|e| e.generation == *g));
    }

    /// Addresses remembered (live or not yet expired away).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn names_live_for_their_ttl() {
        let mut r = ResolvedNames::new(ResolvedLimits {
            min_ttl: 0.0,
            ..ResolvedLimits::default()
        });
        r.insert(ip("157.240.1.53"), "G.WhatsApp.net.", 300, 100.0);
        assert_eq!(r.lookup(ip("157.240.1.53"), 350.0), Some("g.whatsapp.net"));
        assert_eq!(r.lookup(ip("157.240.1.53"), 401.0), None);
        r.expire(401.0);
        assert!(r.is_empty());
    }

    #[test]
    fn ttls_are_clamped() {
        let mut r = ResolvedNames::new(ResolvedLimits::default());
        r.insert(ip("::1"), "a.example", 0, 0.0);
        assert!(r.lookup(ip("::1"), 59.0).is_some(), "min TTL");
        r.insert(ip("::2"), "b.example", u32::MAX, 0.0);
        assert!(r.lookup(ip("::2"), 2.0 * 86_400.0).is_none(), "max TTL");
    }

    #[test]
    fn capacity_evicts_the_oldest_and_replacements_count_once() {
        let mut r = ResolvedNames::new(ResolvedLimits {
            capacity: 2,
            ..ResolvedLimits::default()
        });
        for _ in 0..10 {
            r.insert(ip("10.0.0.1"), "one", 60, 0.0);
        }
        r.insert(ip("10.0.0.2"), "two", 60, 0.0);
        assert_eq!(r.len(), 2);
        r.insert(ip("10.0.0.3"), "three", 60, 0.0);
        assert_eq!(r.len(), 2);
        assert_eq!(r.lookup(ip("10.0.0.1"), 1.0), None);
        assert_eq!(r.lookup(ip("10.0.0.3"), 1.0), Some("three"));
        assert!(r.order.len() <= 4);
    }
}
