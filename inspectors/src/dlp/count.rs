//! Per-conversation match counts over a time window, in bounded memory.
//!
//! Data split over several messages ("the first 8 digits… the rest…") only
//! shows when counts add up across a conversation. The rule set is shared
//! and immutable, so this state lives apart, owned by the caller; time is
//! passed in.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many records pass between sweeps of expired entries.
const SWEEP_EVERY: u64 = 1024;

/// Counts of matches per (conversation, rule) within each rule's window,
/// with the tags of the messages they came from.
///
/// Bounded: at most `max_keys` (conversation, rule) pairs and `max_events`
/// messages per pair. An entry expires once its window has passed since
/// it last counted a match (swept every [`SWEEP_EVERY`] records and whenever
/// the tracker is full); when the tracker is still full, the
/// least-recently-counted pairs are evicted first, an eighth of them at a
/// time. Safe to share between threads: the lock is held only to add up.
#[derive(Debug)]
pub struct ConversationTracker {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<(Box<str>, Arc<str>), Entry>,
    max_keys: usize,
    max_events: usize,
    records: u64,
}

#[derive(Debug, Default)]
struct Entry {
    /// (when, how many matches, message tag), oldest first.
    events: VecDeque<(Duration, u32, u128)>,
    last: Duration,
    window: Duration,
}

impl Entry {
    fn expired(&self, now: Duration) -> bool {
        now.saturating_sub(self.last) > self.window
    }
}

impl Default for ConversationTracker {
    fn default() -> Self {
        Self::new(10_000, 64)
    }
}

impl ConversationTracker {
    /// A tracker keeping at most `max_keys` (conversation, rule) pairs and
    /// `max_events` messages per pair.
    pub fn new(max_keys: usize, max_events: usize) -> Self {
        ConversationTracker {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                max_keys: max_keys.max(1),
                max_events: max_events.max(2),
                records: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is counts only: a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of tracked (conversation, rule) pairs.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Add `count` matches of message `tag` at `now`; return the total
    /// within `window` and the tags of the messages that make it up.
    pub(crate) fn record(
        &self,
        conversation: &str,
        rule: &Arc<str>,
        now: Duration,
        count: u32,
        window: Duration,
        tag: u128,
    ) -> (u32, Vec<u128>) {
        let mut inner = self.lock();
        inner.records += 1;
        let key = (Box::from(conversation), rule.clone());
        let full = !inner.entries.contains_key(&key) && inner.entries.len() >= inner.max_keys;
        if full || inner.records.is_multiple_of(SWEEP_EVERY) {
            inner.evict(now, full);
        }
        let max_events = inner.max_events;
        let e = inner.entries.entry(key).or_default();
        e.last = e.last.max(now);
        e.window = window;
        while e
            .events
            .front()
            .is_some_and(|&(t, ..)| now.saturating_sub(t) > window)
        {
            e.events.pop_front();
        }
        if count > 0 {
            if e.events.len() >= max_events {
                // Fold the oldest two so the total stays right (the older
                // message's tag is no longer named).
                if let (Some(a), Some(b)) = (e.events.pop_front(), e.events.pop_front()) {
                    e.events.push_front((b.0, a.1 + b.1, b.2));
                }
            }
            e.events.push_back((now, count, tag));
        }
        let total = e.events.iter().map(|&(_, c, _)| c).sum();
        let tags = e.events.iter().map(|&(.., t)| t).collect();
        (total, tags)
    }
}

impl Inner {
    /// Drops expired entries; if `full` and still full, the
    /// least-recently-counted eighth.
    fn evict(&mut self, now: Duration, full: bool) {
        self.entries.retain(|_, e| !e.expired(now));
        if !full || self.entries.len() < self.max_keys {
            return;
        }
        let n = (self.max_keys / 8).max(1).min(self.entries.len());
        let mut lasts: Vec<Duration> = self.entries.values().map(|e| e.last).collect();
        let (_, &mut cut, _) = lasts.select_nth_unstable(n - 1);
        let mut left = n;
        self.entries.retain(|_, e| {
            if left > 0 && e.last <= cut {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn counts_add_up_within_window_and_expire() {
        let t = ConversationTracker::default();
        let r: Arc<str> = Arc::from("r");
        assert_eq!(t.record("c", &r, s(0), 2, s(60), 1), (2, vec![1]));
        assert_eq!(t.record("c", &r, s(30), 1, s(60), 2), (3, vec![1, 2]));
        assert_eq!(t.record("other", &r, s(30), 1, s(60), 3).0, 1);
        assert_eq!(
            t.record("c", &r, s(70), 1, s(60), 4),
            (2, vec![2, 4]),
            "t=0 expired"
        );
    }

    #[test]
    fn entries_expire_after_their_own_window() {
        let t = ConversationTracker::new(100, 8);
        let short: Arc<str> = Arc::from("short");
        let long: Arc<str> = Arc::from("long");
        t.record("a", &short, s(0), 1, s(10), 1);
        t.record("a", &long, s(0), 1, s(1000), 2);
        // A sweep comes with the SWEEP_EVERY-th record.
        for i in 0..SWEEP_EVERY {
            t.record("b", &long, s(100), 0, s(1000), i.into());
        }
        let inner = t.lock();
        assert!(!inner.entries.contains_key(&(Box::from("a"), short.clone())));
        assert!(inner.entries.contains_key(&(Box::from("a"), long.clone())));
    }

    #[test]
    fn full_tracker_evicts_least_recently_counted() {
        let t = ConversationTracker::new(8, 4);
        let r: Arc<str> = Arc::from("r");
        for i in 0..8u64 {
            t.record(&format!("c{i}"), &r, s(i), 1, s(1000), 0);
        }
        // c0 counted again: now the most recent.
        t.record("c0", &r, s(20), 1, s(1000), 0);
        t.record("new", &r, s(21), 1, s(1000), 0);
        let inner = t.lock();
        assert!(inner.entries.len() <= 8);
        assert!(inner.entries.contains_key(&(Box::from("c0"), r.clone())));
        assert!(!inner.entries.contains_key(&(Box::from("c1"), r.clone())));
        assert!(inner.entries.contains_key(&(Box::from("new"), r.clone())));
    }

    #[test]
    fn memory_is_bounded() {
        let t = ConversationTracker::new(8, 4);
        let r: Arc<str> = Arc::from("r");
        for i in 0..100u64 {
            t.record(&format!("c{i}"), &r, s(i), 1, s(1000), 0);
        }
        assert!(t.len() <= 8);
        for i in 0..100u64 {
            t.record("c", &r, s(i), 1, s(1000), i.into());
        }
        let (total, tags) = t.record("c", &r, s(100), 0, s(1000), 0);
        assert_eq!(total, 100, "folded, not lost");
        assert_eq!(tags.len(), 4);
        assert_eq!(tags.last(), Some(&99));
        assert!(t.lock().entries.values().all(|e| e.events.len() <= 4));
    }

    #[test]
    fn a_count_finding_names_the_messages_that_added_up() {
        use crate::dlp::{MessageInput, RuleSet};
        // No count.min: a single message needs as many as the conversation.
        let set = RuleSet::from_sources(&[(
            "c.toml",
            r#"
[[rule]]
id = "n"
name = "n"
severity = "high"
action = "block"
pattern = '\bZK-\d{4}\b'
[rule.count]
conversation = { min = 3 }
"#,
        )])
        .expect("valid rules");
        let t = ConversationTracker::default();
        let msg = |conversation, text| MessageInput {
            conversation: Some(conversation),
            ..MessageInput::text(text)
        };
        assert!(set.scan_text("ZK-0001 ZK-0002").findings.is_empty());
        assert_eq!(set.scan_text("ZK-0001 ZK-0002 ZK-0003").findings.len(), 3);
        for (i, c) in ["a", "b", "c"].into_iter().enumerate() {
            let r = set.scan_counted(&msg(c, "ZK-1234"), &t, s(i as u64), 10 + i as u128);
            assert!(r.findings.is_empty(), "three conversations: {c}");
        }
        assert!(set
            .scan_counted(&msg("a", "ZK-1234"), &t, s(5), 20)
            .findings
            .is_empty());
        let r = set.scan_counted(&msg("a", "nothing here"), &t, s(6), 21);
        assert!(r.findings.is_empty());
        let r = set.scan_counted(&msg("a", "and ZK-9999"), &t, s(7), 22);
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].related, vec![10, 20, 22]);
        // Past the default window (600 s) the count starts again.
        let r = set.scan_counted(&msg("a", "ZK-1111"), &t, s(1000), 23);
        assert!(r.findings.is_empty());
    }
}
