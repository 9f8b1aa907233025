//! The bounded flow table (one entry per client address and original
//! destination) and the per-client new-flow rate limit: what keeps a flood
//! of junk datagrams or of Initials with random connection ids from growing
//! the process.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A flow's key: the client's address and the original destination.
pub type FlowKey = (SocketAddr, SocketAddr);

/// Datagrams queued for one flow's task; beyond it they are dropped (UDP:
/// the client retransmits).
pub const FLOW_QUEUE: usize = 32;

/// The flows being served.
#[derive(Debug, Clone)]
pub struct FlowTable {
    inner: Arc<Mutex<HashMap<FlowKey, mpsc::Sender<Bytes>>>>,
    capacity: usize,
}

/// What the table did with a datagram.
#[derive(Debug)]
pub enum Route {
    /// Queued for the flow's task (or dropped: its queue was full).
    Existing,
    /// No flow yet: the caller starts one with this receiver.
    New(mpsc::Receiver<Bytes>),
    /// The table is full.
    Full,
}

impl FlowTable {
    /// A table holding at most `capacity` flows.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            capacity,
        }
    }

    /// Hands `datagram` to the flow of `key`, or makes room for a new one.
    pub fn route(&self, key: FlowKey, datagram: Bytes) -> Route {
        let mut map = self.inner.lock().expect("flow table lock");
        if let Some(tx) = map.get(&key) {
            if !tx.is_closed() {
                let _ = tx.try_send(datagram);
                return Route::Existing;
            }
            map.remove(&key);
        }
        if map.len() >= self.capacity {
            return Route::Full;
        }
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        let _ = tx.try_send(datagram);
        map.insert(key, tx);
        Route::New(rx)
    }

    /// Forgets a flow whose task ended.
    pub fn remove(&self, key: &FlowKey) {
        self.inner.lock().expect("flow table lock").remove(key);
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("flow table lock").len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// New flows per client address: a token bucket of `rate` per second and
/// a burst of twice that; its own size is bounded too.
#[derive(Debug)]
pub struct NewFlowRate {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
    max_clients: usize,
}

impl NewFlowRate {
    /// `rate` new flows per second per client, for up to `max_clients`
    /// clients tracked at once.
    pub fn new(rate: u32, max_clients: usize) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            buckets: HashMap::new(),
            max_clients: max_clients.max(16),
        }
    }

    /// Takes a token for `client` at `now`; `false` when it has none left.
    pub fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= self.max_clients && !self.buckets.contains_key(&client) {
            // Full buckets carry no state worth keeping.
            let rate = self.rate;
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < 2.0 * rate
            });
            if self.buckets.len() >= self.max_clients {
                return false;
            }
        }
        let burst = 2.0 * self.rate;
        let (tokens, at) = self.buckets.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(port: u16) -> FlowKey {
        (
            SocketAddr::from(([10, 0, 0, 2], port)),
            SocketAddr::from(([10, 0, 1, 10], 443)),
        )
    }

    #[test]
    fn the_table_is_bounded_and_routes_to_known_flows() {
        let t = FlowTable::new(2);
        let Route::New(mut rx) = t.route(key(1), Bytes::from_static(b"a")) else {
            panic!("first datagram starts a flow")
        };
        assert!(matches!(
            t.route(key(1), Bytes::from_static(b"b")),
            Route::Existing
        ));
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(rx.try_recv().unwrap(), Bytes::from_static(b"b"));
        let _rx2 = t.route(key(2), Bytes::new());
        assert!(matches!(t.route(key(3), Bytes::new()), Route::Full));
        t.remove(&key(2));
        assert!(matches!(t.route(key(3), Bytes::new()), Route::New(_)));
        // A flow whose task ended (receiver dropped) makes room again.
        drop(rx);
        assert!(matches!(t.route(key(1), Bytes::new()), Route::New(_)));
    }

    #[test]
    fn new_flows_are_rate_limited_per_client() {
        let mut r = NewFlowRate::new(5, 100);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.3".parse().unwrap();
        let allowed = (0..100).filter(|_| r.allow(a, now)).count();
        assert_eq!(allowed, 10, "a burst of twice the rate");
        assert!(r.allow(b, now), "another client has its own bucket");
        assert!(
            r.allow(a, now + Duration::from_millis(250)),
            "tokens come back"
        );
    }

    #[test]
    fn the_rate_limiter_tracks_a_bounded_number_of_clients() {
        let mut r = NewFlowRate::new(1, 16);
        let now = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            r.allow(ip, now);
        }
        assert!(r.buckets.len() <= 16);
    }
}
