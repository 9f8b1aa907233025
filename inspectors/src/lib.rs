//! Sans-IO inspection for Gatehouse: bytes in, verdicts out.
//!
//! This crate never touches sockets, files or clocks; time is passed in by the
//! caller. That keeps every parser fuzzable, benchmarkable and replayable from
//! captures.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod codec;
mod direction;
pub mod error;
pub mod extract;
pub mod identify;

pub use direction::Direction;
pub use error::InspectError;
pub mod dlp;
