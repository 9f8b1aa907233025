//! Finding the few interesting bytes (digits, `@`, leet symbols) in text
//! that is mostly letters, fast: most chat has none, and then this pass is
//! all the regex work a message costs.

use super::pattern::ByteSet;

/// A byte set, with a vectorisable fast path for "digits plus up to four
/// other bytes" (the shape every shipped trigger set has).
#[derive(Debug, Clone)]
pub(crate) enum ByteFinder {
    /// Digits (optionally) and a few other bytes.
    Fast { digits: bool, extra: [u8; 4] },
    /// Any set, by table.
    Table(Box<[bool; 256]>),
}

impl ByteFinder {
    pub(crate) fn new(set: &ByteSet) -> Self {
        let digits = (b'0'..=b'9').all(|b| set.contains(b));
        let others: Vec<u8> = (0..=255u8)
            .filter(|&b| set.contains(b) && !(digits && b.is_ascii_digit()))
            .collect();
        if others.len() <= 4 && (digits || !others.is_empty()) {
            // Pad with a repeat of a member, so padding never adds a byte.
            let fill = others.first().copied().unwrap_or(b'0');
            let mut extra = [fill; 4];
            extra[..others.len()].copy_from_slice(&others);
            ByteFinder::Fast { digits, extra }
        } else {
            ByteFinder::Table(Box::new(set.to_table()))
        }
    }

    /// Push the offset of every byte of the set in `hay` to `out`.
    pub(crate) fn positions(&self, hay: &[u8], out: &mut Vec<usize>) {
        match self {
            ByteFinder::Fast { digits, extra } => {
                let [a, b, c, d] = *extra;
                let digits = *digits;
                let hit = |x: u8| {
                    (digits & (x.wrapping_sub(b'0') < 10))
                        | (x == a)
                        | (x == b)
                        | (x == c)
                        | (x == d)
                };
                // A fixed-size OR-reduction vectorises, and most chunks of
                // chat stop there; 32 bytes keeps the byte-by-byte pass of a
                // chunk with a hit short.
                let mut chunks = hay.chunks_exact(32);
                let mut base = 0;
                for chunk in &mut chunks {
                    let any = chunk.iter().fold(0u8, |acc, &x| acc | u8::from(hit(x)));
                    if any != 0 {
                        for (j, &x) in chunk.iter().enumerate() {
                            if hit(x) {
                                out.push(base + j);
                            }
                        }
                    }
                    base += 32;
                }
                for (j, &x) in chunks.remainder().iter().enumerate() {
                    if hit(x) {
                        out.push(base + j);
                    }
                }
            }
            ByteFinder::Table(t) => {
                out.extend(
                    hay.iter()
                        .enumerate()
                        .filter(|&(_, &x)| t[usize::from(x)])
                        .map(|(i, _)| i),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(bytes: &[u8]) -> ByteSet {
        let mut s = ByteSet::default();
        for &b in bytes {
            s.insert(b);
        }
        s
    }

    #[test]
    fn fast_and_table_agree() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 256) as u8).collect();
        for bytes in [
            &b"0123456789@"[..],
            b"@",
            b"0123456789@$!|",
            b"abcdefgh",
            b"09",
        ] {
            let s = set(bytes);
            let f = ByteFinder::new(&s);
            let mut a = Vec::new();
            f.positions(&hay, &mut a);
            let mut b = Vec::new();
            ByteFinder::Table(Box::new(s.to_table())).positions(&hay, &mut b);
            assert_eq!(a, b, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert!(matches!(
            ByteFinder::new(&set(b"0123456789@$!|")),
            ByteFinder::Fast { .. }
        ));
    }
}
