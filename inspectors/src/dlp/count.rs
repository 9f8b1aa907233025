//! Per-conversation match counts over a time window, in bounded memory.
//!
//! Data split over several messages ("the first 8 digits… the rest…") only
//! shows when counts add up across a conversation. The rule set is shared
//! and immutable, so this state lives apart, owned by the caller; time is
//! passed in.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Counts of matches per (conversation, rule) within each rule's window.
#[derive(Debug)]
pub struct ConversationTracker {
    entries: HashMap<(Box<str>, Arc<str>), Entry>,
    max_keys: usize,
    max_events: usize,
}

#[derive(Debug, Default)]
struct Entry {
    events: VecDeque<(Duration, u32)>,
    last: Duration,
}

impl Default for ConversationTracker {
    fn default() -> Self {
        Self::new(10_000, 64)
    }
}

impl ConversationTracker {
    /// A tracker keeping at most `max_keys` (conversation, rule) pairs and
    /// `max_events` timestamps per pair. The oldest pair is evicted first.
    pub fn new(max_keys: usize, max_events: usize) -> Self {
        ConversationTracker {
            entries: HashMap::new(),
            max_keys: max_keys.max(1),
            max_events: max_events.max(1),
        }
    }

    /// Number of tracked (conversation, rule) pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add `count` matches at `now` and return the total within `window`.
    pub(crate) fn record(
        &mut self,
        conversation: &str,
        rule: &Arc<str>,
        now: Duration,
        count: u32,
        window: Duration,
    ) -> u32 {
        let key = (Box::from(conversation), rule.clone());
        if !self.entries.contains_key(&key) && self.entries.len() >= self.max_keys {
            self.evict(now, window);
        }
        let e = self.entries.entry(key).or_default();
        e.last = e.last.max(now);
        while e
            .events
            .front()
            .is_some_and(|&(t, _)| now.saturating_sub(t) > window)
        {
            e.events.pop_front();
        }
        if count > 0 {
            if e.events.len() >= self.max_events {
                // Fold the oldest two so the total stays right.
                if let (Some(a), Some(b)) = (e.events.pop_front(), e.events.pop_front()) {
                    e.events.push_front((b.0, a.1 + b.1));
                }
            }
            e.events.push_back((now, count));
        }
        e.events.iter().map(|&(_, c)| c).sum()
    }

    fn evict(&mut self, now: Duration, window: Duration) {
        self.entries
            .retain(|_, e| now.saturating_sub(e.last) <= window);
        while self.entries.len() >= self.max_keys {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
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
        let mut t = ConversationTracker::default();
        let r: Arc<str> = Arc::from("r");
        assert_eq!(t.record("c", &r, s(0), 2, s(60)), 2);
        assert_eq!(t.record("c", &r, s(30), 1, s(60)), 3);
        assert_eq!(t.record("other", &r, s(30), 1, s(60)), 1);
        assert_eq!(t.record("c", &r, s(70), 1, s(60)), 2, "t=0 expired");
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = ConversationTracker::new(8, 4);
        let r: Arc<str> = Arc::from("r");
        for i in 0..100u64 {
            t.record(&format!("c{i}"), &r, s(i), 1, s(1000));
        }
        assert!(t.len() <= 8);
        for i in 0..100u64 {
            t.record("c", &r, s(i), 1, s(1000));
        }
        assert_eq!(
            t.record("c", &r, s(100), 0, s(1000)),
            100,
            "folded, not lost"
        );
        assert!(t.entries.values().all(|e| e.events.len() <= 4));
    }
}
