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
            "--fail-on",
            "none",
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
        &[
            "rules",
            "scan",
            "--json",
            "--fail-on",
            "none",
            input.to_str().unwrap(),
        ],
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

/// Runs `rules scan --json --fail-on FAIL_ON` on one record of `text`;
/// returns the exit status and the highest severity found.
fn scan_one(text: &str, fail_on: Option<&str>) -> (i32, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        format!("{}\n", serde_json::json!({"id": 1, "text": text})),
    )
    .unwrap();
    let mut args = vec!["rules", "scan", "--json", input.to_str().unwrap()];
    if let Some(f) = fail_on {
        args.extend(["--fail-on", f]);
    }
    let (code, out, err) = gatehouse(&root(), &args);
    let rec: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or_else(|| {
        panic!("no output: {err}");
    }))
    .unwrap();
    let rank = |s: &str| {
        ["low", "medium", "high", "critical"]
            .iter()
            .position(|x| *x == s)
    };
    let worst = rec["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["severity"].as_str().unwrap().to_string())
        .max_by_key(|s| rank(s));
    (code, worst)
}

#[test]
fn scan_exits_1_on_a_finding_at_or_above_fail_on_and_0_below() {
    let critical = "pay to card 4556737586899855 please";
    let high = "please wire to DE02 3705 0299 0000 6847 12 today";
    let medium = "This document is STRICTLY CONFIDENTIAL.";
    let low = "mail jane.doe+dlp@acme-corp.co.uk";
    // Each input's worst finding is the severity it stands for.
    for (text, severity) in [
        (critical, "critical"),
        (high, "high"),
        (medium, "medium"),
        (low, "low"),
    ] {
        let (code, worst) = scan_one(text, Some("none"));
        assert_eq!(worst.as_deref(), Some(severity), "{text}");
        assert_eq!(code, 0, "--fail-on none never fails: {text}");
    }
    // Default threshold: high.
    assert_eq!(scan_one(critical, None).0, 1);
    assert_eq!(scan_one(high, None).0, 1);
    assert_eq!(scan_one(medium, None).0, 0);
    assert_eq!(scan_one(low, None).0, 0);
    // --fail-on critical: a high finding passes, a critical one fails.
    assert_eq!(scan_one(high, Some("critical")).0, 0);
    assert_eq!(scan_one(critical, Some("critical")).0, 1);
    // Lower thresholds.
    assert_eq!(scan_one(medium, Some("medium")).0, 1);
    assert_eq!(scan_one(low, Some("medium")).0, 0);
    assert_eq!(scan_one(low, Some("low")).0, 1);
    // No finding at all: 0 even with the lowest threshold.
    let (code, worst) = scan_one("nothing to see here", Some("low"));
    assert_eq!((code, worst), (0, None));
}

#[test]
fn scan_human_output_also_exits_1_on_a_card() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "card 4556737586899855\nhello\n").unwrap();
    let (code, out, err) = gatehouse(
        &root(),
        &["rules", "scan", dir.path().join("in.txt").to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("1: payment-card@"), "{out}");
    assert!(out.contains("2: -"), "{out}");
}

#[test]
fn scan_of_a_missing_input_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let (code, out, err) = gatehouse(&root(), &["rules", "scan", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("nope.jsonl"), "{err}");
    // A usage error (clap) is 2 too.
    let (code, _, err) = gatehouse(&root(), &["rules", "scan", "--fail-on", "urgent"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn scan_with_rules_that_do_not_load_exits_2_not_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[[rule]]\nid = \"x\"\n").unwrap();
    std::fs::write(dir.path().join("in.txt"), "card 4556737586899855\n").unwrap();
    let (code, out, err) = gatehouse(
        dir.path(),
        &["rules", "scan", "in.txt", "--json", "--dir", "."],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "JSON mode keeps errors off stdout: {out}");
    assert!(err.contains("bad.toml"), "{err}");
}

#[test]
fn check_json_is_one_document_with_counts_and_lints() {
    let (code, out, err) = gatehouse(&root(), &["rules", "check", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["ok"], true, "{out}");
    assert_eq!(doc["dir"], "dlp-rules", "{out}");
    assert!(doc["rules"].as_u64().unwrap() >= 19, "{out}");
    assert!(
        doc["literals"].is_u64() && doc["compiled_kib"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert!(
        doc["lints"].is_array() && doc["errors"] == serde_json::json!([]),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[rule]]\nid = \"two\"\nname = \"Two\"\nseverity = \"low\"\npattern = \"(unclosed\"\n",
    )
    .unwrap();
    let (code, out, _) = gatehouse(dir.path(), &["rules", "check", ".", "--json"]);
    assert_eq!(code, 1, "{out}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(doc["ok"], false, "{out}");
    let errors = doc["errors"].as_array().unwrap();
    assert!(
        !errors.is_empty()
            && errors
                .iter()
                .all(|e| e["message"].as_str().unwrap().contains("bad.toml:")),
        "{out}"
    );
}

#[test]
fn test_json_lists_each_failure_with_its_rule_and_masked_match() {
    let (code, out, err) = gatehouse(&root(), &["rules", "test", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (doc["ok"].as_bool(), doc["failed"].as_u64()),
        (Some(true), Some(0)),
        "{out}"
    );
    assert!(doc["examples"].as_u64().unwrap() > 0, "{out}");

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
    let (code, out, err) = gatehouse(
        &root(),
        &["rules", "test", "--json", dir.path().to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (doc["ok"].as_bool(), doc["failed"].as_u64()),
        (Some(false), Some(1)),
        "{out}"
    );
    let f = &doc["failures"][0];
    assert_eq!(f["rule"], "ticket", "{out}");
    assert_eq!(f["expected_match"], false, "{out}");
    assert_eq!(f["example"], "see TK-87654321 now", "{out}");
    assert!(
        f["file"].as_str().unwrap().ends_with("r.toml") && f["line"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert_eq!(
        f["matched"],
        serde_json::json!(["see **-******21 now"]),
        "{out}"
    );
}

#[test]
fn explain_json_carries_findings_contributions_and_rejections() {
    let (code, out, err) = gatehouse(
        &root(),
        &[
            "rules",
            "explain",
            "--json",
            "send to 4556737586899855, not 4111 1111 1111 1111",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "one document: {out}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let f = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "payment-card")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (f["start"].as_u64(), f["end"].as_u64()),
        (Some(8), Some(24)),
        "{out}"
    );
    assert_eq!(f["severity"], "critical", "{out}");
    assert!(
        f["action"].is_string() && f["confidence"].is_string() && f["score"].is_f64(),
        "{out}"
    );
    assert!(f["field"].as_str().is_some(), "{out}");
    assert!(
        f["contributions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["source"] == "base" && c["weight"].is_f64()),
        "{out}"
    );
    let evidence = f["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("9855") && !out.contains("4556737586899855"),
        "{out}"
    );
    let rejected = doc["rejected"].as_array().unwrap();
    assert!(
        rejected
            .iter()
            .any(|r| r["rule"] == "payment-card"
                && r["reason"].as_str().unwrap().contains("excluded")),
        "{out}"
    );
}

#[test]
fn explain_of_a_missing_file_or_no_text_exits_2() {
    let (code, _, err) = gatehouse(
        &root(),
        &["rules", "explain", "--file", "/nonexistent/x.txt"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/x.txt"), "{err}");
    let (code, _, err) = gatehouse(&root(), &["rules", "explain"]);
    assert_eq!(code, 2, "{err}");
}
