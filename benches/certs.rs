//! Leaf minting and the leaf cache (DESIGN.md targets: cache hit <= 5 us,
//! fresh mint <= 1 ms).
//!
//! `cargo bench --bench certs -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_certs::{Ca, CaInit, CaKeyAlgorithm, LeafCache, LeafCacheConfig, LeafRequest};
use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::CertificateDer;

/// An upstream end-entity certificate as a public CA would issue it.
fn upstream(sans: &[&str]) -> CertificateDer<'static> {
    let issuer_key = KeyPair::generate().unwrap();
    let mut ip = CertificateParams::default();
    ip.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ip, issuer_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans
        .iter()
        .map(|s| SanType::DnsName((*s).try_into().unwrap()))
        .collect();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(30);
    p.not_after = now + time::Duration::days(60);
    p.signed_by(&key, &issuer).unwrap().der().clone()
}

fn leaves(c: &mut Criterion) {
    let now = SystemTime::now();
    let up = upstream(&["*.example.com", "example.com"]);
    let ca = Arc::new(Ca::generate(&CaInit::default()).unwrap());
    let req = LeafRequest::new("chat.example.com", up.clone()).unwrap();

    let mut g = c.benchmark_group("leaf");
    g.bench_function("fresh_mint_p256_ca", |b| {
        b.iter(|| ca.mint(black_box(&req), now).unwrap())
    });

    let cache = LeafCache::new(ca.clone(), LeafCacheConfig::default());
    cache.get_or_mint(&req, now).unwrap();
    g.bench_function("cache_hit", |b| {
        b.iter(|| cache.get_or_mint(black_box(&req), now).unwrap())
    });
    g.bench_function("cache_hit_incl_request_build", |b| {
        b.iter(|| {
            let req = LeafRequest::new("chat.example.com", up.clone()).unwrap();
            cache.get_or_mint(black_box(&req), now).unwrap()
        })
    });

    let miss_cache = LeafCache::new(
        ca.clone(),
        LeafCacheConfig {
            capacity: 1_000,
            ..LeafCacheConfig::default()
        },
    );
    let names: Vec<LeafRequest> = (0..4_096)
        .map(|i| LeafRequest::new(&format!("h{i}.example.com"), up.clone()).unwrap())
        .collect();
    let mut i = 0;
    g.bench_function("cache_miss_mint_and_evict", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            miss_cache.get_or_mint(&names[i], now).unwrap()
        })
    });

    let rsa_ca = Ca::generate(&CaInit {
        key_algorithm: CaKeyAlgorithm::Rsa3072,
        ..CaInit::default()
    })
    .unwrap();
    g.bench_function("fresh_mint_rsa3072_ca", |b| {
        b.iter(|| rsa_ca.mint(black_box(&req), now).unwrap())
    });
    g.finish();
}

criterion_group!(benches, leaves);
criterion_main!(benches);
