//! From rule-file text to rule specs, collecting every error.
//!
//! Each `[[rule]]` and `[[dictionary]]` table is deserialised on its own, so
//! one bad rule does not hide the problems of the next.

use super::error::{Location, RuleError};
use super::format::{DictionarySpec, RuleSpec};
use serde::Deserialize;
use std::collections::HashMap;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// A spec with the file and offset it came from.
pub(crate) struct Sourced<T> {
    pub file: usize,
    pub spec: T,
}

/// Everything parsed from a set of sources.
pub(crate) struct Parsed<'s> {
    pub sources: Vec<(&'s str, &'s str)>,
    pub rules: Vec<Sourced<RuleSpec>>,
    pub dictionaries: HashMap<String, (Location, Vec<String>)>,
}

impl Parsed<'_> {
    /// The location of byte `offset` in source `file`.
    pub fn loc(&self, file: usize, offset: usize) -> Location {
        let (name, text) = self.sources[file];
        Location::at(name, text, offset)
    }

    /// The location of a spanned value.
    pub fn loc_of<T>(&self, file: usize, v: &Spanned<T>) -> Location {
        self.loc(file, v.span().start)
    }
}

fn elements<'a, 'i>(v: &'a Spanned<DeValue<'i>>) -> Vec<&'a Spanned<DeValue<'i>>> {
    match v.get_ref() {
        DeValue::Array(a) => a.iter().collect(),
        _ => vec![v],
    }
}

fn de<'i, T: Deserialize<'i>>(v: &Spanned<DeValue<'i>>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(v.clone()))
}

/// Parse all sources. Returns the specs and every syntax/shape error.
pub(crate) fn parse<'s>(sources: Vec<(&'s str, &'s str)>) -> (Parsed<'s>, Vec<RuleError>) {
    let mut errors = Vec::new();
    let mut parsed = Parsed {
        sources,
        rules: Vec::new(),
        dictionaries: HashMap::new(),
    };
    let mut dict_specs = Vec::new();
    for file in 0..parsed.sources.len() {
        let (name, text) = parsed.sources[file];
        let (root, errs) = DeTable::parse_recoverable(text);
        if !errs.is_empty() {
            for e in errs {
                let loc = e.span().map_or_else(
                    || Location::file(name),
                    |s| Location::at(name, text, s.start),
                );
                errors.push(RuleError::Syntax {
                    loc,
                    message: e.message().trim().to_string(),
                });
            }
            continue;
        }
        for (key, value) in root.get_ref().iter() {
            match key.get_ref().as_ref() {
                "rule" => {
                    for el in elements(value) {
                        match de::<RuleSpec>(el) {
                            Ok(spec) => parsed.rules.push(Sourced { file, spec }),
                            Err(e) => errors.push(shape_error(name, text, el, &e)),
                        }
                    }
                }
                "dictionary" => {
                    for el in elements(value) {
                        match de::<DictionarySpec>(el) {
                            Ok(spec) => dict_specs.push(Sourced { file, spec }),
                            Err(e) => errors.push(shape_error(name, text, el, &e)),
                        }
                    }
                }
                other => errors.push(RuleError::Syntax {
                    loc: Location::at(name, text, key.span().start),
                    message: format!(
                        "unknown top-level key `{other}`, expected `rule` or `dictionary`"
                    ),
                }),
            }
        }
    }
    for d in dict_specs {
        let loc = parsed.loc_of(d.file, &d.spec.id);
        let id = d.spec.id.into_inner();
        if let Some((first, _)) = parsed.dictionaries.get(&id) {
            errors.push(RuleError::DuplicateId {
                loc,
                id,
                first: first.clone(),
            });
            continue;
        }
        parsed.dictionaries.insert(id, (loc, d.spec.words));
    }
    (parsed, errors)
}

fn shape_error(
    name: &str,
    text: &str,
    el: &Spanned<DeValue<'_>>,
    e: &toml::de::Error,
) -> RuleError {
    let at = e.span().map_or(el.span().start, |s| s.start);
    RuleError::Syntax {
        loc: Location::at(name, text, at),
        message: e.message().trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_errors_of_every_rule_with_lines() {
        let a = r#"
[[rule]]
id = "a"
name = "A"
severity = "high"
colour = "red"

[[rule]]
id = "b"
name = "B"
severity = "extreme"
"#;
        let b = "[[rule]\nid=";
        let (_, errors) = parse(vec![("a.toml", a), ("b.toml", b)]);
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{rendered:#?}");
        assert!(rendered[0].starts_with("a.toml:6:"), "{rendered:#?}");
        assert!(rendered[0].contains("colour"));
        assert!(rendered[1].starts_with("a.toml:11:"), "{rendered:#?}");
        assert!(rendered[2].starts_with("b.toml:1:"), "{rendered:#?}");
    }

    #[test]
    fn dictionaries_parse_and_duplicates_are_reported() {
        let d = "[dictionary]\nid = \"names\"\nwords = [\"x\"]\n";
        let (parsed, errors) = parse(vec![("d1.toml", d), ("d2.toml", d)]);
        assert_eq!(parsed.dictionaries["names"].1, vec!["x".to_string()]);
        assert!(
            matches!(&errors[..], [RuleError::DuplicateId { loc, .. }] if loc.file == "d2.toml")
        );
    }
}
