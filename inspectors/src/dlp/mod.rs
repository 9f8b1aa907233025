//! Data loss prevention: rule files in, findings out.
//!
//! ```text
//! rule files ──RuleSet::from_sources──▶ RuleSet (immutable, share in Arc)
//! body bytes ──decode::decode_body──▶ texts ──normalize──▶ view
//!   view ──one Aho-Corasick pass (keywords, regex prefixes, context words)
//!        ──regex verification at hits / in windows──▶ candidates
//!        ──exclusions, validators, context score, counts──▶ findings
//! ```
//! The engine never reads files or clocks; [`load_dir`] is a thin helper for
//! the CLI and the gateway, and conversation time is passed in.

mod bytefind;
mod count;
pub mod decode;
mod error;
mod examples;
mod format;
mod fs;
mod json;
mod lint;
mod load;
mod mask;
pub mod normalize;
mod pattern;
mod rule;
mod ruleset;
mod scan;
mod stream;
pub mod validators;

pub use count::ConversationTracker;
pub use decode::{decode_body, BodyInput, DecodeLimits, Decoded};
pub use error::{Location, RuleError};
pub use examples::ExampleFailure;
pub use format::{Action, Direction, Severity, ValidatorSpec};
pub use fs::load_dir;
pub use json::{JsonFinding, ScanRecord};
pub use lint::{Lint, LintLevel};
pub use mask::{excerpt, mask, redact};
pub use rule::Confidence;
pub use ruleset::{RuleInfo, RuleSet};
pub use scan::{Contribution, Field, Finding, MessageInput, Rejected, ScanResult};
pub use stream::StreamScanner;

/// Rule id of the finding raised when decoding hit a size or ratio cap.
pub const DECODE_LIMIT_RULE: &str = "decode_limit";
