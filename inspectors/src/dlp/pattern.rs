//! Regex analysis: how a rule's pattern can be found without scanning every
//! byte with a regex engine.
//!
//! Three modes, cheapest first:
//! - `Prefix`: every match starts with one of a few literals. The literals
//!   join the shared Aho-Corasick automaton; the regex runs anchored at hits.
//! - `Window`: every match contains a byte from a small set (digits, `@`)
//!   and has a bounded length. The regex runs only in windows around those
//!   bytes.
//! - `Full`: neither; the regex scans the whole text. `lint` warns.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Class, Hir, HirKind};

/// A 256-bit byte set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    pub(crate) fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }
    pub(crate) fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
    /// How many ASCII bytes are in the set: non-ASCII lead bytes (from
    /// Unicode classes such as `\d`) are rare in chat and not counted.
    pub(crate) fn ascii_len(&self) -> usize {
        self.0[..2].iter().map(|w| w.count_ones() as usize).sum()
    }
    /// How often the set's bytes occur in ordinary text, roughly: letters
    /// and spaces are everywhere, digits and punctuation are not.
    pub(crate) fn cost(&self) -> usize {
        (0..=255u8)
            .filter(|&b| self.contains(b))
            .map(|b| {
                if b.is_ascii_alphabetic() || b.is_ascii_whitespace() {
                    50
                } else {
                    1
                }
            })
            .sum()
    }
    pub(crate) fn union(&mut self, o: &ByteSet) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
    }
    pub(crate) fn to_table(self) -> [bool; 256] {
        let mut t = [false; 256];
        for (b, slot) in t.iter_mut().enumerate() {
            *slot = self.contains(b as u8);
        }
        t
    }
    /// A readable description for lint messages.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        for b in 0..=255u8 {
            if self.contains(b) {
                if b.is_ascii_graphic() {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
        out
    }
}

/// How a pattern is searched for.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Lowercased literal prefixes, fed to Aho-Corasick.
    Prefix(Vec<String>),
    /// Bytes one of which every match contains.
    Window(ByteSet),
    /// Whole-text scan.
    Full,
}

/// A compiled pattern and what we know about it.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub re: Regex,
    /// Capture group whose span is the finding (`(?P<value>…)`), if any.
    pub value_group: Option<usize>,
    /// The finding's group in another alternative of the pattern
    /// (`(?P<value2>…)`: one name per group), used when `value` took no part.
    pub value_alt: Option<usize>,
    pub mode: Mode,
    /// Longest possible match in bytes, if bounded.
    pub max_len: Option<usize>,
    /// In window mode: how many trigger bytes every match has at least
    /// (a card number has 13 digits; "3pm" does not start a search).
    pub min_triggers: usize,
    /// In window mode: when every match has its first trigger byte at the
    /// same offset from its start (an IBAN's check digits follow two
    /// letters), candidates are tried anchored there instead of searched.
    pub trigger_offset: Option<usize>,
}

/// The longest literal set we hand to Aho-Corasick for one pattern.
const MAX_PREFIXES: usize = 64;
/// Shortest prefix literal worth anchoring on (shorter ones hit too often).
const MIN_PREFIX_LEN: usize = 3;
/// Window mode only pays off for small trigger sets.
const MAX_WINDOW_BYTES: usize = 24;

fn syntax_config() -> syntax::Config {
    syntax::Config::new().case_insensitive(true)
}

/// Compile a user regex the way every rule regex is compiled: case-insensitive
/// (text is case-folded before matching), with size limits.
pub(crate) fn compile_regex(src: &str) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax_config())
        .configure(
            Regex::config()
                .nfa_size_limit(Some(4 << 20))
                .hybrid_cache_capacity(2 << 20),
        )
        .build(src)
        .map_err(|e| match e.syntax_error() {
            // The syntax error says where in the pattern and what.
            Some(se) => se.to_string().replace('\n', " "),
            None => e.to_string(),
        })
}

/// Compile and analyse a rule pattern.
pub(crate) fn analyse(src: &str) -> Result<Pattern, String> {
    let re = compile_regex(src)?;
    let value_group = re
        .group_info()
        .to_index(regex_automata::PatternID::ZERO, "value");
    let value_alt = re
        .group_info()
        .to_index(regex_automata::PatternID::ZERO, "value2");
    let folded_hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(true)
        .build()
        .parse(src)
        .map_err(|e| e.to_string())?;
    let max_len = view_max_len(&folded_hir);
    // Literal prefixes from the case-sensitive reading: case variants would
    // blow the literal budget, and Aho-Corasick matches ASCII case-insensitively.
    let exact_hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(src)
        .map_err(|e| e.to_string())?;
    let mode = if let Some(p) = prefixes(&exact_hir) {
        Mode::Prefix(p)
    } else {
        match required_bytes(&folded_hir) {
            Some(set) if set.ascii_len() <= MAX_WINDOW_BYTES && max_len.is_some() => {
                Mode::Window(set)
            }
            _ => Mode::Full,
        }
    };
    let (min_triggers, trigger_offset) = match &mode {
        Mode::Window(set) => (
            min_count(&folded_hir, set).max(1),
            match lead(&folded_hir, set) {
                Lead::TriggerAt(k) => Some(k),
                _ => None,
            },
        ),
        _ => (0, None),
    };
    Ok(Pattern {
        re,
        value_group,
        value_alt,
        mode,
        max_len,
        min_triggers,
        trigger_offset,
    })
}

fn prefixes(hir: &Hir) -> Option<Vec<String>> {
    let mut ex = Extractor::new();
    ex.kind(ExtractKind::Prefix)
        .limit_class(4)
        .limit_literal_len(24)
        .limit_total(MAX_PREFIXES * 4);
    let seq = ex.extract(hir);
    let lits = seq.literals()?;
    if lits.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(lits.len());
    for lit in lits {
        let s = std::str::from_utf8(lit.as_bytes()).ok()?;
        if s.chars().count() < MIN_PREFIX_LEN {
            return None;
        }
        out.push(super::normalize::normalize_str(s));
    }
    out.sort();
    out.dedup();
    // Many key names times optional quotes and separators multiply into
    // more literals than the budget; their shorter prefixes are still
    // prefixes of every match, and far fewer.
    let mut keep = out.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    while out.len() > MAX_PREFIXES && keep > MIN_PREFIX_LEN {
        keep -= 1;
        for l in &mut out {
            if let Some((i, _)) = l.char_indices().nth(keep) {
                l.truncate(i);
            }
        }
        out.sort();
        out.dedup();
    }
    (out.len() <= MAX_PREFIXES).then_some(out)
}

/// Characters that case-insensitive ASCII letters also match but that a
/// normalised view never holds (NFKC makes them `s` and `k`).
const NEVER_IN_VIEW: [char; 2] = ['\u{17F}', '\u{212A}'];

/// Longest match in bytes on a normalised view, if bounded. Case-insensitive
/// ASCII letters also match the Kelvin sign and the long s (3 and 2 bytes),
/// which would inflate every window; NFKC turns both into ASCII letters
/// before matching, so they never occur in a view and are not counted.
fn view_max_len(hir: &Hir) -> Option<usize> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(0),
        HirKind::Literal(lit) => Some(lit.0.len()),
        HirKind::Class(Class::Bytes(_)) => Some(1),
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .filter_map(|r| {
                let mut end = r.end();
                while NEVER_IN_VIEW.contains(&end) && end > r.start() {
                    end = char::from_u32(end as u32 - 1)?;
                }
                (!NEVER_IN_VIEW.contains(&end)).then(|| end.len_utf8())
            })
            .max(),
        HirKind::Repetition(rep) => {
            let sub = view_max_len(&rep.sub)?;
            let max = rep.max?;
            sub.checked_mul(max as usize)
        }
        HirKind::Capture(cap) => view_max_len(&cap.sub),
        HirKind::Concat(subs) => subs
            .iter()
            .try_fold(0usize, |acc, h| acc.checked_add(view_max_len(h)?)),
        HirKind::Alternation(subs) => subs
            .iter()
            .map(view_max_len)
            .try_fold(0usize, |acc, l| Some(acc.max(l?))),
    }
}

/// What the start of a match looks like relative to trigger bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// Always this many bytes, none of them a trigger.
    NoTrigger(usize),
    /// The first trigger byte is always at this offset.
    TriggerAt(usize),
    Unknown,
}

/// Where the first trigger byte of every match is, if fixed. Widths are
/// those of a normalised view (see [`view_max_len`]).
fn lead(hir: &Hir, set: &ByteSet) -> Lead {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Lead::NoTrigger(0),
        HirKind::Literal(lit) => match lit.0.iter().position(|&b| set.contains(b)) {
            Some(k) => Lead::TriggerAt(k),
            None => Lead::NoTrigger(lit.0.len()),
        },
        HirKind::Class(class) => {
            if class_within(class, set) {
                return Lead::TriggerAt(0);
            }
            // Single-byte characters none of which is a trigger.
            let ascii_outside = match class {
                Class::Bytes(c) => c
                    .ranges()
                    .iter()
                    .all(|r| r.end() < 0x80 && (r.start()..=r.end()).all(|b| !set.contains(b))),
                Class::Unicode(c) => c.ranges().iter().all(|r| {
                    (r.start()..=r.end()).all(|c| {
                        if c.is_ascii() {
                            !set.contains(c as u8)
                        } else {
                            NEVER_IN_VIEW.contains(&c)
                        }
                    })
                }),
            };
            if ascii_outside {
                Lead::NoTrigger(1)
            } else {
                Lead::Unknown
            }
        }
        HirKind::Repetition(rep) => match lead(&rep.sub, set) {
            Lead::TriggerAt(k) if rep.min >= 1 => Lead::TriggerAt(k),
            Lead::NoTrigger(0) => Lead::NoTrigger(0),
            Lead::NoTrigger(w) if Some(rep.min) == rep.max => Lead::NoTrigger(w * rep.min as usize),
            _ => Lead::Unknown,
        },
        HirKind::Capture(cap) => lead(&cap.sub, set),
        HirKind::Concat(subs) => {
            let mut off = 0;
            for sub in subs {
                match lead(sub, set) {
                    Lead::NoTrigger(w) => off += w,
                    Lead::TriggerAt(k) => return Lead::TriggerAt(off + k),
                    Lead::Unknown => return Lead::Unknown,
                }
            }
            Lead::NoTrigger(off)
        }
        HirKind::Alternation(subs) => {
            let mut leads = subs.iter().map(|s| lead(s, set));
            let first = leads.next().unwrap_or(Lead::Unknown);
            if leads.all(|l| l == first) {
                first
            } else {
                Lead::Unknown
            }
        }
    }
}

/// A set of bytes at least one of which occurs in every match, if we can
/// tell. Picks the smallest such set along concatenations.
fn required_bytes(hir: &Hir) -> Option<ByteSet> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(lit) => lit.0.first().map(|&b| {
            let mut s = ByteSet::default();
            s.insert(b);
            s
        }),
        HirKind::Class(class) => Some(class_first_bytes(class)),
        HirKind::Repetition(rep) if rep.min >= 1 => required_bytes(&rep.sub),
        HirKind::Repetition(_) => None,
        HirKind::Capture(cap) => required_bytes(&cap.sub),
        HirKind::Concat(subs) => subs
            .iter()
            .filter_map(required_bytes)
            .min_by_key(ByteSet::cost),
        HirKind::Alternation(subs) => {
            let mut acc = ByteSet::default();
            for s in subs {
                acc.union(&required_bytes(s)?);
            }
            Some(acc)
        }
    }
}

/// The fewest bytes from `set` any match of `hir` contains.
fn min_count(hir: &Hir, set: &ByteSet) -> usize {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 0,
        HirKind::Literal(lit) => lit.0.iter().filter(|&&b| set.contains(b)).count(),
        HirKind::Class(class) => usize::from(class_within(class, set)),
        HirKind::Repetition(rep) => (rep.min as usize).saturating_mul(min_count(&rep.sub, set)),
        HirKind::Capture(cap) => min_count(&cap.sub, set),
        HirKind::Concat(subs) => subs.iter().map(|h| min_count(h, set)).sum(),
        HirKind::Alternation(subs) => subs.iter().map(|h| min_count(h, set)).min().unwrap_or(0),
    }
}

/// Whether every character of `class` is a single byte in `set`.
fn class_within(class: &Class, set: &ByteSet) -> bool {
    match class {
        Class::Bytes(c) => c
            .ranges()
            .iter()
            .all(|r| (r.start()..=r.end()).all(|b| set.contains(b))),
        Class::Unicode(c) => c.ranges().iter().all(|r| {
            (r.end() as u32) < 0x80 && (r.start() as u8..=r.end() as u8).all(|b| set.contains(b))
        }),
    }
}

fn class_first_bytes(class: &Class) -> ByteSet {
    let mut set = ByteSet::default();
    match class {
        Class::Bytes(c) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set.insert(b);
                }
            }
        }
        Class::Unicode(c) => {
            for r in c.ranges() {
                let (lo, hi) = (r.start() as u32, r.end() as u32);
                for b in lo.min(0x80)..hi.saturating_add(1).min(0x80) {
                    set.insert(b as u8);
                }
                if hi >= 0x80 {
                    let mut buf = [0u8; 4];
                    let first = char::from_u32(lo.max(0x80)).map_or(0xC2, |c| {
                        c.encode_utf8(&mut buf);
                        buf[0]
                    });
                    let last = r.end().encode_utf8(&mut buf).as_bytes()[0];
                    for b in first..=last {
                        set.insert(b);
                    }
                }
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_patterns_anchor_on_lowercased_prefixes() {
        let p = analyse(r"AKIA[0-9A-Z]{16}").unwrap();
        match p.mode {
            Mode::Prefix(l) => assert_eq!(l, vec!["akia".to_string()]),
            other => panic!("{other:?}"),
        }
        let p = analyse(r"(?:ghp|gho)_[A-Za-z0-9]{36}").unwrap();
        assert!(matches!(p.mode, Mode::Prefix(ref l) if l.len() == 2));
    }

    #[test]
    fn digit_patterns_use_windows() {
        let p = analyse(r"\b\d{3}[- ]?\d{2}[- ]?\d{4}\b").unwrap();
        match p.mode {
            Mode::Window(set) => {
                assert!(set.contains(b'0') && set.contains(b'9') && set.ascii_len() == 10);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.max_len, Some(38), "Unicode digits are up to 4 bytes");
        assert_eq!(p.min_triggers, 1, "Unicode \\d is not within ASCII digits");
        // Letters are ASCII in a view: the Kelvin sign and long s that
        // case-insensitive `k` and `s` also match never occur there.
        let p = analyse(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}\b").unwrap();
        assert_eq!(p.max_len, Some(2 + 2 + 7 * 5));
        assert_eq!(analyse("(?:ſ|é)").unwrap().max_len, Some(2));
    }

    #[test]
    fn fixed_first_trigger_offsets_are_found() {
        let off = |re: &str| analyse(re).unwrap().trigger_offset;
        // An IBAN's check digits follow exactly two letters.
        assert_eq!(off(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}\b"), Some(2));
        // The trigger here is the dash (rarer than digits), after 3 digits.
        assert_eq!(off(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"), Some(3));
        assert_eq!(off(r"\b[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}\b"), Some(0));
        // An optional prefix or a variable run of letters: no fixed offset.
        assert_eq!(off(r"(?:\+[0-9]{1,3} )?[0-9]{3}-[0-9]{4}"), None);
        assert_eq!(off(r"[a-z]{1,3}[0-9]{2}"), None);
        assert_eq!(
            off(r"[a-z0-9._%+-]{1,64}@[a-z0-9-]{1,63}\.[a-z]{2,24}"),
            None
        );
        // Any character could be multi-byte or a trigger.
        assert_eq!(off(r"\w{2}[0-9]{4}"), None);
        let p = analyse(r"\b[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}\b").unwrap();
        assert_eq!((p.max_len, p.min_triggers), (Some(11), 9));
        // A required literal byte is the smallest trigger.
        let p = analyse(r"\b\d{3}-\d{2}-\d{4}\b").unwrap();
        assert!(matches!(p.mode, Mode::Window(set) if set.describe() == "-"));
        // Spaces are everywhere: digits are the better trigger.
        let p = analyse(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b").unwrap();
        assert!(matches!(p.mode, Mode::Window(set) if set.contains(b'7') && !set.contains(b' ')));
    }

    #[test]
    fn many_key_names_still_anchor_on_their_prefixes() {
        // Every name times optional quotes and separators is past the
        // literal budget; the names themselves are not.
        let names: Vec<String> = (0..40).map(|i| format!("key{i:02}name")).collect();
        let re = format!(r#"(?:{})["']?[ :=]{{1,3}}[a-z0-9]{{12}}"#, names.join("|"));
        match analyse(&re).unwrap().mode {
            Mode::Prefix(l) => {
                assert!(l.len() <= MAX_PREFIXES && l.iter().all(|x| x.starts_with("key")))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn email_needs_only_the_at_sign() {
        let p = analyse(r"[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,253}\.[a-z]{2,24}").unwrap();
        match p.mode {
            Mode::Window(set) => assert_eq!(set.describe(), "@"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unanchored_unbounded_patterns_are_full_scans() {
        assert!(matches!(analyse(r"\w+ing").unwrap().mode, Mode::Full));
    }

    #[test]
    fn value_group_is_found() {
        let p = analyse(r"secret=(?P<value>\w+)").unwrap();
        assert_eq!(p.value_group, Some(1));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(analyse(r"(unclosed").is_err());
    }
}
