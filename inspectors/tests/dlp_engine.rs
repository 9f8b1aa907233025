//! Table-driven behaviour of the DLP engine, with small inline rule files.

use gatehouse_inspectors::dlp::{
    Action, BodyInput, ConversationTracker, DecodeLimits, Direction, Field, MessageInput,
    RuleError, RuleSet, ScanRecord, StreamScanner, DECODE_LIMIT_RULE,
};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

fn set(src: &str) -> RuleSet {
    RuleSet::from_sources(&[("t.toml", src)]).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn fired(set: &RuleSet, text: &str) -> Vec<(String, usize, usize)> {
    set.scan_text(text)
        .findings
        .into_iter()
        .map(|f| (f.rule.to_string(), f.start, f.end))
        .collect()
}

const KW: &str = r#"
[[rule]]
id = "kw"
name = "kw"
severity = "medium"
[rule.keywords]
words = ["top secret", "Falcon"]
"#;

#[test]
fn keyword_table() {
    let s = set(KW);
    let cases: &[(&str, &[(usize, usize)])] = &[
        ("this is top secret", &[(8, 18)]),
        ("TOP   SECRET\n", &[(0, 12)]),
        ("top\u{200B} secret", &[(0, 13)]),
        ("ｔｏｐ secret", &[(0, 16)]),
        ("falcons fly", &[]),
        ("the Falcon, landed", &[(4, 10)]),
        ("topsecret", &[]),
        ("", &[]),
    ];
    for (text, want) in cases {
        let got: Vec<(usize, usize)> = fired(&s, text)
            .into_iter()
            .map(|(_, a, b)| (a, b))
            .collect();
        assert_eq!(&got, want, "{text:?}");
    }
}

#[test]
fn case_sensitive_and_partial_word_options() {
    let s = set(r#"
[[rule]]
id = "cs"
name = "cs"
severity = "low"
[rule.keywords]
words = ["ACME-X"]
case_sensitive = true
whole_word = false
"#);
    assert_eq!(fired(&s, "see ACME-X1").len(), 1);
    assert_eq!(fired(&s, "see acme-x").len(), 0);
}

const ROUTING: &str = r#"
[[rule]]
id = "aba"
name = "aba"
severity = "high"
pattern = '\b\d{9}\b'
validators = [{ kind = "aba_routing" }]
[rule.context]
before = 20
after = 10
base = 0.2
threshold = 0.5
bands = { medium = 0.6, high = 0.9 }
[[rule.context.terms]]
words = ["routing"]
weight = 0.5
[[rule.context.terms]]
words = ["order"]
weight = -0.5
"#;

#[test]
fn context_raises_and_lowers_score() {
    let s = set(ROUTING);
    let r = s.scan_text("routing 021000021");
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    assert!((f.score - 0.7).abs() < 1e-9);
    assert_eq!(f.contributions.len(), 2);
    assert_eq!(f.contributions[1].source, "context:routing");
    assert_eq!(f.confidence, gatehouse_inspectors::dlp::Confidence::Medium);
    assert!(
        s.scan_text("021000021").findings.is_empty(),
        "below threshold"
    );
    assert!(
        s.scan_text("routing order 021000021").findings.is_empty(),
        "lowered"
    );
    assert!(
        s.scan_text("routing is far far far far far away 021000021")
            .findings
            .is_empty(),
        "outside window"
    );
    let ex = s.explain("021000021");
    assert!(ex.rejected[0].reason.starts_with("score 0.20"));
}

/// A context check adds its weight when its validator passes: a number in
/// a card network's range scores alone, any other Luhn-valid one needs
/// the word.
const CARDISH: &str = r#"
[[rule]]
id = "card"
name = "card"
severity = "critical"
pattern = '\b\d{16}\b'
validators = [{ kind = "luhn" }]
[rule.context]
before = 20
after = 10
base = 0.2
threshold = 0.5
checks = [{ validator = { kind = "card" }, weight = 0.5 }]
[[rule.context.terms]]
words = ["card"]
weight = 0.35
"#;

#[test]
fn context_checks_add_weight_only_when_they_pass() {
    let s = set(CARDISH);
    // Visa range: 0.2 + 0.5.
    let r = s.scan_text("4526018159083012");
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    assert!((f.score - 0.7).abs() < 1e-9);
    assert_eq!(f.contributions[1].source, "check:card");
    // Luhn-valid, in no network's range: only with the word.
    assert!(s.scan_text("3512345678901236").findings.is_empty());
    let r = s.scan_text("card 3512345678901236");
    assert_eq!(r.findings.len(), 1);
    assert!((r.findings[0].score - 0.55).abs() < 1e-9);
    assert!(r.findings[0]
        .contributions
        .iter()
        .all(|c| c.source != "check:card"));
    // A check's weight must be a number.
    let bad = CARDISH.replace("weight = 0.5 }", "weight = nan }");
    let errs = RuleSet::from_sources(&[("t.toml", bad.as_str())]).unwrap_err();
    assert!(errs
        .iter()
        .any(|e| e.to_string().contains("context check's weight")));
}

#[test]
fn count_per_message_and_per_conversation() {
    let s = set(r#"
[[rule]]
id = "n"
name = "n"
severity = "high"
pattern = '\b\d{4}-\d{4}\b'
[rule.count]
min = 2
conversation = { min = 3, window_secs = 60 }
"#);
    assert!(s.scan_text("1234-5678").findings.is_empty());
    assert_eq!(s.scan_text("1234-5678 and 1111-2222").findings.len(), 2);
    let t = ConversationTracker::default();
    let msg = |text| MessageInput {
        conversation: Some("chat-1"),
        ..MessageInput::text(text)
    };
    let at = Duration::from_secs;
    assert!(s
        .scan_in_conversation(&msg("1234-5678"), &t, at(0))
        .findings
        .is_empty());
    assert!(s
        .scan_in_conversation(&msg("2234-5678"), &t, at(10))
        .findings
        .is_empty());
    assert_eq!(
        s.scan_in_conversation(&msg("3234-5678"), &t, at(20))
            .findings
            .len(),
        1
    );
    // Long after: the window has emptied.
    assert!(s
        .scan_in_conversation(&msg("4234-5678"), &t, at(500))
        .findings
        .is_empty());
}

#[test]
fn exclusions_and_validators() {
    let s = set(r#"
[[rule]]
id = "card"
name = "card"
severity = "critical"
pattern = '\b\d(?:[ -]?\d){11,18}\b'
validators = [{ kind = "card" }]
[rule.exclude]
literals = ["4111111111111111"]
patterns = ['^5555']
"#);
    assert_eq!(fired(&s, "4526 0181 5908 3012").len(), 1);
    assert!(fired(&s, "4111-1111-1111-1111").is_empty());
    assert!(fired(&s, "5555555555554444").is_empty());
    assert!(fired(&s, "4526 0181 5908 3013").is_empty(), "Luhn");
}

#[test]
fn scope_by_app_direction_field() {
    let s = set(r#"
[[rule]]
id = "s"
name = "s"
severity = "low"
[rule.keywords]
words = ["bluebird"]
[rule.scope]
apps = ["slack"]
direction = "outbound"
fields = ["text"]
"#);
    let msg = |app, direction, field| MessageInput {
        app,
        direction,
        conversation: None,
        fields: vec![Field {
            name: field,
            text: "bluebird",
        }],
    };
    assert_eq!(
        s.scan(&msg(Some("slack"), Direction::Outbound, "text"))
            .findings
            .len(),
        1
    );
    assert!(s
        .scan(&msg(Some("teams"), Direction::Outbound, "text"))
        .findings
        .is_empty());
    assert!(s
        .scan(&msg(None, Direction::Outbound, "text"))
        .findings
        .is_empty());
    assert!(s
        .scan(&msg(Some("slack"), Direction::Inbound, "text"))
        .findings
        .is_empty());
    assert!(s
        .scan(&msg(Some("slack"), Direction::Outbound, "filename"))
        .findings
        .is_empty());
    assert_eq!(
        s.scan(&msg(Some("Slack"), Direction::Outbound, "text#json"))
            .findings
            .len(),
        1
    );
}

const ACTIONS: &str = r#"
[[rule]]
id = "a"
name = "a"
severity = "low"
action = "log"
[rule.keywords]
words = ["alpha"]
[[rule]]
id = "b"
name = "b"
severity = "high"
action = "redact"
pattern = '\b\d{3}-\d{2}-\d{4}\b'
[rule.evidence]
keep_last = 4
[[rule]]
id = "c"
name = "c"
severity = "low"
action = "alert"
[rule.keywords]
words = ["gamma"]
[rule.evidence]
mode = "none"
"#;

#[test]
fn verdict_redaction_and_evidence() {
    let s = set(ACTIONS);
    let text = "alpha 536-22-1234 gamma";
    let r = s.scan_text(text);
    assert_eq!(r.findings.len(), 3);
    assert_eq!(r.verdict(), Some(Action::Redact));
    assert_eq!(r.redact("text", text), "alpha ***-**-*234 gamma");
    let gamma = r.findings.iter().find(|f| &*f.rule == "c").unwrap();
    assert!(gamma.excerpt.is_none());
    let b = r.findings.iter().find(|f| &*f.rule == "b").unwrap();
    let ex = b.excerpt.as_deref().unwrap();
    assert!(!ex.contains("536-22"), "{ex}");
    assert_eq!(s.scan_text("nothing").verdict(), None);
}

#[test]
fn leet_rules_fold_digits_and_symbols() {
    let s = set(r#"
[[rule]]
id = "l"
name = "l"
severity = "low"
leet = true
[rule.keywords]
words = ["confidential"]
"#);
    for t in [
        "c0nf1dent!al",
        "CONF1D3NT14L",
        "confidential",
        "c0nfid3ntial.",
    ] {
        assert_eq!(fired(&s, t).len(), 1, "{t}");
    }
    assert!(fired(&s, "c0nf1dent1ality").is_empty());
}

#[test]
fn load_errors_are_all_reported_with_lines() {
    let a = r#"[[rule]]
id = "x"
name = "x"
severity = "low"
pattern = '(oops'

[[rule]]
id = "y"
name = "y"
severity = "low"
[rule.keywords]
dictionaries = ["nope"]

[[rule]]
id = "z"
name = "z"
severity = "low"
"#;
    let b = r#"[[rule]]
id = "y"
name = "dup"
severity = "low"
[rule.keywords]
words = ["w"]
"#;
    let errs = RuleSet::from_sources(&[("a.toml", a), ("b.toml", b)]).unwrap_err();
    let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 4, "{shown:#?}");
    assert!(
        matches!(&errs[0], RuleError::Regex { loc, .. } if loc.line == 5),
        "{shown:#?}"
    );
    assert!(matches!(&errs[1], RuleError::UnknownDictionary { loc, .. } if loc.line == 12));
    assert!(matches!(&errs[2], RuleError::Invalid { loc, .. } if loc.line == 15));
    assert!(matches!(&errs[3], RuleError::DuplicateId { loc, first, .. }
        if loc.file == "b.toml" && loc.line == 2 && first.line == 8));
}

#[test]
fn dictionaries_are_shared_across_files() {
    let d = "[dictionary]\nid = \"birds\"\nwords = [\"nightjar\", \"kestrel\"]\n";
    let r = r#"
[[rule]]
id = "r"
name = "r"
severity = "high"
[rule.keywords]
dictionaries = ["birds"]
[rule.examples]
must_match = ["the Kestrel plan"]
must_not_match = ["kestrels"]
"#;
    let s = RuleSet::from_sources(&[("dict.toml", d), ("rules.toml", r)]).unwrap();
    assert_eq!(s.run_examples(), (vec![], 2));
}

#[test]
fn failing_examples_are_reported() {
    let s = set(r#"
[[rule]]
id = "r"
name = "r"
severity = "low"
[rule.keywords]
words = ["apple"]
[rule.examples]
must_match = ["pear"]
must_not_match = ["apple pie"]
"#);
    let (fails, run) = s.run_examples();
    assert_eq!(run, 2);
    assert_eq!(fails.len(), 2);
    assert!(fails[0].expected_match && !fails[1].expected_match);
}

#[test]
fn streaming_finds_matches_across_chunk_boundaries_once() {
    let s = Arc::new(set(ACTIONS));
    let text = "x".repeat(5000) + " alpha 536-22-1234 gamma " + &"y".repeat(5000);
    let whole = s.scan_text(&text);
    for chunk in [1usize, 3, 7, 64, 1000] {
        let mut sc = StreamScanner::new(s.clone(), None, Direction::Outbound, "text");
        let mut seen = Vec::new();
        let mut max_buf = 0;
        for c in text.as_bytes().chunks(chunk) {
            seen.extend(sc.push(c));
            max_buf = max_buf.max(sc.buffered());
        }
        let result = sc.finish();
        let spans: Vec<_> = result
            .findings
            .iter()
            .map(|f| (f.rule.clone(), f.start, f.end))
            .collect();
        let want: Vec<_> = whole
            .findings
            .iter()
            .map(|f| (f.rule.clone(), f.start, f.end))
            .collect();
        assert_eq!(spans, want, "chunk {chunk}");
        assert!(
            max_buf < 2 * 4096 + 2 * chunk + 256,
            "chunk {chunk}: buffered {max_buf}"
        );
    }
}

#[test]
fn streaming_handles_utf8_split_across_chunks() {
    let s = Arc::new(set(KW));
    let text = "é top secret é".as_bytes();
    let mut sc = StreamScanner::new(s, None, Direction::Outbound, "text");
    for c in text.chunks(1) {
        sc.push(c);
    }
    let r = sc.finish();
    assert_eq!((r.findings[0].start, r.findings[0].end), (3, 13));
}

#[test]
fn streaming_peek_sees_a_match_before_it_is_final() {
    let s = Arc::new(set(KW));
    let mut sc = StreamScanner::new(s, None, Direction::Outbound, "text");
    assert!(sc.push(b"x top sec").is_empty());
    assert!(sc.peek_matched().is_empty());
    // The match ends in the holdback zone: not final, but visible to peek.
    assert!(sc.push(b"ret y").is_empty());
    let peeked = sc.peek_matched();
    assert_eq!(peeked.len(), 1);
    assert_eq!((peeked[0].0.start, peeked[0].0.end), (2, 12));
    assert_eq!(peeked[0].1, "top secret");
    // Peeking records nothing: the finding is reported once, at the end.
    let r = sc.finish();
    assert_eq!(r.findings.len(), 1);
}

#[test]
fn streamed_findings_carry_the_text_around_them_across_chunks() {
    let s = Arc::new(set(KW));
    let before = format!("{} the plan is ", "a".repeat(3000));
    let text = format!("{before}top secret, tell no one{}", "b".repeat(3000));
    for chunk in [1usize, 5, 64, 4096] {
        let mut sc = StreamScanner::new(s.clone(), None, Direction::Outbound, "text");
        let mut found = Vec::new();
        for c in text.as_bytes().chunks(chunk) {
            found.extend(sc.push_matched(c));
        }
        found.extend(sc.finish_matched().0);
        assert_eq!(found.len(), 1, "chunk {chunk}");
        let m = &found[0].1;
        assert_eq!(*m, "top secret");
        assert_eq!(&m.around[m.at..m.at + m.text.len()], "top secret");
        assert!(
            m.around.contains("the plan is top secret, tell no one"),
            "chunk {chunk}: {:?}",
            m.around
        );
        // Bounded: the context, not the stream.
        assert_eq!(
            m.around.chars().count(),
            2 * gatehouse_inspectors::dlp::AROUND_CHARS + "top secret".len()
        );
    }
}

#[test]
fn body_scan_decodes_gzip_json_and_reports_bombs() {
    let s = set(ACTIONS);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"message":"my ssn \u0035\u0033\u0036-22-1234"}"#)
        .unwrap();
    let data = gz.finish().unwrap();
    let body = BodyInput {
        content_type: Some("application/json; charset=utf-8"),
        content_encoding: Some("gzip"),
        body: &data,
    };
    let r = s.scan_body(
        &body,
        None,
        Direction::Outbound,
        "body",
        &DecodeLimits::default(),
    );
    assert_eq!(r.findings.len(), 1, "{r:?}");
    assert_eq!(r.findings[0].field, "body#json");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 8 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    let body = BodyInput {
        content_type: Some("text/plain"),
        content_encoding: Some("gzip"),
        body: &bomb,
    };
    let r = s.scan_body(
        &body,
        None,
        Direction::Outbound,
        "body",
        &DecodeLimits::default(),
    );
    assert_eq!(r.findings.len(), 1);
    assert_eq!(&*r.findings[0].rule, DECODE_LIMIT_RULE);
    // Fail closed: what could not be decoded gets the strictest action of
    // the rules that could have applied to it (this set has a block rule).
    assert_eq!(r.verdict(), Some(Action::Block));
}

#[test]
fn json_record_has_the_cli_shape() {
    let s = set(ACTIONS);
    let r = s.scan_text("née 536-22-1234");
    let line = serde_json::to_string(&ScanRecord::new(serde_json::json!("m1"), &r)).unwrap();
    assert_eq!(
        line,
        r#"{"id":"m1","findings":[{"rule":"b","severity":"high","score":1.0,"start":5,"end":16,"evidence":"née ***-**-*234"}]}"#
    );
}

#[test]
fn ten_thousand_keywords_compile_and_match() {
    let words: Vec<String> = (0..10_000).map(|i| format!("\"codeword{i:05}\"")).collect();
    let src = format!(
        "[[rule]]\nid = \"big\"\nname = \"big\"\nseverity = \"low\"\n[rule.keywords]\nwords = [{}]\n",
        words.join(",")
    );
    let s = set(&src);
    assert_eq!(s.literal_count(), 10_000);
    assert_eq!(fired(&s, "leak codeword09999 now").len(), 1);
    assert!(fired(&s, "codeword1").is_empty());
}

#[test]
fn lint_warns_about_full_scans_and_missing_examples() {
    let s = set(r#"
[[rule]]
id = "slow"
name = "slow"
severity = "low"
pattern = '\w+ing'
[rule.examples]
must_match = ["testing"]
must_not_match = ["test"]

[[rule]]
id = "digits"
name = "digits"
severity = "low"
pattern = '\b[0-9]{6}\b'
"#);
    let lints = s.lint();
    let shown: Vec<String> = lints.iter().map(|l| l.to_string()).collect();
    use gatehouse_inspectors::dlp::LintLevel;
    assert!(
        lints.iter().any(|l| l.rule == "slow"
            && l.level == LintLevel::Warning
            && l.message.contains("full regex scan")),
        "{shown:#?}"
    );
    assert!(
        lints.iter().any(|l| l.rule == "digits"
            && l.level == LintLevel::Info
            && l.message.contains("windows")),
        "{shown:#?}"
    );
    assert!(
        lints.iter().any(|l| l.rule == "digits"
            && l.level == LintLevel::Warning
            && l.message.contains("examples")),
        "{shown:#?}"
    );
    assert!(shown[0].starts_with("t.toml:"), "{shown:#?}");
    // A full-scan rule still works.
    assert_eq!(fired(&s, "we are testing").len(), 1);
}

#[test]
fn rule_sets_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    let s = Arc::new(set(KW));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || s.scan_text("top secret").findings.len())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1);
    }
}
