//! What can go wrong undoing a coding.

use super::Coding;

/// Why decoding stopped. The output produced before it is kept (see
/// [`Decoded`](super::Decoded) and [`StreamDecoder`](super::StreamDecoder)).
///
/// All of these are the peer's doing (or a cap we set), never ours; DLP
/// turns each into a `decode_limit` finding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A coding this module does not undo (`compress`, a typo, …).
    #[error("{0}: unsupported coding")]
    Unsupported(String),
    /// The data is not valid in its coding.
    #[error("{coding}: corrupt: {reason}")]
    Corrupt {
        /// The layer that failed.
        coding: Coding,
        /// The decompressor's message.
        reason: String,
    },
    /// The data ended before its coding's end marker.
    #[error("{coding}: corrupt: truncated")]
    Truncated {
        /// The layer that was cut.
        coding: Coding,
    },
    /// A layer would have produced more than its [`Caps`](super::Caps)
    /// allow; output stops at the cap.
    #[error("{coding}: output over cap (ratio {max_ratio}x, {max_output} bytes)")]
    OverCap {
        /// The layer that hit the cap.
        coding: Coding,
        /// The size cap.
        max_output: usize,
        /// The ratio cap.
        max_ratio: usize,
    },
    /// A WebSocket compression context was lost to an earlier error, so
    /// nothing after it can be inflated.
    #[error("{coding}: context lost after an earlier error")]
    ContextLost {
        /// The context's coding.
        coding: Coding,
    },
}

impl CodecError {
    /// Whether decoding stopped only because a cap was reached (the output
    /// is a correct prefix) rather than because the data was bad.
    pub fn is_cap(&self) -> bool {
        matches!(self, CodecError::OverCap { .. })
    }
}

impl From<CodecError> for crate::InspectError {
    fn from(e: CodecError) -> Self {
        crate::InspectError::Malformed {
            protocol: "content-encoding",
            reason: e.to_string(),
        }
    }
}
