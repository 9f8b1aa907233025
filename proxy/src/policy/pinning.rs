//! Learned pinning (`intercept.pinning = "learn"`): a user's clients that
//! refuse our leaf for a name get passthrough for that name. Keyed by who
//! the client is ([`subject`]): user/device when known, the client address
//! only when there is no identity.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Entry {
    aborts: u32,
    pinned_until: Option<Instant>,
}

/// Counts handshake aborts per (subject, name); at the threshold the pair
/// is passed through for a TTL. Time is passed in.
#[derive(Debug)]
pub struct Pinning {
    threshold: u32,
    ttl: Duration,
    entries: Mutex<HashMap<(String, String), Entry>>,
}

/// Who learned pinning is about: `user:NAME/device:NAME` when the identity
/// names either, else `ip:ADDRESS` (a NAT or shared VPN address then
/// stands for everyone behind it).
pub fn subject(user: Option<&str>, device: Option<&str>, client: IpAddr) -> String {
    match (user, device) {
        (None, None) => format!("ip:{client}"),
        (u, d) => format!("user:{}/device:{}", u.unwrap_or(""), d.unwrap_or("")),
    }
}

/// Entries kept at most; beyond it, expired and unpinned ones are dropped.
const MAX_ENTRIES: usize = 100_000;

impl Pinning {
    /// A tracker with the configured threshold and TTL.
    pub fn new(threshold: u32, ttl: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether (client, name) is on learned passthrough at `now`.
    pub fn is_pinned(&self, subject: &str, name: &str, now: Instant) -> bool {
        let key = (subject.to_string(), name.to_ascii_lowercase());
        let mut map = self.entries.lock().expect("pinning lock");
        match map.get(&key).and_then(|e| e.pinned_until) {
            Some(until) if until > now => true,
            Some(_) => {
                map.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Records that the client aborted the handshake after our leaf.
    /// Returns true when this abort put the pair on passthrough.
    pub fn record_abort(&self, subject: &str, name: &str, now: Instant) -> bool {
        let mut map = self.entries.lock().expect("pinning lock");
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.pinned_until.is_some_and(|u| u > now));
        }
        let e = map
            .entry((subject.to_string(), name.to_ascii_lowercase()))
            .or_insert(Entry {
                aborts: 0,
                pinned_until: None,
            });
        e.aborts += 1;
        if e.aborts >= self.threshold && e.pinned_until.is_none() {
            e.pinned_until = Some(now + self.ttl);
            return true;
        }
        false
    }

    /// A completed handshake clears the abort count.
    pub fn record_success(&self, subject: &str, name: &str) {
        let mut map = self.entries.lock().expect("pinning lock");
        if let Some(e) = map.get_mut(&(subject.to_string(), name.to_ascii_lowercase())) {
            if e.pinned_until.is_none() {
                e.aborts = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_before_address() {
        let ip: IpAddr = "10.8.0.2".parse().unwrap();
        assert_eq!(subject(None, None, ip), "ip:10.8.0.2");
        assert_eq!(subject(Some("alice"), None, ip), "user:alice/device:");
        assert_eq!(
            subject(Some("alice"), Some("phone"), ip),
            "user:alice/device:phone"
        );
        // Two users behind one address learn apart.
        let p = Pinning::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(p.record_abort(&subject(Some("alice"), None, ip), "a", t0));
        assert!(!p.is_pinned(&subject(Some("bob"), None, ip), "a", t0));
    }

    #[test]
    fn threshold_then_ttl() {
        let p = Pinning::new(3, Duration::from_secs(60));
        let ip = "ip:10.8.0.2";
        let t0 = Instant::now();
        assert!(!p.record_abort(ip, "app.example", t0));
        assert!(!p.record_abort(ip, "app.example", t0));
        assert!(!p.is_pinned(ip, "app.example", t0));
        assert!(p.record_abort(ip, "App.Example", t0));
        assert!(p.is_pinned(ip, "app.example", t0 + Duration::from_secs(59)));
        assert!(!p.is_pinned("ip:10.8.0.3", "app.example", t0));
        assert!(!p.is_pinned(ip, "app.example", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn success_resets_the_count() {
        let p = Pinning::new(2, Duration::from_secs(60));
        let ip = "ip:10.8.0.2";
        let t0 = Instant::now();
        p.record_abort(ip, "a", t0);
        p.record_success(ip, "a");
        assert!(!p.record_abort(ip, "a", t0));
    }
}
