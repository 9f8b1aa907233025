//! The enterprise interception CA of Gatehouse: creating, loading and
//! protecting it, and (later) minting leaves with it.
//!
//! This crate owns every private key of the gateway. Nothing here logs,
//! exports or serialises the CA key except to its own 0600 file.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ca;
mod error;
mod interim;

pub use ca::{check_key_mode, Ca, CaFiles, CaInit};
pub use error::CertError;
pub use interim::InterimLeaf;
