//! Scanning a message that arrives in chunks, in bounded memory.
//!
//! The scanner keeps a tail of the text long enough to hold the longest
//! match plus its context window. Each chunk is scanned together with that
//! tail; a finding is reported once, when its end has moved out of the
//! holdback zone (where more text could still change it), or at `finish`.
//!
//! Limits, by design: `count.min` applies per scanned window rather than to
//! the whole stream, and conversation counts are not kept (use
//! `scan_in_conversation` on whole messages for those).

use super::format::Direction;
use super::ruleset::RuleSet;
use super::scan::{Field, Finding, MessageInput, ScanResult};
use std::sync::Arc;

/// Findings kept for the final verdict; more are counted but dropped.
const MAX_FINDINGS: usize = 1024;

/// Characters of text kept each side of a match in [`Matched::around`].
pub const AROUND_CHARS: usize = 60;

/// The text a streamed finding matched, with the text around it as the
/// scanner held it (the stream's bytes are gone soon after: sealed
/// evidence needs its context now). Reads as the match itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matched {
    /// The matched text.
    pub text: String,
    /// Up to [`AROUND_CHARS`] characters either side of the match, the
    /// match included.
    pub around: String,
    /// Byte offset of the match in `around`.
    pub at: usize,
}

impl Matched {
    /// The match at byte offsets `start..end` of `text`, with what is
    /// around it. Offsets off a character boundary give an empty match.
    pub fn in_text(text: &str, start: usize, end: usize) -> Self {
        let Some(matched) = text.get(start..end) else {
            return Self::default();
        };
        let from = text[..start]
            .char_indices()
            .rev()
            .nth(AROUND_CHARS.saturating_sub(1))
            .map_or(0, |(i, _)| i);
        let to = text[end..]
            .char_indices()
            .nth(AROUND_CHARS)
            .map_or(text.len(), |(i, _)| end + i);
        Matched {
            text: matched.to_string(),
            around: text[from..to].to_string(),
            at: start - from,
        }
    }
}

impl PartialEq<str> for Matched {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for Matched {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl std::ops::Deref for Matched {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

/// Incremental scanner for one message body.
#[derive(Debug)]
pub struct StreamScanner {
    set: Arc<RuleSet>,
    app: Option<String>,
    direction: Direction,
    field: String,
    buf: String,
    /// Stream offset of `buf[0]`.
    base: usize,
    /// Stream offset up to which finding ends have been reported.
    reported: usize,
    /// Bytes of an incomplete UTF-8 sequence at the end of the last chunk.
    pending: Vec<u8>,
    holdback: usize,
    findings: Vec<Finding>,
    dropped: usize,
    /// Whether invalid UTF-8 was replaced (offsets then drift from bytes).
    lossy: bool,
    /// The last [`AROUND_CHARS`] characters dropped from `buf`: the text
    /// before a match found at its start.
    before: String,
}

impl StreamScanner {
    /// A scanner for one message of field `field`.
    pub fn new(set: Arc<RuleSet>, app: Option<&str>, direction: Direction, field: &str) -> Self {
        let holdback = (set.max_match_len + set.max_context + 16).max(64);
        StreamScanner {
            set,
            app: app.map(str::to_string),
            direction,
            field: field.to_string(),
            buf: String::new(),
            base: 0,
            reported: 0,
            pending: Vec::new(),
            holdback,
            findings: Vec::new(),
            dropped: 0,
            lossy: false,
            before: String::new(),
        }
    }

    /// Bytes of text kept before new input so that matches (with their
    /// context) spanning a chunk boundary are found.
    pub fn overlap(&self) -> usize {
        self.holdback
    }

    /// Stream offset before which no finding can start any more: text
    /// before it is final (a caller holding bytes back may release them).
    pub fn settled(&self) -> usize {
        self.reported.saturating_sub(self.holdback)
    }

    /// Whether invalid UTF-8 was replaced, so that offsets are no longer
    /// byte offsets of the input.
    pub fn lossy(&self) -> bool {
        self.lossy
    }

    /// Bytes held between chunks (bounded by twice the holdback plus one
    /// chunk).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending.len()
    }

    /// Feed the next chunk; returns findings that are now final. Offsets
    /// are stream offsets (invalid UTF-8 is replaced by U+FFFD, which shifts
    /// later offsets of that stream).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Finding> {
        self.push_matched(chunk)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    /// As [`push`](Self::push), each finding with the text it matched and
    /// the text around it (for masked and sealed evidence: the text leaves
    /// the scanner's buffer soon after).
    pub fn push_matched(&mut self, chunk: &[u8]) -> Vec<(Finding, Matched)> {
        self.pending.extend_from_slice(chunk);
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(valid_up_to);
        self.push_text();
        self.pending = rest;
        let end = self.base + self.buf.len();
        let upto = end.saturating_sub(self.holdback);
        let new = self.scan_upto(upto);
        // Keep what a match ending after `upto` could start in, plus context.
        let keep_from = self.reported.saturating_sub(self.holdback).max(self.base) - self.base;
        let mut cut = keep_from.min(self.buf.len());
        while !self.buf.is_char_boundary(cut) {
            cut -= 1;
        }
        // The last characters dropped (4 bytes each at most: no more is read).
        let mut tail = cut.saturating_sub(4 * AROUND_CHARS);
        while !self.buf.is_char_boundary(tail) {
            tail += 1;
        }
        self.before.push_str(&self.buf[tail..cut]);
        self.buf.drain(..cut);
        let skip = self.before.chars().count().saturating_sub(AROUND_CHARS);
        if let Some((i, _)) = self.before.char_indices().nth(skip) {
            self.before.drain(..i);
        }
        self.base += cut;
        new
    }

    /// Findings in the text held now that are not final yet (they end in
    /// the holdback zone, where more text could still change them), each
    /// with the text it matched. For a caller that must not forward a
    /// match before judging it (a byte stream cut on block). Nothing is
    /// recorded: once final, they are reported by `push` or `finish`.
    pub fn peek_matched(&self) -> Vec<(Finding, Matched)> {
        let mut text = std::borrow::Cow::Borrowed(self.buf.as_str());
        if !self.pending.is_empty() {
            text.to_mut()
                .push_str(&String::from_utf8_lossy(&self.pending));
        }
        let msg = MessageInput {
            app: self.app.as_deref(),
            direction: self.direction,
            conversation: None,
            fields: vec![Field {
                name: &self.field,
                text: &text,
            }],
        };
        self.set
            .scan(&msg)
            .findings
            .into_iter()
            .filter(|f| f.end + self.base > self.reported)
            .map(|mut f| {
                let matched = self.matched(&text, f.start, f.end);
                f.start += self.base;
                f.end += self.base;
                (f, matched)
            })
            .collect()
    }

    /// End of the message: report the rest and return every finding with the
    /// message verdict.
    pub fn finish(self) -> ScanResult {
        self.finish_matched().1
    }

    /// As [`finish`](Self::finish), also returning the findings made final
    /// only now, each with the text it matched.
    pub fn finish_matched(mut self) -> (Vec<(Finding, Matched)>, ScanResult) {
        if !self.pending.is_empty() {
            self.push_text();
            self.pending.clear();
        }
        let end = self.base + self.buf.len();
        let new = self.scan_upto(end);
        let result = ScanResult {
            findings: self.findings,
            rejected: Vec::new(),
        };
        (new, result)
    }

    /// Moves `pending` (as text) to the end of `buf`.
    fn push_text(&mut self) {
        match String::from_utf8_lossy(&self.pending) {
            std::borrow::Cow::Borrowed(text) => self.buf.push_str(text),
            std::borrow::Cow::Owned(text) => {
                self.lossy = true;
                self.buf.push_str(&text);
            }
        }
    }

    /// The match at `start..end` of `text` (which starts at `base`), with
    /// the text around it, reaching back into what `buf` has dropped.
    fn matched(&self, text: &str, start: usize, end: usize) -> Matched {
        let mut m = Matched::in_text(text, start, end);
        let had = m.around[..m.at].chars().count();
        if m.at == start && had < AROUND_CHARS && !self.before.is_empty() {
            let want = AROUND_CHARS - had;
            let skip = self.before.chars().count().saturating_sub(want);
            let from = self.before.char_indices().nth(skip).map_or(0, |(i, _)| i);
            let prefix = &self.before[from..];
            m.around.insert_str(0, prefix);
            m.at += prefix.len();
        }
        m
    }

    /// Findings beyond the kept maximum.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn scan_upto(&mut self, upto: usize) -> Vec<(Finding, Matched)> {
        if upto <= self.reported {
            return Vec::new();
        }
        let msg = MessageInput {
            app: self.app.as_deref(),
            direction: self.direction,
            conversation: None,
            fields: vec![Field {
                name: &self.field,
                text: &self.buf,
            }],
        };
        let result = self.set.scan(&msg);
        let mut new = Vec::new();
        for mut f in result.findings {
            let end = f.end + self.base;
            if end > self.reported && end <= upto {
                let matched = self.matched(&self.buf, f.start, f.end);
                f.start += self.base;
                f.end = end;
                new.push((f, matched));
            }
        }
        self.reported = upto;
        for (f, _) in &new {
            if self.findings.len() < MAX_FINDINGS {
                self.findings.push(f.clone());
            } else {
                self.dropped += 1;
            }
        }
        new
    }
}
