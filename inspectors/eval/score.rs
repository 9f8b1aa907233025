//! Scorer of the independent DLP evaluation (see POLICY.md): per-type
//! precision and recall with span overlap and full coverage of the label's
//! letters and digits. Shared by `tests/dlp_eval.rs` and
//! `examples/dlp_eval.rs` through `#[path]`.

use gatehouse_inspectors::dlp::{RuleSet, Severity};
use std::collections::{BTreeMap, BTreeSet};

/// One labelled span, UTF-8 byte offsets.
pub struct Label {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// One corpus record.
pub struct Record {
    pub id: String,
    pub text: String,
    pub labels: Vec<Label>,
}

/// Read a corpus file (JSON Lines).
pub fn load(path: &str) -> Vec<Record> {
    let raw = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    raw.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("corpus line is JSON");
            Record {
                id: v["id"].as_str().unwrap_or_default().to_string(),
                text: v["text"].as_str().expect("text").to_string(),
                labels: v["labels"]
                    .as_array()
                    .expect("labels")
                    .iter()
                    .map(|l| Label {
                        kind: l["type"].as_str().expect("type").to_string(),
                        start: l["start"].as_u64().expect("start") as usize,
                        end: l["end"].as_u64().expect("end") as usize,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Counts of one type.
#[derive(Default, Clone, Copy)]
pub struct Tally {
    pub labels: usize,
    pub found: usize,
    pub findings: usize,
    pub tp: usize,
}

impl Tally {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.findings)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.found, self.labels)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// The outcome over one corpus.
pub struct Report {
    pub records: usize,
    pub per_type: BTreeMap<String, Tally>,
    /// Types whose rule is high or critical.
    pub high: BTreeSet<String>,
    /// "FN type: …" / "FP type: …" lines, in corpus order.
    pub mistakes: Vec<String>,
}

const GENERIC: &str = "generic-secret";

/// Whether every letter and digit of `text[start..end]` lies in one of
/// `spans`; `\n`/`\r` escapes count as separators.
fn covered(text: &str, start: usize, end: usize, spans: &[(usize, usize)]) -> bool {
    let b = text.as_bytes();
    let mut i = start;
    while i < end {
        if b[i] == b'\\' && i + 1 < end && matches!(b[i + 1], b'n' | b'r') {
            i += 2;
            continue;
        }
        let counts = b[i].is_ascii_alphanumeric() || b[i] >= 0x80;
        if counts && !spans.iter().any(|&(s, e)| s <= i && i < e) {
            return false;
        }
        i += 1;
    }
    true
}

fn snippet(text: &str, s: usize, e: usize) -> String {
    let mut lo = s.saturating_sub(30);
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = (e + 30).min(text.len());
    while !text.is_char_boundary(hi) {
        hi += 1;
    }
    format!("{:?} [{}..{}] {:?}", &text[lo..s], s, e, &text[s..hi])
}

/// Score `set` on `records`.
pub fn score(set: &RuleSet, records: &[Record]) -> Report {
    let severity: BTreeMap<&str, Severity> = set.rules().map(|r| (r.id, r.severity)).collect();
    let labelled: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.labels.iter().map(|l| l.kind.as_str()))
        .collect();
    let high: BTreeSet<String> = labelled
        .iter()
        .filter(|k| severity.get(*k).is_some_and(|s| *s >= Severity::High))
        .map(|k| k.to_string())
        .collect();
    let mut per_type: BTreeMap<String, Tally> = labelled
        .iter()
        .map(|k| (k.to_string(), Tally::default()))
        .collect();
    let mut mistakes = Vec::new();
    for rec in records {
        let findings = set.scan_text(&rec.text).findings;
        for l in &rec.labels {
            let spans: Vec<(usize, usize)> = findings
                .iter()
                .filter(|f| *f.rule == *l.kind && f.start < l.end && l.start < f.end)
                .map(|f| (f.start, f.end))
                .collect();
            let t = per_type.get_mut(&l.kind).expect("labelled type");
            t.labels += 1;
            if !spans.is_empty() && covered(&rec.text, l.start, l.end, &spans) {
                t.found += 1;
            } else {
                let how = if spans.is_empty() {
                    "missed"
                } else {
                    "partly covered"
                };
                mistakes.push(format!(
                    "FN {} {} ({how}): {}",
                    rec.id,
                    l.kind,
                    snippet(&rec.text, l.start, l.end)
                ));
            }
        }
        for f in &findings {
            let Some(t) = per_type.get_mut(&*f.rule) else {
                continue;
            };
            let overlaps = |kind: Option<&str>| {
                rec.labels
                    .iter()
                    .any(|l| kind.is_none_or(|k| l.kind == k) && f.start < l.end && l.start < f.end)
            };
            if *f.rule == *GENERIC && !overlaps(Some(GENERIC)) && overlaps(None) {
                continue;
            }
            t.findings += 1;
            if overlaps(Some(&f.rule)) {
                t.tp += 1;
            } else {
                mistakes.push(format!(
                    "FP {} {}: {}",
                    rec.id,
                    f.rule,
                    snippet(&rec.text, f.start, f.end)
                ));
            }
        }
    }
    Report {
        records: records.len(),
        per_type,
        high,
        mistakes,
    }
}

impl Report {
    /// Micro precision and recall over the high and critical types.
    pub fn micro(&self) -> (f64, f64) {
        let mut all = Tally::default();
        for (k, t) in &self.per_type {
            if self.high.contains(k) {
                all.labels += t.labels;
                all.found += t.found;
                all.findings += t.findings;
                all.tp += t.tp;
            }
        }
        (all.precision(), all.recall())
    }

    /// The per-type table, as Markdown.
    pub fn table(&self, title: &str) -> String {
        let mut out = format!(
            "{title}: {} records\n\n| type | high/critical | labels | recall | findings | precision |\n|---|---|---|---|---|---|\n",
            self.records
        );
        for (k, t) in &self.per_type {
            out.push_str(&format!(
                "| {k} | {} | {} | {:.3} | {} | {:.3} |\n",
                if self.high.contains(k) { "yes" } else { "no" },
                t.labels,
                t.recall(),
                t.findings,
                t.precision()
            ));
        }
        let (p, r) = self.micro();
        out.push_str(&format!(
            "| **micro, high+critical** | | | **{r:.3}** | | **{p:.3}** |\n"
        ));
        out
    }
}
