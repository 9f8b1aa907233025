//! Gatehouse: a TLS-intercepting corporate messaging gateway.
//!
//! This crate owns all IO of the gateway: listeners, both TLS legs, relays,
//! policy, the event pipeline and the admin endpoint. Protocol knowledge and
//! DLP live in `gatehouse-inspectors`; keys and certificates in
//! `gatehouse-certs`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod console;
pub mod dns;
pub mod error;
pub mod events;
pub mod flow;
pub mod gateway;
pub mod inspect;
pub mod listener;
pub mod onboarding;
pub mod policy;
pub mod quic;
pub mod relay;
pub mod reload;
pub mod state;
pub mod tls;

pub use error::{GatewayError, Side};
pub use gateway::Gateway;
