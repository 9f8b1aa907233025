//! The first pass over every byte: where can a literal be?
//!
//! Chat DLP literals are mostly English words and phrases ("confidential",
//! "do not share", "password"). One Teddy searcher over all of them slows
//! down on English text: its buckets fill with look-alike letter prefixes
//! and nearly every position needs a check (55 prefixes ran at 0.5–0.8 GB/s
//! on chat). So the literals are split in two tiers:
//!
//! - **short** literals (under [`LONG`] bytes; mostly vendor token prefixes
//!   such as `ghp_` or `eyj`) go to a slim Teddy searcher. Few and
//!   distinctive, it runs at over 10 GB/s;
//! - **long** literals are found by sampling: the 4-byte gram at every
//!   [`STRIDE`]-th position is looked up in a bit table of the first
//!   `STRIDE` grams of every long literal, so each occurrence is sampled at
//!   least once. A sample hit is confirmed against the literals' 8-byte
//!   grams before it counts.
//!
//! A literal that contains another literal is left out: the window around
//! the contained one covers it. Each candidate position becomes a window as
//! wide as the longest literal on each side, where the Aho-Corasick
//! automaton gives the exact matches. Grams compare with bit 0x20 set on
//! every byte, which folds ASCII case (and merges a few punctuation pairs:
//! only more candidates, never fewer).

use aho_corasick::packed;

/// Literals this long or longer are sampled; shorter ones go to Teddy.
pub(crate) const LONG: usize = 8;
/// Sampling step: a literal of `LONG` bytes holds `LONG - 3` grams.
const STRIDE: usize = LONG - 3;
/// Teddy takes up to 64 literals (slim up to 32).
const TEDDY_MAX: usize = 64;
/// Bit tables stay within L2 cache; past this, sampling is not worth it.
const MAX_TABLE_BITS: u32 = 21;
/// Past this occupancy (1/64) a table filters too little.
const MAX_TABLE_OVERSHOOT: u32 = 3;

#[derive(Debug, Clone)]
struct BitTable {
    words: Vec<u64>,
    shift: u32,
}

impl BitTable {
    /// A table sized for `n` keys at about 1/512 occupancy: small sets
    /// still fit in L1 cache, and a stray hit is rare.
    fn for_keys(n: usize) -> Option<Self> {
        let want = (n.max(1) * 512)
            .next_power_of_two()
            .trailing_zeros()
            .max(12);
        if want > MAX_TABLE_BITS + MAX_TABLE_OVERSHOOT {
            return None;
        }
        let bits = want.min(MAX_TABLE_BITS);
        Some(BitTable {
            words: vec![0; 1 << (bits - 6)],
            shift: 64 - bits,
        })
    }

    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn insert(&mut self, key: u64) {
        let k = self.slot(key);
        self.words[k >> 6] |= 1 << (k & 63);
    }

    fn contains(&self, key: u64) -> bool {
        let k = self.slot(key);
        self.words[k >> 6] >> (k & 63) & 1 != 0
    }
}

fn gram4(b: &[u8], at: usize) -> u64 {
    let w: [u8; 4] = b[at..at + 4].try_into().unwrap_or_default();
    u64::from(u32::from_le_bytes(w) | 0x2020_2020)
}

fn gram8(b: &[u8], at: usize) -> u64 {
    let w: [u8; 8] = b[at..at + 8].try_into().unwrap_or_default();
    u64::from_le_bytes(w) | 0x2020_2020_2020_2020
}

/// The two-tier literal prefilter.
#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    teddy: Option<packed::Searcher>,
    /// Grams at offsets `0..STRIDE` of every long literal.
    sample: Option<BitTable>,
    /// Every 8-byte gram of every long literal.
    confirm: Option<BitTable>,
    /// Widest literal: the radius of verification windows.
    radius: usize,
    /// Longest literal Teddy searches for.
    short_max: usize,
}

impl Prefilter {
    /// A prefilter for lowercase `literals`, or `None` when the set does not
    /// suit one (too many short literals, a huge dictionary, no SIMD): then
    /// the automaton runs over all text.
    pub(crate) fn new(literals: &[&str]) -> Option<Self> {
        let kept = minimal(literals);
        if kept.is_empty() {
            return None;
        }
        let radius = literals.iter().map(|l| l.len()).max().unwrap_or(0);
        let (short, long): (Vec<&str>, Vec<&str>) = kept.iter().partition(|l| l.len() < LONG);
        let short_max = short.iter().map(|l| l.len()).max().unwrap_or(0);
        let teddy = if short.is_empty() {
            None
        } else if short.len() > TEDDY_MAX {
            return None;
        } else {
            let mut b = packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder();
            b.extend(teddy_order(short));
            Some(b.build()?)
        };
        let (sample, confirm) = if long.is_empty() {
            (None, None)
        } else {
            let grams8: usize = long.iter().map(|l| l.len() - 7).sum();
            let mut sample = BitTable::for_keys(long.len() * STRIDE)?;
            let mut confirm = BitTable::for_keys(grams8)?;
            for l in &long {
                let b = l.as_bytes();
                for j in 0..STRIDE {
                    sample.insert(gram4(b, j));
                }
                for j in 0..=b.len() - 8 {
                    confirm.insert(gram8(b, j));
                }
            }
            (Some(sample), Some(confirm))
        };
        Some(Prefilter {
            short_max,
            teddy,
            sample,
            confirm,
            radius,
        })
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.teddy
            .as_ref()
            .map_or(0, packed::Searcher::memory_usage)
            + [&self.sample, &self.confirm]
                .iter()
                .filter_map(|t| t.as_ref())
                .map(|t| t.words.len() * 8)
                .sum::<usize>()
    }

    /// Ranges of `hay` that may hold a literal, sorted and disjoint. Every
    /// occurrence of every literal lies inside one of them.
    pub(crate) fn windows(&self, hay: &[u8], out: &mut Vec<(usize, usize)>) {
        let mut hits = Vec::new();
        if let Some(t) = &self.teddy {
            if has_ascii_uppercase(hay) {
                teddy_lowered(t, self.short_max, hay, &mut hits);
            } else {
                teddy_all(t, hay, 0, hay.len(), &mut hits);
            }
        }
        if let (Some(sample), Some(confirm)) = (&self.sample, &self.confirm) {
            let from = hits.len();
            // Samples at every STRIDE-th byte; a last partial step still
            // samples when it holds a whole gram.
            let mut steps = hay.chunks_exact(STRIDE);
            for (k, c) in (&mut steps).enumerate() {
                let g = u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) | 0x2020_2020);
                if sample.contains(g) && confirmed(confirm, hay, k * STRIDE) {
                    hits.push(k * STRIDE);
                }
            }
            let i = hay.len() - steps.remainder().len();
            if i + 4 <= hay.len() && sample.contains(gram4(hay, i)) && confirmed(confirm, hay, i) {
                hits.push(i);
            }
            if from > 0 && hits.len() > from {
                hits.sort_unstable();
            }
        }
        let r = self.radius;
        for p in hits {
            let (lo, hi) = (p.saturating_sub(r), (p + r + 4).min(hay.len()));
            match out.last_mut() {
                Some(w) if lo <= w.1 => w.1 = w.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
    }
}

/// How often each byte occurs in lowercased English chat, roughly (per
/// mille): what Teddy's fingerprints are tested against.
fn chat_byte_weight(b: u8) -> f64 {
    const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
    const FREQ: [f64; 26] = [
        65.0, 12.0, 22.0, 34.0, 100.0, 18.0, 16.0, 49.0, 57.0, 1.0, 6.0, 33.0, 20.0, 55.0, 62.0,
        15.0, 1.0, 48.0, 51.0, 75.0, 23.0, 8.0, 19.0, 1.5, 16.0, 0.7,
    ];
    match b {
        b' ' => 180.0,
        b'a'..=b'z' => FREQ[LETTERS.iter().position(|&l| l == b).unwrap_or(0)],
        b'.' | b',' => 10.0,
        b'0'..=b'9' => 2.0,
        _ => 0.5,
    }
}

/// Teddy puts literals in buckets by their order (the first literal with a
/// new low-nibble prefix goes to bucket `n - 1 - id % n`), and tests each
/// bucket's fingerprint by nibbles: literals whose nibbles differ widely
/// share a bucket, and its fingerprint then passes much of ordinary text.
/// Order the literals so that, by a model of chat bytes, the fingerprints
/// pass as little as possible (by local search over swaps; the sets are
/// small). If the crate assigns buckets differently, only speed changes.
fn teddy_order(mut lits: Vec<&str>) -> Vec<&str> {
    let mask = lits.iter().map(|l| l.len()).min().unwrap_or(1).min(4);
    let buckets = if lits.len() > 32 { 16 } else { 8 };
    let weights: Vec<f64> = (0..=255u8).map(chat_byte_weight).collect();
    let total: f64 = weights.iter().sum();
    let cost = |order: &[&str]| -> f64 {
        // Per bucket and position: the nibbles its literals use.
        let mut lo = vec![[0u16; 4]; buckets];
        let mut hi = vec![[0u16; 4]; buckets];
        let mut seen: Vec<(Vec<u8>, usize)> = Vec::new();
        for (id, l) in order.iter().enumerate() {
            let key: Vec<u8> = l.bytes().take(mask).map(|b| b & 0xF).collect();
            let bucket = match seen.iter().find(|(k, _)| *k == key) {
                Some(&(_, b)) => b,
                None => {
                    let b = buckets - 1 - id % buckets;
                    seen.push((key, b));
                    b
                }
            };
            for (i, b) in l.bytes().take(mask).enumerate() {
                lo[bucket][i] |= 1 << (b & 0xF);
                hi[bucket][i] |= 1 << (b >> 4);
            }
        }
        (0..buckets)
            .map(|k| {
                (0..mask)
                    .map(|i| {
                        let pass: f64 = (0..=255u8)
                            .filter(|&b| {
                                lo[k][i] >> (b & 0xF) & 1 == 1 && hi[k][i] >> (b >> 4) & 1 == 1
                            })
                            .map(|b| weights[usize::from(b)])
                            .sum();
                        pass / total
                    })
                    .product::<f64>()
            })
            .sum()
    };
    let mut best = cost(&lits);
    // Each round tries every swap; big sets get fewer rounds (compile time).
    let rounds = if lits.len() > 32 { 2 } else { 8 };
    for _round in 0..rounds {
        let mut improved = false;
        for i in 0..lits.len() {
            for j in i + 1..lits.len() {
                lits.swap(i, j);
                let c = cost(&lits);
                if c + 1e-12 < best {
                    best = c;
                    improved = true;
                } else {
                    lits.swap(i, j);
                }
            }
        }
        if !improved {
            break;
        }
    }
    lits
}

/// A set of 4-byte grams: the leet pass asks it whether any gram around a
/// leet character belongs to a leet spelling before running the automaton.
#[derive(Debug, Clone)]
pub(crate) struct GramSet(BitTable);

impl GramSet {
    /// Every gram of `literals`; `None` when one is shorter than a gram (it
    /// could hide anywhere) or the set is too big for a table.
    pub(crate) fn new(literals: &[&str]) -> Option<Self> {
        if literals.is_empty() || literals.iter().any(|l| l.len() < 4) {
            return None;
        }
        let n = literals.iter().map(|l| l.len() - 3).sum();
        let mut t = BitTable::for_keys(n)?;
        for l in literals {
            for j in 0..=l.len() - 4 {
                t.insert(gram4(l.as_bytes(), j));
            }
        }
        Some(GramSet(t))
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.words.len() * 8
    }

    /// Whether a gram of `hay` covering byte `i` may be in the set.
    pub(crate) fn any_around(&self, hay: &[u8], i: usize) -> bool {
        (i.saturating_sub(3)..=i)
            .take_while(|s| s + 4 <= hay.len())
            .any(|s| self.0.contains(gram4(hay, s)))
    }
}

/// Starts of Teddy matches in `hay` that start before `until`, offset by
/// `base`.
fn teddy_all(t: &packed::Searcher, hay: &[u8], base: usize, until: usize, hits: &mut Vec<usize>) {
    let mut at = 0;
    while let Some(m) = t.find_in(hay, aho_corasick::Span::from(at..hay.len())) {
        if m.start() >= until {
            break;
        }
        hits.push(base + m.start());
        at = m.start() + 1;
    }
}

/// Teddy compares bytes, and the short literals are lowercase: search a
/// lowercased copy, a block at a time so the copy stays in L1 cache and
/// nothing is allocated per message. Blocks overlap by a literal's length.
fn teddy_lowered(t: &packed::Searcher, longest: usize, hay: &[u8], hits: &mut Vec<usize>) {
    const BLOCK: usize = 4096;
    let step = BLOCK - longest.saturating_sub(1);
    let mut buf = [0u8; BLOCK];
    let mut at = 0;
    while at < hay.len() {
        let end = (at + BLOCK).min(hay.len());
        let block = &mut buf[..end - at];
        block.copy_from_slice(&hay[at..end]);
        block.make_ascii_lowercase();
        // Starts past `step` are found again, whole, in the next block.
        let until = if end == hay.len() { block.len() } else { step };
        teddy_all(t, block, at, until, hits);
        if end == hay.len() {
            break;
        }
        at += step;
    }
}

/// Whether `b` has an ASCII capital; chunked so the test vectorises.
fn has_ascii_uppercase(b: &[u8]) -> bool {
    b.chunks(64)
        .any(|c| c.iter().fold(false, |acc, x| acc | x.is_ascii_uppercase()))
}

/// Some 8-byte gram holding the 4 bytes at `i` is a gram of a long literal.
fn confirmed(confirm: &BitTable, hay: &[u8], i: usize) -> bool {
    (i.saturating_sub(4)..=i)
        .take_while(|s| s + 8 <= hay.len())
        .any(|s| confirm.contains(gram8(hay, s)))
}

/// The literals no other literal is a part of (shortest first). One
/// automaton pass over each literal finds the others inside it, so big
/// dictionaries stay linear.
fn minimal<'a>(literals: &[&'a str]) -> Vec<&'a str> {
    let mut by_len: Vec<&str> = literals.iter().copied().filter(|l| !l.is_empty()).collect();
    by_len.sort_unstable_by_key(|l| (l.len(), *l));
    by_len.dedup();
    let Ok(ac) = aho_corasick::AhoCorasick::new(&by_len) else {
        return by_len;
    };
    by_len
        .iter()
        .enumerate()
        .filter(|&(i, l)| {
            !ac.find_overlapping_iter(*l)
                .any(|m| m.pattern().as_usize() != i)
        })
        .map(|(_, l)| *l)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn windows(pf: &Prefilter, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        pf.windows(text.as_bytes(), &mut out);
        out
    }

    fn covered(ws: &[(usize, usize)], s: usize, e: usize) -> bool {
        ws.iter().any(|&(lo, hi)| lo <= s && e <= hi)
    }

    #[test]
    fn contained_literals_are_dropped() {
        assert_eq!(
            minimal(&[
                "strictly confidential",
                "confidential",
                "aws_secret",
                "secret"
            ]),
            vec!["secret", "confidential"]
        );
    }

    #[test]
    fn both_tiers_find_their_literals_in_any_case() {
        let pf = Prefilter::new(&["ghp_", "eyj", "do not share", "confidential"]).unwrap();
        let text = "hello there, this is CONFIDENTIAL: Do Not Share the ghp_ token or eyJhb";
        let ws = windows(&pf, text);
        for lit in ["CONFIDENTIAL", "Do Not Share", "ghp_", "eyJ"] {
            let s = text.find(lit).unwrap();
            assert!(covered(&ws, s, s + lit.len()), "{lit}: {ws:?}");
        }
        assert!(windows(&pf, "nothing to see here, just chat about lunch").is_empty());
    }

    #[test]
    fn compiled_memory_is_counted_and_grows_with_the_dictionary() {
        let (set, _) = &*SETS;
        let small = set.heap_bytes();
        assert!(small > 0);
        let words: Vec<String> = (0..2000).map(|i| format!("\"codeword{i:05}\"")).collect();
        let src = format!(
            "[[rule]]\nid = \"big\"\nname = \"big\"\nseverity = \"low\"\n[rule.keywords]\nwords = [{}]\n",
            words.join(",")
        );
        let big = crate::dlp::RuleSet::from_sources(&[("big.toml", src.as_str())]).unwrap();
        assert!(big.prefilter.is_some(), "long keywords are sampled");
        assert!(big.heap_bytes() > 2000 * 14, "{}", big.heap_bytes());
    }

    #[test]
    fn teddy_order_is_a_permutation() {
        let lits = vec![
            "eyj", "pwd", "xox", "abia", "acca", "gho_", "ghp_", "secret", "api_key",
        ];
        let mut ordered = teddy_order(lits.clone());
        assert_eq!(ordered.len(), lits.len());
        ordered.sort_unstable();
        let mut want = lits;
        want.sort_unstable();
        assert_eq!(ordered, want);
    }

    #[test]
    fn short_literals_across_lowercasing_blocks_are_found() {
        let pf = Prefilter::new(&["ghp_", "api_key", "confidential"]).unwrap();
        for at in 4070..4110 {
            for lit in ["GHP_", "Api_Key"] {
                let text = format!("Q{}{lit}{}", "x".repeat(at - 1), "y".repeat(50));
                let ws = windows(&pf, &text);
                assert!(covered(&ws, at, at + lit.len()), "{lit} at {at}: {ws:?}");
                assert_eq!(ws.len(), 1, "found once: {ws:?}");
            }
        }
    }

    #[test]
    fn too_many_short_literals_means_no_prefilter() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(Prefilter::new(&refs).is_none());
    }

    proptest! {
        /// Every occurrence of every literal lies inside a window, wherever
        /// it sits relative to the sampling grid.
        #[test]
        fn every_occurrence_is_covered(
            pre in "[a-z .]{0,40}",
            post in "[a-z .]{0,40}",
            pick in 0usize..6,
        ) {
            let lits = ["internal only", "red kite", "xox", "akia", "secret", "bluebird project"];
            let pf = Prefilter::new(&lits).unwrap();
            let lit = lits[pick].to_ascii_uppercase();
            let text = format!("{pre}{lit}{post}");
            let ws = windows(&pf, &text);
            prop_assert!(covered(&ws, pre.len(), pre.len() + lit.len()), "{text:?} {ws:?}");
        }
    }

    fn shipped() -> crate::dlp::RuleSet {
        crate::dlp::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../dlp-rules"))
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    const FRAGMENTS: &[&str] = &[
        "Confidential",
        "do not share",
        "INTERNAL ONLY",
        "c0nf1dential",
        "Red Kite",
        "password: Hunter2Hunter2x",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "AKIAABCDEFGHIJKLMNOP",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijklmnop",
        "4111 1111 1111 1111",
        "536-22-1234",
        "lunch",
        "at 12pm",
        "the",
        " ",
        "\n",
        "é",
        "secret",
        "trade secret",
        "api_key = \"Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz\"",
    ];

    /// The shipped set twice: as built, and with the prefilter, the leet
    /// gram filter and anchored window patterns taken out.
    static SETS: std::sync::LazyLock<(crate::dlp::RuleSet, crate::dlp::RuleSet)> =
        std::sync::LazyLock::new(|| {
            let mut without = shipped();
            without.prefilter = None;
            without.leet_grams = None;
            for r in &mut without.rules {
                if let Some(p) = &mut r.pattern {
                    p.trigger_offset = None;
                }
            }
            (shipped(), without)
        });

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The prefilter and the other shortcuts only skip work: findings
        /// are the same as when the automaton runs over every byte and
        /// window patterns are searched.
        #[test]
        fn prefilter_changes_no_finding(picks in proptest::collection::vec(0usize..FRAGMENTS.len(), 0..40)) {
            let (with, without) = &*SETS;
            prop_assert!(with.prefilter.is_some());
            let text: String = picks.iter().map(|&i| FRAGMENTS[i]).collect::<Vec<_>>().join(" ");
            prop_assert_eq!(with.scan_text(&text), without.scan_text(&text));
        }
    }
}
