//! The one error type of this crate.

use std::fmt;
use std::path::PathBuf;

/// What went wrong with the CA or a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CA key file can be read by group or others.
    #[error(
        "{path}: CA key is readable by group or others (mode {mode:03o}); run `chmod 600 {path}`"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file does not hold what it should.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA certificate, key or chain is not usable as an interception CA.
    #[error("unusable CA: {reason}")]
    CaRejected {
        /// What is wrong with it.
        reason: String,
    },
    /// The private key does not belong to the CA certificate.
    #[error("unusable CA: the private key does not match the certificate's public key")]
    KeyMismatch,
    /// A requested leaf name is neither a DNS name nor an IP address.
    #[error("{name:?} is not a valid DNS name or IP address")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// No leaf may be minted for this upstream: the upstream, not we, is at fault.
    #[error("no leaf for {name}: {reason}")]
    Refused {
        /// The requested name.
        name: String,
        /// Why.
        reason: Refusal,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// Encoding an export format failed.
    #[error("export failed: {0}")]
    Export(String),
}

/// Why a leaf was refused for an upstream certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The upstream certificate could not be parsed.
    UpstreamUnparsable(String),
    /// The upstream end-entity certificate is itself a CA certificate.
    UpstreamIsCa,
    /// The upstream certificate's extendedKeyUsage excludes serverAuth.
    UpstreamNotServerAuth,
    /// No subjectAltName of the upstream certificate covers the name.
    NotCovered,
    /// The name lies outside the interception CA's name constraints.
    OutsideNameConstraints,
    /// The upstream (or CA) validity leaves no lifetime that includes now.
    NoValidLifetime,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UpstreamUnparsable(e) => write!(f, "upstream certificate unparsable: {e}"),
            Self::UpstreamIsCa => f.write_str("upstream end-entity certificate is a CA"),
            Self::UpstreamNotServerAuth => {
                f.write_str("upstream certificate is not valid for serverAuth")
            }
            Self::NotCovered => f.write_str("upstream certificate does not cover this name"),
            Self::OutsideNameConstraints => {
                f.write_str("name is outside the interception CA's name constraints")
            }
            Self::NoValidLifetime => {
                f.write_str("upstream or CA validity does not include the current time")
            }
        }
    }
}
