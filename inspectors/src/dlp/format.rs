//! The TOML rule format, as written by people (see dlp-rules/README.md).
//!
//! These types mirror the files one to one; `compile` turns them into the
//! matcher. Spanned fields are those a later check may need to point at.

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// How serious a finding of a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a log line.
    Low,
    /// Worth a look.
    Medium,
    /// Sensitive data.
    High,
    /// Must not leave.
    Critical,
}

impl Severity {
    /// The lowercase name used in files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What the gateway does with a message a rule fires on. Ordered: the
/// message verdict is the highest action of its findings.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Record the finding only.
    Log,
    /// Record and notify.
    #[default]
    Alert,
    /// Rewrite the matched spans, let the message through.
    Redact,
    /// Stop the message.
    Block,
}

impl Action {
    /// The lowercase name used in files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

pub use crate::Direction;

/// A rule's direction scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionScope {
    /// Only outbound messages (the default: DLP is about what leaves).
    #[default]
    Outbound,
    /// Only inbound messages.
    Inbound,
    /// Both.
    Both,
}

/// A named word list that rules share (`keywords.dictionaries`,
/// `context.terms[].dictionaries`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DictionarySpec {
    pub id: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)] // documentation for people reading the file
    pub description: String,
    pub words: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub id: Spanned<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub severity: Severity,
    #[serde(default)]
    pub keywords: Option<KeywordSpec>,
    #[serde(default)]
    pub pattern: Option<Spanned<String>>,
    #[serde(default)]
    pub leet: bool,
    #[serde(default)]
    pub validators: Vec<ValidatorSpec>,
    #[serde(default)]
    pub context: Option<ContextSpec>,
    #[serde(default)]
    pub count: CountSpec,
    #[serde(default)]
    pub exclude: ExcludeSpec,
    #[serde(default)]
    pub scope: ScopeSpec,
    #[serde(default)]
    pub action: Action,
    #[serde(default)]
    pub evidence: EvidenceSpec,
    #[serde(default)]
    pub examples: ExamplesSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeywordSpec {
    #[serde(default)]
    pub words: Vec<String>,
    #[serde(default)]
    pub dictionaries: Vec<Spanned<String>>,
    #[serde(default)]
    pub case_sensitive: bool,
    #[serde(default = "yes")]
    pub whole_word: bool,
}

fn yes() -> bool {
    true
}

/// A check a candidate match must pass. Tagged by `kind` so new checks can
/// be added without breaking files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ValidatorSpec {
    /// Luhn checksum only.
    Luhn,
    /// Luhn plus a known card network prefix (IIN) and length.
    Card,
    /// IBAN: known country, its length, mod-97 check.
    Iban,
    /// US social security number area/group/serial rules.
    UsSsn,
    /// ABA routing transit number checksum.
    AbaRouting,
    /// Phone number: E.164 country code and national-number length, or a
    /// plausible national (trunk-prefixed or fixed-length) number.
    Phone,
    /// Minimum Shannon entropy in bits per character.
    Entropy {
        /// Bits per character the match must reach.
        min: f64,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextSpec {
    #[serde(default = "default_window")]
    pub before: usize,
    #[serde(default = "default_window")]
    pub after: usize,
    #[serde(default = "default_base")]
    pub base: f64,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub bands: Option<BandsSpec>,
    #[serde(default)]
    pub terms: Vec<TermSpec>,
    #[serde(default)]
    pub shapes: Vec<ShapeSpec>,
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
}

/// A validator that adds a weight when it passes instead of deciding
/// alone: a Luhn-valid number inside a card network's range is surely a
/// card; one outside it is a card only when words say so.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckSpec {
    pub validator: ValidatorSpec,
    pub weight: f64,
}

/// A regex on the match itself (not its surroundings) that adds a weight:
/// "+49 …" is more surely a phone number than "0301234567".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShapeSpec {
    pub pattern: Spanned<String>,
    pub weight: f64,
}

fn default_window() -> usize {
    40
}
fn default_base() -> f64 {
    0.5
}
fn default_threshold() -> f64 {
    0.5
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BandsSpec {
    pub medium: f64,
    pub high: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TermSpec {
    #[serde(default)]
    pub words: Vec<String>,
    #[serde(default)]
    pub dictionaries: Vec<Spanned<String>>,
    pub weight: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountSpec {
    #[serde(default)]
    pub min: Option<usize>,
    #[serde(default)]
    pub conversation: Option<ConversationCountSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationCountSpec {
    pub min: usize,
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
}

fn default_window_secs() -> u64 {
    600
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExcludeSpec {
    #[serde(default)]
    pub literals: Vec<Spanned<String>>,
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScopeSpec {
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub direction: DirectionScope,
    #[serde(default)]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EvidenceMode {
    #[default]
    Masked,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvidenceSpec {
    #[serde(default)]
    pub mode: EvidenceMode,
    #[serde(default = "default_context_chars")]
    pub context_chars: usize,
    #[serde(default = "default_keep_last")]
    pub keep_last: usize,
}

impl Default for EvidenceSpec {
    fn default() -> Self {
        EvidenceSpec {
            mode: EvidenceMode::Masked,
            context_chars: default_context_chars(),
            keep_last: default_keep_last(),
        }
    }
}

fn default_context_chars() -> usize {
    20
}
fn default_keep_last() -> usize {
    4
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExamplesSpec {
    #[serde(default)]
    pub must_match: Vec<String>,
    #[serde(default)]
    pub must_not_match: Vec<String>,
}
