//! Follows the journal from a position: the shipper reads batches up to the
//! durable end, the CLI reads a live journal up to whatever is written.
//! A reader never modifies the journal.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, Decoded};
use super::{list_segments, segment_path, Position};

/// Largest read at once: one whole maximal record fits.
const CHUNK: u64 = (frame::MAX_PAYLOAD + frame::HEADER) as u64;

/// Reads records in order from a position.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    pos: Position,
    open: Option<(u64, File)>,
    buf: Vec<u8>,
    damaged: u64,
}

impl Reader {
    /// A reader starting at `from` (the default position is the oldest record).
    pub fn new(dir: &Path, from: Position) -> Self {
        Self {
            dir: dir.to_path_buf(),
            pos: from,
            open: None,
            buf: Vec::new(),
            damaged: 0,
        }
    }

    /// Just after the last record returned.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// How many damaged segment remainders were skipped (bit rot in a
    /// closed segment: the rest of that segment cannot be framed).
    pub fn damaged_skips(&self) -> u64 {
        self.damaged
    }

    /// Appends to `out` up to `max` whole records after the position,
    /// stopping at `until` (exclusive; `None`: the end of what is written).
    /// Returns how many were appended. A record still being written is left
    /// for a later call.
    pub fn next_batch(
        &mut self,
        until: Option<Position>,
        max: usize,
        out: &mut Vec<Vec<u8>>,
    ) -> io::Result<usize> {
        let segments = list_segments(&self.dir)?;
        let mut n = 0;
        while n < max {
            let Some(idx) = segments.iter().position(|(id, _)| *id >= self.pos.segment) else {
                break;
            };
            let (id, file_len) = segments[idx];
            if id != self.pos.segment {
                // The segment we were in was deleted (shipped or evicted).
                self.pos = Position {
                    segment: id,
                    offset: 0,
                };
            }
            if until.is_some_and(|u| self.pos >= u) {
                break;
            }
            let closed = idx + 1 < segments.len() && until.is_none_or(|u| u.segment > id);
            let end = match until {
                Some(u) if u.segment == id => u.offset,
                _ => file_len,
            };
            if self.pos.offset >= end {
                if closed {
                    self.next_segment(segments[idx + 1].0);
                    continue;
                }
                break;
            }
            let want = (end - self.pos.offset).min(CHUNK) as usize;
            if !self.read_at(id, self.pos.offset, want)? {
                continue; // deleted under us; the listing moves us on
            }
            let mut at = 0;
            let mut stop = None;
            while n < max {
                match frame::decode(&self.buf[at..]) {
                    Decoded::Record { start, end } => {
                        out.push(self.buf[at + start..at + end].to_vec());
                        at += end;
                        n += 1;
                    }
                    other => {
                        stop = Some(other);
                        break;
                    }
                }
            }
            let rest = (self.buf.len() - at) as u64;
            self.pos.offset += at as u64;
            let reached_end = self.pos.offset + rest >= end;
            match stop {
                None => {}
                // Everything read was whole records: the loop goes on to the
                // next chunk or segment, or stops at the end.
                Some(Decoded::Incomplete) if rest == 0 => {}
                Some(Decoded::Incomplete) if !reached_end && at > 0 => {} // next chunk
                Some(d) if closed && (d == Decoded::Corrupt || reached_end) => {
                    self.damaged += 1;
                    tracing::error!(
                        segment = %segment_path(&self.dir, id).display(),
                        offset = self.pos.offset,
                        "journal segment damaged: skipping the rest of it"
                    );
                    self.next_segment(segments[idx + 1].0);
                }
                // The last segment: a record still being written (or damage
                // the writer truncates at its next open).
                Some(_) => break,
            }
        }
        Ok(n)
    }

    fn next_segment(&mut self, id: u64) {
        self.pos = Position {
            segment: id,
            offset: 0,
        };
    }

    /// Reads `len` bytes of segment `id` at `offset` into the buffer; false
    /// if the segment no longer exists.
    fn read_at(&mut self, id: u64, offset: u64, len: usize) -> io::Result<bool> {
        if self.open.as_ref().is_none_or(|(open, _)| *open != id) {
            match File::open(segment_path(&self.dir, id)) {
                Ok(f) => self.open = Some((id, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.pos = Position {
                        segment: id + 1,
                        offset: 0,
                    };
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        let (_, file) = self.open.as_ref().expect("opened above");
        self.buf.resize(len, 0);
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut self.buf[filled..], offset + filled as u64)? {
                0 => break,
                k => filled += k,
            }
        }
        self.buf.truncate(filled);
        Ok(true)
    }
}
