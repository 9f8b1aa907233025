//! Listeners: how connections reach the gateway.

pub mod admin;
pub mod explicit;
mod relay;
pub mod transparent;

pub use relay::{splice, CloseReason, Spliced};
