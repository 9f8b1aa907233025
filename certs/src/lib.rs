//! The enterprise interception CA of Gatehouse: creating, importing,
//! loading and protecting it; describing and exporting its certificate;
//! minting leaves for verified upstreams, and caching them.
//!
//! This crate owns every private key of the gateway. Nothing here logs,
//! exports or serialises the CA key except to its own 0600 file, and no
//! `Debug` output shows a key.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ca;
mod cache;
mod describe;
mod error;
mod export;
mod keyfile;
mod mint;
mod names;
mod validate;

#[cfg(test)]
mod tests;

pub use ca::{Ca, CaFiles, CaImport, CaInit};
pub use cache::{LeafCache, LeafCacheConfig};
pub use describe::CaDescription;
pub use error::{CertError, Refusal};
pub use export::ExportFormat;
pub use keyfile::{check_key_mode, CaKeyAlgorithm};
pub use mint::{Leaf, LeafPolicy, LeafRequest};
pub use names::LeafName;
