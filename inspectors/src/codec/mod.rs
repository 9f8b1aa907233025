//! The one body codec: HTTP content-codings and WebSocket compression.
//!
//! Every place that undoes compression (DLP decoding and redaction, body
//! streaming, app extraction, WebSocket inspection in the gateway) goes
//! through this module, so they agree on what is accepted and on the caps:
//!
//! - [`parse_chain`] reads a `Content-Encoding` value: identity, gzip
//!   (x-gzip), deflate (zlib-wrapped per RFC 9110, or raw as browsers also
//!   accept), br, zstd, in any chain (`zstd, gzip` is undone gzip first).
//!   Any other coding is [`CodecError::Unsupported`].
//! - [`decode`] undoes a chain in one go, [`StreamDecoder`] chunk by chunk
//!   into any [`std::io::Write`] sink. Both apply the same [`Caps`] and give
//!   the same bytes (one-shot is the stream fed once), so a body decodes the
//!   same whether it fitted the inspection window or streamed past it.
//! - [`MessageInflater`] inflates WebSocket permessage-deflate messages
//!   (RFC 7692, with or without context takeover) and [`ZlibStream`]
//!   Discord's zlib-stream, under a maximum output size.
//! - [`encode`] re-applies a coding, for rewriting a redacted body as sent.
//!
//! A problem never panics and never loses what was decoded before it: the
//! output so far is kept and the problem comes back as a [`CodecError`],
//! from which DLP makes its `decode_limit` finding.
//!
//! The compression itself is flate2, brotli and zstd; only the plumbing
//! (chains, caps, deflate wrapper detection) is ours.

mod deflate;
mod error;
mod oneshot;
mod stream;
#[cfg(test)]
mod tests;

pub use deflate::{MessageInflater, ZlibStream};
pub use error::CodecError;
pub use oneshot::{decode, decode_header, encode, Decoded};
pub use stream::StreamDecoder;

use std::fmt;

/// One content-coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// No transformation.
    Identity,
    /// gzip (also sent as `x-gzip`).
    Gzip,
    /// deflate: zlib-wrapped, or raw (told apart by the first two bytes).
    Deflate,
    /// Brotli (`br`).
    Brotli,
    /// Zstandard.
    Zstd,
}

impl Coding {
    /// The coding a `Content-Encoding` token names (case-insensitive);
    /// an empty token is identity.
    pub fn parse(token: &str) -> Result<Coding, CodecError> {
        let t = token.trim();
        Ok(if t.is_empty() || t.eq_ignore_ascii_case("identity") {
            Coding::Identity
        } else if t.eq_ignore_ascii_case("gzip") || t.eq_ignore_ascii_case("x-gzip") {
            Coding::Gzip
        } else if t.eq_ignore_ascii_case("deflate") {
            Coding::Deflate
        } else if t.eq_ignore_ascii_case("br") {
            Coding::Brotli
        } else if t.eq_ignore_ascii_case("zstd") {
            Coding::Zstd
        } else {
            return Err(CodecError::Unsupported(t.to_ascii_lowercase()));
        })
    }

    /// The token as HTTP writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The codings of a `Content-Encoding` value, in the order they were
/// applied (undo them last to first), identity left out. Fails on the
/// first coding this module cannot undo.
pub fn parse_chain(content_encoding: &str) -> Result<Vec<Coding>, CodecError> {
    let mut chain = Vec::new();
    for token in content_encoding.split(',') {
        match Coding::parse(token)? {
            Coding::Identity => {}
            c => chain.push(c),
        }
    }
    Ok(chain)
}

/// Decoded output below which the ratio cap does not apply (small bodies
/// compress well without being bombs).
pub const RATIO_FLOOR: usize = 64 << 10;

/// How much one coding layer may produce.
///
/// A layer that has read `n` bytes may have written at most
/// `min(max_output, max(n × max_ratio, RATIO_FLOOR))`; going past that stops
/// decoding with [`CodecError::OverCap`]. Identity is never capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Most bytes a layer may output.
    pub max_output: usize,
    /// Largest output/input ratio of a layer.
    pub max_ratio: usize,
}

impl Caps {
    /// Only a size cap (no ratio).
    pub fn size(max_output: usize) -> Caps {
        Caps {
            max_output,
            max_ratio: usize::MAX,
        }
    }

    /// Most output allowed after `input` bytes in.
    pub(crate) fn allowed(&self, input: u64) -> u64 {
        let by_ratio = input
            .saturating_mul(self.max_ratio as u64)
            .max(RATIO_FLOOR as u64);
        by_ratio.min(self.max_output as u64)
    }
}

/// Whether a deflate body is zlib-wrapped (RFC 1950 header: method 8, a
/// window of at most 32 KiB, check bits) rather than raw deflate.
pub fn is_zlib(data: &[u8]) -> bool {
    data.len() >= 2
        && data[0] & 0x0f == 8
        && data[0] >> 4 <= 7
        && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0
}
