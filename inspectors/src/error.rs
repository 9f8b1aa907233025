//! The one error type of this crate.

/// What went wrong while inspecting bytes.
///
/// "The peer sent something malformed" is kept apart from "the input was
/// incomplete": the latter is not an error but a request for more bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InspectError {
    /// The bytes violate the protocol they claim to be.
    #[error("malformed {protocol}: {reason}")]
    Malformed {
        /// Which protocol's rules were broken.
        protocol: &'static str,
        /// What was wrong, for logs and events.
        reason: String,
    },
}
