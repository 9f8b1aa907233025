//! Spans are the whole secret: with the shipped rules, a finding covers
//! every character `redact` must mask — a private key from BEGIN to END in
//! every newline style, a card split over lines, an IBAN in groups, all
//! three parts of a JWT — and masking leaves none of it readable.

use gatehouse_inspectors::dlp::{load_dir, RuleSet};
use std::sync::OnceLock;

fn shipped() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules")).expect("shipped rules")
    })
}

const BODY: [&str; 4] = [
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK",
    "LxoRDqBgb9S8Y3Mb3yNf2Xk0PqZ4wT1rVhL8nJ6cG5sA7dE2fK9mU3iO0pQzR1tW",
    "x4yB6vN8cM2aS5dF7gH9jK1lP3oI5uY7tR9eW1qZ3xC5vB7nM9kL2jH4gF6dS8aP",
];

/// The single finding of `rule` in `text`, as a span.
fn span_of(text: &str, rule: &str) -> (usize, usize) {
    let r = shipped().scan_text(text);
    let spans: Vec<(usize, usize)> = r
        .findings
        .iter()
        .filter(|f| &*f.rule == rule)
        .map(|f| (f.start, f.end))
        .collect();
    assert_eq!(spans.len(), 1, "{rule} in {text:?}: {:?}", r.findings);
    spans[0]
}

fn assert_masked(text: &str, secret: &str) {
    let r = shipped().scan_text(text);
    let out = r.redact("text", text);
    for piece in secret.split(['\n', '\r', ' ', '\\']) {
        if piece.len() >= 8 {
            assert!(!out.contains(piece), "{piece:?} survives in {out:?}");
        }
    }
}

fn key(kind: &str, nl: &str) -> String {
    let mut lines = vec![format!("-----BEGIN {kind}PRIVATE KEY-----")];
    if kind == "RSA " {
        lines.push("Proc-Type: 4,ENCRYPTED".into());
        lines.push("DEK-Info: AES-256-CBC,7C43B260257ECDB037230658BE2420F4".into());
        lines.push(String::new());
    }
    lines.extend(BODY.iter().map(|l| l.to_string()));
    lines.push(format!("-----END {kind}PRIVATE KEY-----"));
    lines.join(nl)
}

#[test]
fn private_keys_are_covered_begin_to_end() {
    for kind in ["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "] {
        for nl in ["\n", "\r\n", "\\n"] {
            let k = key(kind, nl);
            let text = format!("deploy key, delete after use:{nl}{k}{nl}thanks");
            let at = text.find("-----BEGIN").unwrap();
            assert_eq!(
                span_of(&text, "private-key-block"),
                (at, at + k.len()),
                "{kind:?} {nl:?}"
            );
            assert_masked(&text, &k);
        }
    }
}

#[test]
fn a_key_in_service_account_json_is_covered() {
    let k = key("", "\\n");
    let text = format!(
        r#"{{"type": "service_account", "private_key_id": "1f4c3e3d2a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d", "private_key": "{k}\n", "client_email": "x@p.iam.gserviceaccount.com"}}"#
    );
    let at = text.find("-----BEGIN").unwrap();
    assert_eq!(span_of(&text, "private-key-block"), (at, at + k.len()));
    assert_masked(&text, &k);
}

#[test]
fn a_cut_off_key_paste_is_covered_to_its_last_line() {
    let body = BODY[..3].join("\n");
    let text = format!("-----BEGIN PRIVATE KEY-----\n{body}\n(rest in the next message)");
    let (s, e) = span_of(&text, "private-key-block");
    assert_eq!(s, 0);
    assert!(e >= text.find("\n(rest").unwrap(), "{:?}", &text[..e]);
    assert_masked(&text, &body);
}

#[test]
fn a_begin_line_without_key_material_is_not_a_key() {
    for text in [
        "grep for '-----BEGIN RSA PRIVATE KEY-----' in the repo",
        "-----BEGIN PRIVATE KEY-----\n<paste key here>\n-----END PRIVATE KEY-----",
    ] {
        let r = shipped().scan_text(text);
        assert!(
            !r.findings.iter().any(|f| &*f.rule == "private-key-block"),
            "{text:?}"
        );
    }
}

#[test]
fn multi_part_values_are_covered_whole() {
    for (rule, value) in [
        ("payment-card", "4526 0181\n5908 3012"),
        ("payment-card", "4526 0181\r\n5908 3012"),
        ("payment-card", "3748 219935 18197"),
        ("payment-card", "4526.0181.5908.3012"),
        ("iban", "DE02 3705 0299 0000 6847 12"),
        ("iban", "fr40 1756 9000 3059 1654 8215 228"),
        (
            "jwt",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI4ODIxIiwiaWF0IjoxNzY1MDk0NDAwfQ.Qm9Yk2dX7rT1pL4sN8vW3zA6cE0fH5jK9oU2iB7gR4y",
        ),
        ("us-ssn", "536 22 1234"),
    ] {
        let text = format!("ok, here: {value} thanks");
        let at = text.find(value).unwrap();
        assert_eq!(span_of(&text, rule), (at, at + value.len()), "{rule} {value:?}");
        let out = shipped().scan_text(&text).redact("text", &text);
        if rule != "iban" && rule != "jwt" {
            // Alert-only rules are not masked by `redact`; the others are.
            assert!(!out.contains(&value[..9]), "{out:?}");
        }
    }
}

#[test]
fn many_begin_lines_cost_linear_time() {
    // Every BEGIN line is an anchor, and every byte is a possible key body:
    // each search is capped, and anchors inside a match are skipped.
    // (Tests assert no timings; a quadratic scan would not finish.)
    let text = "-----BEGIN PRIVATE KEY----- ".repeat(5_000);
    let _ = shipped().scan_text(&text);
    let mut blob = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
    for _ in 0..5_000 {
        blob.push_str(BODY[0]);
        blob.push_str("\n-----BEGIN RSA PRIVATE KEY-----\n");
    }
    let r = shipped().scan_text(&blob);
    assert!(r.findings.iter().any(|f| &*f.rule == "private-key-block"));
}
