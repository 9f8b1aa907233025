//! Which protocol a flow speaks, from its first bytes.
pub(crate) mod reader;
pub mod tls;
