//! The leaf cache: hits, single flight, bounds, expiry, refusals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::fixtures::*;
use crate::{CertError, LeafCache, LeafCacheConfig, LeafRequest};

fn cache(capacity: usize) -> LeafCache {
    LeafCache::new(
        Arc::new(test_ca()),
        LeafCacheConfig {
            capacity,
            ..LeafCacheConfig::default()
        },
    )
}

#[test]
fn hit_returns_the_same_leaf_and_keys_separate_names_and_upstreams() {
    let c = cache(100);
    let t = now();
    let up = upstream(&["*.example.com"], t);
    let a = LeafRequest::new("a.example.com", up.clone()).unwrap();
    let first = c.get_or_mint(&a, t).unwrap();
    let again = c.get_or_mint(&a, t + Duration::from_secs(60)).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(c.mint_count(), 1);

    let b = LeafRequest::new("b.example.com", up).unwrap();
    let other_name = c.get_or_mint(&b, t).unwrap();
    assert!(!Arc::ptr_eq(&first, &other_name));
    // A renewed upstream certificate (new fingerprint) gets a new leaf.
    let renewed = LeafRequest::new("a.example.com", upstream(&["*.example.com"], t)).unwrap();
    let fresh = c.get_or_mint(&renewed, t).unwrap();
    assert!(!Arc::ptr_eq(&first, &fresh));
    assert_eq!(c.mint_count(), 3);
    assert_eq!(c.len(), 3);
}

#[test]
fn concurrent_requests_for_one_key_mint_once() {
    let c = Arc::new(cache(100));
    let t = now();
    let req = Arc::new(LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap());
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (c, req, barrier) = (c.clone(), req.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.get_or_mint(&req, t).unwrap()
            })
        })
        .collect();
    let leaves: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(c.mint_count(), 1);
    assert!(leaves.iter().all(|l| Arc::ptr_eq(l, &leaves[0])));
}

#[test]
fn prepare_runs_once_per_mint() {
    let prepared = Arc::new(AtomicUsize::new(0));
    let counter = prepared.clone();
    let c = LeafCache::with_prepare(
        Arc::new(test_ca()),
        LeafCacheConfig::default(),
        move |leaf| {
            counter.fetch_add(1, Ordering::SeqCst);
            Arc::new(leaf.into_parts())
        },
    );
    let t = now();
    let req = LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap();
    let one = c.get_or_mint(&req, t).unwrap();
    let two = c.get_or_mint(&req, t).unwrap();
    assert!(Arc::ptr_eq(&one, &two));
    assert_eq!(prepared.load(Ordering::SeqCst), 1);
    assert_eq!(one.0.len(), 1);
}

#[test]
fn capacity_bounds_the_cache_and_recently_used_entries_survive() {
    let c = cache(2);
    let t = now();
    let up = upstream(&["*.example.com"], t);
    let req = |n: &str| LeafRequest::new(&format!("{n}.example.com"), up.clone()).unwrap();
    let a = c.get_or_mint(&req("a"), t).unwrap();
    c.get_or_mint(&req("b"), t).unwrap();
    // Touch a: b is the one to go when c arrives.
    assert!(Arc::ptr_eq(&a, &c.get_or_mint(&req("a"), t).unwrap()));
    c.get_or_mint(&req("c"), t).unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c.mint_count(), 3);
    assert!(Arc::ptr_eq(&a, &c.get_or_mint(&req("a"), t).unwrap()));
    assert_eq!(c.mint_count(), 3, "a was evicted");
    c.get_or_mint(&req("b"), t).unwrap();
    assert_eq!(c.mint_count(), 4, "b should have been evicted");
    for i in 0..20 {
        c.get_or_mint(&req(&format!("n{i}")), t).unwrap();
        assert!(c.len() <= 2);
    }
}

#[test]
fn entries_are_replaced_before_they_expire() {
    let c = cache(10);
    let t = now();
    let req = LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap();
    let first = c.get_or_mint(&req, t).unwrap();
    let not_after = first.not_after();
    let just_before_refresh = not_after - Duration::from_secs(3601);
    assert!(Arc::ptr_eq(
        &first,
        &c.get_or_mint(&req, just_before_refresh).unwrap()
    ));
    let late = not_after - Duration::from_secs(1800);
    let second = c.get_or_mint(&req, late).unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(second.not_after() > late);
    assert_eq!(c.mint_count(), 2);
    // Short-lived upstreams: refreshed halfway through what remains, and
    // never served past notAfter.
    let short = LeafRequest::new(
        "b.example",
        upstream_with(
            &["b.example"],
            odt(t) - time::Duration::days(1),
            odt(t) + time::Duration::minutes(20),
            false,
        ),
    )
    .unwrap();
    let s1 = c.get_or_mint(&short, t).unwrap();
    assert!(Arc::ptr_eq(
        &s1,
        &c.get_or_mint(&short, t + Duration::from_secs(9 * 60))
            .unwrap()
    ));
    let s2 = c.get_or_mint(&short, t + Duration::from_secs(11 * 60));
    assert!(s2.is_ok_and(|s2| !Arc::ptr_eq(&s1, &s2)));
}

#[test]
fn refusals_are_returned_every_time_and_not_cached_as_leaves() {
    let c = cache(10);
    let t = now();
    let req = LeafRequest::new("evil.example", upstream(&["a.example"], t)).unwrap();
    for _ in 0..3 {
        let err = c.get_or_mint(&req, t).unwrap_err();
        assert!(matches!(err, CertError::Refused { .. }), "{err}");
    }
    assert_eq!(c.mint_count(), 0);
    assert!(c.len() <= 1);
}

#[test]
fn concurrent_refusals_all_get_an_error() {
    let c = Arc::new(cache(10));
    let t = now();
    let req = Arc::new(LeafRequest::new("evil.example", upstream(&["a.example"], t)).unwrap());
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (c, req, barrier) = (c.clone(), req.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                c.get_or_mint(&req, t).is_err()
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
}

#[test]
fn cache_and_ca_can_be_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<crate::Ca>();
    shared::<LeafCache>();
    shared::<
        LeafCache<
            Arc<(
                Vec<rustls_pki_types::CertificateDer<'static>>,
                rustls_pki_types::PrivateKeyDer<'static>,
            )>,
        >,
    >();
}

#[test]
fn clear_empties_the_cache() {
    let c = cache(10);
    let t = now();
    let req = LeafRequest::new("a.example", upstream(&["a.example"], t)).unwrap();
    c.get_or_mint(&req, t).unwrap();
    c.clear();
    assert!(c.is_empty());
    c.get_or_mint(&req, t).unwrap();
    assert_eq!(c.mint_count(), 2);
}
