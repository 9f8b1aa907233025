//! `gatehouse rules check | test | explain | scan` on the shipped packs and
//! on broken rule files.

mod common;

use common::gatehouse;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_packs_check_and_test_clean() {
    let (code, out, err) = gatehouse(&root(), &["rules", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok: ") && out.contains("rules from dlp-rules"),
        "{out}"
    );
    assert!(out.contains("KiB compiled)"), "{out}");
    let (code, out, _) = gatehouse(&root(), &["rules", "test"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(", 0 failed"), "{out}");
}

#[test]
fn check_reports_every_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[rule]]\nid = \"one\"\nname = \"One\"\nseverity = \"urgent\"\n\n[[rule]]\nid = \"two\"\nname = \"Two\"\nseverity = \"low\"\npattern = \"(unclosed\"\n",
    )
    .unwrap();
    let (code, out, _) = gatehouse(dir.path(), &["rules", "check", "."]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(errors.len() >= 2, "{out}");
    assert!(errors.iter().all(|e| e.contains("bad.toml:")), "{out}");
    assert!(
        errors.iter().any(|e| e.contains("bad.toml:4:")),
        "severity error on line 4: {out}"
    );
    assert!(
        errors.iter().any(|e| e.contains("bad.toml:10:")),
        "regex error on line 10: {out}"
    );
}

#[test]
fn scan_emits_one_json_object_per_record_with_byte_offsets() {
    let input = "{\"id\":7,\"text\":\"pay to card 4556737586899855 please\",\"extra\":1}\n\
                 {\"id\":\"x\",\"text\":\"€ IBAN DE02 3705 0299 0000 6847 12\"}\n\
                 just a plain line\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let rules = root().join("dlp-rules");
    let (code, out, err) = gatehouse(
        dir.path(),
        &[
            "rules",
            "scan",
            "in.jsonl",
            "--json",
            "--dir",
            rules.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let recs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["id"], 7);
    let f = &recs[0]["findings"][0];
    assert_eq!(
        (f["rule"].as_str(), f["start"].as_u64(), f["end"].as_u64()),
        (Some("payment-card"), Some(12), Some(28))
    );
    assert_eq!(recs[1]["id"], "x");
    // UTF-8 byte offsets: the euro sign is three bytes.
    assert_eq!(recs[1]["findings"][0]["start"], 9);
    assert_eq!(recs[2], serde_json::json!({"id": 3, "findings": []}));
}

#[test]
fn explain_shows_contributions_and_masked_evidence() {
    let (code, out, _) = gatehouse(&root(), &["rules", "explain", "send to 4556737586899855"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("payment-card") && out.contains("base"),
        "{out}"
    );
    assert!(
        out.contains("9855") && !out.contains("4556737586899855"),
        "evidence must be masked: {out}"
    );
}

#[test]
fn explain_masks_a_neighbouring_card_in_the_marker_evidence() {
    let (code, out, err) = gatehouse(
        &root(),
        &["rules", "explain", "CONFIDENTIAL card 4526 0181 5908 3012"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("4526 0181 5908 3012"), "card in clear: {out}");
    let evidence: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("evidence: "))
        .collect();
    // The marker (keep_last = 0, 30 characters of context): the card in its
    // context is masked whole; the card's own evidence keeps its last four.
    assert_eq!(
        evidence,
        [
            "************ card **** **** **** ****",
            "************ card **** **** **** 3012"
        ],
        "{out}"
    );
}

#[test]
fn explain_names_the_exclude_entry_that_suppressed_a_match() {
    let (code, out, err) = gatehouse(&root(), &["rules", "explain", "card 4111 1111 1111 1111"]);
    assert_eq!(code, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("not fired: payment-card"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(
            "excluded by exclude.literals \"4111111111111111\" (dlp-rules/payment-cards.toml:"
        ),
        "{line}"
    );
}

#[test]
fn scan_json_carries_the_rules_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"id\":1,\"text\":\"db password: pWnOna8sEXflmWwdRpdo\"}\n",
    )
    .unwrap();
    let (code, out, err) = gatehouse(
        &root(),
        &["rules", "scan", "--json", input.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let rec: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let f = &rec["findings"][0];
    assert_eq!(f["rule"], "generic-secret", "{out}");
    // keep_last = 0: the whole password masked.
    assert_eq!(f["evidence"], "db password: ********************", "{out}");
}

#[test]
fn test_shows_masked_evidence_of_a_must_not_match_that_matched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.toml"),
        r#"
[[rule]]
id = "ticket"
name = "ticket"
severity = "low"
pattern = 'TK-[0-9]{8}'
[rule.evidence]
context_chars = 4
keep_last = 2
[rule.examples]
must_match = ["TK-12345678"]
must_not_match = ["see TK-87654321 now"]
"#,
    )
    .unwrap();
    let (code, out, err) = gatehouse(&root(), &["rules", "test", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("must_not_match example matched")
            && out.contains("matched: see **-******21 now"),
        "{out}"
    );
}
