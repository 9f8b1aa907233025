//! Every rule carries strings it must and must not match; `gatehouse rules
//! test` and the test suite run them.

use super::error::Location;
use super::ruleset::RuleSet;
use super::scan::{MessageInput, Options, Rejected};

/// An example that did not behave as its rule says.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleFailure {
    /// The rule.
    pub rule: String,
    /// Where the rule is defined.
    pub loc: Location,
    /// The example text.
    pub example: String,
    /// True for a `must_match` example that did not match.
    pub expected_match: bool,
    /// Why candidates were turned down (for missed must-match examples).
    pub rejected: Vec<Rejected>,
    /// Masked evidence of what matched (for matched must-not-match examples).
    pub matched: Vec<String>,
}

impl std::fmt::Display for ExampleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.expected_match {
            "must_match example did not match"
        } else {
            "must_not_match example matched"
        };
        write!(
            f,
            "{}: rule `{}`: {what}: {:?}",
            self.loc, self.rule, self.example
        )?;
        for r in &self.rejected {
            write!(
                f,
                "\n    candidate {}..{} rejected: {}",
                r.start, r.end, r.reason
            )?;
        }
        for m in &self.matched {
            write!(f, "\n    matched: {m}")?;
        }
        Ok(())
    }
}

impl RuleSet {
    /// Run every rule's examples, each against that rule alone with scopes
    /// ignored. Returns the failures and the number of examples run.
    pub fn run_examples(&self) -> (Vec<ExampleFailure>, usize) {
        let mut failures = Vec::new();
        let mut run = 0;
        for (idx, rule) in self.rules.iter().enumerate() {
            let opts = Options {
                ignore_scope: true,
                explain: true,
                only: Some(idx as u32),
                no_evidence: false,
            };
            let cases = rule
                .examples
                .must_match
                .iter()
                .map(|e| (e, true))
                .chain(rule.examples.must_not_match.iter().map(|e| (e, false)));
            for (example, expected) in cases {
                run += 1;
                let result = self.scan_inner(&MessageInput::text(example), None, opts);
                let matched = result.findings.iter().any(|f| f.rule == rule.id);
                if matched != expected {
                    failures.push(ExampleFailure {
                        rule: rule.id.to_string(),
                        loc: rule.loc.clone(),
                        example: example.clone(),
                        expected_match: expected,
                        matched: result
                            .findings
                            .iter()
                            .filter(|f| f.rule == rule.id)
                            .filter_map(|f| f.excerpt.as_ref().map(|e| e.to_string()))
                            .collect(),
                        rejected: if expected {
                            result.rejected
                        } else {
                            Vec::new()
                        },
                    });
                }
            }
        }
        (failures, run)
    }
}
