//! Scanning a message: literal pass, regex verification, validators,
//! exclusions, context scoring, counts.

use super::count::ConversationTracker;
use super::evidence::{self, Evidence, EvidenceSpec};
use super::format::{Action, Direction, Severity};
use super::mask;
use super::normalize::{leet_byte, leet_fold, normalize, Normalized};
use super::pattern::Pattern;
use super::rule::{Confidence, Rule};
use super::ruleset::{Role, RuleSet};
use regex_automata::{Anchored, Input};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// One named text of a message (body text, file name, subject…).
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// The field name rules can scope on (e.g. "text").
    pub name: &'a str,
    /// The text; findings' offsets point into it.
    pub text: &'a str,
}

/// A message to scan.
#[derive(Debug, Clone)]
pub struct MessageInput<'a> {
    /// Stable app id (see DESIGN.md), if known.
    pub app: Option<&'a str>,
    /// Which way the message goes.
    pub direction: Direction,
    /// Conversation id, for per-conversation counts.
    pub conversation: Option<&'a str>,
    /// The texts of the message.
    pub fields: Vec<Field<'a>>,
}

impl<'a> MessageInput<'a> {
    /// An outbound message of one field named "text", app unknown.
    pub fn text(text: &'a str) -> Self {
        MessageInput {
            app: None,
            direction: Direction::Outbound,
            conversation: None,
            fields: vec![Field { name: "text", text }],
        }
    }
}

/// One part of a finding's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    /// "base" or "context:<word>".
    pub source: String,
    /// What it added (negative: removed).
    pub weight: f64,
}

/// A rule that fired, where, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule id (or "decode_limit").
    pub rule: Arc<str>,
    /// How serious.
    pub severity: Severity,
    /// What to do.
    pub action: Action,
    /// Final score in 0..=1.
    pub score: f64,
    /// The band of the score.
    pub confidence: Confidence,
    /// How the score came about.
    pub contributions: Vec<Contribution>,
    /// Which field of the message.
    pub field: String,
    /// UTF-8 byte offset of the match in the original field text.
    pub start: usize,
    /// End (exclusive) of the match.
    pub end: usize,
    /// Masked excerpt as the rule's `[rule.evidence]` says (see
    /// [`RuleSet::evidence`]), unless its mode is "none".
    pub excerpt: Option<Evidence>,
    /// When a conversation count made the rule fire: the caller's tags of
    /// the messages whose matches added up (this one included), oldest
    /// first. Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<u128>,
    /// Digits/letters to keep when redacting.
    #[serde(skip)]
    pub(crate) keep_last: usize,
    /// The rule's evidence settings; `None`: no evidence.
    #[serde(skip)]
    pub(crate) evidence: Option<EvidenceSpec>,
    /// Index of the field in the scanned message (names may repeat).
    #[serde(skip)]
    pub(crate) field_index: usize,
}

/// A candidate that a rule's checks turned down (only from `explain`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// The rule.
    pub rule: Arc<str>,
    /// Field.
    pub field: String,
    /// Byte offsets in the original field text.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// Why ("excluded", "validator luhn failed", "score 0.30 < 0.50", …).
    pub reason: String,
}

/// The outcome of scanning a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanResult {
    /// Every finding, by field then offset.
    pub findings: Vec<Finding>,
    /// Turned-down candidates (only filled by `explain`).
    pub rejected: Vec<Rejected>,
}

impl ScanResult {
    /// The message verdict: the highest action of any finding.
    pub fn verdict(&self) -> Option<Action> {
        self.findings.iter().map(|f| f.action).max()
    }

    /// `text` (the original of `field`) with the spans of findings whose
    /// action is redact (or block) masked.
    pub fn redact(&self, field: &str, text: &str) -> String {
        let spans: Vec<(usize, usize)> = self
            .findings
            .iter()
            .filter(|f| f.field == field && f.action >= Action::Redact)
            .map(|f| (f.start, f.end))
            .collect();
        let keep = self
            .findings
            .iter()
            .filter(|f| f.field == field)
            .map(|f| f.keep_last)
            .min()
            .unwrap_or(0);
        mask::redact(text, &spans, keep)
    }
}

/// How far an anchored search of an unbounded pattern looks, in bytes of
/// the view: the longest PEM key blocks (RSA 8192) fit.
const ANCHORED_CAP: usize = 8192;

/// Switches for special scans.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    pub ignore_scope: bool,
    pub explain: bool,
    /// Only this rule (examples).
    pub only: Option<u32>,
    /// Leave `excerpt` empty (the evidence re-scan itself).
    pub no_evidence: bool,
}

/// A surviving match of one rule in one field, in original offsets.
struct Candidate {
    start: usize,
    end: usize,
    score: f64,
    contributions: Vec<Contribution>,
}

#[derive(Default)]
struct RuleHits {
    /// Match spans in the view.
    spans: Vec<(usize, usize)>,
    /// Context word hits: start, end, term group.
    terms: Vec<(usize, usize, u16)>,
}

/// A character that continues a word for boundary checks. Scripts written
/// without spaces between words (Chinese, Japanese, Thai) have no word
/// boundaries to check: "電話番号は" holds the word "電話".
fn is_word(c: char) -> bool {
    (c.is_alphanumeric() || c == '_') && !unspaced_script(c)
}

fn unspaced_script(c: char) -> bool {
    matches!(c,
        '\u{0E00}'..='\u{0E7F}'      // Thai
        | '\u{3040}'..='\u{30FF}'    // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}'    // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'    // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}'    // CJK compatibility ideographs
        | '\u{FF66}'..='\u{FF9F}'    // half-width Katakana
    )
}

fn whole_word(view: &str, s: usize, e: usize) -> bool {
    let m = &view[s..e];
    let first_word = m.chars().next().is_some_and(is_word);
    let last_word = m.chars().next_back().is_some_and(is_word);
    (!first_word || !view[..s].chars().next_back().is_some_and(is_word))
        && (!last_word || !view[e..].chars().next().is_some_and(is_word))
}

/// Strip what normalisation strips, but keep case: for case-sensitive
/// keywords, compared against the original text.
fn strip_keep_case(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::with_capacity(s.len());
    for c in s.nfkc() {
        if super::normalize::is_invisible(c) {
            continue;
        }
        if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn back_chars(text: &str, at: usize, n: usize) -> usize {
    text[..at]
        .char_indices()
        .rev()
        .take(n)
        .last()
        .map_or(at, |(i, _)| i)
}

fn fwd_chars(text: &str, at: usize, n: usize) -> usize {
    text[at..]
        .char_indices()
        .nth(n)
        .map_or(text.len(), |(i, _)| at + i)
}

fn pattern_span(
    p: &Pattern,
    caps: &regex_automata::util::captures::Captures,
) -> Option<(usize, usize)> {
    match p.value_group {
        Some(g) => caps
            .get_group(g)
            .or_else(|| p.value_alt.and_then(|a| caps.get_group(a)))
            .or_else(|| caps.get_match().map(|m| m.span())),
        None => caps.get_match().map(|m| m.span()),
    }
    .map(|s| (s.start, s.end))
    .filter(|(s, e)| s < e)
}

/// All matches of `p` with starts in `lo..hi` (look-around sees the whole text).
fn find_in(p: &Pattern, view: &str, lo: usize, hi: usize, out: &mut Vec<(usize, usize)>) {
    let mut caps = p.re.create_captures();
    let mut at = lo;
    while at <= hi {
        let input = Input::new(view).range(at..hi);
        p.re.search_captures(&input, &mut caps);
        let Some(m) = caps.get_match() else { break };
        let span = pattern_span(p, &caps);
        if let Some(span) = span {
            out.push(span);
        }
        // Resume after the value, not after the whole match: the delimiter
        // a pattern's context consumed after one value ("…9855, ") is the
        // context the next value needs (a list of cards: every one found).
        at = match span {
            Some((_, end)) if p.value_group.is_some() && end > at => end,
            _ if m.end() > m.start() => m.end(),
            _ => m.end() + 1,
        };
        while at < view.len() && !view.is_char_boundary(at) {
            at += 1;
        }
    }
}

/// Matches of `p` whose first trigger byte is at `off` from their start:
/// tried anchored at each qualifying trigger, leftmost first and without
/// overlaps, as a search would find them.
fn anchored_at_triggers(
    p: &Pattern,
    view: &str,
    triggers: &[usize],
    off: usize,
    qualifies: &dyn Fn(usize, usize) -> bool,
    out: &mut Vec<(usize, usize)>,
) {
    let mut caps = None;
    let mut next = 0;
    for (k, &i) in triggers.iter().enumerate() {
        let Some(s) = i.checked_sub(off) else {
            continue;
        };
        if s < next || !qualifies(k, i) || !view.is_char_boundary(s) {
            continue;
        }
        let hi = ceil(
            view,
            p.max_len.map_or(view.len(), |l| (s + l).min(view.len())),
        );
        let input = Input::new(view).range(s..hi).anchored(Anchored::Yes);
        let caps = caps.get_or_insert_with(|| p.re.create_captures());
        p.re.search_captures(&input, caps);
        if let Some(m) = caps.get_match() {
            if let Some(span) = pattern_span(p, caps) {
                out.push(span);
            }
            next = m.end().max(s + 1);
        }
    }
}

impl RuleSet {
    /// Scan a message, without per-conversation counts.
    pub fn scan(&self, msg: &MessageInput<'_>) -> ScanResult {
        self.scan_inner(msg, None, Options::default())
    }

    /// Scan a message, adding its matches to `tracker` so that rules with
    /// `count.conversation` fire when a conversation adds up. `now` is any
    /// monotonic time the caller keeps (the engine has no clock).
    pub fn scan_in_conversation(
        &self,
        msg: &MessageInput<'_>,
        tracker: &ConversationTracker,
        now: Duration,
    ) -> ScanResult {
        self.scan_counted(msg, tracker, now, 0)
    }

    /// As [`scan_in_conversation`](Self::scan_in_conversation), tagging
    /// this message's matches with `message` (e.g. its event id): a finding
    /// made by a conversation count names, in `related`, the tags of the
    /// messages that added up. The tracker may be shared by many threads;
    /// it is locked only to add the counts, not while scanning.
    pub fn scan_counted(
        &self,
        msg: &MessageInput<'_>,
        tracker: &ConversationTracker,
        now: Duration,
        message: u128,
    ) -> ScanResult {
        self.scan_inner(msg, Some((tracker, now, message)), Options::default())
    }

    /// Scan one outbound text with no app or conversation.
    pub fn scan_text(&self, text: &str) -> ScanResult {
        self.scan(&MessageInput::text(text))
    }

    /// Like `scan_text`, ignoring scopes and keeping turned-down candidates
    /// with reasons: for `gatehouse rules explain`.
    pub fn explain(&self, text: &str) -> ScanResult {
        self.scan_inner(
            &MessageInput::text(text),
            None,
            Options {
                ignore_scope: true,
                explain: true,
                only: None,
                no_evidence: false,
            },
        )
    }

    pub(crate) fn scan_inner(
        &self,
        msg: &MessageInput<'_>,
        conv: Option<(&ConversationTracker, Duration, u128)>,
        opts: Options,
    ) -> ScanResult {
        let mut result = ScanResult::default();
        // Per rule, per field: candidates (counts span fields of a message).
        let mut per_rule: Vec<(u32, usize, Vec<Candidate>)> = Vec::new();
        for (fi, field) in msg.fields.iter().enumerate() {
            let admits = |r: &Rule, idx: u32| {
                opts.only.is_none_or(|o| o == idx)
                    && (opts.ignore_scope || r.scope.admits(msg.app, msg.direction, field.name))
            };
            self.scan_field(field, fi, &admits, &mut per_rule, &mut result, opts);
        }
        per_rule.sort_by_key(|(r, f, _)| (*r, *f));
        let mut i = 0;
        while i < per_rule.len() {
            let r = per_rule[i].0;
            let j = i + per_rule[i..].iter().take_while(|x| x.0 == r).count();
            let rule = &self.rules[r as usize];
            let count: usize = per_rule[i..j].iter().map(|x| x.2.len()).sum();
            let mut fire = count >= rule.count_min;
            let mut related = Vec::new();
            if let (Some((min, window)), Some((tracker, now, tag)), Some(c)) =
                (rule.conversation, conv, msg.conversation)
            {
                let (total, tags) = tracker.record(
                    c,
                    &rule.id,
                    now,
                    u32::try_from(count).unwrap_or(u32::MAX),
                    Duration::from_secs(window),
                    tag,
                );
                if total as usize >= min {
                    fire = true;
                    related = tags;
                }
            }
            for (_, fi, cands) in per_rule[i..j].iter_mut() {
                let field = &msg.fields[*fi];
                for c in cands.drain(..) {
                    if !fire {
                        if opts.explain {
                            result.rejected.push(Rejected {
                                rule: rule.id.clone(),
                                field: field.name.to_string(),
                                start: c.start,
                                end: c.end,
                                reason: format!("{count} match(es) < count.min {}", rule.count_min),
                            });
                        }
                        continue;
                    }
                    let mut f = make_finding(rule, field, c);
                    f.related.clone_from(&related);
                    f.field_index = *fi;
                    result.findings.push(f);
                }
            }
            i = j;
        }
        result
            .findings
            .sort_by(|a, b| (&a.field, a.start, &a.rule).cmp(&(&b.field, b.start, &b.rule)));
        if !opts.no_evidence {
            self.attach_evidence(msg, &mut result);
        }
        result
    }

    /// Each finding's evidence, built from its field's text; the other
    /// findings (and, in `explain`, turned-down candidates) of that field
    /// are masked where they show. Only spans that can reach a finding's
    /// context are handed over, so a text with many findings costs each
    /// one its neighbours, not all of them.
    fn attach_evidence(&self, msg: &MessageInput<'_>, result: &mut ScanResult) {
        if result.findings.iter().all(|f| f.evidence.is_none()) {
            return;
        }
        for (fi, field) in msg.fields.iter().enumerate() {
            let mut spans: Vec<(usize, usize)> = result
                .findings
                .iter()
                .filter(|f| f.field_index == fi)
                .map(|f| (f.start, f.end))
                .chain(
                    result
                        .rejected
                        .iter()
                        .filter(|r| r.field == field.name)
                        .map(|r| (r.start, r.end)),
                )
                .collect();
            // Matches of any rule near the findings, fired or not: one
            // look per stretch of text the contexts cover.
            let mut windows: Vec<(usize, usize)> = result
                .findings
                .iter()
                .filter(|f| f.field_index == fi)
                .filter_map(|f| {
                    let spec = f.evidence.filter(|s| s.context_chars > 0)?;
                    Some(evidence::near_window(field.text, f.start, f.end, spec))
                })
                .collect();
            windows.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for (a, b) in windows {
                match merged.last_mut() {
                    Some(m) if a <= m.1 => m.1 = m.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            for (a, b) in merged {
                self.matches_in(field.text, a, b, &mut spans);
            }
            spans.sort_unstable();
            // Furthest end of any span up to each index.
            let reach: Vec<usize> = spans
                .iter()
                .scan(0, |m, &(_, e)| {
                    *m = (*m).max(e);
                    Some(*m)
                })
                .collect();
            for i in 0..result.findings.len() {
                let f = &result.findings[i];
                let Some(spec) = f.evidence.filter(|_| f.field_index == fi) else {
                    continue;
                };
                // A character is at most 4 bytes.
                let lo = f.start.saturating_sub(4 * spec.context_chars);
                let hi = f.end.saturating_add(4 * spec.context_chars);
                let upto = spans.partition_point(|&(a, _)| a < hi);
                let near: Vec<(usize, usize)> = (0..upto)
                    .rev()
                    .take_while(|&j| reach[j] > lo)
                    .map(|j| spans[j])
                    .filter(|&(_, b)| b > lo)
                    .collect();
                let excerpt = evidence::evidence_of(f, field.text, &near);
                result.findings[i].excerpt = excerpt;
            }
        }
    }

    fn scan_field(
        &self,
        field: &Field<'_>,
        fi: usize,
        admits: &dyn Fn(&Rule, u32) -> bool,
        per_rule: &mut Vec<(u32, usize, Vec<Candidate>)>,
        result: &mut ScanResult,
        opts: Options,
    ) {
        let norm = normalize(field.text);
        let view: &str = &norm.text;
        let mut hits: Vec<RuleHits> = Vec::new();
        let mut touched: Vec<u32> = Vec::new();
        let mut touch = |hits: &mut Vec<RuleHits>, r: u32| {
            if hits.is_empty() {
                hits.resize_with(self.rules.len(), RuleHits::default);
            }
            let h = &mut hits[r as usize];
            if h.spans.is_empty() && h.terms.is_empty() {
                touched.push(r);
            }
        };

        // One pass finds every digit, `@`, leet symbol… the later stages need.
        let mut special = Vec::new();
        if self.has_leet || !self.window_rules.is_empty() {
            self.special_finder.positions(view.as_bytes(), &mut special);
        }
        if let Some(ac) = &self.ac {
            for (pid, s, e) in self.literal_matches(ac, view) {
                for u in &self.uses[pid] {
                    let rule = &self.rules[u.rule as usize];
                    if u.role == Role::LeetKeyword || !admits(rule, u.rule) {
                        continue;
                    }
                    match u.role {
                        Role::Keyword => {
                            if rule.whole_word && !whole_word(view, s, e) {
                                continue;
                            }
                            if rule.case_sensitive {
                                let orig = strip_keep_case(
                                    &field.text[norm.map.start(s)..norm.map.end(e)],
                                );
                                if !rule.keywords.iter().any(|k| strip_keep_case(k) == orig) {
                                    continue;
                                }
                            }
                            touch(&mut hits, u.rule);
                            hits[u.rule as usize].spans.push((s, e));
                        }
                        Role::Anchor => {
                            let Some(p) = &rule.pattern else { continue };
                            // A hit inside this rule's last match adds nothing.
                            if hits
                                .get(u.rule as usize)
                                .and_then(|h| h.spans.last())
                                .is_some_and(|&(_, e)| s < e)
                            {
                                continue;
                            }
                            // Unbounded patterns (key blocks, JWTs) look at most
                            // ANCHORED_CAP bytes ahead: text made of many anchors
                            // in one long run would otherwise cost quadratic time.
                            let reach = p.max_len.unwrap_or(ANCHORED_CAP);
                            let hi = ceil(view, (s + reach).min(view.len()));
                            let mut caps = p.re.create_captures();
                            let input = Input::new(view).range(s..hi).anchored(Anchored::Yes);
                            p.re.search_captures(&input, &mut caps);
                            if let Some(span) = pattern_span(p, &caps) {
                                touch(&mut hits, u.rule);
                                hits[u.rule as usize].spans.push(span);
                            }
                        }
                        Role::Term(_) | Role::LeetKeyword => {}
                    }
                }
            }
            // A leet spelling that the plain pass missed contains a leet
            // character; look only around those.
            // Only leet characters glued to a letter ("c0nf", "n1ght"): a
            // bare number ("id 1234", "$20") spells no word.
            let vb = view.as_bytes();
            let letter = |i: usize| vb.get(i).is_some_and(u8::is_ascii_alphabetic);
            // And only where a gram around it belongs to a leet spelling.
            let gram_hit = |i: usize| {
                self.leet_grams.as_ref().is_none_or(|g| {
                    let (lo, hi) = (i.saturating_sub(3), (i + 4).min(vb.len()));
                    let mut folded = [0u8; 7];
                    for (f, &b) in folded.iter_mut().zip(&vb[lo..hi]) {
                        *f = leet_byte(b);
                    }
                    g.any_around(&folded[..hi - lo], i - lo)
                })
            };
            let leet_at: Vec<usize> = special
                .iter()
                .copied()
                .filter(|&i| {
                    self.leet_set.contains(vb[i])
                        && (letter(i + 1) || (i > 0 && letter(i - 1)))
                        && gram_hit(i)
                })
                .collect();
            // Windows get one extra character each side for word boundaries.
            let r = self.max_keyword_len + 4;
            for (lo, hi) in merge_windows(&leet_at, r, view.len()) {
                let (lo, hi) = (floor(view, lo), ceil(view, hi));
                let leet = leet_fold(&view[lo..hi]);
                for m in ac.find_overlapping_iter(&leet) {
                    // A match touching a cut window edge cannot be checked
                    // for word boundaries; it lies in another window anyway.
                    if (m.start() == 0 && lo > 0) || (m.end() == leet.len() && hi < view.len()) {
                        continue;
                    }
                    for u in &self.uses[m.pattern().as_usize()] {
                        let rule = &self.rules[u.rule as usize];
                        if u.role != Role::LeetKeyword || !admits(rule, u.rule) {
                            continue;
                        }
                        if rule.whole_word && !whole_word(&leet, m.start(), m.end()) {
                            continue;
                        }
                        touch(&mut hits, u.rule);
                        hits[u.rule as usize]
                            .spans
                            .push((lo + m.start(), lo + m.end()));
                    }
                }
            }
        }

        // Window rules: only where a trigger byte occurs.
        if !self.window_rules.is_empty() {
            let bytes = view.as_bytes();
            let triggers: Vec<usize> = special
                .iter()
                .copied()
                .filter(|&i| self.window_set.contains(bytes[i]))
                .collect();
            if !triggers.is_empty() {
                let mut mine = Vec::new();
                for (r, table) in &self.window_rules {
                    let rule = &self.rules[*r as usize];
                    if !admits(rule, *r) {
                        continue;
                    }
                    let Some(p) = &rule.pattern else { continue };
                    let radius = p.max_len.unwrap_or(view.len());
                    let mut spans = Vec::new();
                    let mut win: Option<(usize, usize)> = None;
                    mine.clear();
                    mine.extend(
                        triggers
                            .iter()
                            .copied()
                            .filter(|&i| table[usize::from(bytes[i])]),
                    );
                    let mine = &mine;
                    let need = p.min_triggers.max(1);
                    // A match starting at the first of its trigger bytes
                    // has `need` of them within `radius`.
                    let qualifies = |k: usize, i: usize| {
                        mine.get(k + need - 1).is_some_and(|&j| j < i + radius)
                    };
                    if let Some(off) = p.trigger_offset {
                        anchored_at_triggers(p, view, mine, off, &qualifies, &mut spans);
                        if !spans.is_empty() {
                            touch(&mut hits, *r);
                            hits[*r as usize].spans.extend(spans);
                        }
                        continue;
                    }
                    for (k, &i) in mine.iter().enumerate() {
                        if !qualifies(k, i) {
                            continue;
                        }
                        let (lo, hi) =
                            (i.saturating_sub(radius), (i + 1 + radius).min(bytes.len()));
                        match &mut win {
                            Some((_, whi)) if lo <= *whi => *whi = hi,
                            _ => {
                                if let Some((wlo, whi)) = win {
                                    find_in(p, view, floor(view, wlo), ceil(view, whi), &mut spans);
                                }
                                win = Some((lo, hi));
                            }
                        }
                    }
                    if let Some((wlo, whi)) = win {
                        find_in(p, view, floor(view, wlo), ceil(view, whi), &mut spans);
                    }
                    if !spans.is_empty() {
                        touch(&mut hits, *r);
                        hits[*r as usize].spans.extend(spans);
                    }
                }
            }
        }
        for r in &self.full_rules {
            let rule = &self.rules[*r as usize];
            if !admits(rule, *r) {
                continue;
            }
            let Some(p) = &rule.pattern else { continue };
            let mut spans = Vec::new();
            find_in(p, view, 0, view.len(), &mut spans);
            if !spans.is_empty() {
                touch(&mut hits, *r);
                hits[*r as usize].spans.extend(spans);
            }
        }

        for r in touched {
            let h = &mut hits[r as usize];
            if h.spans.is_empty() {
                continue;
            }
            h.spans.sort_unstable();
            h.spans.dedup();
            let rule = &self.rules[r as usize];
            if let (Some(c), Some(ctx_ac)) = (&rule.context, &self.ctx_ac) {
                self.context_hits(ctx_ac, view, r, c.before, c.after, h);
            }
            let cands = self.evaluate(rule, field, &norm, h, result, opts);
            if !cands.is_empty() {
                per_rule.push((r, fi, cands));
            }
        }
    }

    /// Every literal match (pattern, start, end) in the view. With a
    /// prefilter the automaton runs only in the windows it finds; benign
    /// text costs the prefilter pass alone.
    fn literal_matches(
        &self,
        ac: &aho_corasick::AhoCorasick,
        view: &str,
    ) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let Some(pf) = &self.prefilter else {
            for m in ac.find_overlapping_iter(view) {
                out.push((m.pattern().as_usize(), m.start(), m.end()));
            }
            return out;
        };
        let mut windows = Vec::new();
        pf.windows(view.as_bytes(), &mut windows);
        let mut last = 0;
        for (lo, hi) in windows {
            // Widening to character boundaries may reach into the previous
            // window; start where it ended so no match is reported twice.
            let (lo, hi) = (floor(view, lo).max(last), ceil(view, hi));
            last = hi;
            let input = aho_corasick::Input::new(view).range(lo..hi);
            for m in ac.find_overlapping_iter(input) {
                out.push((m.pattern().as_usize(), m.start(), m.end()));
            }
        }
        out
    }

    /// Context words of rule `r` around its match spans.
    fn context_hits(
        &self,
        ctx_ac: &aho_corasick::AhoCorasick,
        view: &str,
        r: u32,
        before: usize,
        after: usize,
        h: &mut RuleHits,
    ) {
        let mut windows: Vec<(usize, usize)> = Vec::new();
        for &(s, e) in &h.spans {
            let (lo, hi) = (back_chars(view, s, before), fwd_chars(view, e, after));
            match windows.last_mut() {
                Some(w) if lo <= w.1 => w.1 = w.1.max(hi),
                _ => windows.push((lo, hi)),
            }
        }
        for (lo, hi) in windows {
            let input = aho_corasick::Input::new(view).range(lo..hi);
            for m in ctx_ac.find_overlapping_iter(input) {
                let (s, e) = (m.start(), m.end());
                // Context words are words: "ach" is not in "attached".
                if !whole_word(view, s, e) {
                    continue;
                }
                for u in &self.ctx_uses[m.pattern().as_usize()] {
                    if let (true, Role::Term(t)) = (u.rule == r, u.role) {
                        h.terms.push((s, e, t));
                    }
                }
            }
        }
        h.terms.sort_unstable();
        h.terms.dedup();
    }

    fn evaluate(
        &self,
        rule: &Rule,
        field: &Field<'_>,
        norm: &Normalized<'_>,
        h: &RuleHits,
        result: &mut ScanResult,
        opts: Options,
    ) -> Vec<Candidate> {
        let view: &str = &norm.text;
        let mut out = Vec::new();
        let mut last_end = 0usize;
        for &(s, e) in &h.spans {
            // Overlapping matches of one rule count once (e.g. "top secret"
            // and "secret" keywords on one phrase).
            if s < last_end {
                continue;
            }
            let (os, oe) = (norm.map.start(s), norm.map.end(e));
            let original = &field.text[os..oe];
            let reject = |reason: String, result: &mut ScanResult| {
                if opts.explain {
                    result.rejected.push(Rejected {
                        rule: rule.id.clone(),
                        field: field.name.to_string(),
                        start: os,
                        end: oe,
                        reason,
                    });
                }
            };
            if let Some(entry) = rule.excluded(&view[s..e]) {
                reject(rule.exclusion_reason(entry), result);
                continue;
            }
            let (s, e, os, oe) =
                if let Some(v) = rule.validators.iter().find(|v| !v.check(original)) {
                    match shrink(rule, view, s, e, field.text, norm) {
                        Some(found) => found,
                        None => {
                            reject(format!("validator {} failed", v.name()), result);
                            continue;
                        }
                    }
                } else {
                    (s, e, os, oe)
                };
            let (score, contributions) = match &rule.context {
                None => (
                    1.0,
                    vec![Contribution {
                        source: "base".into(),
                        weight: 1.0,
                    }],
                ),
                Some(c) => {
                    let lo = back_chars(view, s, c.before);
                    let hi = fwd_chars(view, e, c.after);
                    let mut contributions = vec![Contribution {
                        source: "base".into(),
                        weight: c.base,
                    }];
                    let mut seen = vec![false; c.terms.len()];
                    for &(ts, te, t) in &h.terms {
                        let t = usize::from(t);
                        if ts >= lo && te <= hi && !seen[t] {
                            seen[t] = true;
                            contributions.push(Contribution {
                                source: format!("context:{}", &view[ts..te]),
                                weight: c.terms[t].weight,
                            });
                        }
                    }
                    for (i, (re, weight)) in c.shapes.iter().enumerate() {
                        if re.is_match(&view[s..e]) {
                            contributions.push(Contribution {
                                source: format!("shape:{i}"),
                                weight: *weight,
                            });
                        }
                    }
                    for (v, weight) in &c.checks {
                        if v.check(&field.text[os..oe]) {
                            contributions.push(Contribution {
                                source: format!("check:{}", v.name()),
                                weight: *weight,
                            });
                        }
                    }
                    let sum: f64 = contributions.iter().map(|c| c.weight).sum();
                    let score = sum.clamp(0.0, 1.0);
                    if score < c.threshold {
                        reject(
                            format!("score {score:.2} < threshold {:.2}", c.threshold),
                            result,
                        );
                        continue;
                    }
                    (score, contributions)
                }
            };
            last_end = e;
            out.push(Candidate {
                start: os,
                end: oe,
                score,
                contributions,
            });
        }
        out
    }
}

/// A greedy pattern can swallow a following word ("ES91 2100 … 1332 ping"
/// as one more IBAN group) and then fail its checksum. Retry the pattern on
/// shorter spans ending at a space inside the match, longest first.
fn shrink(
    rule: &Rule,
    view: &str,
    s: usize,
    e: usize,
    text: &str,
    norm: &Normalized<'_>,
) -> Option<(usize, usize, usize, usize)> {
    let p = rule.pattern.as_ref().filter(|p| p.value_group.is_none())?;
    let cuts = view.as_bytes()[s..e]
        .iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == b' ')
        .map(|(i, _)| s + i)
        .take(8);
    for q in cuts {
        let input = Input::new(view).range(s..q).anchored(Anchored::Yes);
        let Some(m) = p.re.search(&input) else {
            continue;
        };
        if m.end() != q || m.start() == m.end() {
            continue;
        }
        let (os, oe) = (norm.map.start(s), norm.map.end(q));
        if rule.excluded(&view[s..q]).is_none()
            && rule.validators.iter().all(|v| v.check(&text[os..oe]))
        {
            return Some((s, q, os, oe));
        }
    }
    None
}

/// Merge windows of `radius` around each position (sorted) into ranges.
fn merge_windows(positions: &[usize], radius: usize, len: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &p in positions {
        let (lo, hi) = (p.saturating_sub(radius), (p + 1 + radius).min(len));
        match out.last_mut() {
            Some(w) if lo <= w.1 => w.1 = w.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

fn make_finding(rule: &Rule, field: &Field<'_>, c: Candidate) -> Finding {
    Finding {
        rule: rule.id.clone(),
        severity: rule.severity,
        action: rule.action,
        confidence: rule.confidence(c.score),
        score: c.score,
        contributions: c.contributions,
        field: field.name.to_string(),
        start: c.start,
        end: c.end,
        excerpt: None,
        related: Vec::new(),
        keep_last: rule.evidence.keep_last,
        evidence: rule.evidence.masked.then_some(EvidenceSpec {
            context_chars: rule.evidence.context_chars,
            keep_last: rule.evidence.keep_last,
        }),
        field_index: 0,
    }
}

/// `decode_limit` finding: decoding stopped at a cap, so part of the content
/// went unscanned. Never silent.
pub(crate) fn decode_limit_finding(field: &str, action: Action, what: &str) -> Finding {
    Finding {
        rule: Arc::from(super::DECODE_LIMIT_RULE),
        severity: Severity::High,
        action,
        score: 1.0,
        confidence: Confidence::High,
        contributions: vec![Contribution {
            source: format!("decode_limit:{what}"),
            weight: 1.0,
        }],
        field: field.to_string(),
        start: 0,
        end: 0,
        excerpt: None,
        related: Vec::new(),
        keep_last: 0,
        evidence: None,
        field_index: 0,
    }
}
