//! Frames of decrypted Initial packets, and the CRYPTO stream they carry.
//!
//! Clients split large hellos (post-quantum key shares) over several
//! Initials and may send CRYPTO frames out of order, so the stream is put
//! back together by offset before the ClientHello parser sees it.

use super::packet::malformed;
use crate::identify::reader::Reader;
use crate::identify::tls::hello_limit;
use crate::InspectError;

/// Reassembles the Initial CRYPTO stream from offset 0.
#[derive(Debug, Default, Clone)]
pub(crate) struct CryptoStream {
    data: Vec<u8>,
    have: Vec<bool>,
    /// Length of the gap-free prefix.
    contiguous: usize,
}

impl CryptoStream {
    /// The bytes received without a gap from offset 0.
    pub(crate) fn contiguous(&self) -> &[u8] {
        &self.data[..self.contiguous]
    }

    /// Takes in every CRYPTO frame of a decrypted Initial payload, checking
    /// that only frames allowed in Initial packets appear (RFC 9000 §12.4).
    pub(crate) fn add_frames(&mut self, payload: &[u8]) -> Result<(), InspectError> {
        let mut r = Reader::new(payload);
        let bad = || malformed("truncated frame in Initial packet");
        while !r.is_empty() {
            match r.varint().ok_or_else(bad)? {
                0x00 | 0x01 => {} // PADDING, PING
                typ @ (0x02 | 0x03) => {
                    // ACK: largest, delay, range count, first range, ranges.
                    r.varint().ok_or_else(bad)?;
                    r.varint().ok_or_else(bad)?;
                    let ranges = r.varint().ok_or_else(bad)?;
                    r.varint().ok_or_else(bad)?;
                    for _ in 0..ranges {
                        r.varint().ok_or_else(bad)?;
                        r.varint().ok_or_else(bad)?;
                    }
                    if typ == 0x03 {
                        for _ in 0..3 {
                            r.varint().ok_or_else(bad)?;
                        }
                    }
                }
                0x06 => {
                    let offset = r.varint().ok_or_else(bad)?;
                    let len = r.varint().ok_or_else(bad)?;
                    let len = usize::try_from(len).map_err(|_| bad())?;
                    let data = r.bytes(len).ok_or_else(bad)?;
                    self.insert(offset, data)?;
                }
                0x1c => {
                    // CONNECTION_CLOSE: error code, frame type, reason.
                    r.varint().ok_or_else(bad)?;
                    r.varint().ok_or_else(bad)?;
                    let len = r.varint().ok_or_else(bad)?;
                    let len = usize::try_from(len).map_err(|_| bad())?;
                    r.bytes(len).ok_or_else(bad)?;
                }
                _ => return Err(malformed("frame type not allowed in an Initial packet")),
            }
        }
        Ok(())
    }

    pub(crate) fn insert(&mut self, offset: u64, data: &[u8]) -> Result<(), InspectError> {
        let start = usize::try_from(offset).map_err(|_| malformed("CRYPTO offset too large"))?;
        let end = start
            .checked_add(data.len())
            .filter(|end| *end <= hello_limit())
            .ok_or_else(|| malformed("CRYPTO data past the largest ClientHello we accept"))?;
        if start == self.contiguous && self.have.len() == self.contiguous {
            // In order, nothing buffered past it: the common case, appended
            // without the byte-by-byte bookkeeping.
            self.data.extend_from_slice(data);
            self.have.resize(end, true);
            self.contiguous = end;
            return Ok(());
        }
        if end > self.data.len() {
            self.data.resize(end, 0);
            self.have.resize(end, false);
        }
        for (i, b) in (start..end).zip(data) {
            if self.have[i] {
                // Overlapping data must agree: differing copies are how an
                // evader would show us one hello and the server another.
                if self.data[i] != *b {
                    return Err(malformed("CRYPTO frames disagree on overlapping bytes"));
                }
            } else {
                self.data[i] = *b;
                self.have[i] = true;
            }
        }
        while self.contiguous < self.have.len() && self.have[self.contiguous] {
            self.contiguous += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto(offset: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06, offset, data.len() as u8];
        f.extend(data);
        f
    }

    #[test]
    fn out_of_order_frames_join_by_offset() {
        let mut s = CryptoStream::default();
        let mut payload = vec![0x01];
        payload.extend(crypto(3, b"lo"));
        payload.extend([0x02, 0, 0, 0, 0, 0x00, 0x00]);
        s.add_frames(&payload).unwrap();
        assert_eq!(s.contiguous(), b"");
        s.add_frames(&crypto(0, b"hel")).unwrap();
        assert_eq!(s.contiguous(), b"hello");
    }

    #[test]
    fn duplicates_are_fine_but_conflicts_are_not() {
        let mut s = CryptoStream::default();
        s.add_frames(&crypto(0, b"hello")).unwrap();
        s.add_frames(&crypto(1, b"ell")).unwrap();
        assert!(s.add_frames(&crypto(3, b"XY")).is_err());
    }

    #[test]
    fn appending_in_order_and_filling_gaps_agree() {
        let mut s = CryptoStream::default();
        s.insert(0, b"he").unwrap();
        s.insert(5, b"world").unwrap();
        assert_eq!(s.contiguous(), b"he");
        s.insert(2, b"llo").unwrap();
        assert_eq!(s.contiguous(), b"helloworld");
        s.insert(10, b"!").unwrap();
        assert_eq!(s.contiguous(), b"helloworld!");
        assert!(s.insert(4, b"X").is_err());
    }

    #[test]
    fn stream_frames_are_refused_in_initials() {
        let mut s = CryptoStream::default();
        assert!(s.add_frames(&[0x08, 0x00]).is_err());
        assert!(s.add_frames(&[0x06, 0x00, 0x05, b'a']).is_err());
    }
}
