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
//!
//! ```
//! use gatehouse_inspectors::dlp::{Action, RuleSet};
//! let rules = r#"
//! [[rule]]
//! id = "us-ssn"
//! name = "US SSN"
//! severity = "critical"
//! action = "redact"
//! pattern = '\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b'
//! validators = [{ kind = "us_ssn" }]
//! "#;
//! let set = RuleSet::from_sources(&[("ssn.toml", rules)]).expect("valid rules");
//! let text = "my ssn is 536-22-1234";
//! let result = set.scan_text(text);
//! assert_eq!(result.verdict(), Some(Action::Redact));
//! assert_eq!((result.findings[0].start, result.findings[0].end), (10, 21));
//! assert_eq!(result.redact("text", text), "my ssn is ***-**-*234");
//! ```

pub mod binary;
mod body_stream;
mod bytefind;
mod count;
pub mod decode;
mod error;
mod evidence;
mod examples;
mod format;
mod fs;
mod json;
mod lint;
mod load;
mod mask;
pub mod normalize;
mod pattern;
mod phone;
mod prefilter;
mod redact;
mod rule;
mod ruleset;
mod scan;
mod stream;
pub mod validators;

pub use body_stream::BodyStream;
pub use count::ConversationTracker;
pub use decode::{decode_body, BodyInput, DecodeLimits, Decoded};
pub use error::{Location, RuleError};
pub use evidence::Evidence;
pub use examples::ExampleFailure;
pub use format::{Action, Direction, Severity, ValidatorSpec};
pub use fs::load_dir;
pub use json::{JsonFinding, ScanRecord};
pub use lint::{Lint, LintLevel};
pub use mask::{excerpt, mask, mask_same_len, redact};
pub use redact::{redact_body, redact_texts};
pub use rule::Confidence;
pub use ruleset::{RuleInfo, RuleSet};
pub use scan::{Contribution, Field, Finding, MessageInput, Rejected, ScanResult};
pub use stream::{Matched, StreamScanner, AROUND_CHARS};

/// Rule id of the finding raised when decoding hit a size or ratio cap.
pub const DECODE_LIMIT_RULE: &str = "decode_limit";
