//! Offline flow assembly from capture files, for `gatehouse identify`.
//!
//! Bytes of a pcap or pcapng file in, flows out: each TCP flow's client
//! stream is reassembled from its start (in order, retransmissions once,
//! bounded), each UDP flow's QUIC Initials are followed across datagrams,
//! and the result is judged by [`crate::identify`]. Nothing here reads files:
//! the caller hands over the bytes, or pushes frames into an [`Assembler`].
//!
//! ```
//! use gatehouse_inspectors::capture::{self, Limits};
//!
//! let not_a_capture = b"hello";
//! assert!(capture::read(not_a_capture, Limits::default()).is_err());
//! ```

mod attribute;
mod file;
mod flows;
pub mod link;
mod tcp;

pub use attribute::classify;
pub use file::{Damage, Frame, Frames, UNDECLARED_INTERFACE};
pub use flows::{Assembler, Flow, Limits};
pub use tcp::StreamStart;

use crate::InspectError;

/// How many malformed-frame reasons a [`Capture`] keeps as examples.
const EXAMPLES: usize = 10;

/// Everything read from one capture file.
#[derive(Debug)]
#[non_exhaustive]
pub struct Capture {
    /// The flows, in first-seen order.
    pub flows: Vec<Flow>,
    /// Frames read.
    pub frames: u64,
    /// Frames skipped because they were malformed.
    pub malformed: u64,
    /// The first few malformed frames: 1-based frame number and reason.
    pub malformed_examples: Vec<(u64, String)>,
    /// Frames that were neither TCP nor UDP (ARP, ICMP, fragments).
    pub other: u64,
    /// Reading stopped early: the file is cut short or corrupt there.
    pub damage: Option<Damage>,
    /// The file is pcapng (else legacy pcap).
    pub pcapng: bool,
}

/// Reads a whole capture file. Fails only when the bytes are not a pcap or
/// pcapng file at all; a malformed frame is skipped and counted, and a file
/// cut short keeps the flows before the cut and says where in `damage`.
pub fn read(bytes: &[u8], limits: Limits) -> Result<Capture, InspectError> {
    let frames = Frames::open(bytes)?;
    let mut capture = Capture {
        flows: Vec::new(),
        frames: 0,
        malformed: 0,
        malformed_examples: Vec::new(),
        other: 0,
        damage: None,
        pcapng: frames.is_pcapng(),
    };
    let mut assembler = Assembler::new(limits);
    for frame in frames {
        let frame = match frame {
            Ok(f) => f,
            Err(damage) => {
                capture.damage = Some(damage);
                break;
            }
        };
        capture.frames += 1;
        match assembler.push_frame(frame.linktype, frame.timestamp, frame.data) {
            Ok(true) => {}
            Ok(false) => capture.other += 1,
            Err(reason) => {
                capture.malformed += 1;
                if capture.malformed_examples.len() < EXAMPLES {
                    capture.malformed_examples.push((capture.frames, reason));
                }
            }
        }
    }
    capture.flows = assembler.finish();
    Ok(capture)
}

#[cfg(test)]
mod tests;
