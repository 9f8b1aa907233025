//! DLP throughput with the shipped packs: benign chat (the common case),
//! the whole message path (JSON body → decode → normalise → scan), and rule
//! compile time for a 10,000-word dictionary.
//!
//! cargo bench --bench dlp -- --warm-up-time 1 --measurement-time 3

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse_inspectors::dlp::{load_dir, BodyInput, DecodeLimits, Direction, RuleSet};
use std::hint::black_box;

const WORDS: &[&str] = &[
    "the", "meeting", "is", "moved", "to", "tomorrow", "can", "you", "send", "me", "slides",
    "thanks", "sounds", "good", "lunch", "today", "who", "else", "coming", "please", "review",
    "draft", "before", "friday", "ok", "great", "work", "team", "customer", "call", "went", "well",
    "i", "think", "we", "should", "ship", "it", "next", "week", "let", "me", "know", "what",
    "about", "budget", "looks", "fine", "on", "my", "side", "sorry", "late", "traffic", "was",
    "terrible", "this", "morning", "did", "anyone", "see", "new", "design", "love", "colours",
    "ping", "when", "free", "coffee", "later", "yes", "no", "maybe", "sure",
];

/// Deterministic benign chat: capitalised lines of common words with the
/// odd time or count, as chat text really has digits now and then.
fn benign_chat(bytes: usize) -> Vec<String> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut msgs = Vec::new();
    let mut total = 0;
    while total < bytes {
        let n = 6 + (next() % 20) as usize;
        let mut m = String::new();
        for i in 0..n {
            if i > 0 {
                m.push(' ');
            }
            let r = next();
            if r.is_multiple_of(40) {
                m.push_str(&format!("{}pm", 1 + r % 12));
            } else {
                m.push_str(WORDS[(r >> 8) as usize % WORDS.len()]);
            }
        }
        m.push(if next() % 3 == 0 { '?' } else { '.' });
        // Messages start with a capital, as chat does.
        m[..1].make_ascii_uppercase();
        total += m.len() + 1;
        msgs.push(m);
    }
    msgs
}

fn shipped() -> RuleSet {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dlp-rules");
    load_dir(dir).unwrap_or_else(|e| panic!("{e:?}"))
}

fn scan_benign(c: &mut Criterion) {
    let set = shipped();
    let msgs = benign_chat(1 << 20);
    let blob = msgs.join(" ");
    assert!(
        set.scan_text(&blob).findings.is_empty(),
        "benign text has findings"
    );
    let mut g = c.benchmark_group("dlp_scan_benign");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("1MiB_text", |b| b.iter(|| set.scan_text(black_box(&blob))));
    let lines = msgs.join("\n");
    g.bench_function("1MiB_text_with_newlines", |b| {
        b.iter(|| set.scan_text(black_box(&lines)))
    });
    let total: usize = msgs.iter().map(String::len).sum();
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("per_message", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(set.scan_text(black_box(m)));
            }
        })
    });
    g.finish();
}

fn full_path(c: &mut Criterion) {
    let set = shipped();
    let msgs = benign_chat(1 << 20);
    let mut json = String::from("[");
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"id":{i},"user":"u{}","channel":"C0{}","text":"{}"}}"#,
            i % 50,
            i % 7,
            m.replace('"', "\\\"")
        ));
    }
    json.push(']');
    let limits = DecodeLimits::default();
    let body = BodyInput {
        content_type: Some("application/json"),
        content_encoding: None,
        body: json.as_bytes(),
    };
    let r = set.scan_body(&body, None, Direction::Outbound, "body", &limits);
    assert!(r.findings.is_empty(), "{:?}", &r.findings[..1]);
    let mut g = c.benchmark_group("dlp_full_path");
    g.throughput(Throughput::Bytes(json.len() as u64));
    g.bench_function("json_decode_normalize_scan_1MiB", |b| {
        b.iter(|| set.scan_body(black_box(&body), None, Direction::Outbound, "body", &limits))
    });
    g.finish();
}

fn compile(c: &mut Criterion) {
    let words: Vec<String> = (0..10_000).map(|i| format!("\"codeword{i:05}\"")).collect();
    let src = format!(
        "[[rule]]\nid = \"big\"\nname = \"big\"\nseverity = \"low\"\n[rule.keywords]\nwords = [{}]\n",
        words.join(",")
    );
    // Memory of the compiled sets (not timed): printed with the timings.
    let big = RuleSet::from_sources(&[("big.toml", src.as_str())]).unwrap();
    eprintln!(
        "compiled memory: shipped packs {} KiB, 10,000 keywords {} KiB",
        shipped().heap_bytes().div_ceil(1024),
        big.heap_bytes().div_ceil(1024)
    );
    let mut g = c.benchmark_group("dlp_compile");
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("keywords", 10_000), &src, |b, src| {
        b.iter(|| RuleSet::from_sources(&[("big.toml", src.as_str())]).unwrap())
    });
    g.finish();
}

criterion_group!(benches, scan_benign, full_path, compile);
criterion_main!(benches);
