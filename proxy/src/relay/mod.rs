//! Relays: moving bytes of one flow between its two legs, with inspection
//! taps. HTTP/1.1 and HTTP/2 (hyper on both legs), WebSocket frame by frame,
//! the XMPP plaintext phase up to STARTTLS, MQTT packet by packet, and the
//! byte splice, plus the stream adapters they share (byte counting, replay
//! of peeked bytes).
//!
//! May import: `config`, `events`, `error` and the inspectors crate; never
//! `flow`, `listener`, `state` or `gateway` (the flow chooses a relay, a
//! relay knows nothing of flows beyond the [`hooks::FlowContext`]).

pub mod alt_svc;
pub mod count;
pub mod doh;
pub mod hooks;
pub mod http;
pub mod mqtt;
pub mod rewind;
mod splice;
mod upstream;
pub mod websocket;
pub mod xmpp;

pub use splice::{splice, CloseReason, Spliced};
