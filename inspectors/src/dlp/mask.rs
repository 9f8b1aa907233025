//! Masked evidence and redaction: the raw match never leaves the engine
//! unless a caller asks for the original text itself.

/// Replace letters and digits of `s` with `*`, keeping the last `keep_last`
/// of them (e.g. the last 4 digits of a card) and all separators.
pub fn mask(s: &str, keep_last: usize) -> String {
    let total = s.chars().filter(|c| c.is_alphanumeric()).count();
    // Never reveal most of a short match: keep at most a third of it.
    let keep = keep_last.min(total / 3);
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                seen += 1;
                if seen > total - keep {
                    c
                } else {
                    '*'
                }
            } else if c.is_whitespace() {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// As [`mask`], keeping the byte length: each masked character becomes as
/// many `*` as it had UTF-8 bytes, whitespace and separators stay as they
/// are. For rewriting bytes in place (a streamed body keeps its length).
pub fn mask_same_len(s: &str, keep_last: usize) -> String {
    let total = s.chars().filter(|c| c.is_alphanumeric()).count();
    let keep = keep_last.min(total / 3);
    let mut seen = 0;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            if seen > total - keep {
                out.push(c);
            } else {
                (0..c.len_utf8()).for_each(|_| out.push('*'));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn floor_char(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A one-line excerpt: up to `context` characters either side of the match,
/// the match itself masked.
pub fn excerpt(text: &str, start: usize, end: usize, context: usize, keep_last: usize) -> String {
    let start = floor_char(text, start);
    let end = floor_char(text, end.max(start));
    let before: String = {
        let mut v: Vec<char> = text[..start].chars().rev().take(context).collect();
        v.reverse();
        v.into_iter().collect()
    };
    let after: String = text[end..].chars().take(context).collect();
    let mut out = String::new();
    if before.len() < start {
        out.push('…');
    }
    out.push_str(&before);
    out.push_str(&mask(&text[start..end], keep_last));
    out.push_str(&after);
    if end + after.len() < text.len() {
        out.push('…');
    }
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Rewrite `text`, replacing each span (byte offsets, any order, may
/// overlap) with its masked form.
pub fn redact(text: &str, spans: &[(usize, usize)], keep_last: usize) -> String {
    let mut spans: Vec<(usize, usize)> = spans
        .iter()
        .map(|&(s, e)| (floor_char(text, s), floor_char(text, e)))
        .filter(|(s, e)| s < e)
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in merged {
        out.push_str(&text[at..s]);
        out.push_str(&mask(&text[s..e], keep_last));
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_last_digits_and_separators() {
        assert_eq!(mask("4111 1111 1111 1234", 4), "**** **** **** 1234");
        assert_eq!(mask("secret", 4), "****et");
        assert_eq!(mask("abc", 0), "***");
    }

    #[test]
    fn mask_same_len_keeps_bytes() {
        for s in ["4111 1111 1111 1234", "clé secrète", "日本語の秘密", "a\tb"] {
            let m = mask_same_len(s, 4);
            assert_eq!(m.len(), s.len(), "{s:?} -> {m:?}");
        }
        assert_eq!(mask_same_len("é-1", 0), "**-*");
        assert_eq!(mask_same_len("a\tb", 0), "*\t*");
    }

    #[test]
    fn excerpt_shows_context_and_masks_match() {
        let t = "my card is 4111111111111234 ok thanks";
        let s = t.find("4111").unwrap();
        let e = excerpt(t, s, s + 16, 5, 4);
        assert_eq!(e, "…d is ************1234 ok t…");
    }

    #[test]
    fn redact_merges_overlaps_and_keeps_rest() {
        let t = "a 123456 b 987654 c";
        assert_eq!(
            redact(t, &[(2, 8), (4, 6), (11, 17)], 0),
            "a ****** b ****** c"
        );
    }
}
