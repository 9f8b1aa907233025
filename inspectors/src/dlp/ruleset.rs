//! The compiled, immutable rule set: every literal of every rule in one
//! Aho-Corasick automaton, plus the few regexes that need to run.

use super::error::RuleError;
use super::format::{EvidenceMode, RuleSpec};
use super::load::{self, Parsed, Sourced};
use super::normalize::{leet_fold, normalize_str};
use super::pattern::{self, ByteSet, Mode};
use super::prefilter::{GramSet, Prefilter};
use super::rule::{compact, Bands, Context, Evidence, Examples, Exclude, Rule, Scope, Term};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use std::collections::HashMap;
use std::sync::Arc;

/// What an automaton pattern means for one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A keyword of the rule (on the plain view).
    Keyword,
    /// A keyword of a leet rule (on the leet-folded view).
    LeetKeyword,
    /// A literal prefix of the rule's pattern.
    Anchor,
    /// A context word of term group `n`.
    Term(u16),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Use {
    pub rule: u32,
    pub role: Role,
}

/// A compiled rule set. Immutable; share it behind `Arc` and swap the `Arc`
/// on reload (in-flight scans keep their snapshot).
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    /// Keywords and regex prefixes of every rule: scanned over all text.
    pub(crate) ac: Option<AhoCorasick>,
    pub(crate) uses: Vec<Vec<Use>>,
    /// Context words of every rule: scanned only around candidates, so the
    /// common words they tend to be ("card", "order") cost nothing on text
    /// without candidates.
    pub(crate) ctx_ac: Option<AhoCorasick>,
    /// Finds where literals of `ac` can be, so the automaton runs only
    /// there; `None` for sets it does not suit (then it runs everywhere).
    pub(crate) prefilter: Option<Prefilter>,
    /// 4-byte grams of the leet spellings: a leet character outside every
    /// one of them starts no leet keyword. `None`: check every one.
    pub(crate) leet_grams: Option<GramSet>,
    /// Longest literal of `ac`, in bytes.
    pub(crate) max_keyword_len: usize,
    pub(crate) ctx_uses: Vec<Vec<Use>>,
    pub(crate) has_leet: bool,
    /// Rules in window mode, with their trigger table.
    pub(crate) window_rules: Vec<(u32, [bool; 256])>,
    /// Finds trigger bytes of window rules and leet characters in one pass.
    pub(crate) special_finder: super::bytefind::ByteFinder,
    pub(crate) window_set: ByteSet,
    pub(crate) leet_set: ByteSet,
    pub(crate) full_rules: Vec<u32>,
    /// Longest match any rule can produce (capped), for streaming overlap.
    pub(crate) max_match_len: usize,
    /// Widest context window, for streaming overlap.
    pub(crate) max_context: usize,
}

/// A rule's identity and metadata, for listings.
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo<'a> {
    /// Rule id.
    pub id: &'a str,
    /// Human name.
    pub name: &'a str,
    /// Description.
    pub description: &'a str,
    /// Severity.
    pub severity: super::format::Severity,
    /// Action.
    pub action: super::format::Action,
    /// Where it is defined.
    pub location: &'a crate::dlp::error::Location,
}

/// Cap for rules whose matches are unbounded (keywords never are).
pub(crate) const UNBOUNDED_MATCH_CAP: usize = 4096;

fn err_invalid(p: &Parsed<'_>, s: &Sourced<RuleSpec>, msg: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        loc: p.loc_of(s.file, &s.spec.id),
        rule: s.spec.id.get_ref().clone(),
        message: msg.into(),
    }
}

/// Resolve words plus referenced dictionaries.
fn gather_words(
    p: &Parsed<'_>,
    s: &Sourced<RuleSpec>,
    words: &[String],
    dicts: &[toml::Spanned<String>],
    errors: &mut Vec<RuleError>,
) -> Vec<String> {
    let mut out = words.to_vec();
    for d in dicts {
        match p.dictionaries.get(d.get_ref()) {
            Some((_, w)) => out.extend(w.iter().cloned()),
            None => errors.push(RuleError::UnknownDictionary {
                loc: p.loc_of(s.file, d),
                rule: s.spec.id.get_ref().clone(),
                dictionary: d.get_ref().clone(),
            }),
        }
    }
    out
}

#[derive(Default)]
struct Builder {
    patterns: Vec<String>,
    index: HashMap<String, usize>,
    uses: Vec<Vec<Use>>,
}

impl Builder {
    fn add(&mut self, lit: String, u: Use) {
        if lit.is_empty() {
            return;
        }
        let id = *self.index.entry(lit.clone()).or_insert_with(|| {
            self.patterns.push(lit);
            self.uses.push(Vec::new());
            self.patterns.len() - 1
        });
        let list = &mut self.uses[id];
        if !list.iter().any(|x| x.rule == u.rule && x.role == u.role) {
            list.push(u);
        }
    }
}

impl RuleSet {
    /// Compile rule files given as `(name, contents)` pairs. All errors of all
    /// files are returned together.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<RuleSet, Vec<RuleError>> {
        let sources: Vec<(&str, &str)> = sources
            .iter()
            .map(|(n, t)| (n.as_ref(), t.as_ref()))
            .collect();
        let (parsed, mut errors) = load::parse(sources);
        let mut b = Builder::default();
        let mut ctx = Builder::default();
        let mut rules = Vec::new();
        let mut seen: HashMap<String, crate::dlp::error::Location> = HashMap::new();
        for s in &parsed.rules {
            let id = s.spec.id.get_ref().clone();
            let loc = parsed.loc_of(s.file, &s.spec.id);
            if let Some(first) = seen.get(&id) {
                errors.push(RuleError::DuplicateId {
                    loc,
                    id,
                    first: first.clone(),
                });
                continue;
            }
            seen.insert(id, loc);
            let idx = rules.len() as u32;
            if let Some(rule) = compile_rule(&parsed, s, idx, &mut b, &mut ctx, &mut errors) {
                rules.push(rule);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Self::assemble(rules, b, ctx).map_err(|e| vec![e])
    }

    fn assemble(rules: Vec<Rule>, b: Builder, ctx: Builder) -> Result<RuleSet, RuleError> {
        let ac = automaton(&b.patterns)?;
        let ctx_ac = automaton(&ctx.patterns)?;
        // Leet spellings are searched only around leet characters, never by
        // the prefilter pass.
        let plain: Vec<&String> = b
            .patterns
            .iter()
            .zip(&b.uses)
            .filter(|(_, u)| u.iter().any(|u| u.role != Role::LeetKeyword))
            .map(|(p, _)| p)
            .collect();
        let plain: Vec<&str> = plain.into_iter().map(String::as_str).collect();
        let prefilter = Prefilter::new(&plain);
        let leet: Vec<&str> = b
            .patterns
            .iter()
            .zip(&b.uses)
            .filter(|(_, u)| u.iter().any(|u| u.role == Role::LeetKeyword))
            .map(|(p, _)| p.as_str())
            .collect();
        let leet_grams = GramSet::new(&leet);
        let max_keyword_len = b.patterns.iter().map(String::len).max().unwrap_or(0);
        let mut window_rules = Vec::new();
        let mut union = ByteSet::default();
        let mut full_rules = Vec::new();
        let mut max_match_len = 0usize;
        let mut max_context = 0usize;
        for (i, r) in rules.iter().enumerate() {
            for k in &r.keywords {
                max_match_len = max_match_len.max(k.len() * 4);
            }
            if let Some(p) = &r.pattern {
                max_match_len = max_match_len.max(p.max_len.unwrap_or(UNBOUNDED_MATCH_CAP));
                match &p.mode {
                    Mode::Window(set) => {
                        union.union(set);
                        window_rules.push((i as u32, set.to_table()));
                    }
                    Mode::Full => full_rules.push(i as u32),
                    Mode::Prefix(_) => {}
                }
            }
            if let Some(c) = &r.context {
                max_context = max_context.max(c.before.max(c.after) * 4);
            }
        }
        let has_leet = rules.iter().any(|r| r.leet);
        let mut leet_set = ByteSet::default();
        if has_leet {
            for b in b"0123456789@$!|" {
                leet_set.insert(*b);
            }
        }
        let mut special = union;
        special.union(&leet_set);
        Ok(RuleSet {
            has_leet,
            rules,
            ac,
            uses: b.uses,
            ctx_ac,
            ctx_uses: ctx.uses,
            prefilter,
            leet_grams,
            max_keyword_len,
            window_rules,
            special_finder: super::bytefind::ByteFinder::new(&special),
            window_set: union,
            leet_set,
            full_rules,
            max_match_len: max_match_len.min(UNBOUNDED_MATCH_CAP),
            max_context: max_context.min(UNBOUNDED_MATCH_CAP),
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule ids in load order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id)
    }

    /// What the CLI lists about each rule.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo<'_>> {
        self.rules.iter().map(|r| RuleInfo {
            id: &r.id,
            name: &r.name,
            description: &r.description,
            severity: r.severity,
            action: r.action,
            location: &r.loc,
        })
    }

    /// Heap bytes of the compiled set's matchers (automata, prefilter
    /// tables, regexes before any search has grown their caches), roughly:
    /// what `rules check` reports and the benches track.
    pub fn heap_bytes(&self) -> usize {
        let ac = |a: &Option<AhoCorasick>| a.as_ref().map_or(0, AhoCorasick::memory_usage);
        let regexes: usize = self
            .rules
            .iter()
            .map(|r| {
                r.pattern.as_ref().map_or(0, |p| p.re.memory_usage())
                    + r.exclude
                        .patterns
                        .iter()
                        .map(|re| re.memory_usage())
                        .sum::<usize>()
            })
            .sum();
        ac(&self.ac)
            + ac(&self.ctx_ac)
            + self.prefilter.as_ref().map_or(0, Prefilter::heap_bytes)
            + self.leet_grams.as_ref().map_or(0, GramSet::heap_bytes)
            + regexes
    }

    /// Number of distinct literals in the shared automaton.
    pub fn literal_count(&self) -> usize {
        self.uses.len() + self.ctx_uses.len()
    }
}

/// Patterns up to this many get a full DFA: the fastest search, and still
/// quick to build. Larger sets (big dictionaries) let the crate choose.
const DFA_MAX_PATTERNS: usize = 2000;

fn automaton(patterns: &[String]) -> Result<Option<AhoCorasick>, RuleError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let kind = (patterns.len() <= DFA_MAX_PATTERNS).then_some(AhoCorasickKind::DFA);
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .ascii_case_insensitive(true)
        .kind(kind)
        .build(patterns)
        .map(Some)
        .map_err(|e| RuleError::Invalid {
            loc: Default::default(),
            rule: String::new(),
            message: format!("literal automaton: {e}"),
        })
}

fn compile_rule(
    p: &Parsed<'_>,
    s: &Sourced<RuleSpec>,
    idx: u32,
    b: &mut Builder,
    ctx: &mut Builder,
    errors: &mut Vec<RuleError>,
) -> Option<Rule> {
    let spec = &s.spec;
    let before = errors.len();
    let rule_id = spec.id.get_ref().clone();
    if rule_id.is_empty() || rule_id == super::DECODE_LIMIT_RULE {
        errors.push(err_invalid(p, s, "id must be non-empty and not reserved"));
    }

    let (keywords, case_sensitive, whole_word) = match &spec.keywords {
        Some(k) => (
            gather_words(p, s, &k.words, &k.dictionaries, errors),
            k.case_sensitive,
            k.whole_word,
        ),
        None => (Vec::new(), false, true),
    };
    let pattern = match &spec.pattern {
        Some(src) => match pattern::analyse(src.get_ref()) {
            Ok(pat) => Some(pat),
            Err(message) => {
                errors.push(RuleError::Regex {
                    loc: p.loc_of(s.file, src),
                    rule: rule_id.clone(),
                    message,
                });
                None
            }
        },
        None => None,
    };
    let no_keywords = spec
        .keywords
        .as_ref()
        .is_none_or(|k| k.words.is_empty() && k.dictionaries.is_empty());
    if no_keywords && spec.pattern.is_none() {
        errors.push(err_invalid(
            p,
            s,
            "needs `keywords` (words or dictionaries) or a `pattern`",
        ));
    }

    let mut context = None;
    let mut bands = Bands {
        medium: 0.6,
        high: 0.85,
    };
    let mut term_words = Vec::new();
    if let Some(c) = &spec.context {
        if let Some(bs) = c.bands {
            if bs.medium.partial_cmp(&bs.high) == Some(std::cmp::Ordering::Greater)
                || bs.medium.is_nan()
                || bs.high.is_nan()
            {
                errors.push(err_invalid(p, s, "context.bands: medium must be <= high"));
            }
            bands = Bands {
                medium: bs.medium,
                high: bs.high,
            };
        }
        if !(c.base.is_finite() && c.threshold.is_finite()) {
            errors.push(err_invalid(p, s, "context base/threshold must be numbers"));
        }
        if c.terms.len() > usize::from(u16::MAX) {
            errors.push(err_invalid(p, s, "too many context term groups"));
        }
        let mut terms = Vec::new();
        for t in &c.terms {
            let words = gather_words(p, s, &t.words, &t.dictionaries, errors);
            if words.is_empty() {
                errors.push(err_invalid(p, s, "a context term group has no words"));
            }
            terms.push(Term { weight: t.weight });
            term_words.push(words);
        }
        let mut shapes = Vec::new();
        for sh in &c.shapes {
            match pattern::compile_regex(sh.pattern.get_ref()) {
                Ok(re) if sh.weight.is_finite() => shapes.push((re, sh.weight)),
                Ok(_) => errors.push(err_invalid(
                    p,
                    s,
                    "a context shape's weight must be a number",
                )),
                Err(message) => errors.push(RuleError::Regex {
                    loc: p.loc_of(s.file, &sh.pattern),
                    rule: rule_id.clone(),
                    message,
                }),
            }
        }
        let mut checks = Vec::new();
        for ch in &c.checks {
            if ch.weight.is_finite() {
                checks.push((ch.validator.clone(), ch.weight));
            } else {
                errors.push(err_invalid(
                    p,
                    s,
                    "a context check's weight must be a number",
                ));
            }
        }
        context = Some(Context {
            shapes,
            checks,
            before: c.before,
            after: c.after,
            base: c.base,
            threshold: c.threshold,
            terms,
        });
    }

    let mut exclude = Exclude {
        literals: spec
            .exclude
            .literals
            .iter()
            .map(|l| compact(&normalize_str(l.get_ref())))
            .collect(),
        patterns: Vec::new(),
        labels: spec
            .exclude
            .literals
            .iter()
            .map(|l| {
                format!(
                    "exclude.literals {:?} ({})",
                    l.get_ref(),
                    p.loc_of(s.file, l)
                )
            })
            .collect(),
    };
    for src in &spec.exclude.patterns {
        match pattern::compile_regex(src.get_ref()) {
            Ok(re) => {
                exclude.patterns.push(re);
                exclude.labels.push(format!(
                    "exclude.patterns '{}' ({})",
                    src.get_ref(),
                    p.loc_of(s.file, src)
                ));
            }
            Err(message) => errors.push(RuleError::Regex {
                loc: p.loc_of(s.file, src),
                rule: rule_id.clone(),
                message,
            }),
        }
    }
    let conversation = spec
        .count
        .conversation
        .as_ref()
        .map(|c| (c.min, c.window_secs));
    if let Some((min, window)) = conversation {
        if min == 0 || window == 0 {
            errors.push(err_invalid(
                p,
                s,
                "count.conversation needs min >= 1 and window_secs >= 1",
            ));
        }
    }
    if spec.count.min == Some(0) {
        errors.push(err_invalid(p, s, "count.min must be >= 1"));
    }
    if errors.len() > before {
        return None;
    }

    // Only now touch the shared automaton: a failed rule adds nothing.
    for w in &keywords {
        let n = normalize_str(w);
        // Leet rules get both spellings: the plain one is found by the main
        // pass, the folded one by the extra pass that only runs when the
        // text has leet characters at all.
        if spec.leet {
            b.add(
                leet_fold(&n),
                Use {
                    rule: idx,
                    role: Role::LeetKeyword,
                },
            );
        }
        b.add(
            n,
            Use {
                rule: idx,
                role: Role::Keyword,
            },
        );
    }
    if let Some(Mode::Prefix(lits)) = pattern.as_ref().map(|p| &p.mode) {
        for l in lits {
            b.add(
                l.clone(),
                Use {
                    rule: idx,
                    role: Role::Anchor,
                },
            );
        }
    }
    for (t, words) in term_words.iter().enumerate() {
        for w in words {
            ctx.add(
                normalize_str(w),
                Use {
                    rule: idx,
                    role: Role::Term(t as u16),
                },
            );
        }
    }

    Some(Rule {
        id: Arc::from(rule_id.as_str()),
        name: spec.name.clone(),
        description: spec.description.clone(),
        severity: spec.severity,
        action: spec.action,
        leet: spec.leet,
        case_sensitive,
        whole_word,
        keywords,
        pattern,
        validators: spec.validators.clone(),
        context,
        bands,
        // A rule counting over a conversation needs as many in one message
        // unless it says otherwise: a message is part of its conversation.
        count_min: spec
            .count
            .min
            .unwrap_or(conversation.map_or(1, |(min, _)| min.max(1))),
        conversation,
        exclude,
        scope: Scope {
            apps: spec
                .scope
                .apps
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            direction: spec.scope.direction,
            fields: spec.scope.fields.clone(),
        },
        evidence: Evidence {
            masked: spec.evidence.mode == EvidenceMode::Masked,
            context_chars: spec.evidence.context_chars,
            keep_last: spec.evidence.keep_last,
        },
        examples: Examples {
            must_match: spec.examples.must_match.clone(),
            must_not_match: spec.examples.must_not_match.clone(),
        },
        loc: p.loc_of(s.file, &spec.id),
    })
}
