//! Scanning a body past what could be held: chunks as they pass, undoing
//! Content-Encoding on the fly, in bounded memory.
//!
//! [`decode_body`](super::decode_body) needs the whole body; a body larger
//! than the gateway's inspection window arrives chunk by chunk and most of it
//! has been forwarded before its end is seen. [`BodyStream`] feeds each chunk
//! (decompressed incrementally by [`crate::codec::StreamDecoder`], any chain
//! of gzip, deflate, br and zstd) into a
//! [`StreamScanner`], so that matches spanning chunks are found, within the
//! caps of [`DecodeLimits`]: more output than `max_output` or than
//! `max_ratio` times the input stops decoding with a `decode_limit` finding,
//! as does a corrupt or unsupported coding. Never a silent skip.
//!
//! Unlike `decode_body`, the stream scans the decompressed bytes as text
//! without the structural decoding (JSON escapes, forms, base64): those
//! need the whole document.

use super::binary::{self, Runs};
use super::decode::DecodeLimits;
use super::format::{Action, Direction, DirectionScope};
use super::ruleset::RuleSet;
use super::scan::{decode_limit_finding, Finding, ScanResult};
use super::stream::{Matched, StreamScanner};
use crate::codec::{self, StreamDecoder};
use std::io::Write;
use std::sync::Arc;

/// The scanner end of the decoder: decoded bytes go straight into the
/// scanner (the codec counts them against the caps).
#[derive(Debug)]
struct Sink {
    /// Taken out only when the body ends.
    scanner: Option<StreamScanner>,
    found: Vec<(Finding, Matched)>,
    /// Set once a chunk looks binary (see [`binary`]): from then on only
    /// printable runs reach the scanner, and offsets are theirs.
    runs: Option<Runs>,
    scratch: Vec<u8>,
}

impl Sink {
    /// Decoded bytes into the scanner; returns how many bytes of text it
    /// got.
    fn feed(&mut self, buf: &[u8]) -> usize {
        let Some(scanner) = self.scanner.as_mut() else {
            return 0;
        };
        if self.runs.is_none() && binary::looks_binary(buf) && std::str::from_utf8(buf).is_err() {
            self.runs = Some(Runs::default());
        }
        match self.runs.as_mut() {
            Some(runs) => {
                self.scratch.clear();
                runs.push(buf, &mut self.scratch);
                self.found.extend(scanner.push_matched(&self.scratch));
                self.scratch.len()
            }
            None => {
                self.found.extend(scanner.push_matched(buf));
                buf.len()
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Scans one body as it streams past.
#[derive(Debug)]
pub struct BodyStream {
    decoder: StreamDecoder<Sink>,
    /// Decoding gave up (unsupported coding, cap, corrupt data); the
    /// scanner goes on for the final verdict but gets no more bytes.
    halted: bool,
    field: String,
    limits: DecodeLimits,
    /// Added to finding offsets (where the scanned text starts in the body).
    base: usize,
    /// Findings ending at or before this offset were reported already.
    suppress_upto: usize,
    /// `decode_limit` findings, one per problem.
    limits_hit: Vec<Finding>,
    /// How many of them were returned already.
    limits_told: usize,
}

impl BodyStream {
    /// A stream for a body with Content-Encoding `coding` (None: identity;
    /// any chain the codec undoes), whose findings are reported under
    /// `field`.
    pub fn new(
        set: Arc<RuleSet>,
        app: Option<&str>,
        direction: Direction,
        field: &str,
        coding: Option<&str>,
        limits: &DecodeLimits,
    ) -> Self {
        let sink = || Sink {
            scanner: Some(StreamScanner::new(set.clone(), app, direction, field)),
            found: Vec::new(),
            runs: None,
            scratch: Vec::new(),
        };
        let on_limit = set.undecodable_action(app, direction, field, limits.on_limit);
        let limits = &DecodeLimits {
            on_limit,
            ..*limits
        };
        let made = codec::parse_chain(coding.unwrap_or(""))
            .and_then(|chain| StreamDecoder::new(&chain, limits.caps(), sink()));
        let (decoder, problem) = match made {
            Ok(d) => (d, None),
            Err(e) => (
                StreamDecoder::new(&[], limits.caps(), sink()).expect("identity never fails"),
                Some(e),
            ),
        };
        BodyStream {
            decoder,
            halted: problem.is_some(),
            field: field.to_string(),
            limits: *limits,
            base: 0,
            suppress_upto: 0,
            limits_hit: problem
                .map(|e| {
                    decode_limit_finding(field, limits.on_limit, &format!("content-encoding {e}"))
                })
                .into_iter()
                .collect(),
            limits_told: 0,
        }
    }

    /// Whether the body is decompressed on its way into the scanner.
    pub fn decompresses(&self) -> bool {
        self.decoder.decodes() || self.halted
    }

    /// Continues a body whose first `seen` bytes were scanned whole
    /// already. Identity: only their tail is scanned again (for matches
    /// across the boundary), and findings lying wholly inside them are not
    /// reported twice; offsets stay offsets into the whole body. Compressed:
    /// the decoder needs every byte, so `seen` is pushed whole.
    pub fn resume(&mut self, seen: &[u8]) -> Vec<(Finding, Matched)> {
        if self.decompresses() {
            return self.push(seen);
        }
        let sink = self.decoder.sink();
        let Some(scanner) = sink.scanner.as_mut() else {
            return Vec::new();
        };
        if binary::is_binary(seen) {
            // The window was scanned by its printable runs: the runs of its
            // tail carry over, and findings wholly inside them were
            // reported with the window.
            let from = seen.len().saturating_sub(scanner.overlap());
            sink.runs = Some(Runs::default());
            let fed = sink.feed(&seen[from..]);
            sink.found.clear();
            self.suppress_upto = fed;
            return Vec::new();
        }
        let mut from = seen.len().saturating_sub(scanner.overlap());
        // Start on a character, not inside one.
        while from < seen.len() && (seen[from] & 0xC0) == 0x80 {
            from += 1;
        }
        let found = scanner.push_matched(&seen[from..]);
        self.base = from;
        self.suppress_upto = seen.len();
        self.adjust(found)
    }

    /// Whether offsets are byte offsets of the body as sent (no
    /// decompression, no invalid UTF-8 replaced), so they can rewrite it.
    pub fn offsets_are_bytes(&mut self) -> bool {
        let decompresses = self.decompresses();
        let sink = self.decoder.sink();
        !decompresses
            && sink.runs.is_none()
            && !sink.scanner.as_ref().is_some_and(StreamScanner::lossy)
    }

    /// Body offset before which nothing can still be found.
    pub fn settled(&mut self) -> usize {
        let base = self.base;
        self.decoder
            .sink()
            .scanner
            .as_ref()
            .map_or(0, |s| base + s.settled())
    }

    /// Bytes held by the scanner (bounded: about twice its overlap plus a
    /// chunk of decompressed output).
    pub fn buffered(&mut self) -> usize {
        self.decoder
            .sink()
            .scanner
            .as_ref()
            .map_or(0, StreamScanner::buffered)
    }

    /// Feeds the next chunk of the body as sent (compressed if it is).
    /// Returns the findings now final, each with the text it matched;
    /// offsets are in the decoded body. A cap hit or corrupt data comes
    /// back as a `decode_limit` finding (with an empty text) at once.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(Finding, Matched)> {
        if !self.halted {
            let r = self.decoder.push(chunk);
            self.after(r);
        }
        let found = std::mem::take(&mut self.decoder.sink().found);
        let mut out = self.adjust(found);
        out.extend(self.new_limits());
        out
    }

    /// End of the body: the findings made final now (with matched texts),
    /// and the whole result, `decode_limit` findings included.
    pub fn finish(mut self) -> (Vec<(Finding, Matched)>, ScanResult) {
        if !self.halted {
            let r = self.decoder.finish();
            self.after(r);
        }
        let sink = self.decoder.sink();
        let mut found = std::mem::take(&mut sink.found);
        let mut result = ScanResult::default();
        if let Some(scanner) = sink.scanner.take() {
            let (last, r) = scanner.finish_matched();
            found.extend(last);
            result = r;
        }
        let mut found = self.adjust(found);
        found.extend(self.new_limits());
        let (base, seen) = (self.base, self.suppress_upto);
        result.findings.retain_mut(|f| {
            f.start += base;
            f.end += base;
            f.end > seen
        });
        result.findings.extend(self.limits_hit.iter().cloned());
        (found, result)
    }

    /// After a decoder call: on failure, a finding and no more decoding.
    fn after(&mut self, r: Result<(), codec::CodecError>) {
        let Err(e) = r else { return };
        self.halted = true;
        self.limits_hit.push(decode_limit_finding(
            &self.field,
            self.limits.on_limit,
            &format!("content-encoding {e}"),
        ));
    }

    fn new_limits(&mut self) -> Vec<(Finding, Matched)> {
        let new = self.limits_hit[self.limits_told..]
            .iter()
            .map(|f| (f.clone(), Matched::default()))
            .collect();
        self.limits_told = self.limits_hit.len();
        new
    }

    /// Body offsets, without findings the caller had already.
    fn adjust(&self, found: Vec<(Finding, Matched)>) -> Vec<(Finding, Matched)> {
        found
            .into_iter()
            .filter_map(|(mut f, m)| {
                f.start += self.base;
                f.end += self.base;
                (f.end > self.suppress_upto).then_some((f, m))
            })
            .collect()
    }
}

impl RuleSet {
    /// Whether any rule could fire on a message going `direction` from an
    /// unknown app (fields aside): when none can, scanning such bodies is
    /// wasted work.
    pub fn admits_direction(&self, app: Option<&str>, direction: Direction) -> bool {
        self.rules.iter().any(|r| scope_admits(r, app, direction))
    }

    /// What content that cannot be read (a decode cap hit, corrupt data,
    /// an unknown coding, a broken inflater) in `field` going `direction`
    /// gets: the strictest action of the rules that could have applied to
    /// it, never weaker than `floor`. A redaction cannot find its text in
    /// what was not decoded, so it becomes a block: fail closed.
    pub fn undecodable_action(
        &self,
        app: Option<&str>,
        direction: Direction,
        field: &str,
        floor: Action,
    ) -> Action {
        let strictest = self
            .rules
            .iter()
            .filter(|r| r.scope.admits(app, direction, field))
            .map(|r| r.action)
            .max();
        match strictest.max(Some(floor)) {
            Some(Action::Redact) => Action::Block,
            Some(a) => a,
            None => floor,
        }
    }

    /// Whether any rule that redacts could fire on a message going
    /// `direction`: only then must a streamed body be held back for
    /// rewriting.
    pub fn redacts_direction(&self, app: Option<&str>, direction: Direction) -> bool {
        self.rules
            .iter()
            .any(|r| r.action == Action::Redact && scope_admits(r, app, direction))
    }
}

/// A rule's direction and app scope (fields aside).
fn scope_admits(r: &super::rule::Rule, app: Option<&str>, direction: Direction) -> bool {
    let dir_ok = match r.scope.direction {
        DirectionScope::Both => true,
        DirectionScope::Outbound => direction == Direction::Outbound,
        DirectionScope::Inbound => direction == Direction::Inbound,
    };
    let app_ok = r.scope.apps.is_empty()
        || app.is_some_and(|a| r.scope.apps.iter().any(|x| x.eq_ignore_ascii_case(a)));
    dir_ok && app_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlp::DECODE_LIMIT_RULE;

    const RULES: &str = r#"
[[rule]]
id = "tok"
name = "token"
severity = "high"
action = "block"
pattern = 'tok_[a-z0-9]{16}'
"#;
    const SECRET: &str = "tok_a1b2c3d4e5f6g7h8";

    fn set() -> Arc<RuleSet> {
        Arc::new(RuleSet::from_sources(&[("t.toml", RULES)]).unwrap())
    }

    fn stream(coding: Option<&str>) -> BodyStream {
        BodyStream::new(
            set(),
            None,
            Direction::Outbound,
            "body",
            coding,
            &DecodeLimits::default(),
        )
    }

    /// A body of filler (compressing like text does, about 3x) with the
    /// secret at `at`.
    fn body_with_secret(len: usize, at: usize) -> Vec<u8> {
        const WORDS: [&str; 8] = [
            "lorem ", "ipsum ", "dolor ", "sit ", "amet ", "42 ", "xyzzy ", "q ",
        ];
        let mut b = Vec::with_capacity(len + 8);
        let mut x: u32 = 7;
        while b.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            b.extend_from_slice(WORDS[(x >> 16) as usize % 8].as_bytes());
            if x.is_multiple_of(5) {
                b.extend_from_slice(format!("{} ", x % 977).as_bytes());
            }
        }
        b.truncate(len);
        b[at..at + SECRET.len()].copy_from_slice(SECRET.as_bytes());
        b
    }

    fn run(mut s: BodyStream, data: &[u8], chunk: usize) -> (Vec<(Finding, Matched)>, ScanResult) {
        let mut found = Vec::new();
        for c in data.chunks(chunk) {
            found.extend(s.push(c));
        }
        let (last, result) = s.finish();
        found.extend(last);
        (found, result)
    }

    #[test]
    fn match_across_tiny_chunks_is_found_once_with_its_text() {
        let body = body_with_secret(10_000, 5_000);
        let (found, result) = run(stream(None), &body, 7);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].0.start, found[0].0.end),
            (5_000, 5_000 + SECRET.len())
        );
        assert_eq!(&*found[0].1, SECRET);
        assert_eq!(result.findings.len(), 1);
    }

    #[test]
    fn resume_reports_only_what_crosses_or_follows_the_window() {
        // One secret inside the window (reported by the window scan), one
        // across its end.
        let body = body_with_secret(20_000, 1_000);
        let mut body = body;
        body[4_090..4_090 + SECRET.len()].copy_from_slice(SECRET.as_bytes());
        let (window, rest) = body.split_at(4_096);
        let mut s = stream(None);
        let mut found = s.resume(window);
        assert!(s.offsets_are_bytes());
        for c in rest.chunks(1_000) {
            found.extend(s.push(c));
        }
        let (last, result) = s.finish();
        found.extend(last);
        let spans: Vec<(usize, usize)> = found.iter().map(|(f, _)| (f.start, f.end)).collect();
        assert_eq!(spans, vec![(4_090, 4_090 + SECRET.len())]);
        assert_eq!(result.findings.len(), 1);
    }

    fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
        use flate2::Compression;
        match coding {
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "deflate" => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "raw-deflate" => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            "br" => {
                let mut out = Vec::new();
                {
                    let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    e.write_all(data).unwrap();
                }
                out
            }
            "zstd" => zstd::stream::encode_all(data, 3).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_coding_is_decoded_incrementally() {
        let body = body_with_secret(300_000, 250_000);
        for coding in ["gzip", "deflate", "raw-deflate", "br", "zstd"] {
            let data = encode(coding, &body);
            let header = if coding == "raw-deflate" {
                "deflate"
            } else {
                coding
            };
            for chunk in [1, 1_000, 16_384] {
                let (found, result) = run(stream(Some(header)), &data, chunk);
                let rules: Vec<&str> = found.iter().map(|(f, _)| &*f.rule).collect();
                assert_eq!(rules, vec!["tok"], "{coding} in chunks of {chunk}");
                assert_eq!(found[0].0.start, 250_000, "{coding}");
                assert_eq!(result.findings.len(), 1, "{coding}: {:?}", result.findings);
            }
        }
    }

    #[test]
    fn a_bomb_hits_the_ratio_cap_at_once_in_bounded_memory() {
        let data = encode("gzip", &vec![b'a'; 64 << 20]);
        let mut s = stream(Some("gzip"));
        let mut limit_seen_at = None;
        let mut most = 0;
        for (i, c) in data.chunks(8_192).enumerate() {
            let found = s.push(c);
            most = most.max(s.buffered());
            if limit_seen_at.is_none() && found.iter().any(|(f, _)| &*f.rule == DECODE_LIMIT_RULE) {
                limit_seen_at = Some(i);
            }
        }
        assert!(
            limit_seen_at.is_some(),
            "the cap must be reported while streaming"
        );
        assert!(most < 1 << 20, "scanner held {most} bytes");
        let (_, result) = s.finish();
        let limits: Vec<_> = result
            .findings
            .iter()
            .filter(|f| &*f.rule == DECODE_LIMIT_RULE)
            .collect();
        assert_eq!(limits.len(), 1, "{limits:?}");
        assert!(limits[0].contributions[0].source.contains("over cap"));
    }

    #[test]
    fn corrupt_truncated_and_unknown_codings_are_reported() {
        let (found, _) = run(stream(Some("br")), b"this is not brotli at all", 5);
        assert!(found.iter().any(|(f, _)| &*f.rule == DECODE_LIMIT_RULE));

        let data = encode("gzip", &body_with_secret(100_000, 10));
        let (found, _) = run(stream(Some("gzip")), &data[..data.len() / 2], 999);
        let rules: Vec<&str> = found.iter().map(|(f, _)| &*f.rule).collect();
        assert_eq!(rules, vec!["tok", DECODE_LIMIT_RULE], "truncated gzip");

        let (found, _) = run(stream(Some("compress")), b"whatever", 3);
        assert_eq!(found.len(), 1);
        assert_eq!(&*found[0].0.rule, DECODE_LIMIT_RULE);

        // A chain is decoded now (it used to be refused as "stacked");
        // bad data under one is still reported.
        let (found, _) = run(stream(Some("gzip, br")), b"whatever", 3);
        assert_eq!(&*found[0].0.rule, DECODE_LIMIT_RULE);
        assert!(found[0].0.contributions[0]
            .source
            .contains("content-encoding br: corrupt"));
    }

    #[test]
    fn chains_are_decoded_incrementally() {
        let body = body_with_secret(100_000, 70_000);
        let data = encode("gzip", &encode("zstd", &body));
        for chunk in [1, 4_096] {
            let (found, result) = run(stream(Some("zstd, gzip")), &data, chunk);
            let spans: Vec<(&str, usize)> =
                found.iter().map(|(f, _)| (&*f.rule, f.start)).collect();
            assert_eq!(spans, vec![("tok", 70_000)], "chunks of {chunk}");
            assert_eq!(result.findings.len(), 1);
        }
    }

    #[test]
    fn scope_queries() {
        let set = RuleSet::from_sources(&[(
            "t.toml",
            r#"
[[rule]]
id = "out"
name = "o"
severity = "low"
action = "redact"
[rule.keywords]
words = ["a"]

[[rule]]
id = "in"
name = "i"
severity = "low"
[rule.keywords]
words = ["b"]
[rule.scope]
direction = "inbound"
apps = ["slack"]
"#,
        )])
        .unwrap();
        assert!(set.admits_direction(None, Direction::Outbound));
        assert!(!set.admits_direction(None, Direction::Inbound));
        assert!(set.admits_direction(Some("slack"), Direction::Inbound));
        assert!(set.redacts_direction(None, Direction::Outbound));
        assert!(!set.redacts_direction(Some("slack"), Direction::Inbound));
    }

    #[test]
    fn undecodable_content_gets_the_strictest_rule_that_could_apply() {
        // Outbound: a block rule applies, so a cap hit blocks.
        let data = encode("gzip", &vec![0u8; 2 << 20]);
        let (found, _) = run(stream(Some("gzip")), &data, 4_096);
        let limit = found
            .iter()
            .find(|(f, _)| &*f.rule == DECODE_LIMIT_RULE)
            .expect("a decode_limit finding");
        assert_eq!(limit.0.action, Action::Block);
        // Inbound: no rule applies; the floor (alert) stays.
        let s = BodyStream::new(
            set(),
            None,
            Direction::Inbound,
            "body",
            Some("compress"),
            &DecodeLimits::default(),
        );
        let (found, _) = run(s, b"x", 1);
        assert_eq!(found[0].0.action, Action::Alert);
        // A redaction cannot apply to what was not read: block.
        let set = RuleSet::from_sources(&[(
            "t.toml",
            "[[rule]]\nid = \"r\"\nname = \"r\"\nseverity = \"low\"\naction = \"redact\"\npattern = 'x[0-9]{9}'\n",
        )])
        .unwrap();
        assert_eq!(
            set.undecodable_action(None, Direction::Outbound, "body", Action::Alert),
            Action::Block
        );
        assert_eq!(
            set.undecodable_action(None, Direction::Outbound, "body", Action::Log),
            Action::Block
        );
        let empty = RuleSet::from_sources::<&str, &str>(&[]).unwrap();
        assert_eq!(
            empty.undecodable_action(None, Direction::Outbound, "body", Action::Alert),
            Action::Alert
        );
    }

    fn random(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn binary_stream_finds_a_secret_across_a_chunk_boundary() {
        let mut body = random(256 << 10);
        let at = 100_000;
        body[at - 1] = 0;
        body[at..at + SECRET.len()].copy_from_slice(SECRET.as_bytes());
        body[at + SECRET.len()] = 0;
        // Cut inside the secret, and elsewhere.
        for cut in [at + 7, at + 1, at + SECRET.len() - 1, 4096] {
            let mut s = stream(None);
            let mut found = s.push(&body[..cut]);
            for c in body[cut..].chunks(16 << 10) {
                found.extend(s.push(c));
            }
            assert!(!s.offsets_are_bytes());
            let (last, result) = s.finish();
            found.extend(last);
            let hits: Vec<&str> = found
                .iter()
                .filter(|(f, _)| &*f.rule == "tok")
                .map(|(_, m)| m.text.as_str())
                .collect();
            assert_eq!(hits, vec![SECRET], "cut at {cut}");
            assert!(result.findings.iter().any(|f| &*f.rule == "tok"));
        }
    }

    #[test]
    fn binary_window_resumed_keeps_scanning_runs() {
        let mut body = random(128 << 10);
        let at = (64 << 10) - 5;
        body[at - 1] = 0;
        body[at..at + SECRET.len()].copy_from_slice(SECRET.as_bytes());
        body[at + SECRET.len()] = 0;
        let window = &body[..64 << 10];
        let mut s = stream(None);
        let mut found = s.resume(window);
        found.extend(s.push(&body[64 << 10..]));
        let (last, _) = s.finish();
        found.extend(last);
        assert!(
            found.iter().any(|(f, m)| &*f.rule == "tok" && m == SECRET),
            "{found:?}"
        );
    }
}
