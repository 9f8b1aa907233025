//! Evidence: what an investigator (or `rules explain`) sees of a finding.
//!
//! One path for the CLI and the gateway: a finding's evidence is built from
//! the scanned text by [`RuleSet::evidence`], as the rule's
//! `[rule.evidence]` says (`mode`, `context_chars`, `keep_last`), and every
//! other match in the shown context — of any rule, fired or not — is masked
//! whole, so a neighbouring card number never shows in clear.

use super::mask::mask;
use super::ruleset::RuleSet;
use super::scan::{Finding, MessageInput, Options};
use serde::Serialize;
use std::fmt;

/// Characters scanned beyond the shown context on each side, so a match
/// that only partly lies in the context is still found (and masked).
const MARGIN: usize = 64;

/// Masked evidence of one finding. Only the engine makes one, so holding an
/// `Evidence` means the masking has been done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Evidence(String);

impl Evidence {
    /// The masked text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The masked text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for Evidence {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a finding's rule asks of its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvidenceSpec {
    /// Clear characters either side of the match.
    pub context_chars: usize,
    /// Letters/digits of the match left unmasked (at most a third).
    pub keep_last: usize,
}

impl RuleSet {
    /// The evidence of `finding` in `text` (the field it was found in), as
    /// its rule's `[rule.evidence]` says; `None` for `mode = "none"` (and for
    /// findings with no span, like `decode_limit`). `others` are spans of
    /// other findings in the same text; matches of any rule near the finding
    /// are looked for again here, so those that did not fire are masked too.
    pub fn evidence(
        &self,
        finding: &Finding,
        text: &str,
        others: &[(usize, usize)],
    ) -> Option<Evidence> {
        let spec = finding.evidence?;
        let mut mask_too: Vec<(usize, usize)> = others.to_vec();
        if spec.context_chars > 0 {
            let (lo, hi) = near_window(text, finding.start, finding.end, spec);
            self.matches_in(text, lo, hi, &mut mask_too);
        }
        evidence_of(finding, text, &mask_too)
    }

    /// Spans (in `text`) of every match of any rule in `text[lo..hi]`, fired
    /// or turned down, scopes ignored.
    pub(crate) fn matches_in(
        &self,
        text: &str,
        lo: usize,
        hi: usize,
        out: &mut Vec<(usize, usize)>,
    ) {
        let near = self.scan_inner(
            &MessageInput::text(&text[lo..hi]),
            None,
            Options {
                ignore_scope: true,
                explain: true,
                only: None,
                no_evidence: true,
            },
        );
        out.extend(near.findings.iter().map(|f| (lo + f.start, lo + f.end)));
        out.extend(near.rejected.iter().map(|r| (lo + r.start, lo + r.end)));
    }
}

/// Where to look again for matches around a finding: its context and a
/// margin, so one only partly in the context is still found.
pub(crate) fn near_window(
    text: &str,
    start: usize,
    end: usize,
    spec: EvidenceSpec,
) -> (usize, usize) {
    let (start, end) = (floor(text, start), floor(text, end));
    (
        back_chars(text, start, spec.context_chars + MARGIN),
        fwd_chars(text, end.max(start), spec.context_chars + MARGIN),
    )
}

/// The evidence of `finding` with the matches around it already known.
pub(crate) fn evidence_of(
    finding: &Finding,
    text: &str,
    others: &[(usize, usize)],
) -> Option<Evidence> {
    let spec = finding.evidence?;
    let (start, end) = (floor(text, finding.start), floor(text, finding.end));
    if start >= end {
        return None;
    }
    Some(Evidence(render(text, start, end, spec, others)))
}

/// The excerpt: `context_chars` either side of `start..end`, the match
/// masked keeping `keep_last`, every span of `others` in view fully masked,
/// `…` where the text goes on, control characters as spaces.
pub(crate) fn render(
    text: &str,
    start: usize,
    end: usize,
    spec: EvidenceSpec,
    others: &[(usize, usize)],
) -> String {
    let lo = back_chars(text, start, spec.context_chars);
    let hi = fwd_chars(text, end, spec.context_chars);
    // Other spans, clipped to the view and cut around the match itself.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for &(a, b) in others {
        let (a, b) = (floor(text, a.max(lo)), floor(text, b.min(hi)));
        for (a, b) in [(a, b.min(start)), (a.max(end), b)] {
            if a < b {
                spans.push((a, b));
            }
        }
    }
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize, usize)> = vec![(start, end, spec.keep_last)];
    for (a, b) in spans {
        match merged
            .iter_mut()
            .rev()
            .find(|m| m.2 == 0 && a <= m.1 && m.0 <= b)
        {
            Some(m) => {
                m.0 = m.0.min(a);
                m.1 = m.1.max(b);
            }
            None => merged.push((a, b, 0)),
        }
    }
    merged.sort_unstable();
    let mut out = String::new();
    if lo > 0 && spec.context_chars > 0 {
        out.push('…');
    }
    let mut at = lo;
    for (a, b, keep) in merged {
        let a = a.max(at);
        if a >= b {
            continue;
        }
        out.push_str(&text[at..a]);
        out.push_str(&mask(&text[a..b], keep));
        at = b;
    }
    out.push_str(&text[at..hi.max(at)]);
    if hi < text.len() && spec.context_chars > 0 {
        out.push('…');
    }
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn floor(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn back_chars(text: &str, at: usize, n: usize) -> usize {
    if n == 0 {
        return at;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(context_chars: usize, keep_last: usize) -> EvidenceSpec {
        EvidenceSpec {
            context_chars,
            keep_last,
        }
    }

    #[test]
    fn context_either_side_and_the_match_masked() {
        let t = "my card is 4111111111111234 ok thanks";
        let s = t.find("4111").unwrap();
        assert_eq!(
            render(t, s, s + 16, spec(5, 4), &[]),
            "…d is ************1234 ok t…"
        );
    }

    #[test]
    fn no_context_is_the_masked_match_alone() {
        let t = "x password=hunter2hunter2 y";
        let s = t.find("hunter").unwrap();
        assert_eq!(render(t, s, s + 14, spec(0, 0), &[]), "**************");
        assert_eq!(render(t, s, s + 14, spec(0, 4), &[]), "**********ter2");
    }

    #[test]
    fn other_matches_in_the_context_are_masked_whole() {
        let t = "CONFIDENTIAL card 4526 0181 5908 3012";
        let card = t.find("4526").unwrap();
        let e = render(t, 0, 12, spec(30, 0), &[(card, t.len())]);
        assert_eq!(e, "************ card **** **** **** ****");
    }

    #[test]
    fn other_spans_overlapping_the_match_keep_its_own_tail() {
        let t = "aaa 1234567890123456 bbb";
        let s = t.find('1').unwrap();
        // Another rule's span covering the match and a word after it.
        let e = render(t, s, s + 16, spec(3, 4), &[(s, s + 20)]);
        assert_eq!(e, "…aa ************3456 **…");
    }

    #[test]
    fn multibyte_and_control_characters() {
        let t = "clé\n4111111111111234\tfin";
        let s = t.find('4').unwrap();
        let e = render(t, s, s + 16, spec(3, 4), &[]);
        assert_eq!(e, "…lé ************1234 fi…");
        // Offsets inside a character are floored, never split it.
        let e = render(t, s, s + 16, spec(2, 0), &[(1, 3)]);
        assert!(e.starts_with("…é "), "{e}");
    }

    const RULES: &str = r#"
[[rule]]
id = "marker"
name = "marker"
severity = "medium"
action = "alert"
[rule.keywords]
words = ["confidential"]
[rule.evidence]
context_chars = 30
keep_last = 0

[[rule]]
id = "card"
name = "card"
severity = "critical"
action = "block"
pattern = '\b\d(?:[ -]?\d){12,18}\b'
validators = [{ kind = "luhn" }]
[rule.exclude]
literals = ["4111 1111 1111 1111"]
[rule.evidence]
context_chars = 10
keep_last = 4

[[rule]]
id = "secret"
name = "secret"
severity = "high"
pattern = 'password[:=] ?(?P<value>[A-Za-z0-9]{12,40})'
[rule.evidence]
keep_last = 0

[[rule]]
id = "quiet"
name = "quiet"
severity = "low"
[rule.keywords]
words = ["nightjar"]
[rule.evidence]
mode = "none"

[[rule]]
id = "twice"
name = "twice"
severity = "low"
pattern = '\bZK-\d{4}\b'
[rule.count]
min = 2
"#;

    fn set() -> RuleSet {
        RuleSet::from_sources(&[("t.toml", RULES)]).expect("valid rules")
    }

    fn excerpt<'a>(r: &'a crate::dlp::ScanResult, rule: &str) -> Option<&'a str> {
        r.findings
            .iter()
            .find(|f| &*f.rule == rule)
            .expect(rule)
            .excerpt
            .as_deref()
    }

    #[test]
    fn a_neighbouring_card_is_masked_in_the_marker_evidence() {
        let s = set();
        let r = s.explain("CONFIDENTIAL card 4526 0181 5908 3012");
        let marker = excerpt(&r, "marker").unwrap();
        assert_eq!(marker, "************ card **** **** **** ****");
        // The card's own evidence keeps the tail its rule asks for; the
        // marker word, another rule's match, is masked in it.
        assert_eq!(
            excerpt(&r, "card").unwrap(),
            "…**** card **** **** **** 3012"
        );
        // Same through the gateway's scan.
        let g = s.scan_text("CONFIDENTIAL card 4526 0181 5908 3012");
        assert_eq!(excerpt(&g, "marker").unwrap(), marker);
    }

    #[test]
    fn matches_that_did_not_fire_are_masked_too() {
        let s = set();
        // One ZK- id is below count.min 2, the test card is excluded, the
        // other number fails Luhn: none fires, none shows.
        let t = "ZK-1234 and 4111 1111 1111 1111 and 4526 0181 5908 3013 confidential";
        let r = s.scan_text(t);
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        let e = excerpt(&r, "marker").unwrap();
        for clear in ["1234", "1111", "3013", "4526"] {
            assert!(!e.contains(clear), "{clear} in {e}");
        }
    }

    #[test]
    fn secrets_are_fully_masked_and_mode_none_has_no_evidence() {
        let s = set();
        let r = s.scan_text("db password: pWnOna8sEXflmWwd then nightjar");
        let e = excerpt(&r, "secret").unwrap();
        assert!(e.contains("**************") && !e.contains("mWwd"), "{e}");
        assert!(excerpt(&r, "quiet").is_none());
        // keep_last is honoured as written, within a third of the match.
        let r = s.scan_text("card 4526 0181 5908 3012");
        assert!(excerpt(&r, "card")
            .unwrap()
            .ends_with("**** **** **** 3012"));
    }

    #[test]
    fn explain_names_the_exclude_entry() {
        let r = set().explain("test card 4111-1111-1111-1111");
        let why = &r
            .rejected
            .iter()
            .find(|x| &*x.rule == "card")
            .unwrap()
            .reason;
        assert_eq!(
            why,
            "excluded by exclude.literals \"4111 1111 1111 1111\" (t.toml:21:13)"
        );
    }
}
