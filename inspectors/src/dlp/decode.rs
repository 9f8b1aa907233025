//! Bounded decoding of bodies into the texts DLP scans.
//!
//! Content-Encoding (any chain of gzip, deflate, br, zstd, undone by
//! [`crate::codec`]), then by content type: JSON
//! string values, form fields, multipart text parts, HTML entities; percent
//! escapes; base64 runs inside any of those (nested at most `max_depth`).
//! Every stage is capped in output size and expansion ratio. Hitting a cap
//! keeps what was decoded so far and reports it: a `decode_limit` finding,
//! never an out-of-memory and never a silent skip.

use super::binary;
use super::format::{Action, Direction};
use super::ruleset::RuleSet;
use super::scan::{decode_limit_finding, Field, MessageInput, ScanResult};
use crate::codec;
use base64::Engine as _;

/// Caps for decoding one body.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Total bytes of decoded text, all parts together.
    pub max_output: usize,
    /// Largest allowed decompressed/compressed size ratio.
    pub max_ratio: usize,
    /// Nesting of base64 (and multipart) decoding.
    pub max_depth: u8,
    /// Shortest base64 run worth decoding.
    pub min_base64_len: usize,
    /// Least action of the `decode_limit` finding: scans raise it to the
    /// strictest action of the rules that could have applied to the content
    /// not read ([`RuleSet::undecodable_action`]), so a cap never lets
    /// through what a rule would block.
    pub on_limit: Action,
}

impl DecodeLimits {
    /// The caps each content-coding layer is decoded under.
    pub fn caps(&self) -> codec::Caps {
        codec::Caps {
            max_output: self.max_output,
            max_ratio: self.max_ratio,
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_output: 16 << 20,
            max_ratio: 100,
            max_depth: 2,
            min_base64_len: 24,
            on_limit: Action::Alert,
        }
    }
}

/// A body as the gateway sees it.
#[derive(Debug, Clone, Copy)]
pub struct BodyInput<'a> {
    /// The Content-Type header value, if any.
    pub content_type: Option<&'a str>,
    /// The Content-Encoding header value, if any.
    pub content_encoding: Option<&'a str>,
    /// The raw body bytes.
    pub body: &'a [u8],
}

/// The texts found in a body, and the caps that were hit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// (label, text): "body", "body#json", "body#base64", …
    pub parts: Vec<(String, String)>,
    /// One entry per cap hit or undecodable layer.
    pub limits: Vec<String>,
}

struct Ctx<'l> {
    limits: &'l DecodeLimits,
    used: usize,
    out: Decoded,
}

impl Ctx<'_> {
    /// Room left for output; records a limit when exhausted.
    fn room(&self) -> usize {
        self.limits.max_output.saturating_sub(self.used)
    }

    fn push(&mut self, label: String, mut text: String) {
        let room = self.room();
        if text.len() > room {
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            self.out.limits.push(format!(
                "{label}: decoded output over {} bytes",
                self.limits.max_output
            ));
        }
        self.used += text.len();
        if !text.is_empty() {
            self.out.parts.push((label, text));
        }
    }
}

/// Decode a body into texts, within `limits`.
pub fn decode_body(input: &BodyInput<'_>, limits: &DecodeLimits) -> Decoded {
    let mut ctx = Ctx {
        limits,
        used: 0,
        out: Decoded::default(),
    };
    let mut bytes = std::borrow::Cow::Borrowed(input.body);
    if let Some(enc) = input.content_encoding {
        // What decoded before a cap or a corruption is scanned too, as the
        // streamed path scans it.
        let decoded = codec::decode_header(enc, input.body, limits.caps());
        if let Some(e) = decoded.error {
            ctx.out.limits.push(format!("content-encoding {e}"));
        }
        bytes = decoded.data;
    }
    // Valid UTF-8 (nearly every body) is checked by the fast validator and
    // copied; only invalid bodies pay for replacement characters.
    let text = match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_owned(),
        Err(_) if binary::looks_binary(&bytes) => {
            // Images, archives, random bytes: their printable runs (see
            // `binary`), still searched for base64 and percent escapes.
            finish_part(
                "body#binary".into(),
                binary::printable_runs(&bytes),
                0,
                &mut ctx,
            );
            return ctx.out;
        }
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    decode_text("body", input.content_type, text, 0, &mut ctx);
    ctx.out
}

fn mime(ct: Option<&str>) -> String {
    ct.and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn decode_text(
    label: &str,
    content_type: Option<&str>,
    text: String,
    depth: u8,
    ctx: &mut Ctx<'_>,
) {
    let m = mime(content_type);
    let (label, text) = if m == "application/json" || m.ends_with("+json") {
        let mut out = String::with_capacity(text.len());
        json_strings(&text, &mut out);
        (format!("{label}#json"), out)
    } else if m == "application/x-www-form-urlencoded" {
        let mut out = String::with_capacity(text.len());
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            out.push_str(&k);
            out.push_str(": ");
            out.push_str(&v);
            out.push('\n');
        }
        (format!("{label}#form"), out)
    } else if m.starts_with("multipart/") {
        if let Some(boundary) = boundary(content_type.unwrap_or("")) {
            if depth < ctx.limits.max_depth {
                multipart(label, &text, &boundary, depth, ctx);
                return;
            }
            ctx.out.limits.push(format!(
                "{label}: multipart nested deeper than {}",
                ctx.limits.max_depth
            ));
        }
        (label.to_string(), text)
    } else if m == "text/html" || m.ends_with("xml") {
        (format!("{label}#html"), html_unescape(&text))
    } else {
        (label.to_string(), text)
    };
    finish_part(label, text, depth, ctx);
}

/// Push a part, plus its percent-decoded form and decoded base64 runs.
fn finish_part(label: String, text: String, depth: u8, ctx: &mut Ctx<'_>) {
    if ctx.room() == 0 {
        ctx.out.limits.push(format!(
            "{label}: decoded output over {} bytes",
            ctx.limits.max_output
        ));
        return;
    }
    let percent = memchr::memchr(b'%', text.as_bytes()).is_some()
        && text
            .as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    let url = percent.then(|| {
        percent_encoding::percent_decode_str(&text)
            .decode_utf8_lossy()
            .into_owned()
    });
    let runs = if depth < ctx.limits.max_depth {
        base64_runs(&text, ctx.limits.min_base64_len)
    } else {
        Vec::new()
    };
    ctx.push(label.clone(), text);
    if let Some(u) = url {
        ctx.push(format!("{label}#url"), u);
    }
    for decoded in runs {
        // Nested content may be JSON or more base64.
        let ct = decoded
            .trim_start()
            .starts_with(['{', '['])
            .then_some("application/json");
        decode_text(&format!("{label}#base64"), ct, decoded, depth + 1, ctx);
    }
}

/// Strings of a JSON document, joined by spaces. Hand-written rather than
/// serde_json: bodies are often truncated or streamed, and all we need is
/// the text of every string, without building a tree.
pub fn json_strings(s: &str, out: &mut String) {
    json_strings_mapped(s, out, |_| {});
}

/// Where one string of a JSON document lies: its content (between the
/// quotes) in the raw text, and its text in the output of [`json_strings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonStr {
    /// Content bytes in the raw document, quotes excluded.
    pub raw: std::ops::Range<usize>,
    /// Its decoded text in the output.
    pub out: std::ops::Range<usize>,
    /// Whether the closing quote was seen (a truncated body may end inside).
    pub closed: bool,
}

/// [`json_strings`], telling `each` where every string came from.
pub(crate) fn json_strings_mapped(s: &str, out: &mut String, mut each: impl FnMut(JsonStr)) {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(q) = memchr::memchr(b'"', &b[i..]) {
        i += q + 1;
        let (raw_start, out_start) = (i, out.len());
        let (end, closed) = json_string_at(s, i, out, false);
        each(JsonStr {
            raw: raw_start..end,
            out: out_start..out.len(),
            closed,
        });
        if !closed {
            return;
        }
        i = end + 1;
        if out.len() > out_start {
            out.push(' ');
        }
    }
}

/// The content of a JSON string (raw, without quotes), unescaped exactly:
/// `\n` gives a newline where [`json_strings`] gives a space, so byte
/// offsets are the same in both.
pub(crate) fn json_unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    json_string_at(raw, 0, &mut out, true);
    out
}

/// Decodes the string whose content starts at `i`, into `out`. Returns the
/// index of the closing quote (or the end of `s`) and whether it was seen.
/// `exact` keeps control escapes; otherwise they become spaces.
#[inline(always)]
fn json_string_at(s: &str, mut i: usize, out: &mut String, exact: bool) -> (usize, bool) {
    let b = s.as_bytes();
    loop {
        let Some(j) = memchr::memchr2(b'"', b'\\', &b[i..]) else {
            out.push_str(&s[i..]);
            return (s.len(), false);
        };
        out.push_str(&s[i..i + j]);
        i += j;
        if b[i] == b'"' {
            return (i, true);
        }
        // Backslash escape.
        let Some(&e) = b.get(i + 1) else {
            return (s.len(), false);
        };
        i += 2;
        match e {
            b'n' | b'r' | b't' | b'b' | b'f' if !exact => out.push(' '),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'u' => {
                let (c, used) = unicode_escape(&b[i - 2..]);
                out.push(c);
                i += used - 2;
            }
            other => out.push(other as char),
        }
        while !s.is_char_boundary(i) {
            i += 1;
        }
    }
}

/// Decode `\uXXXX` (with a following low surrogate if needed). Returns the
/// char and the bytes consumed from the backslash.
fn unicode_escape(b: &[u8]) -> (char, usize) {
    let hex = |x: &[u8]| -> Option<u32> {
        std::str::from_utf8(x.get(..4)?)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    let Some(hi) = b.get(2..).and_then(hex) else {
        return ('\u{FFFD}', 2);
    };
    if (0xD800..0xDC00).contains(&hi) && b.get(6) == Some(&b'\\') && b.get(7) == Some(&b'u') {
        if let Some(lo) = b
            .get(8..)
            .and_then(hex)
            .filter(|lo| (0xDC00..0xE000).contains(lo))
        {
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return (char::from_u32(c).unwrap_or('\u{FFFD}'), 12);
        }
    }
    (char::from_u32(hi).unwrap_or('\u{FFFD}'), 6)
}

fn boundary(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Text parts of a multipart body. Minimal by intent: we only need each
/// part's headers and text; a full MIME parser (multer) is async and
/// stream-bound, which a sans-IO crate cannot use.
fn multipart(label: &str, text: &str, boundary: &str, depth: u8, ctx: &mut Ctx<'_>) {
    let delim = format!("--{boundary}");
    for (n, part) in text.split(delim.as_str()).enumerate().skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))
            .unwrap_or(part);
        let (head, body) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))
            .unwrap_or(("", part));
        let body = body
            .strip_suffix("\r\n")
            .or_else(|| body.strip_suffix('\n'))
            .unwrap_or(body);
        let mut ct = None;
        let mut is_file = false;
        for line in head.lines() {
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-type") {
                    ct = Some(v.trim());
                }
                if k.trim().eq_ignore_ascii_case("content-disposition") && v.contains("filename=") {
                    is_file = true;
                }
            }
        }
        let textual = ct.is_none_or(|c| {
            let m = mime(Some(c));
            m.starts_with("text/")
                || m.ends_with("json")
                || m.ends_with("xml")
                || m.contains("urlencoded")
        });
        if textual || !is_file {
            decode_text(
                &format!("{label}#part{n}"),
                ct,
                body.to_string(),
                depth + 1,
                ctx,
            );
        }
    }
}

/// HTML character references: numeric ones and the named ones text uses.
/// Hand-written: the named-entity tables of html crates run to thousands of
/// entries, and DLP only needs the characters that hide digits and words.
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.as_bytes()[..rest.len().min(12)]
            .iter()
            .position(|&b| b == b';');
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = if let Some(num) = name.strip_prefix('#') {
                let v = match num.strip_prefix(['x', 'X']) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => num.parse().ok(),
                };
                v.and_then(char::from_u32)
            } else {
                match name {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some(' '),
                    "shy" => Some('\u{AD}'),
                    "zwj" | "zwnj" => Some('\u{200B}'),
                    _ => None,
                }
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    // Tags are markup, not content; drop them so "<b>4111</b> 1111" joins.
    strip_tags(&out)
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether every byte of `block` is a base64 character. Most blocks of
/// prose hold a space, which eight-byte words find without a byte loop.
fn all_b64(block: &[u8]) -> bool {
    let has_space = |w: &[u8]| {
        let x = u64::from_le_bytes(w.try_into().unwrap_or([b' '; 8])) ^ 0x2020_2020_2020_2020;
        // A zero byte in x is a space in w (the classic exact zero-byte test).
        let hi = 0x8080_8080_8080_8080u64;
        !(((x & !hi) + !hi) | x) & hi != 0
    };
    let n = block.len();
    if n >= 8 && (has_space(&block[..8]) || has_space(&block[n - 8..])) {
        return false;
    }
    block.iter().fold(true, |acc, &c| acc & is_b64(c))
}

fn is_b64(b: u8) -> bool {
    // Branch-free, so the block test below vectorises.
    (b.wrapping_sub(b'0') < 10)
        | ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b == b'+')
        | (b == b'/')
        | (b == b'-')
        | (b == b'_')
        | (b == b'=')
}

/// Decoded base64 runs of at least `min` chars that turn out to be text.
fn base64_runs(s: &str, min: usize) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    // A run of `min` or more bytes contains a whole block of `min / 2`
    // starting at any stride of that size: test blocks, not bytes. Text
    // with spaces every few bytes fails every block at once.
    let half = (min / 2).max(1);
    let mut i = 0;
    while i + half <= b.len() {
        if !all_b64(&b[i..i + half]) {
            i += half;
            continue;
        }
        let mut start = i;
        while start > 0 && is_b64(b[start - 1]) {
            start -= 1;
        }
        let mut end = i + half;
        while end < b.len() && is_b64(b[end]) {
            end += 1;
        }
        i = end + 1;
        if !(s.is_char_boundary(start) && s.is_char_boundary(end)) {
            continue;
        }
        let run = &s[start..end];
        if run.len() < min
            || !run
                .bytes()
                .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            continue;
        }
        let trimmed = run.trim_end_matches('=');
        let engine = if trimmed.contains(['-', '_']) {
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
        } else {
            &base64::engine::general_purpose::STANDARD_NO_PAD
        };
        if let Ok(bytes) = engine.decode(trimmed) {
            if let Ok(text) = String::from_utf8(bytes) {
                let printable = text
                    .chars()
                    .filter(|c| !c.is_control() || c.is_whitespace())
                    .count();
                if printable * 10 >= text.chars().count() * 9 {
                    out.push(text);
                }
            }
        }
    }
    out
}

impl RuleSet {
    /// Decode a body within `limits` and scan every text found in it. Parts
    /// become fields named `field`, `field#json`, `field#base64`, … (rules
    /// scoped to `field` see them all). A cap hit adds a `decode_limit`
    /// finding.
    pub fn scan_body(
        &self,
        body: &BodyInput<'_>,
        app: Option<&str>,
        direction: Direction,
        field: &str,
        limits: &DecodeLimits,
    ) -> ScanResult {
        let decoded = decode_body(body, limits);
        let names: Vec<String> = decoded
            .parts
            .iter()
            .map(|(label, _)| label.replacen("body", field, 1))
            .collect();
        let msg = MessageInput {
            app,
            direction,
            conversation: None,
            fields: decoded
                .parts
                .iter()
                .zip(&names)
                .map(|((_, text), name)| Field { name, text })
                .collect(),
        };
        let mut result = self.scan(&msg);
        if !decoded.limits.is_empty() {
            // What was not read gets what any rule could have done to it.
            let action = self.undecodable_action(app, direction, field, limits.on_limit);
            for what in &decoded.limits {
                result
                    .findings
                    .push(decode_limit_finding(field, action, what));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn body<'a>(ct: &'a str, ce: Option<&'a str>, b: &'a [u8]) -> BodyInput<'a> {
        BodyInput {
            content_type: Some(ct),
            content_encoding: ce,
            body: b,
        }
    }

    #[test]
    fn base64_block_test_agrees_with_bytewise() {
        for block in [
            &b"QUJDREVGR0hJSktM"[..12],
            b"abc def ghij",
            b"abcdefghijk ",
            b" bcdefghijkl",
            b"abcdef\nhijkl",
            b"abcd+fgh/jkl",
            b"abcd\xa0fghijkl",
        ] {
            assert_eq!(
                all_b64(block),
                block.iter().all(|&c| is_b64(c)),
                "{block:?}"
            );
        }
    }

    #[test]
    fn json_strings_unescape() {
        let mut out = String::new();
        json_strings(
            r#"{"text":"card\u0020 4111\n\"x\" \ud83d\ude00","n":1}"#,
            &mut out,
        );
        assert_eq!(out, "text card  4111 \"x\" 😀 n ");
    }

    #[test]
    fn json_truncated_does_not_panic() {
        let mut out = String::new();
        json_strings(r#"{"a":"abc\u12"#, &mut out);
        json_strings(r#"{"a":"abc\"#, &mut out);
        assert!(out.starts_with("a abc"));
    }

    #[test]
    fn gzip_json_is_decoded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"{"msg":"hello secret"}"#).unwrap();
        let data = gz.finish().unwrap();
        let d = decode_body(
            &body("application/json", Some("gzip"), &data),
            &DecodeLimits::default(),
        );
        assert_eq!(
            d.parts,
            vec![("body#json".into(), "msg hello secret ".into())]
        );
        assert!(d.limits.is_empty());
    }

    #[test]
    fn decompression_bomb_hits_the_ratio_cap() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 50 << 20]).unwrap();
        let data = gz.finish().unwrap();
        let d = decode_body(
            &body("text/plain", Some("gzip"), &data),
            &DecodeLimits::default(),
        );
        assert_eq!(d.limits.len(), 1, "{:?}", d.limits);
        assert!(d.parts[0].1.len() <= 16 << 20);
    }

    #[test]
    fn corrupt_encoding_is_reported_not_skipped() {
        let d = decode_body(
            &body("text/plain", Some("br"), b"not brotli at all"),
            &DecodeLimits::default(),
        );
        assert_eq!(d.limits.len(), 1);
    }

    #[test]
    fn form_multipart_html_url_base64() {
        let d = decode_body(
            &body(
                "application/x-www-form-urlencoded",
                None,
                b"msg=ssn+536-22-1234&x=%41",
            ),
            &DecodeLimits::default(),
        );
        assert!(d
            .parts
            .iter()
            .any(|(_, t)| t.contains("msg: ssn 536-22-1234")));

        let mp = "--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhello there\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\nBINARY\r\n--XX--\r\n";
        let d = decode_body(
            &body("multipart/form-data; boundary=XX", None, mp.as_bytes()),
            &DecodeLimits::default(),
        );
        let texts: Vec<&str> = d.parts.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, vec!["hello there"]);

        let d = decode_body(
            &body("text/html", None, b"<p>4111&#x20;1111&nbsp;&amp;</p>"),
            &DecodeLimits::default(),
        );
        assert_eq!(d.parts[0].1.trim(), "4111 1111 &");

        let inner = base64::engine::general_purpose::STANDARD.encode("my ssn is 536-22-1234");
        let twice = base64::engine::general_purpose::STANDARD.encode(&inner);
        let d = decode_body(
            &body("text/plain", None, twice.as_bytes()),
            &DecodeLimits::default(),
        );
        assert!(
            d.parts
                .iter()
                .any(|(l, t)| l == "body#base64#base64" && t.contains("536-22-1234")),
            "{d:?}"
        );
    }

    #[test]
    fn base64_depth_is_capped() {
        let mut s = "my ssn is 536-22-1234".to_string();
        for _ in 0..4 {
            s = base64::engine::general_purpose::STANDARD.encode(&s);
        }
        let d = decode_body(
            &body("text/plain", None, s.as_bytes()),
            &DecodeLimits::default(),
        );
        assert!(d.parts.len() <= 3);
    }

    fn shipped() -> RuleSet {
        crate::dlp::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules"))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn random(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    fn rules_found(set: &RuleSet, ct: Option<&str>, b: &[u8]) -> Vec<String> {
        let input = BodyInput {
            content_type: ct,
            content_encoding: None,
            body: b,
        };
        let r = set.scan_body(
            &input,
            None,
            Direction::Outbound,
            "body",
            &DecodeLimits::default(),
        );
        r.findings.iter().map(|f| f.rule.to_string()).collect()
    }

    #[test]
    fn secrets_inside_binary_bodies_are_found() {
        let set = shipped();
        // JPEG magic, random bytes, a card and a key as printable runs.
        let mut b = random(64 << 10);
        b[..4].copy_from_slice(b"\xFF\xD8\xFF\xE0");
        let card = b"\x00\x01card 4526 0181 5908 3012\x02";
        b[10_000..10_000 + card.len()].copy_from_slice(card);
        let key = b"\xff\x00aws_access_key_id = AKIAP8IX4EA4Q9OM4894\x00";
        b[50_000..50_000 + key.len()].copy_from_slice(key);
        assert!(binary::is_binary(&b));
        for ct in [
            Some("image/jpeg"),
            Some("application/octet-stream"),
            Some("text/plain"),
            None,
        ] {
            let found = rules_found(&set, ct, &b);
            assert!(
                found.iter().any(|r| r == "payment-card"),
                "{ct:?}: {found:?}"
            );
            assert!(
                found.iter().any(|r| r == "aws-access-key-id"),
                "{ct:?}: {found:?}"
            );
        }
        // Base64 carried in a binary body still decodes.
        let inner =
            base64::engine::general_purpose::STANDARD.encode("my card is 4526 0181 5908 3012");
        let mut b = random(8 << 10);
        b[4000] = 0;
        b[4001..4001 + inner.len()].copy_from_slice(inner.as_bytes());
        b[4001 + inner.len()] = 0;
        assert!(rules_found(&set, None, &b)
            .iter()
            .any(|r| r == "payment-card"));
        // Random bytes alone find nothing.
        assert_eq!(
            rules_found(&set, None, &random(64 << 10)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn text_sent_as_binary_is_scanned_as_text() {
        let set = shipped();
        let text = b"notes for the trip: card 4526 0181 5908 3012 exp 04/27";
        let d = decode_body(
            &body("application/octet-stream", None, text),
            &DecodeLimits::default(),
        );
        assert_eq!(d.parts[0].0, "body");
        assert!(rules_found(&set, Some("application/octet-stream"), text)
            .iter()
            .any(|r| r == "payment-card"));
        // Latin-1 (invalid UTF-8, no control bytes) stays on the text path.
        let latin1 = b"Gr\xfc\xdfe, M\xfcller: card 4526 0181 5908 3012 exp 04/27";
        let d = decode_body(
            &body("application/octet-stream", None, latin1),
            &DecodeLimits::default(),
        );
        assert_eq!(d.parts[0].0, "body");
        assert!(rules_found(&set, None, latin1)
            .iter()
            .any(|r| r == "payment-card"));
    }
}
