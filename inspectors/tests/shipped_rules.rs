//! Every file in dlp-rules/ loads, lints clean of warnings, and every rule's
//! own examples behave.

use gatehouse_inspectors::dlp::{load_dir, LintLevel, RuleSet};
use std::path::PathBuf;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dlp-rules")
}

fn shipped() -> RuleSet {
    match load_dir(rules_dir()) {
        Ok(set) => set,
        Err(errors) => {
            let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("shipped rules do not load:\n{}", msgs.join("\n"));
        }
    }
}

#[test]
fn every_shipped_file_loads() {
    let set = shipped();
    for id in [
        "payment-card",
        "iban",
        "us-ssn",
        "us-bank-routing",
        "email-address",
        "phone-number",
        "aws-access-key-id",
        "github-token",
        "private-key-block",
        "jwt",
        "generic-secret",
        "confidentiality-marker",
        "code-name",
    ] {
        assert!(set.rule_ids().any(|r| r == id), "missing rule {id}");
    }
}

#[test]
fn every_shipped_example_behaves() {
    let set = shipped();
    let (failures, run) = set.run_examples();
    let msgs: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} of {run} examples failed:\n{}",
        failures.len(),
        msgs.join("\n")
    );
    assert!(run >= 100, "only {run} examples");
}

#[test]
fn no_shipped_rule_forces_a_full_regex_scan() {
    let set = shipped();
    let warnings: Vec<String> = set
        .lint()
        .into_iter()
        .filter(|l| l.level == LintLevel::Warning)
        .map(|l| l.to_string())
        .collect();
    assert!(warnings.is_empty(), "{}", warnings.join("\n"));
}
