//! Redacting a body as sent: findings point into decoded text (JSON string
//! values, form fields, decompressed bytes), so masking them means mapping
//! each back to the bytes that encode it and encoding the masked text the
//! same way. The result stays valid JSON / a valid form, in the body's
//! Content-Encoding.
//!
//! What maps exactly: the plain text of a body, JSON string values (any
//! escapes), form names and values (any percent-escapes). Findings in text
//! that took further decoding (base64 runs, percent-escapes inside JSON
//! strings, HTML entities, multipart parts) are masked wherever their text
//! appears literally in one of those units; when it does not, the caller's
//! check (scan the result again) still sees it and must block instead.

use super::decode::{decode_body, json_strings_mapped, json_unescape, BodyInput, DecodeLimits};
use super::format::Action;
use super::mask::{mask, mask_same_len};
use super::scan::{Finding, ScanResult};
use crate::codec::{self, Coding};

impl Finding {
    /// Letters and digits a redaction of this finding leaves unmasked (the
    /// rule's `evidence.keep_last`).
    pub fn keep_last(&self) -> usize {
        self.keep_last
    }
}

/// A span of decoded text to mask, with the characters to keep.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    keep_last: usize,
}

/// Text to mask wherever it appears in a unit.
#[derive(Debug, Clone)]
struct Needle {
    text: String,
    keep_last: usize,
}

/// How the body's text is laid out (from its Content-Type, as decoding
/// chose it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Json,
    Form,
    Plain,
}

fn layout(content_type: Option<&str>) -> Layout {
    let m = content_type
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if m == "application/json" || m.ends_with("+json") {
        Layout::Json
    } else if m == "application/x-www-form-urlencoded" {
        Layout::Form
    } else {
        Layout::Plain
    }
}

/// The body of `input` with the findings of `result` whose action is
/// redact or block masked, re-encoded as it came (JSON escapes, form
/// encoding, Content-Encoding). `result` is what
/// [`RuleSet::scan_body`](super::RuleSet::scan_body) returned for this
/// body (fields `body`, `body#json`, …; the name before the first `#` does
/// not matter). Returns None when nothing can be rewritten faithfully: a
/// decoding cap was hit (part of the body went unseen), the coding is
/// unknown, or the text is not UTF-8. Callers should scan the result again
/// and block if anything at redact level survives.
pub fn redact_body(
    input: &BodyInput<'_>,
    result: &ScanResult,
    limits: &DecodeLimits,
) -> Option<Vec<u8>> {
    let decoded = decode_body(input, limits);
    if !decoded.limits.is_empty() {
        return None;
    }
    let mut spans: Vec<(String, Span)> = Vec::new();
    let mut needles: Vec<Needle> = Vec::new();
    for f in result
        .findings
        .iter()
        .filter(|f| f.action >= Action::Redact)
    {
        if f.start >= f.end {
            continue;
        }
        let label = match f.field.find('#') {
            Some(i) => format!("body{}", &f.field[i..]),
            None => "body".to_string(),
        };
        let span = Span {
            start: f.start,
            end: f.end,
            keep_last: f.keep_last,
        };
        if matches!(label.as_str(), "body" | "body#json" | "body#form") {
            spans.push((label.clone(), span));
        }
        // Also mask every other literal occurrence of the same text.
        if let Some(text) = decoded
            .parts
            .iter()
            .find(|(l, _)| *l == label)
            .and_then(|(_, t)| t.get(f.start..f.end))
        {
            if !text.trim().is_empty() {
                needles.push(Needle {
                    text: text.to_string(),
                    keep_last: f.keep_last,
                });
            }
        }
    }
    redact_decoded(input, &spans, &needles, limits)
}

/// The body of `input` with every occurrence of each text in `texts`
/// masked (keeping `keep_last` letters/digits), in the units the body's
/// Content-Type defines (JSON strings, form fields, the whole text), and
/// re-encoded as it came. For findings made on text extracted from the body
/// some other way (an app's message fields). None as for [`redact_body`].
pub fn redact_texts(
    input: &BodyInput<'_>,
    texts: &[(&str, usize)],
    limits: &DecodeLimits,
) -> Option<Vec<u8>> {
    if !decode_body(input, limits).limits.is_empty() {
        return None;
    }
    let needles: Vec<Needle> = texts
        .iter()
        .filter(|(t, _)| !t.trim().is_empty())
        .map(|&(t, k)| Needle {
            text: t.to_string(),
            keep_last: k,
        })
        .collect();
    redact_decoded(input, &[], &needles, limits)
}

/// Undo the Content-Encoding, rewrite the text, redo the encoding.
fn redact_decoded(
    input: &BodyInput<'_>,
    spans: &[(String, Span)],
    needles: &[Needle],
    limits: &DecodeLimits,
) -> Option<Vec<u8>> {
    let chain = codec::parse_chain(input.content_encoding.unwrap_or("")).ok()?;
    let mut bytes = input.body.to_vec();
    // Layer by layer, to re-encode deflate wrapped as it came.
    let mut raw_deflate = Vec::with_capacity(chain.len());
    for &c in chain.iter().rev() {
        raw_deflate.push(c == Coding::Deflate && !codec::is_zlib(&bytes));
        let decoded = codec::decode(&[c], &bytes, limits.caps());
        if decoded.error.is_some() {
            return None;
        }
        bytes = decoded.data.into_owned();
    }
    raw_deflate.reverse();
    let text = std::str::from_utf8(&bytes).ok()?;
    let out = match layout(input.content_type) {
        Layout::Json => rewrite_json(text, spans, needles)?,
        Layout::Form => rewrite_form(text, spans, needles),
        Layout::Plain => rewrite_plain(text, spans, needles),
    };
    let mut out = out.into_bytes();
    for (&c, raw) in chain.iter().zip(raw_deflate) {
        out = codec::encode(c, raw, &out).ok()?;
    }
    Some(out)
}

/// Mask `spans` (offsets into `s`) and every occurrence of `needles`.
fn mask_text(s: &str, spans: &[Span], needles: &[Needle], same_len: bool) -> Option<String> {
    let mut all: Vec<Span> = spans.to_vec();
    for n in needles {
        let mut from = 0;
        while let Some(i) = s[from..].find(n.text.as_str()) {
            let start = from + i;
            all.push(Span {
                start,
                end: start + n.text.len(),
                keep_last: n.keep_last,
            });
            from = start + n.text.len();
        }
    }
    if all.is_empty() {
        return None;
    }
    for sp in &mut all {
        sp.start = floor_char(s, sp.start);
        sp.end = floor_char(s, sp.end.max(sp.start));
    }
    all.retain(|sp| sp.start < sp.end);
    all.sort_by_key(|sp| (sp.start, sp.end));
    let mut merged: Vec<Span> = Vec::new();
    for sp in all {
        match merged.last_mut() {
            Some(last) if sp.start <= last.end => {
                last.end = last.end.max(sp.end);
                last.keep_last = last.keep_last.min(sp.keep_last);
            }
            _ => merged.push(sp),
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for sp in merged {
        out.push_str(&s[at..sp.start]);
        let part = &s[sp.start..sp.end];
        out.push_str(&if same_len {
            mask_same_len(part, sp.keep_last)
        } else {
            mask(part, sp.keep_last)
        });
        at = sp.end;
    }
    out.push_str(&s[at..]);
    Some(out)
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Spans of `label` that fall in `[from, to)` of its text, relative to `from`.
fn spans_in(spans: &[(String, Span)], label: &str, from: usize, to: usize) -> Vec<Span> {
    spans
        .iter()
        .filter(|(l, sp)| l == label && sp.start < to && sp.end > from)
        .map(|(_, sp)| Span {
            start: sp.start.max(from) - from,
            end: sp.end.min(to) - from,
            keep_last: sp.keep_last,
        })
        .collect()
}

fn rewrite_plain(text: &str, spans: &[(String, Span)], needles: &[Needle]) -> String {
    let own = spans_in(spans, "body", 0, text.len());
    // Same length: a plain body keeps its size where it can.
    mask_text(text, &own, needles, true).unwrap_or_else(|| text.to_string())
}

/// Every JSON string is a unit: decoded exactly, masked, encoded again.
fn rewrite_json(text: &str, spans: &[(String, Span)], needles: &[Needle]) -> Option<String> {
    let mut strings = Vec::new();
    let mut joined = String::new();
    json_strings_mapped(text, &mut joined, |s| strings.push(s));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for js in strings {
        let raw = &text[js.raw.clone()];
        let own = spans_in(spans, "body#json", js.out.start, js.out.end);
        if own.is_empty() && !needles.iter().any(|n| raw_may_hold(raw, &n.text)) {
            continue;
        }
        let decoded = json_unescape(raw);
        let Some(masked) = mask_text(&decoded, &own, needles, false) else {
            continue;
        };
        if !js.closed && ends_in_escape(raw) {
            // The body was cut inside an escape: encoding it again would
            // garble what follows.
            return None;
        }
        out.push_str(&text[at..js.raw.start]);
        json_escape_into(&masked, &mut out);
        at = js.raw.end;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// Cheap filter: could `raw` (escaped) contain `needle` once decoded?
fn raw_may_hold(raw: &str, needle: &str) -> bool {
    raw.contains('\\') || raw.contains(needle)
}

/// Whether a cut-off JSON string ends with an escape that is not complete.
fn ends_in_escape(raw: &str) -> bool {
    let b = raw.as_bytes();
    let tail = &b[b.len().saturating_sub(12)..];
    let Some(p) = tail.iter().rposition(|&c| c == b'\\') else {
        return false;
    };
    let esc = &tail[p..];
    esc.len() < 2 || (esc[1] == b'u' && esc.len() < 6)
}

/// JSON string content for `s`: quotes, backslashes and control characters
/// escaped, everything else as UTF-8.
fn json_escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// Every form name and value is a unit: decoded, masked, encoded again.
/// The offsets follow the `name: value\n` text decoding made of the form.
fn rewrite_form(text: &str, spans: &[(String, Span)], needles: &[Needle]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut decoded_at = 0;
    let mut raw_at = 0;
    for piece in text.split('&') {
        raw_at += piece.len() + 1;
        if piece.is_empty() {
            out.push_str(piece);
            if raw_at <= text.len() {
                out.push('&');
            }
            continue;
        }
        let (name_raw, value_raw) = match piece.find('=') {
            Some(i) => (&piece[..i], Some(&piece[i + 1..])),
            None => (piece, None),
        };
        let name = decode_form_component(name_raw);
        let value = value_raw.map(decode_form_component).unwrap_or_default();
        let name_at = decoded_at;
        let value_at = name_at + name.len() + 2;
        decoded_at = value_at + value.len() + 1;
        let own = spans_in(spans, "body#form", name_at, name_at + name.len());
        match mask_text(&name, &own, needles, false) {
            Some(m) => out.extend(form_urlencoded::byte_serialize(m.as_bytes())),
            None => out.push_str(name_raw),
        }
        if let Some(value_raw) = value_raw {
            out.push('=');
            let own = spans_in(spans, "body#form", value_at, value_at + value.len());
            match mask_text(&value, &own, needles, false) {
                Some(m) => out.extend(form_urlencoded::byte_serialize(m.as_bytes())),
                None => out.push_str(value_raw),
            }
        }
        if raw_at <= text.len() {
            out.push('&');
        }
    }
    out
}

/// A form name or value as `form_urlencoded::parse` decodes it.
fn decode_form_component(raw: &str) -> String {
    let plus: Vec<u8> = raw
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body<'a>(ct: &'a str, ce: Option<&'a str>, b: &'a [u8]) -> BodyInput<'a> {
        BodyInput {
            content_type: Some(ct),
            content_encoding: ce,
            body: b,
        }
    }

    #[test]
    fn json_escape_round_trips() {
        let s = "a\"b\\c\nd\u{1}é/";
        let mut enc = String::new();
        json_escape_into(s, &mut enc);
        let v: serde_json::Value = serde_json::from_str(&format!("\"{enc}\"")).unwrap();
        assert_eq!(v.as_str(), Some(s));
    }

    #[test]
    fn form_texts_are_reencoded() {
        let raw = "a=1&msg=my+secret+%41BC&&z";
        let out = redact_texts(
            &body("application/x-www-form-urlencoded", None, raw.as_bytes()),
            &[("secret ABC", 0)],
            &DecodeLimits::default(),
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, "a=1&msg=my+******+***&&z");
    }

    #[test]
    fn cut_escape_is_refused() {
        assert!(ends_in_escape("abc\\u00"));
        assert!(ends_in_escape("abc\\"));
        assert!(!ends_in_escape("abc\\u0041"));
        assert!(!ends_in_escape("abc\\n"));
    }
}
