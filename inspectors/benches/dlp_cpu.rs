//! Throughput per CPU-second (not wall time, which a busy shared machine
//! distorts): `cargo bench -p gatehouse-inspectors --bench dlp_cpu`.
use gatehouse_inspectors::dlp::{load_dir, BodyInput, DecodeLimits, Direction};
use std::hint::black_box;

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// `cargo bench … --bench dlp_cpu -- WORD` runs only the cases naming WORD.
fn measure(name: &str, bytes: usize, mut f: impl FnMut()) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|w| !name.contains(&w)) {
        return;
    }
    let start = cpu_seconds();
    let mut n = 0usize;
    while cpu_seconds() - start < 3.0 {
        f();
        n += 1;
    }
    let secs = cpu_seconds() - start;
    println!(
        "{name:<40} {:>8.1} MB/s per CPU-second",
        (bytes * n) as f64 / secs / 1e6
    );
}

fn main() {
    let set = load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules")).expect("rules");
    let words = "the meeting is moved to tomorrow can you send me slides thanks sounds good lunch today who else coming please review draft before friday ok great work team customer call went well i think we should ship it next week let me know what about budget looks fine on my side sorry late traffic was terrible this morning did anyone see new design love colours ping when free coffee later yes no maybe sure".split(' ').collect::<Vec<_>>();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut msgs = Vec::new();
    let mut total = 0;
    while total < 1 << 20 {
        let mut m = Vec::new();
        for _ in 0..(6 + x % 20) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(40) {
                m.push(format!("{}pm", 1 + x % 12));
            } else {
                m.push(words[(x >> 8) as usize % words.len()].to_string());
            }
        }
        let mut m = m.join(" ") + ".";
        m[..1].make_ascii_uppercase();
        total += m.len() + 1;
        msgs.push(m);
    }
    let blob = msgs.join(" ");
    let lines = msgs.join("\n");
    assert!(set.scan_text(&blob).findings.is_empty());
    measure("benign 1 MiB text", blob.len(), || {
        black_box(set.scan_text(&blob));
    });
    measure("benign 1 MiB text with newlines", lines.len(), || {
        black_box(set.scan_text(&lines));
    });
    let shared = std::sync::Arc::new(
        load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules")).expect("rules"),
    );
    measure(
        "benign 1 MiB text streamed, 16 KiB chunks",
        blob.len(),
        || {
            let mut sc = gatehouse_inspectors::dlp::StreamScanner::new(
                shared.clone(),
                None,
                Direction::Outbound,
                "body",
            );
            for c in blob.as_bytes().chunks(16 * 1024) {
                black_box(sc.push_matched(c));
            }
            black_box(sc.finish_matched());
        },
    );
    measure("benign per message", total, || {
        for m in &msgs {
            black_box(set.scan_text(m));
        }
    });
    // Findings cost their evidence (a short re-scan around each match).
    let flagged: Vec<String> = msgs
        .iter()
        .take(2000)
        .map(|m| format!("{m} CONFIDENTIAL card 4526 0181 5908 3012"))
        .collect();
    let flagged_len = flagged.iter().map(|m| m.len()).sum();
    measure("per message with 2 findings", flagged_len, || {
        for m in &flagged {
            black_box(set.scan_text(m));
        }
    });
    let json = format!(
        "[{}]",
        msgs.iter()
            .enumerate()
            .map(|(i, m)| format!(r#"{{"id":{i},"user":"u{}","text":"{m}"}}"#, i % 50))
            .collect::<Vec<_>>()
            .join(",")
    );
    let body = BodyInput {
        content_type: Some("application/json"),
        content_encoding: None,
        body: json.as_bytes(),
    };
    let limits = DecodeLimits::default();
    measure("json body: decode + normalise + scan", json.len(), || {
        black_box(set.scan_body(&body, None, Direction::Outbound, "body", &limits));
    });
    // Throughput counts the decoded size, so it compares with the line above.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, json.as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let body = BodyInput {
        content_encoding: Some("gzip"),
        body: &gz,
        ..body
    };
    measure("gzip json body: gunzip + decode + scan", json.len(), || {
        black_box(set.scan_body(&body, None, Direction::Outbound, "body", &limits));
    });

    binary_bodies(&set, &limits, &blob);
}

/// 64 KiB bodies through `scan_body`, one per kind a chat upload carries:
/// text, base64 of random bytes, random bytes, and a JPEG-like body (magic,
/// a few header segments with printable metadata, then entropy-coded data).
fn binary_bodies(set: &gatehouse_inspectors::dlp::RuleSet, limits: &DecodeLimits, text: &str) {
    const SIZE: usize = 64 << 10;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut random = Vec::with_capacity(SIZE);
    while random.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.extend_from_slice(&x.to_le_bytes());
    }
    random.truncate(SIZE);
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    jpeg.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    jpeg.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x40]);
    jpeg.extend_from_slice(b"Exif\0\0Canon EOS 5D Mark IV  Adobe Photoshop 2026 (Windows)\0");
    jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C]);
    jpeg.extend_from_slice(&random[..SIZE - jpeg.len() - 2]);
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&random[..SIZE / 4 * 3]);
    let text = &text.as_bytes()[..SIZE];
    let cases: [(&str, Option<&str>, &[u8]); 5] = [
        ("64 KiB text body", Some("text/plain"), text),
        (
            "64 KiB base64-of-random body",
            Some("text/plain"),
            b64.as_bytes(),
        ),
        (
            "64 KiB random body (octet-stream)",
            Some("application/octet-stream"),
            &random,
        ),
        ("64 KiB random body (no type)", None, &random),
        ("64 KiB JPEG-like body", Some("image/jpeg"), &jpeg),
    ];
    for (name, ct, bytes) in cases {
        let body = BodyInput {
            content_type: ct,
            content_encoding: None,
            body: bytes,
        };
        measure(name, bytes.len(), || {
            black_box(set.scan_body(&body, None, Direction::Outbound, "body", limits));
        });
    }
}
