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
        }
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
        self.pending.extend_from_slice(chunk);
        let valid_up_to = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(valid_up_to);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        self.buf.push_str(&text);
        let end = self.base + self.buf.len();
        let upto = end.saturating_sub(self.holdback);
        let new = self.scan_upto(upto);
        // Keep what a match ending after `upto` could start in, plus context.
        let keep_from = self.reported.saturating_sub(self.holdback).max(self.base) - self.base;
        let mut cut = keep_from.min(self.buf.len());
        while !self.buf.is_char_boundary(cut) {
            cut -= 1;
        }
        self.buf.drain(..cut);
        self.base += cut;
        new
    }

    /// End of the message: report the rest and return every finding with the
    /// message verdict.
    pub fn finish(mut self) -> ScanResult {
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.buf.push_str(&text);
            self.pending.clear();
        }
        let end = self.base + self.buf.len();
        self.scan_upto(end);
        ScanResult {
            findings: self.findings,
            rejected: Vec::new(),
        }
    }

    /// Findings beyond the kept maximum.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn scan_upto(&mut self, upto: usize) -> Vec<Finding> {
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
            f.start += self.base;
            f.end += self.base;
            if f.end > self.reported && f.end <= upto {
                new.push(f);
            }
        }
        self.reported = upto;
        for f in &new {
            if self.findings.len() < MAX_FINDINGS {
                self.findings.push(f.clone());
            } else {
                self.dropped += 1;
            }
        }
        new
    }
}
