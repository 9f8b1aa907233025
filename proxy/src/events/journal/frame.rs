//! Record framing: `[len: u32 LE][crc32: u32 LE][payload]`, the checksum
//! covering the length bytes and the payload, so a torn or rotten length is
//! caught as surely as a torn payload.

/// Bytes before each payload.
pub const HEADER: usize = 8;
/// Largest payload accepted; a bigger length field means corruption.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// What the bytes at the front of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A whole record: its payload range in the buffer and the frame's length.
    Record {
        /// Payload start.
        start: usize,
        /// Payload end (exclusive); also the frame length.
        end: usize,
    },
    /// The buffer ends inside a frame (torn write, or not yet written).
    Incomplete,
    /// The frame is damaged (checksum mismatch or impossible length).
    Corrupt,
}

/// The size of the frame around a payload of `len` bytes.
pub fn framed_len(len: usize) -> u64 {
    (HEADER + len) as u64
}

/// Appends the frame of `payload` to `out`.
///
/// # Panics
/// If `payload` is longer than [`MAX_PAYLOAD`]; callers check first.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MAX_PAYLOAD, "journal record too large");
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the frame at the front of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER {
        return Decoded::Incomplete;
    }
    let len_bytes: [u8; 4] = buf[0..4].try_into().expect("4 bytes");
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Corrupt;
    }
    let end = HEADER + len;
    if buf.len() < end {
        return Decoded::Incomplete;
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let mut h = crc32fast::Hasher::new();
    h.update(&len_bytes);
    h.update(&buf[HEADER..end]);
    if h.finalize() != crc {
        return Decoded::Corrupt;
    }
    Decoded::Record { start: HEADER, end }
}

/// The length of the longest prefix of `buf` made of whole, valid records,
/// and how many records it holds.
pub fn valid_prefix(buf: &[u8]) -> (usize, usize) {
    let (mut at, mut n) = (0, 0);
    while let Decoded::Record { end, .. } = decode(&buf[at..]) {
        at += end;
        n += 1;
    }
    (at, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_prefix_is_incomplete() {
        let mut buf = Vec::new();
        encode(b"hello", &mut buf);
        assert_eq!(decode(&buf), Decoded::Record { start: 8, end: 13 });
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode(b"some payload", &mut buf);
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                !matches!(decode(&b), Decoded::Record { .. }),
                "bit {i} flipped unnoticed"
            );
        }
    }

    #[test]
    fn valid_prefix_stops_at_damage() {
        let mut buf = Vec::new();
        encode(b"a", &mut buf);
        encode(b"bb", &mut buf);
        let good = buf.len();
        encode(b"ccc", &mut buf);
        buf.truncate(buf.len() - 1);
        assert_eq!(valid_prefix(&buf), (good, 2));
    }
}
