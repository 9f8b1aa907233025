//! The machine output of `gatehouse rules scan --json`.

use super::scan::{Finding, ScanResult};
use serde::Serialize;

/// One finding as the offline scanner prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonFinding<'a> {
    /// Rule id.
    pub rule: &'a str,
    /// "low" | "medium" | "high" | "critical".
    pub severity: &'static str,
    /// Score in 0..=1.
    pub score: f64,
    /// UTF-8 byte offset into the record's `text`.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// Masked evidence as the rule's `[rule.evidence]` says; absent for
    /// `mode = "none"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<&'a str>,
}

impl<'a> From<&'a Finding> for JsonFinding<'a> {
    fn from(f: &'a Finding) -> Self {
        JsonFinding {
            rule: &f.rule,
            severity: f.severity.as_str(),
            score: f.score,
            start: f.start,
            end: f.end,
            evidence: f.excerpt.as_deref(),
        }
    }
}

/// One output line: `{"id":…, "findings":[…]}`, `id` echoed as given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanRecord<'a, I: Serialize> {
    /// The input record's id (any JSON value), or its line number.
    pub id: I,
    /// Findings in the record's `text`.
    pub findings: Vec<JsonFinding<'a>>,
}

impl<'a, I: Serialize> ScanRecord<'a, I> {
    /// The record for `result` of the input whose id is `id`.
    pub fn new(id: I, result: &'a ScanResult) -> Self {
        ScanRecord {
            id,
            findings: result.findings.iter().map(JsonFinding::from).collect(),
        }
    }
}
