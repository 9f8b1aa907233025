//! The answer every first-bytes detector gives.

/// What a detector makes of the bytes seen so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Sniff<T> {
    /// Could still be this protocol: peek more bytes.
    NeedMore,
    /// Not this protocol.
    No,
    /// This protocol, with what the first message says.
    Yes(T),
}

impl<T> Sniff<T> {
    /// Applies `f` to a positive answer.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Sniff<U> {
        match self {
            Self::NeedMore => Sniff::NeedMore,
            Self::No => Sniff::No,
            Self::Yes(t) => Sniff::Yes(f(t)),
        }
    }
}

/// Compares `buf` with the start of `pattern` on their common length:
/// `Some(true)` when `buf` holds all of `pattern`, `None` when it is a
/// prefix of it, `Some(false)` on a mismatch.
pub(crate) fn starts_with(buf: &[u8], pattern: &[u8]) -> Option<bool> {
    let n = buf.len().min(pattern.len());
    if buf[..n] != pattern[..n] {
        Some(false)
    } else if n == pattern.len() {
        Some(true)
    } else {
        None
    }
}
