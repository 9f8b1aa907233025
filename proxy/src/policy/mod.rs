//! Who may use the gateway, and where they may go.

mod access;

pub use access::{is_special_destination, AccessPolicy};
