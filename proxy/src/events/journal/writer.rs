//! The journal's single writer: recovers the tail at open, appends framed
//! records, rolls segments, syncs when told (group commit is the caller's
//! choice of when to call [`JournalWriter::sync`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::frame::{self, framed_len};
use super::{list_segments, segment_path, sync_dir, Position};

/// What opening the journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments present.
    pub segments: usize,
    /// Bytes in them after recovery.
    pub bytes: u64,
    /// Bytes of a torn or damaged tail that were cut off the last segment.
    pub torn_bytes: u64,
}

/// Appends records to the journal. One per directory.
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    active: u64,
    len: u64,
    synced: Position,
    buf: Vec<u8>,
}

impl JournalWriter {
    /// Opens (creating if needed) the journal in `dir`. A torn tail of the
    /// last segment (a write cut by a crash) is truncated to the last whole
    /// record, logged and reported in [`Recovery::torn_bytes`].
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<(Self, Recovery)> {
        fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let mut recovery = Recovery {
            segments: segments.len(),
            bytes: segments.iter().map(|(_, l)| l).sum(),
            torn_bytes: 0,
        };
        let (active, len) = match segments.last() {
            None => {
                // Segment ids start at 1 so that the default cursor (0:0)
                // lies before every record.
                File::create(segment_path(dir, 1))?;
                sync_dir(dir)?;
                recovery.segments = 1;
                (1, 0)
            }
            Some(&(id, file_len)) => {
                let path = segment_path(dir, id);
                let bytes = fs::read(&path)?;
                let (valid, records) = frame::valid_prefix(&bytes);
                let valid = valid as u64;
                if valid < file_len {
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(valid)?;
                    f.sync_all()?;
                    recovery.torn_bytes = file_len - valid;
                    recovery.bytes -= recovery.torn_bytes;
                    tracing::warn!(
                        segment = %path.display(),
                        kept_records = records,
                        cut_bytes = file_len - valid,
                        "journal tail was torn (crash during a write): truncated to the last whole record"
                    );
                }
                (id, valid)
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(segment_path(dir, active))?;
        let pos = Position {
            segment: active,
            offset: len,
        };
        Ok((
            Self {
                dir: dir.to_path_buf(),
                segment_bytes,
                file,
                active,
                len,
                synced: pos,
                buf: Vec::with_capacity(1 << 20),
            },
            recovery,
        ))
    }

    /// Frames `payload` into the write buffer, rolling to a new segment
    /// first if it would not fit in this one. Call [`write`](Self::write) or
    /// [`sync`](Self::sync) to hand the buffer to the OS.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.len() > frame::MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "journal record larger than 16 MiB",
            ));
        }
        let used = self.len + self.buf.len() as u64;
        if used > 0 && used + framed_len(payload.len()) > self.segment_bytes {
            self.roll()?;
        }
        frame::encode(payload, &mut self.buf);
        Ok(())
    }

    /// Writes the buffered records to the segment (not yet durable).
    pub fn write(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.len += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the buffer and makes everything written durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write()?;
        let pos = self.position();
        if pos != self.synced {
            self.file.sync_data()?;
            self.synced = pos;
        }
        Ok(())
    }

    /// The end of what was handed to the OS.
    pub fn position(&self) -> Position {
        Position {
            segment: self.active,
            offset: self.len,
        }
    }

    /// The end of what is durable.
    pub fn synced(&self) -> Position {
        self.synced
    }

    /// Bytes buffered but not yet written.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Deletes the oldest segment other than the one being written, shipped
    /// or not (the `drop_oldest` full policy). Returns the bytes freed.
    pub fn delete_oldest(&mut self) -> io::Result<Option<u64>> {
        for (id, len) in list_segments(&self.dir)? {
            if id == self.active {
                break;
            }
            match fs::remove_file(segment_path(&self.dir, id)) {
                Ok(()) => return Ok(Some(len)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Closes the current segment (durably) and starts the next.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let next = self.active + 1;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(&self.dir, next))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.active = next;
        self.len = 0;
        self.synced = self.position();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::journal::Reader;

    fn read_all(dir: &Path) -> Vec<Vec<u8>> {
        let mut r = Reader::new(dir, Position::default());
        let mut out = Vec::new();
        r.next_batch(None, usize::MAX, &mut out).unwrap();
        out
    }

    #[test]
    fn appends_roll_segments_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, rec) = JournalWriter::open(dir.path(), 100).unwrap();
        assert_eq!(rec.torn_bytes, 0);
        let records: Vec<Vec<u8>> = (0..20)
            .map(|i| format!("record {i}").into_bytes())
            .collect();
        for r in &records {
            w.append(r).unwrap();
        }
        w.sync().unwrap();
        assert!(list_segments(dir.path()).unwrap().len() > 3);
        assert_eq!(read_all(dir.path()), records);
    }

    #[test]
    fn a_torn_tail_is_cut_at_open_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = JournalWriter::open(dir.path(), 1 << 20).unwrap();
        w.append(b"one").unwrap();
        w.append(b"two").unwrap();
        w.sync().unwrap();
        let path = segment_path(dir.path(), w.position().segment);
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap(); // half a header
        drop(f);
        let (mut w, rec) = JournalWriter::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.torn_bytes, 6);
        w.append(b"three").unwrap();
        w.sync().unwrap();
        assert_eq!(
            read_all(dir.path()),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
    }
}
