//! Listeners: how connections reach the gateway. Each accepts, admits
//! (through [`crate::flow::admit`]) and hands the connection to the flow.
//!
//! May import: `flow`, `state`, `config`, `events`, `policy`, `relay` (for
//! the explicit proxy's own HTTP replies); never `gateway` or `cli`.

pub mod admin;
pub mod backoff;
pub mod explicit;
pub mod onboarding;
pub mod transparent;
