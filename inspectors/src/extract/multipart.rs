//! A small, bounded `multipart/form-data` reader over a complete body.
//!
//! Hand-written on purpose: the maintained crates (`multer`, `mpart-async`)
//! are async stream readers, and `multipart` is unmaintained. Part headers
//! are parsed by `httparse`, boundaries found with `memchr`.

use memchr::memmem;

use crate::InspectError;

/// More parts than any chat client sends; the rest are ignored.
const MAX_PARTS: usize = 256;

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` of its Content-Disposition.
    pub name: String,
    /// The `filename`, for file parts.
    pub filename: Option<String>,
    /// Its own Content-Type, if given.
    pub content_type: Option<String>,
    /// The raw content.
    pub data: Vec<u8>,
}

fn malformed(reason: &str) -> InspectError {
    InspectError::Malformed {
        protocol: "multipart",
        reason: reason.to_owned(),
    }
}

/// Splits `body` at `boundary`. A truncated last part is dropped.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, InspectError> {
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(malformed("bad boundary"));
    }
    let dash = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delim.as_bytes());
    // The preamble may be empty (body starts with the delimiter) or not.
    let mut pos = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        finder.find(body).ok_or_else(|| malformed("no boundary"))? + delim.len()
    };
    let mut parts = Vec::new();
    while parts.len() < MAX_PARTS {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            break;
        }
        // Transport padding, then CRLF.
        let Some(eol) = memmem::find(rest, b"\r\n") else {
            break;
        };
        let rest = &rest[eol + 2..];
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let (hlen, headers) = match httparse::parse_headers(rest, &mut headers) {
            Ok(httparse::Status::Complete((n, h))) => (n, h),
            Ok(httparse::Status::Partial) => break,
            Err(_) => return Err(malformed("bad part headers")),
        };
        let content = &rest[hlen..];
        let Some(end) = finder.find(content) else {
            break;
        };
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: content[..end].to_vec(),
        };
        for h in headers.iter() {
            let value = String::from_utf8_lossy(h.value);
            if h.name.eq_ignore_ascii_case("content-disposition") {
                for (k, v) in disposition_params(&value) {
                    match k.to_ascii_lowercase().as_str() {
                        "name" => part.name = v,
                        "filename" => part.filename = Some(v),
                        _ => {}
                    }
                }
            } else if h.name.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.into_owned());
            }
        }
        parts.push(part);
        pos = body.len() - content.len() + end + delim.len();
    }
    Ok(parts)
}

/// `form-data; name="a"; filename="b \"c\".txt"` → [(name, a), (filename, b "c".txt)].
fn disposition_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the disposition type.
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            val = chars.by_ref().take_while(|c| *c != ';').collect();
            val.truncate(val.trim_end().len());
        }
        out.push((key.trim().to_owned(), val));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n\
Content-Type: application/json\r\n\r\n{\"content\":\"hi\"}\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"files[0]\"; filename=\"q3 \\\"plan\\\".pdf\"\r\n\r\n\
%PDF\r\n--XyZ--\r\n";

    #[test]
    fn parts_and_filenames() {
        let parts = parse_multipart(BODY, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "payload_json");
        assert_eq!(parts[0].data, b"{\"content\":\"hi\"}");
        assert_eq!(parts[0].content_type.as_deref(), Some("application/json"));
        assert_eq!(parts[1].filename.as_deref(), Some("q3 \"plan\".pdf"));
        assert_eq!(parts[1].data, b"%PDF");
    }

    #[test]
    fn truncated_body_keeps_complete_parts() {
        for cut in 0..BODY.len() {
            if let Ok(parts) = parse_multipart(&BODY[..cut], "XyZ") {
                assert!(parts.len() <= 2);
                if let Some(p) = parts.first() {
                    assert_eq!(p.name, "payload_json");
                }
            }
        }
    }
}
