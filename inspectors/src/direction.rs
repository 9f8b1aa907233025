//! Which way a payload travels: the one direction type of inspection, DLP
//! and the gateway's events.

use serde::{Deserialize, Serialize};

/// Which way a payload travelled, seen from the enterprise. Serialized as
/// `"outbound"` / `"inbound"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the user's client towards the service: what leaves the
    /// enterprise.
    #[default]
    Outbound,
    /// From the service towards the user's client.
    Inbound,
}
