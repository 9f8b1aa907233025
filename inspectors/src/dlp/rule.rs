//! A compiled rule: the parts of a rule file the scanner needs, checked.

use super::error::Location;
use super::format::{Action, Direction, DirectionScope, Severity, ValidatorSpec};
use super::pattern::Pattern;
use regex_automata::meta::Regex;
use std::sync::Arc;

/// Confidence bands over the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bands {
    pub medium: f64,
    pub high: f64,
}

/// How sure a finding is, from its score and the rule's bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Below the medium band.
    Low,
    /// Between the bands.
    Medium,
    /// At or above the high band.
    High,
}

/// One group of context words with the weight they add (or remove).
#[derive(Debug, Clone)]
pub(crate) struct Term {
    pub weight: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub before: usize,
    pub after: usize,
    pub base: f64,
    pub threshold: f64,
    pub terms: Vec<Term>,
    /// Regexes on the match itself, with the weight each adds.
    pub shapes: Vec<(Regex, f64)>,
    /// Validators on the match, with the weight each adds when it passes.
    pub checks: Vec<(ValidatorSpec, f64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// Lowercase app ids; empty means every app.
    pub apps: Vec<String>,
    pub direction: DirectionScope,
    /// Field names; empty means every field.
    pub fields: Vec<String>,
}

impl Scope {
    pub(crate) fn admits(&self, app: Option<&str>, dir: Direction, field: &str) -> bool {
        let dir_ok = match self.direction {
            DirectionScope::Both => true,
            DirectionScope::Outbound => dir == Direction::Outbound,
            DirectionScope::Inbound => dir == Direction::Inbound,
        };
        let app_ok = self.apps.is_empty()
            || app.is_some_and(|a| self.apps.iter().any(|x| x.eq_ignore_ascii_case(a)));
        // Decoded parts are named "body#json" etc.; a scope on "body" covers them.
        let field_ok = self.fields.is_empty() || {
            let base = field.split('#').next().unwrap_or(field);
            self.fields.iter().any(|f| f == field || f == base)
        };
        dir_ok && app_ok && field_ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evidence {
    pub masked: bool,
    pub context_chars: usize,
    pub keep_last: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Exclude {
    /// Normalised, and compacted to letters and digits.
    pub literals: Vec<String>,
    pub patterns: Vec<Regex>,
    /// What `explain` names for each literal, then each pattern: the entry
    /// as written and where.
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Examples {
    pub must_match: Vec<String>,
    pub must_not_match: Vec<String>,
}

/// A rule ready to scan with.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub id: Arc<str>,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    pub action: Action,
    pub leet: bool,
    pub case_sensitive: bool,
    pub whole_word: bool,
    /// Original keyword spellings, for case-sensitive checks.
    pub keywords: Vec<String>,
    pub pattern: Option<Pattern>,
    pub validators: Vec<ValidatorSpec>,
    pub context: Option<Context>,
    pub bands: Bands,
    pub count_min: usize,
    pub conversation: Option<(usize, u64)>,
    pub exclude: Exclude,
    pub scope: Scope,
    pub evidence: Evidence,
    pub examples: Examples,
    pub loc: Location,
}

impl Rule {
    pub(crate) fn confidence(&self, score: f64) -> Confidence {
        if score >= self.bands.high {
            Confidence::High
        } else if score >= self.bands.medium {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }

    /// Whether `matched` (normalised) is allowlisted: the index of the
    /// `exclude` entry that says so (literals first, then patterns).
    pub(crate) fn excluded(&self, matched: &str) -> Option<usize> {
        if !self.exclude.literals.is_empty() {
            let c = compact(matched);
            if let Some(i) = self.exclude.literals.iter().position(|l| *l == c) {
                return Some(i);
            }
        }
        self.exclude
            .patterns
            .iter()
            .position(|re| re.is_match(matched))
            .map(|i| self.exclude.literals.len() + i)
    }

    /// Which `exclude` entry turned a match down, for `explain`.
    pub(crate) fn exclusion_reason(&self, entry: usize) -> String {
        match self.exclude.labels.get(entry) {
            Some(label) => format!("excluded by {label}"),
            None => "excluded".into(),
        }
    }
}

/// Lowercase letters and digits only: "4111 1111-1111 1111" and
/// "4111111111111111" compare equal.
pub(crate) fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}
