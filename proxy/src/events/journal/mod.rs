//! The durable local journal: append-only segment files of checksummed,
//! length-prefixed records, and a cursor saying how far they were shipped.
//!
//! One writer appends ([`JournalWriter`]); any number of readers follow
//! ([`Reader`]). Segments wholly before the cursor are deleted by [`ack`].

mod cursor;
mod frame;
mod reader;
mod writer;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use cursor::{load_cursor, store_cursor};
pub use frame::{framed_len, MAX_PAYLOAD};
pub use reader::Reader;
pub use writer::{JournalWriter, Recovery};

/// A place in the journal: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Segment number (file name).
    pub segment: u64,
    /// Byte offset in the segment.
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

const SUFFIX: &str = ".seg";

/// The file of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

/// The segments in `dir`, oldest first, with their sizes. A missing
/// directory holds none.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        match entry.metadata() {
            Ok(m) => out.push((id, m.len())),
            // Deleted between listing and stat: shipped meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Total bytes of the journal's segments.
pub fn journal_bytes(dir: &Path) -> io::Result<u64> {
    Ok(list_segments(dir)?.iter().map(|(_, len)| len).sum())
}

/// Bytes from `from` to the end of the journal: what is not yet shipped.
pub fn bytes_after(dir: &Path, from: Position) -> io::Result<u64> {
    Ok(list_segments(dir)?
        .iter()
        .filter(|(id, _)| *id >= from.segment)
        .map(|(id, len)| {
            if *id == from.segment {
                len.saturating_sub(from.offset)
            } else {
                *len
            }
        })
        .sum())
}

/// Records that everything before `pos` is shipped: stores the cursor
/// durably, then deletes the segments wholly before it. Returns the bytes
/// freed.
pub fn ack(dir: &Path, pos: Position) -> io::Result<u64> {
    store_cursor(dir, pos)?;
    let mut freed = 0;
    for (id, len) in list_segments(dir)? {
        if id >= pos.segment {
            break;
        }
        match fs::remove_file(segment_path(dir, id)) {
            Ok(()) => freed += len,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(freed)
}

/// Makes a directory entry change (create, rename, remove) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod model_tests;
