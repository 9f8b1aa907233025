//! Message-by-message inflation over one deflate context: WebSocket
//! permessage-deflate (RFC 7692) and Discord's zlib-stream.

use flate2::{Decompress, FlushDecompress, Status};

use super::{CodecError, Coding};
use crate::InspectError;

/// The sync-flush marker that ends each message's deflate data.
const SYNC_FLUSH: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflates the messages of one direction of a connection, in order.
///
/// With context takeover the dictionary carries from message to message, so
/// after an error nothing later can be read: every later call fails with
/// [`CodecError::ContextLost`]. Without it each message stands alone.
pub struct MessageInflater {
    state: Decompress,
    zlib: bool,
    reset_each: bool,
    /// Whether the sender strips the sync-flush marker (permessage-deflate).
    add_marker: bool,
    cap: usize,
    broken: bool,
    /// Bytes inflated so far of the message being streamed.
    message_out: usize,
}

impl std::fmt::Debug for MessageInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageInflater")
            .field("zlib", &self.zlib)
            .field("reset_each", &self.reset_each)
            .field("cap", &self.cap)
            .field("broken", &self.broken)
            .finish()
    }
}

impl MessageInflater {
    /// permessage-deflate for one direction: raw deflate, the sender having
    /// removed each message's trailing `00 00 FF FF`. `no_context_takeover`
    /// is the negotiated `*_no_context_takeover` of the sending side. No
    /// message inflates to more than `cap` bytes.
    pub fn permessage_deflate(no_context_takeover: bool, cap: usize) -> Self {
        Self::new(false, no_context_takeover, true, cap)
    }

    /// A zlib-wrapped stream whose messages each end with a sync flush
    /// (marker included), one context for the connection.
    pub fn zlib_stream(cap: usize) -> Self {
        Self::new(true, false, false, cap)
    }

    fn new(zlib: bool, reset_each: bool, add_marker: bool, cap: usize) -> Self {
        MessageInflater {
            state: Decompress::new(zlib),
            zlib,
            reset_each,
            add_marker,
            cap,
            broken: false,
            message_out: 0,
        }
    }

    /// Inflates one whole message.
    pub fn inflate(&mut self, message: &[u8]) -> Result<Vec<u8>, CodecError> {
        let coding = Coding::Deflate;
        if self.broken {
            return Err(CodecError::ContextLost { coding });
        }
        if self.reset_each {
            self.state.reset(self.zlib);
        }
        let input: std::borrow::Cow<'_, [u8]> = if self.add_marker {
            let mut v = Vec::with_capacity(message.len() + 4);
            v.extend_from_slice(message);
            v.extend_from_slice(&SYNC_FLUSH);
            v.into()
        } else {
            message.into()
        };
        let r = self.run(&input);
        if r.is_err() && !self.reset_each {
            self.broken = true;
        }
        r
    }

    /// Starts a message inflated piece by piece, as it streams: feed it
    /// with [`push`](Self::push), end it with [`end`](Self::end). The cap
    /// counts the whole message.
    pub fn begin(&mut self) -> Result<(), CodecError> {
        if self.broken {
            return Err(CodecError::ContextLost {
                coding: Coding::Deflate,
            });
        }
        if self.reset_each {
            self.state.reset(self.zlib);
        }
        self.message_out = 0;
        Ok(())
    }

    /// The next piece of a message begun with [`begin`](Self::begin): what
    /// it inflates to so far.
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<u8>, CodecError> {
        if self.broken {
            return Err(CodecError::ContextLost {
                coding: Coding::Deflate,
            });
        }
        let room = self.cap.saturating_sub(self.message_out);
        let r = self.run_capped(piece, room);
        match &r {
            Ok(out) => self.message_out += out.len(),
            Err(_) if !self.reset_each => self.broken = true,
            Err(_) => {}
        }
        r.map_err(|e| match e {
            CodecError::OverCap { coding, .. } => CodecError::OverCap {
                coding,
                max_output: self.cap,
                max_ratio: usize::MAX,
            },
            e => e,
        })
    }

    /// The end of a message begun with [`begin`](Self::begin): its last
    /// inflated bytes.
    pub fn end(&mut self) -> Result<Vec<u8>, CodecError> {
        if self.add_marker {
            self.push(&SYNC_FLUSH)
        } else {
            Ok(Vec::new())
        }
    }

    fn run(&mut self, input: &[u8]) -> Result<Vec<u8>, CodecError> {
        self.run_capped(input, self.cap)
    }

    fn run_capped(&mut self, input: &[u8], cap: usize) -> Result<Vec<u8>, CodecError> {
        let over = || CodecError::OverCap {
            coding: Coding::Deflate,
            max_output: cap,
            max_ratio: usize::MAX,
        };
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(cap));
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(over());
                }
                out.reserve_exact(out.len().max(1024).min(cap - out.len()));
            }
            let (in0, out0) = (self.state.total_in(), self.state.total_out());
            let status = self
                .state
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .map_err(|e| CodecError::Corrupt {
                    coding: Coding::Deflate,
                    reason: e.to_string(),
                })?;
            consumed += (self.state.total_in() - in0) as usize;
            let progressed = self.state.total_in() != in0 || self.state.total_out() != out0;
            // Done once all input is in and the inflater had room to spare.
            let drained = consumed == input.len() && out.len() < out.capacity();
            if status == Status::StreamEnd || drained || !progressed {
                break;
            }
        }
        if out.len() > cap {
            return Err(over());
        }
        Ok(out)
    }
}

/// Discord's `zlib-stream` gateway compression: one zlib context for the
/// whole connection, each payload ending in a sync flush (`00 00 FF FF`),
/// possibly split over several frames.
#[derive(Debug)]
pub struct ZlibStream {
    inflater: MessageInflater,
    pending: Vec<u8>,
    cap: usize,
}

fn malformed(reason: impl Into<String>) -> InspectError {
    InspectError::Malformed {
        protocol: "zlib-stream",
        reason: reason.into(),
    }
}

impl ZlibStream {
    /// A fresh context; no payload inflates to more than `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            inflater: MessageInflater::zlib_stream(cap),
            pending: Vec::new(),
            cap,
        }
    }

    /// Adds one frame; returns the inflated payload once a frame ends with
    /// the sync-flush suffix. After an error the context is unusable (the
    /// dictionary is lost), and every later call fails too.
    pub fn push(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, InspectError> {
        if self.inflater.broken {
            return Err(malformed("context lost after an earlier error"));
        }
        if self.pending.len() + frame.len() > self.cap {
            self.inflater.broken = true;
            return Err(malformed("payload larger than the cap"));
        }
        self.pending.extend_from_slice(frame);
        if !self.pending.ends_with(&SYNC_FLUSH) {
            return Ok(None);
        }
        let input = std::mem::take(&mut self.pending);
        self.inflater
            .inflate(&input)
            .map(Some)
            .map_err(|e| malformed(e.to_string()))
    }
}
