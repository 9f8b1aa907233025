//! Text normalisation before matching, with a map back to the original.
//!
//! Matching runs on a canonical view: Unicode NFKC, lowercase, invisible
//! characters removed, whitespace runs collapsed to one space. Findings must
//! point at the original bytes (for excerpts and redaction), so the view
//! carries an offset map. Plain ASCII without odd whitespace — most chat —
//! is used as is: no copy, no map (matchers are ASCII case-insensitive, so
//! skipping the lowercase step there changes nothing).

use std::borrow::Cow;
use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::UnicodeNormalization;

/// A linear or atomic piece of the offset map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    norm: usize,
    orig: usize,
    norm_len: usize,
    orig_len: usize,
    /// Same bytes on both sides: offsets inside map one to one. Otherwise
    /// the piece maps as a whole (even if the lengths happen to agree).
    linear: bool,
}

impl Seg {
    fn linear(&self) -> bool {
        self.linear
    }
}

/// Maps byte offsets of the normalised view back to the original text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetMap {
    /// Empty means identity.
    segs: Vec<Seg>,
    orig_len: usize,
    identity: bool,
}

impl OffsetMap {
    fn identity(len: usize) -> Self {
        OffsetMap {
            segs: Vec::new(),
            orig_len: len,
            identity: true,
        }
    }

    /// Whether the view is the original text itself.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    fn push(&mut self, norm: usize, orig: usize, norm_len: usize, orig_len: usize, linear: bool) {
        let seg = Seg {
            norm,
            orig,
            norm_len,
            orig_len,
            linear,
        };
        if let Some(last) = self.segs.last_mut() {
            if last.linear()
                && seg.linear()
                && last.norm + last.norm_len == norm
                && last.orig + last.orig_len == orig
            {
                last.norm_len += norm_len;
                last.orig_len += orig_len;
                return;
            }
        }
        self.segs.push(seg);
    }

    fn seg_containing(&self, n: usize) -> Option<&Seg> {
        let i = self.segs.partition_point(|s| s.norm + s.norm_len <= n);
        self.segs.get(i).filter(|s| s.norm <= n)
    }

    /// Original offset where a span starting at view offset `n` starts.
    pub fn start(&self, n: usize) -> usize {
        if self.identity {
            return n.min(self.orig_len);
        }
        match self.seg_containing(n) {
            Some(s) if s.linear() => s.orig + (n - s.norm),
            Some(s) => s.orig,
            None => self.orig_len,
        }
    }

    /// Original offset where a span ending (exclusive) at view offset `n` ends.
    pub fn end(&self, n: usize) -> usize {
        if self.identity {
            return n.min(self.orig_len);
        }
        if n == 0 {
            return self.segs.first().map_or(0, |s| s.orig);
        }
        match self.seg_containing(n - 1) {
            Some(s) if s.linear() => s.orig + (n - s.norm),
            Some(s) => s.orig + s.orig_len,
            None => self.orig_len,
        }
    }
}

/// The normalised view of a text.
#[derive(Debug, Clone)]
pub struct Normalized<'a> {
    /// The view matchers run on.
    pub text: Cow<'a, str>,
    /// Back to the original.
    pub map: OffsetMap,
}

/// Characters that render as nothing and are used to split words past filters.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// One vectorisable pass: (all ASCII, no whitespace needing a rewrite).
fn scan_ascii(b: &[u8]) -> (bool, bool) {
    let odd = |x: u8, y: u8| {
        (x == b'\n')
            | (x == b'\r')
            | (x == b'\t')
            | (x == 0x0b)
            | (x == 0x0c)
            | ((x == b' ') & (y == b' '))
    };
    let mut non_ascii = 0u8;
    let mut needs = false;
    for chunk in b.chunks(4096) {
        let n = chunk.len();
        let (a, c) = chunk[..n - 1]
            .iter()
            .zip(&chunk[1..])
            .fold((0u8, false), |(a, c), (&x, &y)| (a | x, c | odd(x, y)));
        let last = chunk[n - 1];
        non_ascii |= a | last;
        needs |= c | odd(last, b' ') & (last != b' ');
    }
    // Pairs across chunk borders.
    for i in (4096..b.len()).step_by(4096) {
        needs |= (b[i - 1] == b' ') & (b[i] == b' ');
    }
    (non_ascii < 0x80, !needs)
}

/// Normalise `text` for matching.
pub fn normalize(text: &str) -> Normalized<'_> {
    let bytes = text.as_bytes();
    let (ascii, plain) = scan_ascii(bytes);
    if ascii {
        if plain {
            return Normalized {
                text: Cow::Borrowed(text),
                map: OffsetMap::identity(text.len()),
            };
        }
        if !has_whitespace_run(bytes) {
            // Lone line breaks and tabs: each becomes a space in place, so
            // the view keeps every offset.
            let is_ws = |c: u8| c.is_ascii_whitespace() || c == 0x0b;
            let spaced: Vec<u8> = bytes
                .iter()
                .map(|&c| if is_ws(c) { b' ' } else { c })
                .collect();
            if let Ok(view) = String::from_utf8(spaced) {
                return Normalized {
                    text: Cow::Owned(view),
                    map: OffsetMap::identity(text.len()),
                };
            }
        }
        return normalize_ascii(text);
    }
    normalize_unicode(text)
}

/// Whether two ASCII whitespace bytes follow each other anywhere.
fn has_whitespace_run(b: &[u8]) -> bool {
    let ws = |c: u8| (c == b' ') | (c.wrapping_sub(9) < 5);
    // Chunks overlap by a byte, so pairs across their borders are seen.
    let mut start = 0;
    while start + 1 < b.len() {
        let end = (start + 4097).min(b.len());
        let c = &b[start..end];
        if c[..c.len() - 1]
            .iter()
            .zip(&c[1..])
            .fold(false, |acc, (&x, &y)| acc | (ws(x) & ws(y)))
        {
            return true;
        }
        start = end - 1;
    }
    false
}

fn normalize_ascii(text: &str) -> Normalized<'_> {
    // Case is left alone: matchers are ASCII case-insensitive.
    let mut out = String::with_capacity(text.len());
    let mut map = OffsetMap {
        orig_len: text.len(),
        ..OffsetMap::default()
    };
    push_ascii(text, 0..text.len(), false, &mut false, &mut out, &mut map);
    Normalized {
        text: Cow::Owned(out),
        map,
    }
}

/// Append the ASCII `range` of `text` to the view: whitespace runs become
/// one space (none right after whitespace, per `prev_ws`), the text between
/// them is copied whole, lowercased if `lower`.
fn push_ascii(
    text: &str,
    range: std::ops::Range<usize>,
    lower: bool,
    prev_ws: &mut bool,
    out: &mut String,
    map: &mut OffsetMap,
) {
    let is_ws = |c: u8| c.is_ascii_whitespace() || c == 0x0b;
    let hi = range.end;
    let b = &text.as_bytes()[..hi];
    let mut i = range.start;
    while i < hi {
        if *prev_ws {
            while i < hi && is_ws(b[i]) {
                i += 1;
            }
            if i == hi {
                return;
            }
        }
        let odd = next_odd_space(b, i);
        // The run holding the odd byte may start with spaces before it; with
        // no odd byte, a last single space is copied like any other.
        let mut j = odd;
        while odd < hi && j > i && b[j - 1] == b' ' {
            j -= 1;
        }
        if j > i {
            map.push(out.len(), i, j - i, j - i, true);
            let at = out.len();
            out.push_str(&text[i..j]);
            if lower {
                out[at..].make_ascii_lowercase();
            }
            *prev_ws = b[j - 1] == b' ';
        }
        if j == hi {
            return;
        }
        let k = b[j..].iter().position(|&c| !is_ws(c)).map_or(hi, |k| j + k);
        map.push(out.len(), j, 1, 1, true);
        out.push(' ');
        *prev_ws = true;
        i = k;
    }
}

/// The first non-ASCII byte from `from`, or `b.len()`.
fn next_non_ascii(b: &[u8], from: usize) -> usize {
    let mut k = from;
    while k + 32 <= b.len() && b[k..k + 32].iter().fold(0u8, |acc, &x| acc | x) < 0x80 {
        k += 32;
    }
    b[k..]
        .iter()
        .position(|&x| x >= 0x80)
        .map_or(b.len(), |p| k + p)
}

/// The first offset from `from` holding whitespace that is not a single
/// space (a tab, a line break, or a second space), or `b.len()`.
fn next_odd_space(b: &[u8], from: usize) -> usize {
    let odd = |x: u8, y: u8| (x.wrapping_sub(9) < 5) | ((x == b' ') & (y == b' '));
    let mut k = from;
    // Whole chunks first: the OR-reduction over a fixed-size array
    // vectorises; small chunks keep the byte loop after a hit short.
    while k + 17 <= b.len() {
        let c: &[u8; 17] = b[k..k + 17].try_into().unwrap_or(&[0; 17]);
        let mut any = 0u8;
        for j in 0..16 {
            any |= u8::from(odd(c[j], c[j + 1]));
        }
        if any != 0 {
            break;
        }
        k += 16;
    }
    while k < b.len() {
        if odd(b[k], b.get(k + 1).copied().unwrap_or(0)) {
            return k;
        }
        k += 1;
    }
    b.len()
}

fn normalize_unicode(text: &str) -> Normalized<'_> {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut map = OffsetMap {
        orig_len: text.len(),
        ..OffsetMap::default()
    };
    let mut prev_ws = false;
    let mut scratch = String::new();
    let b = text.as_bytes();
    let combines = |at: usize| {
        text[at..]
            .chars()
            .next()
            .is_some_and(|n| !n.is_ascii() && canonical_combining_class(n) != 0)
    };
    let mut start = 0;
    while start < b.len() {
        if b[start] < 0x80 {
            // ASCII runs are copied whole, but the last character before a
            // combining mark composes with it, as a cluster.
            let mut end = next_non_ascii(b, start);
            if end < b.len() && combines(end) {
                end -= 1;
            }
            if end > start {
                push_ascii(text, start..end, true, &mut prev_ws, &mut out, &mut map);
                start = end;
                continue;
            }
        }
        let Some(c) = text[start..].chars().next() else {
            break;
        };
        // A cluster: this character and the combining marks after it, so
        // that NFKC composition stays inside one atomic piece of the map.
        let mut end = start + c.len_utf8();
        while end < b.len() && combines(end) {
            end += text[end..].chars().next().map_or(1, char::len_utf8);
        }
        let cluster = &text[start..end];
        let at = start;
        start = end;
        scratch.clear();
        for n in cluster.nfkc() {
            if is_invisible(n) {
                continue;
            }
            if n.is_whitespace() {
                if !(prev_ws || scratch.ends_with(' ')) {
                    scratch.push(' ');
                }
                continue;
            }
            scratch.extend(n.to_lowercase());
        }
        if scratch.is_empty() {
            continue;
        }
        if prev_ws && scratch.starts_with(' ') {
            scratch.remove(0);
            if scratch.is_empty() {
                continue;
            }
        }
        prev_ws = scratch.ends_with(' ');
        if scratch == cluster {
            map.push(out.len(), at, cluster.len(), cluster.len(), true);
        } else {
            map.push(out.len(), at, scratch.len(), cluster.len(), false);
        }
        out.push_str(&scratch);
    }
    Normalized {
        text: Cow::Owned(out),
        map,
    }
}

/// Normalise a short string (keywords, examples) without keeping a map.
pub fn normalize_str(s: &str) -> String {
    // Non-ASCII text comes back lowercased; ASCII case is left to the
    // matchers, so fold it here.
    normalize(s).text.to_ascii_lowercase()
}

/// Fold common leetspeak substitutions to letters, byte for byte, so the
/// folded view keeps the offsets of the normalised one. Both the text and
/// the keywords of leet rules are folded, so ambiguous digits ("1" as i or
/// l) are resolved by folding those letters together too.
pub fn leet_fold(s: &str) -> String {
    let out: Vec<u8> = s.bytes().map(leet_byte).collect();
    // Only ASCII bytes were replaced by ASCII bytes.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One byte of [`leet_fold`].
pub(crate) fn leet_byte(b: u8) -> u8 {
    match b.to_ascii_lowercase() {
        b'0' => b'o',
        b'1' | b'!' | b'|' | b'l' => b'i',
        b'3' => b'e',
        b'4' | b'@' => b'a',
        b'5' | b'$' => b's',
        b'7' => b't',
        b'8' => b'b',
        b'9' => b'g',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back<'a>(orig: &'a str, n: &Normalized<'_>, s: usize, e: usize) -> &'a str {
        &orig[n.map.start(s)..n.map.end(e)]
    }

    #[test]
    fn plain_ascii_is_borrowed_and_identity() {
        let n = normalize("Hello World, card 4111");
        assert!(matches!(n.text, Cow::Borrowed(_)));
        assert!(n.map.is_identity());
    }

    #[test]
    fn whitespace_collapses_and_maps_back() {
        let orig = "Internal\n\t  Only please";
        let n = normalize(orig);
        assert_eq!(n.text, "Internal Only please");
        let s = n.text.find("Only").unwrap();
        assert_eq!(back(orig, &n, s, s + 4), "Only");
        assert_eq!(back(orig, &n, 0, 13), "Internal\n\t  Only");
    }

    #[test]
    fn zero_width_stripped_and_span_covers_original() {
        let orig = "con\u{200B}fid\u{200D}ential!";
        let n = normalize(orig);
        assert_eq!(n.text, "confidential!");
        assert_eq!(back(orig, &n, 0, 12), "con\u{200B}fid\u{200D}ential");
    }

    #[test]
    fn nfkc_and_case_fold_fullwidth_and_ligatures() {
        let orig = "ＣＯＮＦＩＤＥＮＴＩＡＬ ﬁle É";
        let n = normalize(orig);
        assert_eq!(n.text, "confidential file é");
        let s = n.text.find("file").unwrap();
        assert_eq!(back(orig, &n, s, s + 4), "ﬁle");
        assert_eq!(back(orig, &n, 0, 12), "ＣＯＮＦＩＤＥＮＴＩＡＬ");
    }

    #[test]
    fn combining_marks_compose_within_cluster() {
        let orig = "Cafe\u{0301} x";
        let n = normalize(orig);
        assert_eq!(n.text, "café x");
        assert_eq!(back(orig, &n, 0, "café".len()), "Cafe\u{0301}");
    }

    #[test]
    fn unicode_whitespace_collapses() {
        let orig = "a\u{00A0}\u{2003} b";
        let n = normalize(orig);
        assert_eq!(n.text, "a b");
        assert_eq!(back(orig, &n, 2, 3), "b");
    }

    #[test]
    fn ascii_scan_finds_odd_whitespace_anywhere() {
        assert_eq!(scan_ascii(b"a b c"), (true, true));
        assert_eq!(scan_ascii(b"a  b"), (true, false));
        assert_eq!(scan_ascii(b"a\nb"), (true, false));
        assert_eq!(scan_ascii(b"ab\t"), (true, false));
        assert!(!scan_ascii("é".as_bytes()).0);
        let mut long = vec![b'x'; 10_000];
        long[4095] = b' ';
        long[4096] = b' ';
        assert_eq!(scan_ascii(&long), (true, false), "pair across chunks");
        long[4096] = b'x';
        assert_eq!(scan_ascii(&long), (true, true));
    }

    #[test]
    fn leet_fold_keeps_length() {
        assert_eq!(leet_fold("c0nf1d3nt14l"), "confidentiai");
        assert_eq!(leet_fold("confidential"), "confidentiai");
        assert_eq!(leet_fold("p@$$").len(), 4);
    }

    proptest::proptest! {
        /// ASCII runs of whitespace become one space, everything else is
        /// kept, and every kept byte maps back to itself.
        #[test]
        fn ascii_whitespace_runs_collapse(text in "[a-c \t\r\n]{0,120}") {
            let n = normalize(&text);
            let mut want = String::new();
            for c in text.chars() {
                let ws = c.is_ascii_whitespace();
                if !(ws && want.ends_with(' ')) {
                    want.push(if ws { ' ' } else { c });
                }
            }
            proptest::prop_assert_eq!(&*n.text, want.as_str());
            for (v, c) in n.text.char_indices() {
                if c != ' ' {
                    let o = n.map.start(v);
                    proptest::prop_assert_eq!(&text[o..o + 1], &n.text[v..v + 1]);
                }
            }
        }
    }

    /// The character-by-character normaliser the run-copying one replaced.
    fn reference(text: &str) -> Normalized<'_> {
        let mut out = String::with_capacity(text.len() + text.len() / 8);
        let mut map = OffsetMap {
            orig_len: text.len(),
            ..OffsetMap::default()
        };
        let mut prev_ws = false;
        let mut scratch = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            let next_combines = chars
                .peek()
                .is_some_and(|&(_, n)| !n.is_ascii() && canonical_combining_class(n) != 0);
            if c.is_ascii() && !next_combines {
                let ws = c.is_ascii_whitespace() || c == '\u{0b}';
                if ws && prev_ws {
                    continue;
                }
                prev_ws = ws;
                map.push(out.len(), start, 1, 1, true);
                out.push(if ws { ' ' } else { c.to_ascii_lowercase() });
                continue;
            }
            // A cluster: this character and the combining marks after it, so
            // that NFKC composition stays inside one atomic piece of the map.
            let mut end = start + c.len_utf8();
            while let Some(&(i, m)) = chars.peek() {
                if canonical_combining_class(m) == 0 {
                    break;
                }
                end = i + m.len_utf8();
                chars.next();
            }
            let cluster = &text[start..end];
            scratch.clear();
            for n in cluster.nfkc() {
                if is_invisible(n) {
                    continue;
                }
                if n.is_whitespace() {
                    if !(prev_ws || scratch.ends_with(' ')) {
                        scratch.push(' ');
                    }
                    continue;
                }
                scratch.extend(n.to_lowercase());
            }
            if scratch.is_empty() {
                continue;
            }
            if prev_ws && scratch.starts_with(' ') {
                scratch.remove(0);
                if scratch.is_empty() {
                    continue;
                }
            }
            prev_ws = scratch.ends_with(' ');
            if scratch == cluster {
                map.push(out.len(), start, cluster.len(), cluster.len(), true);
            } else {
                map.push(out.len(), start, scratch.len(), cluster.len(), false);
            }
            out.push_str(&scratch);
        }
        Normalized {
            text: Cow::Owned(out),
            map,
        }
    }

    proptest::proptest! {
        /// Copying ASCII runs whole gives the same view and map as going
        /// character by character, around marks, wide letters and spaces.
        #[test]
        fn unicode_runs_match_char_by_char(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "a", "B", " ", "  ", "\n", "\t", "é", "e\u{301}", "\u{301}", "Ａ",
                    "\u{200B}", "\u{3000}", "ﬁ", "x1", "K", "ß",
                ]),
                0..30,
            )
        ) {
            let text: String = parts.concat();
            let n = normalize_unicode(&text);
            let r = reference(&text);
            proptest::prop_assert_eq!(&n.text, &r.text);
            for v in 0..=n.text.len() {
                proptest::prop_assert_eq!(n.map.start(v), r.map.start(v));
                proptest::prop_assert_eq!(n.map.end(v), r.map.end(v));
            }
        }
    }
}
