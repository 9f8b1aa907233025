//! Sealed evidence: what sealing costs each finding at capture (HPKE
//! X25519 + ChaCha20-Poly1305, one fresh encapsulation per finding), and
//! what opening costs a reveal.
//!
//! `cargo bench --bench seal -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::events::seal::{Evidence, OpenKey};

fn bench(c: &mut Criterion) {
    let key = OpenKey::generate();
    let public = key.public();
    let text = format!(
        "{}4556737586899855{}",
        "lorem ipsum ".repeat(10),
        " dolor sit".repeat(10)
    );
    let start = text.find("4556").unwrap();
    let evidence = Evidence::in_text("4556737586899855", &text, start, start + 16);
    let id = uuid::Uuid::now_v7();
    c.bench_function("seal one finding", |b| {
        b.iter(|| public.seal(id, std::hint::black_box(&evidence)).unwrap())
    });
    let sealed = public.seal(id, &evidence).unwrap();
    c.bench_function("open one finding", |b| {
        b.iter(|| key.open(id, std::hint::black_box(&sealed)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
