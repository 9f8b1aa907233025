//! Which protocol a flow speaks, from its first bytes.
pub mod quic;
pub(crate) mod reader;
pub mod tls;
