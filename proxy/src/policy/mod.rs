//! Who may use the gateway, where they may go, and what happens to a flow.
//!
//! May import: `config`; nothing above it (no flow, relay, state or listener
//! code), so every decision is a pure function of configuration and input.

mod access;
mod addresses;
mod decide;
mod identity;
mod listeners;
mod pinning;

pub use access::{is_special_destination, AccessPolicy};
pub use addresses::AddressBook;
pub use decide::{host_matches, Decision, Policy, QuicDecision};
pub use identity::{AuthError, Identities, Identity};
pub use listeners::OwnListeners;
pub use pinning::{subject as pinning_subject, Pinning};
