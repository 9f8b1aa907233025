//! A bounded, single-flight cache of minted leaves.
//!
//! Keyed by (requested name, SHA-256 of the upstream certificate), so a
//! renewed upstream certificate gets a new leaf at once. Eviction is CLOCK
//! (second chance), which approximates LRU with O(1) work per insert.
//! Concurrent requests for one key share one `OnceLock`: one thread mints,
//! the others block on it. Only std primitives are used, so any runtime's
//! worker threads may call in; minting is short CPU work.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use crate::names::LeafName;
use crate::{Ca, CertError, Leaf, LeafRequest};

/// Sizing and freshness of a [`LeafCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafCacheConfig {
    /// Most leaves kept (default 10,000; at least 1).
    pub capacity: usize,
    /// A cached leaf is replaced this long before its notAfter (default 1
    /// hour), or halfway through its remaining lifetime if that is shorter.
    pub refresh_before_expiry: Duration,
}

impl Default for LeafCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            refresh_before_expiry: Duration::from_secs(3600),
        }
    }
}

type Key = (LeafName, [u8; 32]);

struct Ready<T> {
    value: T,
    refresh_at: SystemTime,
}

/// `None` inside means the mint failed; the next request tries again.
type Slot<T> = Arc<OnceLock<Option<Ready<T>>>>;

struct Entry<T> {
    slot: Slot<T>,
    referenced: bool,
}

struct State<T> {
    map: HashMap<Key, Entry<T>>,
    /// Every key of `map` exactly once, in CLOCK order.
    clock: VecDeque<Key>,
}

/// Leaves minted by one CA, cached. `T` is what callers keep per leaf:
/// `Arc<Leaf>` by default, or e.g. a ready `Arc<rustls::sign::CertifiedKey>`
/// built once by the `prepare` function of [`LeafCache::with_prepare`].
pub struct LeafCache<T = Arc<Leaf>> {
    ca: Arc<Ca>,
    config: LeafCacheConfig,
    prepare: Box<dyn Fn(Leaf) -> T + Send + Sync>,
    state: Mutex<State<T>>,
    mints: AtomicU64,
    hits: AtomicU64,
}

impl LeafCache<Arc<Leaf>> {
    /// A cache handing out `Arc<Leaf>`.
    pub fn new(ca: Arc<Ca>, config: LeafCacheConfig) -> Self {
        Self::with_prepare(ca, config, Arc::new)
    }
}

impl<T: Clone + Send + Sync + 'static> LeafCache<T> {
    /// A cache that turns each fresh leaf into `T` once, with `prepare`.
    pub fn with_prepare(
        ca: Arc<Ca>,
        config: LeafCacheConfig,
        prepare: impl Fn(Leaf) -> T + Send + Sync + 'static,
    ) -> Self {
        let capacity = config.capacity.max(1);
        Self {
            ca,
            config: LeafCacheConfig { capacity, ..config },
            prepare: Box::new(prepare),
            state: Mutex::new(State {
                map: HashMap::with_capacity(capacity.min(1 << 16)),
                clock: VecDeque::with_capacity(capacity.min(1 << 16)),
            }),
            mints: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The cached leaf for `req`, minting it (once, however many threads
    /// ask at the same time) if absent or due for refresh at `now`.
    pub fn get_or_mint(&self, req: &LeafRequest, now: SystemTime) -> Result<T, CertError> {
        let slot = self.slot_for(req, now);
        if let Some(Some(ready)) = slot.get() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(ready.value.clone());
        }
        let mut leader_error = None;
        let outcome = slot.get_or_init(|| match self.mint_prepared(req, now) {
            Ok(ready) => Some(ready),
            Err(e) => {
                leader_error = Some(e);
                None
            }
        });
        match (outcome, leader_error) {
            (Some(ready), _) => Ok(ready.value.clone()),
            (None, Some(e)) => Err(e),
            // We waited on a mint that failed; errors are not cloneable, so
            // learn ours first-hand (refusals are decided before key
            // generation, so this is cheap) and do not cache it.
            (None, None) => self.mint_prepared(req, now).map(|r| r.value),
        }
    }

    /// The slot for `req`, replacing one that is stale or failed.
    fn slot_for(&self, req: &LeafRequest, now: SystemTime) -> Slot<T> {
        let key: Key = (req.name().clone(), *req.upstream_sha256());
        let mut st = self.lock();
        if let Some(entry) = st.map.get_mut(&key) {
            let stale = match entry.slot.get() {
                Some(Some(ready)) => now >= ready.refresh_at,
                Some(None) => true,
                None => false,
            };
            if stale {
                entry.slot = Arc::default();
            }
            entry.referenced = true;
            return entry.slot.clone();
        }
        while st.map.len() >= self.config.capacity {
            let Some(victim) = st.clock.pop_front() else {
                break;
            };
            let second_chance = st
                .map
                .get_mut(&victim)
                .is_some_and(|e| std::mem::replace(&mut e.referenced, false));
            if second_chance {
                st.clock.push_back(victim);
            } else {
                st.map.remove(&victim);
            }
        }
        let slot: Slot<T> = Arc::default();
        st.clock.push_back(key.clone());
        st.map.insert(
            key,
            Entry {
                slot: slot.clone(),
                referenced: false,
            },
        );
        slot
    }

    fn mint_prepared(&self, req: &LeafRequest, now: SystemTime) -> Result<Ready<T>, CertError> {
        let leaf = self.ca.mint(req, now)?;
        self.mints.fetch_add(1, Ordering::Relaxed);
        let not_after = leaf.not_after();
        let remaining = not_after.duration_since(now).unwrap_or_default();
        let margin = self.config.refresh_before_expiry.min(remaining / 2);
        Ok(Ready {
            value: (self.prepare)(leaf),
            refresh_at: not_after - margin,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing under this lock panics short of allocation failure, and
        // a key lost from the clock would only escape eviction, so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many leaves this cache has minted (a metric, and the test of
    /// single flight).
    pub fn mint_count(&self) -> u64 {
        self.mints.load(Ordering::Relaxed)
    }

    /// How many requests a cached leaf answered (a metric).
    pub fn hit_count(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// How many entries are cached (including ones being minted).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every cached leaf.
    pub fn clear(&self) {
        let mut st = self.lock();
        st.map.clear();
        st.clock.clear();
    }

    /// The CA leaves are minted with.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }
}

impl<T> std::fmt::Debug for LeafCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCache")
            .field("config", &self.config)
            .field("mints", &self.mints.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
