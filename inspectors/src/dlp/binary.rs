//! Binary bodies: recognised cheaply, scanned by their text-bearing parts.
//!
//! A 64 KiB image or archive decoded lossily is 64 KiB of replacement
//! characters, control bytes and short digit runs: normalisation goes the
//! Unicode way and every digit wakes the window rules, ~100× the cost of
//! text. What a user can hide in such a body and a rule can find is text,
//! so a binary body is scanned as its printable runs (ASCII and UTF-8
//! characters, at least [`MIN_RUN`] in a row), each kept whole and set apart
//! by a NUL byte, which no rule matches across — as the bytes between them
//! did before.
//!
//! Fail closed: only the bytes decide, never the (client-chosen)
//! Content-Type. Valid UTF-8 is always text. Invalid UTF-8 with few control
//! bytes (Latin-1 or a stray byte in a text file) stays on the text path;
//! only a body whose control bytes pass [`CONTROL_SHARE`] goes the binary
//! way. Known formats are named by their magic number (for the label and
//! the event); the text inside deflated ZIP entries and PDF streams is not
//! extracted yet — their printable runs are scanned like any binary.

/// Shortest printable run kept. Random bytes hold a run of six printable
/// characters about every 400 bytes; every secret a shipped rule looks for
/// is longer, and a keyword that short stands in a longer run anyway.
pub const MIN_RUN: usize = 6;

/// Share of control bytes (besides whitespace) above which an invalid
/// UTF-8 body is binary: 1 in 64. Random bytes have 1 in 8; text, none.
pub const CONTROL_SHARE: usize = 64;

/// What joins two runs: matches never span it.
const SEP: u8 = 0;

/// A known binary format, by its first bytes.
pub fn magic(b: &[u8]) -> Option<&'static str> {
    const TABLE: &[(&[u8], &str)] = &[
        (b"\xFF\xD8\xFF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"GIF8", "gif"),
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),
        (b"%PDF-", "pdf"),
        (b"\x1f\x8b", "gzip"),
        (b"7z\xBC\xAF\x27\x1C", "7z"),
        (b"Rar!\x1a\x07", "rar"),
        (b"RIFF", "riff"),
        (b"\x00\x00\x00\x18ftyp", "mp4"),
        (b"\x00\x00\x00\x20ftyp", "mp4"),
        (b"\x1a\x45\xdf\xa3", "webm"),
        (b"OggS", "ogg"),
        (b"ID3", "mp3"),
        (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "ole"),
        (b"\x7fELF", "elf"),
        (b"MZ", "exe"),
    ];
    TABLE
        .iter()
        .find(|(m, _)| b.starts_with(m))
        .map(|(_, name)| *name)
}

fn is_control(c: u8) -> bool {
    // Whitespace controls (\t \n \v \f \r) are text.
    ((c < 0x20) & (c.wrapping_sub(0x09) > 4)) | (c == 0x7f)
}

/// Whether `b` (not valid UTF-8, or a chunk of a stream) is binary by its
/// byte statistics. Binary data says so within its first kilobytes.
pub fn looks_binary(b: &[u8]) -> bool {
    let need = b.len() / CONTROL_SHARE;
    let mut seen = 0usize;
    for chunk in b.chunks(1024) {
        seen += chunk
            .iter()
            .fold(0u32, |n, &c| n + u32::from(is_control(c))) as usize;
        if seen > need {
            return true;
        }
    }
    false
}

/// Whether a whole body takes the binary path.
pub fn is_binary(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_err() && looks_binary(b)
}

fn printable(c: u8) -> bool {
    (c.wrapping_sub(0x20) < 0x5f) | (c == b'\t') | (c == b'\n') | (c == b'\r')
}

/// Length of the UTF-8 character starting at `b[i]` if it is one and not a
/// control (0 otherwise).
fn utf8_at(b: &[u8], i: usize) -> usize {
    let cont = |k: usize| b.get(i + k).is_some_and(|&x| x & 0xC0 == 0x80);
    let w = match b[i] {
        // C2 80..9F are the C1 controls.
        0xC2 => usize::from(b.get(i + 1).is_some_and(|&x| (0xA0..=0xBF).contains(&x))) * 2,
        0xC3..=0xDF => usize::from(cont(1)) * 2,
        0xE0..=0xEF => usize::from(cont(1) && cont(2)) * 3,
        0xF0..=0xF4 => usize::from(cont(1) && cont(2) && cont(3)) * 4,
        _ => 0,
    };
    // Overlong forms and surrogates, for the few that pass the above.
    match b.get(i..i + w) {
        Some(seq) if w > 2 => usize::from(std::str::from_utf8(seq).is_ok()) * w,
        _ => w,
    }
}

/// Length of the text character at `b[i]` (0: not text).
fn char_at(b: &[u8], i: usize) -> usize {
    if printable(b[i]) {
        1
    } else if b[i] >= 0x80 {
        utf8_at(b, i)
    } else {
        0
    }
}

/// Start of the text character ending at `j` (exclusive), if there is one.
fn char_before(b: &[u8], j: usize) -> Option<usize> {
    let last = *b.get(j.checked_sub(1)?)?;
    if printable(last) {
        return Some(j - 1);
    }
    (2..=4)
        .filter_map(|w| j.checked_sub(w))
        .find(|&s| b[s] >= 0xC0)
        .filter(|&s| utf8_at(b, s) == j - s)
}

/// A byte of a core: printable ASCII, space included.
fn core_byte(c: u8) -> bool {
    c.wrapping_sub(0x20) < 0x5f
}

/// Bit k set when byte k of the 64 is a [`core_byte`]: eight bytes at a
/// time, without a branch.
fn core_mask(block: &[u8]) -> u64 {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut m = 0u64;
    for (k, w) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        let lo = w & LOW;
        // Per byte (no carry crosses bytes below 0x80): >= 0x20, >= 0x7f.
        let ge20 = lo + 0x6060_6060_6060_6060;
        let ge7f = lo + 0x0101_0101_0101_0101;
        let p = ge20 & !ge7f & !w & HIGH;
        // Gather the eight high bits into one byte.
        m |= (p.wrapping_mul(0x0002_0408_1020_4081) >> 56) << (8 * k);
    }
    m
}

/// Where the next run of [`MIN_RUN`] printable ASCII bytes starts, from
/// `i`. Runs are rare in binary data: 64-byte blocks are tested as bit
/// masks, and most blocks have none.
fn next_core(b: &[u8], mut i: usize) -> Option<usize> {
    const STRIDE: usize = 64 - (MIN_RUN - 1);
    while i + 64 <= b.len() {
        let m = core_mask(&b[i..i + 64]);
        let mut run = m;
        for s in 1..MIN_RUN {
            run &= m >> s;
        }
        // Only starts whose whole core lies in this block count here.
        run &= u64::MAX >> (MIN_RUN - 1);
        if run != 0 {
            return Some(i + run.trailing_zeros() as usize);
        }
        i += STRIDE;
    }
    let mut n = 0;
    for (k, &c) in b.iter().enumerate().skip(i) {
        n = if core_byte(c) { n + 1 } else { 0 };
        if n == MIN_RUN {
            return Some(k + 1 - MIN_RUN);
        }
    }
    None
}

/// Runs of text in `b[from..]`, each as (start, end), calling `each`. A run
/// reaching `open_end` (where a character cut by the chunk's end begins)
/// is reported with end `b.len()`: it may go on in the next chunk.
fn runs_in(b: &[u8], from: usize, open_end: usize, mut each: impl FnMut(usize, usize)) {
    let mut i = from;
    let mut floor = from;
    while let Some(core) = next_core(b, i) {
        let mut start = core;
        while start > floor {
            match char_before(b, start) {
                Some(s) if s >= floor => start = s,
                _ => break,
            }
        }
        let mut end = core + MIN_RUN;
        while end < open_end {
            match char_at(b, end) {
                0 => break,
                w => end += w,
            }
        }
        let end = if end >= open_end { b.len() } else { end };
        each(start, end);
        i = end + 1;
        floor = end;
    }
}

/// Longest text kept between chunks while waiting for its core.
const MAX_CARRY: usize = 1024;

/// Turns binary bytes into their text runs, chunk by chunk: a run split
/// across chunks is kept whole. A run is a stretch of printable ASCII and
/// UTF-8 characters holding at least [`MIN_RUN`] printable ASCII bytes in
/// a row (text in other scripts with no such stretch is not kept). Output
/// is valid UTF-8.
#[derive(Debug, Default, Clone)]
pub struct Runs {
    /// Trailing text of the last chunk with no core yet (or a cut UTF-8
    /// character), scanned again with the next one.
    carry: Vec<u8>,
    /// The last run reached the chunk's end: text at the start of the next
    /// chunk continues it.
    open: bool,
    /// Whether anything was written (a separator goes before the next run).
    wrote: bool,
}

impl Runs {
    /// Appends the runs of `chunk` (as far as they are known) to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.carry.is_empty() {
            self.scan(chunk, out);
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(chunk);
            self.scan(&joined, out);
        }
    }

    /// The end of the input.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = out;
        self.carry.clear();
        self.open = false;
    }

    fn scan(&mut self, b: &[u8], out: &mut Vec<u8>) {
        let mut from = 0;
        if self.open {
            // Text continuing the open run, whatever its length.
            let open_end = cut_char(b);
            let mut end = 0;
            while end < open_end {
                match char_at(b, end) {
                    0 => break,
                    w => end += w,
                }
            }
            let whole = if end >= open_end { b.len() } else { end };
            let cut = if whole == b.len() { open_end } else { whole };
            out.extend_from_slice(&b[..cut]);
            if whole == b.len() {
                self.carry.extend_from_slice(&b[cut..]);
                return;
            }
            self.open = false;
            from = whole;
        }
        let mut last_end = from;
        let mut tail_open = false;
        runs_in(b, from, cut_char(b), |s, e| {
            if self.wrote {
                out.push(SEP);
            }
            self.wrote = true;
            let cut = if e == b.len() { cut_char(b) } else { e };
            out.extend_from_slice(&b[s..cut]);
            last_end = e;
            tail_open = e == b.len();
        });
        if tail_open {
            self.open = true;
            self.carry.extend_from_slice(&b[cut_char(b)..]);
            return;
        }
        // Text at the end with no core yet may get one from the next chunk.
        let mut start = cut_char(b).max(last_end);
        while start > last_end && b.len() - start < MAX_CARRY {
            match char_before(b, start) {
                Some(s) if s >= last_end => start = s,
                _ => break,
            }
        }
        self.carry.extend_from_slice(&b[start..]);
    }
}

/// Where a UTF-8 character that the end of `b` may cut begins (`b.len()`
/// if none is cut).
fn cut_char(b: &[u8]) -> usize {
    (1..=3)
        .filter_map(|k| b.len().checked_sub(k))
        .find(|&s| b[s] >= 0xC0)
        .filter(|&s| {
            let need = match b[s] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            b.len() - s < need && b[s + 1..].iter().all(|&x| x & 0xC0 == 0x80)
        })
        .unwrap_or(b.len())
}

/// The text runs of a whole binary body (see [`Runs`]).
pub fn printable_runs(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len() / 8);
    let mut wrote = false;
    runs_in(b, 0, b.len(), |s, e| {
        if wrote {
            out.push(SEP);
        }
        wrote = true;
        out.extend_from_slice(&b[s..e]);
    });
    // Runs are whole characters by construction.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn text_is_never_binary() {
        assert!(!is_binary(
            "plain text, ünïcode, tabs\tand\nlines".as_bytes()
        ));
        // Latin-1 is invalid UTF-8 but has no control bytes.
        assert!(!is_binary(
            b"M\xfcller schickt die Karte 4111 1111 1111 1111"
        ));
        assert!(is_binary(&random(4096, 7)));
    }

    #[test]
    fn core_mask_agrees_with_bytes() {
        let b = random(64 * 50, 5);
        for block in b.chunks(64) {
            let want = block
                .iter()
                .enumerate()
                .fold(0u64, |m, (k, &c)| m | (u64::from(core_byte(c)) << k));
            assert_eq!(core_mask(block), want);
        }
        let all: Vec<u8> = (0..=255u8).collect();
        for block in all.chunks(64) {
            let want = block
                .iter()
                .enumerate()
                .fold(0u64, |m, (k, &c)| m | (u64::from(core_byte(c)) << k));
            assert_eq!(core_mask(block), want);
        }
    }

    #[test]
    fn magic_numbers_name_formats() {
        assert_eq!(magic(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"), Some("jpeg"));
        assert_eq!(magic(b"\x89PNG\r\n\x1a\n...."), Some("png"));
        assert_eq!(magic(b"PK\x03\x04\x14\x00"), Some("zip"));
        assert_eq!(magic(b"%PDF-1.7\n"), Some("pdf"));
        assert_eq!(magic(b"hello"), None);
    }

    #[test]
    fn runs_keep_long_printable_text_only() {
        let b = b"\x00\x01abc\x02card 4111 1111 1111 1111\xff\xfeAKIAIOSFODNN7EXAMPLE\x00ok\x01";
        assert_eq!(
            printable_runs(b),
            "card 4111 1111 1111 1111\0AKIAIOSFODNN7EXAMPLE"
        );
        // UTF-8 characters belong to runs; C1 controls do not.
        let b = "\u{1}Grüße aus Köln\u{1}".as_bytes();
        assert_eq!(printable_runs(b), "Grüße aus Köln");
        assert_eq!(printable_runs(b"\xc2\x85\xc2\x85abcdef"), "abcdef");
    }

    #[test]
    fn a_secret_inside_random_bytes_is_a_run() {
        let mut b = random(64 << 10, 3);
        let secret = b"\x00AKIAIOSFODNN7EXAMPLE\x00";
        b[30_000..30_000 + secret.len()].copy_from_slice(secret);
        let text = printable_runs(&b);
        assert!(text.contains("AKIAIOSFODNN7EXAMPLE"));
        // Random bytes leave little text.
        assert!(text.len() < b.len() / 16, "{}", text.len());
    }

    #[test]
    fn chunked_runs_equal_whole_runs() {
        let mut b = random(20_000, 11);
        let t = "xx 4111 1111 1111 1111 Köln yy".as_bytes();
        b[5_000..5_000 + t.len()].copy_from_slice(t);
        let whole = printable_runs(&b);
        for size in [1, 2, 3, 5, 7, 64, 4999, 5010, 5027] {
            let mut runs = Runs::default();
            let mut out = Vec::new();
            for chunk in b.chunks(size) {
                runs.push(chunk, &mut out);
            }
            runs.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), whole, "chunks of {size}");
        }
    }
}
