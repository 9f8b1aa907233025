//! HTTP request bodies: undo Content-Encoding, then read JSON, forms and
//! multipart into one shape the app extractors share.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::multipart::{parse_multipart, Part};
use crate::codec;
use crate::InspectError;

/// Largest body extraction will decode; bigger ones are cut (a compression
/// bomb must not cost more memory than a large message).
pub const MAX_DECODED_BODY: usize = 8 << 20;

/// Undoes a `Content-Encoding` header value (`gzip`, `deflate`, `br`,
/// `zstd`, `identity`, or a comma-separated chain of them), producing at most
/// `cap` bytes: a longer body is cut at `cap` (extraction reads the first
/// part of a huge body; DLP reports the cap itself).
pub fn decode_content_encoding<'a>(
    encoding: &str,
    data: &'a [u8],
    cap: usize,
) -> Result<Cow<'a, [u8]>, InspectError> {
    let decoded = codec::decode_header(encoding, data, codec::Caps::size(cap));
    match decoded.error {
        Some(e) if !e.is_cap() => Err(e.into()),
        _ => Ok(decoded.data),
    }
}

/// A parsed request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `application/json` (or anything that parses as a JSON object/array).
    Json(Value),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
    /// `multipart/form-data`.
    Multipart(Vec<Part>),
    /// Empty, binary or unknown.
    Other,
}

impl Body {
    /// Parses `body` according to its `Content-Type` (sniffing when absent).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Body {
        let mime = content_type.and_then(|ct| ct.parse::<mime::Mime>().ok());
        if let Some(m) = &mime {
            if m.type_() == mime::MULTIPART {
                return match m.get_param(mime::BOUNDARY) {
                    Some(b) => parse_multipart(body, b.as_str())
                        .map(Body::Multipart)
                        .unwrap_or(Body::Other),
                    None => Body::Other,
                };
            }
            if m.type_() == mime::APPLICATION && m.subtype() == mime::WWW_FORM_URLENCODED {
                return Body::Form(parse_form(body));
            }
        }
        let trimmed = body.trim_ascii_start();
        if trimmed.first().is_some_and(|b| *b == b'{' || *b == b'[') {
            if let Ok(v) = serde_json::from_slice::<Value>(trimmed) {
                return Body::Json(v);
            }
        }
        // Clients often omit the header on small form posts.
        if mime.is_none() && !body.is_empty() && body.contains(&b'=') && body.is_ascii() {
            return Body::Form(parse_form(body));
        }
        Body::Other
    }

    /// The body as one JSON object: forms and multipart text parts become
    /// string members (the last of repeated names wins); JSON stays as is.
    pub fn to_json(&self) -> Option<Cow<'_, Value>> {
        match self {
            Body::Json(v) => Some(Cow::Borrowed(v)),
            Body::Form(pairs) => Some(Cow::Owned(Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ))),
            Body::Multipart(parts) => {
                let mut obj = Map::new();
                for p in parts.iter().filter(|p| p.filename.is_none()) {
                    if let Ok(s) = std::str::from_utf8(&p.data) {
                        obj.insert(p.name.clone(), Value::String(s.to_owned()));
                    }
                }
                Some(Cow::Owned(Value::Object(obj)))
            }
            Body::Other => None,
        }
    }

    /// File names of multipart file parts.
    pub fn filenames(&self) -> Vec<String> {
        match self {
            Body::Multipart(parts) => parts.iter().filter_map(|p| p.filename.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A string member of a JSON object; JSON-encoded strings (as forms carry
/// Slack `blocks` or Discord `payload_json`) are decoded by [`nested`].
pub(crate) fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// A member that may be JSON itself or a string holding JSON.
pub(crate) fn nested(v: &Value, key: &str) -> Option<Value> {
    match v.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_cap() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'a'; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(
            decode_content_encoding("gzip", &gz, 1 << 20).unwrap().len(),
            10_000
        );
        assert_eq!(
            decode_content_encoding("gzip", &gz, 100).unwrap().len(),
            100
        );
    }

    #[test]
    fn brotli_zstd_deflate_chain() {
        let plain = b"text=hello";
        let z = zstd::encode_all(&plain[..], 3).unwrap();
        assert_eq!(&*decode_content_encoding("zstd", &z, 1024).unwrap(), plain);
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &plain[..], &mut br, &Default::default()).unwrap();
        assert_eq!(&*decode_content_encoding("br", &br, 1024).unwrap(), plain);
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
        raw.write_all(plain).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(
            &*decode_content_encoding("deflate", &raw, 1024).unwrap(),
            plain
        );
        // gzip applied after zstd: undo gzip first.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        gz.write_all(&z).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            &*decode_content_encoding("zstd, gzip", &gz, 1024).unwrap(),
            plain
        );
        assert!(decode_content_encoding("compress", plain, 1024).is_err());
    }

    #[test]
    fn form_and_json_sniffing() {
        let f = Body::parse(None, b"channel=C1&text=hi+there");
        assert_eq!(str_at(&f.to_json().unwrap(), "text"), Some("hi there"));
        let j = Body::parse(Some("text/plain"), b" {\"a\":1}");
        assert!(matches!(j, Body::Json(_)));
        assert_eq!(Body::parse(None, b"\x00\x01"), Body::Other);
    }
}
