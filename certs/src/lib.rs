//! The enterprise interception CA of Gatehouse: creating, importing,
//! loading and protecting it; describing and exporting its certificate;
//! minting leaves for verified upstreams, and caching them.
//!
//! Wiring, in the gateway:
//! 1. `Ca::load_or_create(&CaFiles::in_dir(dir), &CaInit::default())` at
//!    start (or `Ca::load` to refuse creating one), then
//!    `Arc::new(ca)`.
//! 2. One `LeafCache::with_prepare(ca, LeafCacheConfig::default(), f)`,
//!    where `f` turns a [`Leaf`] into what the TLS acceptor serves, e.g.
//!    `Arc<rustls::sign::CertifiedKey>` from `leaf.into_parts()`.
//! 3. Per intercepted flow, after the upstream handshake verified:
//!    `LeafRequest::new(sni_or_ip, upstream_end_entity)?` and
//!    `cache.get_or_mint(&req, SystemTime::now())`. A
//!    [`CertError::Refused`] means the client gets an alert, not a leaf.
//!    A new CA means a new cache.
//!
//! This crate owns every private key of the gateway. Nothing here logs,
//! exports or serialises the CA key except to its own 0600 file, and no
//! `Debug` output shows a key.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ca;
mod cache;
mod cert;
mod describe;
mod error;
mod export;
mod keyfile;
mod mint;
mod names;
mod p12;
mod validate;

#[cfg(test)]
mod tests;

pub use ca::{Ca, CaFiles, CaImport, CaInit};
pub use cache::{LeafCache, LeafCacheConfig};
pub use cert::CaCert;
pub use describe::CaDescription;
pub use error::{CertError, Refusal};
pub use export::ExportFormat;
pub use keyfile::{check_key_mode, CaKeyAlgorithm};
pub use mint::{Leaf, LeafPolicy, LeafRequest};
pub use names::LeafName;
