//! Both TLS legs of an intercepted flow: the client-facing server with a
//! minted leaf ([`client`]) and the verified upstream client ([`upstream`]).
//!
//! May import: `config` and `error`; nothing above (no flow, relay or
//! listener code): the flow drives the handshakes, these only configure them.

pub mod client;
pub mod upstream;
