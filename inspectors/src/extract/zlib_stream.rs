//! Discord's `zlib-stream` gateway compression: one zlib context for the
//! whole connection, each payload ending in a sync flush (`00 00 FF FF`).

use flate2::{Decompress, FlushDecompress, Status};

use crate::InspectError;

const SYNC_FLUSH: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// One connection's inflater. Feed it every binary frame in order.
pub struct ZlibStream {
    inflater: Decompress,
    pending: Vec<u8>,
    cap: usize,
    broken: bool,
}

impl std::fmt::Debug for ZlibStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZlibStream")
            .field("pending", &self.pending.len())
            .field("broken", &self.broken)
            .finish()
    }
}

fn malformed(reason: impl Into<String>) -> InspectError {
    InspectError::Malformed {
        protocol: "zlib-stream",
        reason: reason.into(),
    }
}

impl ZlibStream {
    /// A fresh context; no payload inflates to more than `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            inflater: Decompress::new(true),
            pending: Vec::new(),
            cap,
            broken: false,
        }
    }

    /// Adds one frame; returns the inflated payload once a frame ends with
    /// the sync-flush suffix. After an error the context is unusable (the
    /// dictionary is lost), and every later call fails too.
    pub fn push(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, InspectError> {
        if self.broken {
            return Err(malformed("context lost after an earlier error"));
        }
        if self.pending.len() + frame.len() > self.cap {
            self.broken = true;
            return Err(malformed("payload larger than the cap"));
        }
        self.pending.extend_from_slice(frame);
        if !self.pending.ends_with(&SYNC_FLUSH) {
            return Ok(None);
        }
        let input = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity((input.len() * 4).min(self.cap));
        let mut consumed = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= self.cap {
                    self.broken = true;
                    return Err(malformed("inflated payload larger than the cap"));
                }
                out.reserve(out.len().max(1024).min(self.cap - out.len()));
            }
            let before_in = self.inflater.total_in();
            let before_out = self.inflater.total_out();
            let status = self
                .inflater
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .map_err(|e| {
                    self.broken = true;
                    malformed(e.to_string())
                })?;
            consumed += (self.inflater.total_in() - before_in) as usize;
            let progressed =
                self.inflater.total_in() != before_in || self.inflater.total_out() != before_out;
            // Done once all input is in and the inflater had room to spare.
            let drained = consumed == input.len() && out.len() < out.capacity();
            if status == Status::StreamEnd || drained || !progressed {
                break;
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn sync_compress(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        out
    }

    #[test]
    fn shared_context_across_payloads_and_split_frames() {
        let mut c = Compress::new(Compression::default(), true);
        let a = sync_compress(&mut c, br#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
        let b = sync_compress(
            &mut c,
            br#"{"op":0,"t":"MESSAGE_CREATE","d":{"content":"x"}}"#,
        );
        let mut z = ZlibStream::new(1 << 20);
        assert!(z.push(&a).unwrap().unwrap().starts_with(b"{\"op\":10"));
        let (b1, b2) = b.split_at(3);
        assert_eq!(z.push(b1).unwrap(), None);
        let out = z.push(b2).unwrap().unwrap();
        assert!(out.ends_with(b"\"x\"}}"));
    }

    #[test]
    fn cap_is_enforced() {
        let mut c = Compress::new(Compression::default(), true);
        let bomb = sync_compress(&mut c, &vec![b'a'; 100_000]);
        let mut z = ZlibStream::new(10_000);
        assert!(z.push(&bomb).is_err());
        assert!(z.push(&bomb).is_err());
    }
}
