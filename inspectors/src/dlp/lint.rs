//! Advice about rules that compile but cost or miss: full regex scans,
//! missing examples, keywords too short to mean anything.

use super::error::Location;
use super::pattern::Mode;
use super::ruleset::{RuleSet, UNBOUNDED_MATCH_CAP};

/// How much a lint matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LintLevel {
    /// Worth knowing.
    Info,
    /// Should be fixed.
    Warning,
}

/// One piece of advice about a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Lint {
    /// Info or warning.
    pub level: LintLevel,
    /// The rule.
    pub rule: String,
    /// Where it is defined.
    pub loc: Location,
    /// The advice.
    pub message: String,
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            LintLevel::Info => "info",
            LintLevel::Warning => "warning",
        };
        write!(
            f,
            "{}: {level}: rule `{}`: {}",
            self.loc, self.rule, self.message
        )
    }
}

impl RuleSet {
    /// Lint every rule.
    pub fn lint(&self) -> Vec<Lint> {
        let mut out = Vec::new();
        for r in &self.rules {
            let mut push = |level, message: String| {
                out.push(Lint {
                    level,
                    rule: r.id.to_string(),
                    loc: r.loc.clone(),
                    message,
                })
            };
            if let Some(p) = &r.pattern {
                match &p.mode {
                    Mode::Full => push(
                        LintLevel::Warning,
                        "pattern has no literal prefix and no small set of required bytes: \
                         it forces a full regex scan of every message; start it with a literal \
                         or add keywords"
                            .into(),
                    ),
                    // Letters are in every word: windows around them cover
                    // all of a message, which costs like a full scan.
                    Mode::Window(set) if (b'a'..=b'z').any(|b| set.contains(b)) => push(
                        LintLevel::Warning,
                        format!(
                            "pattern has no usable literal prefix and runs in windows around \
                             letters ({:?}), i.e. everywhere; start every branch with a literal",
                            set.describe()
                        ),
                    ),
                    Mode::Window(set) => push(
                        LintLevel::Info,
                        format!(
                            "pattern has no literal prefix; it runs in windows around the bytes {:?}",
                            set.describe()
                        ),
                    ),
                    Mode::Prefix(_) => {}
                }
                if p.max_len.is_none() {
                    push(
                        LintLevel::Info,
                        format!(
                            "pattern length is unbounded; streaming scans only see matches up to \
                             {UNBOUNDED_MATCH_CAP} bytes"
                        ),
                    );
                }
            }
            if r.examples.must_match.is_empty() || r.examples.must_not_match.is_empty() {
                push(
                    LintLevel::Warning,
                    "has no must_match or no must_not_match examples".into(),
                );
            }
            for k in &r.keywords {
                if k.trim().chars().count() < 3 {
                    push(
                        LintLevel::Warning,
                        format!("keyword {k:?} is shorter than 3 characters and will match noise"),
                    );
                }
            }
        }
        out
    }
}
