//! One-shot decode (the stream decoder fed once) and re-encoding.

use std::borrow::Cow;
use std::io::Write;

use super::{parse_chain, Caps, CodecError, Coding, StreamDecoder};

/// A body with its codings undone, as far as they could be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The decoded bytes: everything when `error` is None, else what was
    /// decoded before the problem (up to the cap, or up to the corruption).
    pub data: Cow<'a, [u8]>,
    /// What stopped decoding, if anything.
    pub error: Option<CodecError>,
}

/// Undoes `chain` (in the order applied) on a whole body, within `caps`.
/// Gives exactly what [`StreamDecoder`] gives for the same bytes pushed in
/// one chunk; an empty chain borrows the body.
pub fn decode<'a>(chain: &[Coding], data: &'a [u8], caps: Caps) -> Decoded<'a> {
    if chain.is_empty() {
        return Decoded {
            data: Cow::Borrowed(data),
            error: None,
        };
    }
    let first = caps.allowed(data.len() as u64);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(first as usize));
    let error = match StreamDecoder::new(chain, caps, &mut out) {
        Ok(mut d) => d.push(data).and_then(|()| d.finish()).err(),
        Err(e) => Some(e),
    };
    Decoded {
        data: Cow::Owned(out),
        error,
    }
}

/// [`decode`] for a `Content-Encoding` header value. An unsupported
/// coding decodes nothing.
pub fn decode_header<'a>(content_encoding: &str, data: &'a [u8], caps: Caps) -> Decoded<'a> {
    match parse_chain(content_encoding) {
        Ok(chain) => decode(&chain, data, caps),
        Err(e) => Decoded {
            data: Cow::Borrowed(&[]),
            error: Some(e),
        },
    }
}

/// Applies one coding to `data` (default levels). For deflate, `raw`
/// chooses raw deflate over zlib, to match how a body came.
pub fn encode(coding: Coding, raw: bool, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let level = flate2::Compression::default();
    let failed = |e: std::io::Error| CodecError::Corrupt {
        coding,
        reason: e.to_string(),
    };
    match coding {
        Coding::Identity => Ok(data.to_vec()),
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).map_err(failed)?;
            e.finish().map_err(failed)
        }
        Coding::Deflate if raw => {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
            e.write_all(data).map_err(failed)?;
            e.finish().map_err(failed)
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).map_err(failed)?;
            e.finish().map_err(failed)
        }
        Coding::Brotli => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).map_err(failed)?;
            }
            Ok(out)
        }
        Coding::Zstd => zstd::stream::encode_all(data, 3).map_err(failed),
    }
}
